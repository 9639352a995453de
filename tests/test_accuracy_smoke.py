"""benchmarks/accuracy.py runs end to end in its smoke mode, so it cannot rot (the full run
stays out of CI)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from conftest import REPO, read_manifest
from PIL import Image

DIGITS, STRONG = "configs/digits.yaml", "configs/digits_strong.yaml"
COLUMNS = ["train size", "condition", "recipe", "N", "train images", "clean", "perturbed"]


def load_benchmark() -> ModuleType:
    """Import the script by path (benchmarks/ is not a package), once."""
    name = "augctl_accuracy_benchmark"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / "accuracy.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while it executes
        spec.loader.exec_module(module)
    return sys.modules[name]


def parse_table(text: str) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of the Markdown table the benchmark prints."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    return cells[0], [dict(zip(cells[0], row)) for row in cells[2:]]


def accuracy(cell: str) -> tuple[float, float]:
    """'0.812 ± 0.010' -> (0.812, 0.010)."""
    mean, std = cell.split(" ± ")
    return float(mean), float(std)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """One smoke run with two recipes: what it printed, and its working directory."""
    workdir = tmp_path_factory.mktemp("accuracy")
    args = ["--smoke", "--recipe", DIGITS, "--recipe", STRONG, "--workers", "1"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = load_benchmark().main([*args, "--workdir", str(workdir)])
    assert status == 0
    return out.getvalue(), workdir


def test_table_has_a_row_per_condition_and_recipe(smoke: tuple[str, Path]) -> None:
    head, rows = parse_table(smoke[0])
    assert head == COLUMNS
    got = [(r["train size"], r["condition"], r["recipe"], r["N"], r["train images"]) for r in rows]
    assert got == [
        ("20", "originals", "-", "-", "20"),
        ("20", "duplicated", "-", "2", "60"),
        ("20", "augmented", DIGITS, "2", "60"),
        ("20", "augmented", STRONG, "2", "60"),
    ]


def test_accuracies_are_fractions_above_chance(smoke: tuple[str, Path]) -> None:
    rows = parse_table(smoke[0])[1]
    for row in rows:
        (clean, clean_std), (pert, pert_std) = accuracy(row["clean"]), accuracy(row["perturbed"])
        assert 0 <= pert <= 1 and clean_std == pert_std == 0  # one seed: no spread
        assert 0.3 < clean <= 1, row  # 10 classes: chance is 0.1
    # Variants read back with the wrong labels drag clean accuracy far below the originals'.
    base = accuracy(rows[0]["clean"])[0]
    assert all(accuracy(r["clean"])[0] > base - 0.1 for r in rows), rows


def test_variants_are_read_back_with_their_class(smoke: tuple[str, Path]) -> None:
    out = smoke[1] / "size20-seed0" / "aug0-digits-n2"
    images, labels = load_benchmark().read_variants(out)
    rows = read_manifest(out)
    assert labels.tolist() == [int(r["class"]) for r in rows]
    for image, row in zip(images, rows):
        assert np.array_equal(image, np.asarray(Image.open(out / row["output_path"])))


def test_augmented_sets_hold_n_variants_of_every_training_image(smoke: tuple[str, Path]) -> None:
    split = smoke[1] / "size20-seed0"
    sources = sorted(p.relative_to(split / "train").as_posix() for p in split.rglob("train/*/*"))
    assert len(sources) == 20
    assert Counter(s.split("/")[0] for s in sources) == {str(d): 2 for d in range(10)}
    outputs = sorted(p.name for p in split.glob("aug*-n2"))
    assert outputs == ["aug0-digits-n2", "aug1-digits_strong-n2"]
    for name in outputs:
        rows = read_manifest(split / name)
        assert len(rows) == 2 * len(sources)
        variants = Counter((r["source_path"], r["variant"]) for r in rows)
        assert set(variants) == {(s, v) for s in sources for v in ("1", "2")}
        for row in rows:
            assert row["class"] == row["source_path"].split("/")[0]
            with Image.open(split / name / row["output_path"]) as im:
                assert (im.mode, im.size) == ("L", (32, 32))


def test_perturbed_test_images_are_fixed_and_moved() -> None:
    bench = load_benchmark()
    images = np.zeros((4, 32, 32), np.uint8)
    images[:, 8:24, 14:18] = 255  # a vertical bar: any rotation or shift moves it
    once, again = bench.perturb(images, 1), bench.perturb(images, 1)
    assert np.array_equal(once, again)
    assert all(not np.array_equal(a, b) for a, b in zip(once, images))
