"""Every recipe shipped in configs/ is valid and runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import CONFIGS, make_tree, photo, read_manifest
from PIL import Image

from augctl.cli import main
from augctl.recipe import load_recipe

RECIPES = sorted(CONFIGS.glob("*.yaml"))


def test_there_are_several_recipes() -> None:
    assert {p.name for p in RECIPES} >= {"basic.yaml", "photo_224.yaml", "digits.yaml"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_runs(path: Path, tmp_path: Path) -> None:
    recipe = load_recipe(path)
    src = make_tree(tmp_path / "in", {"a": 2, "b": 1}, size=(96, 80))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["expand", "-r", str(path), str(src), str(out), "-n", "2", "-q"]
    )
    assert result.exit_code == 0, result.output
    rows = read_manifest(out)
    assert len(rows) == 3 * 2
    for row in rows:
        with Image.open(out / row["output_path"]) as im:
            assert (
                im.format.lower() == {"jpeg": "jpeg", "png": "png", "webp": "webp"}[recipe.format]
            )


def test_digits_recipe_keeps_grayscale(tmp_path: Path) -> None:
    src = tmp_path / "in" / "7"
    src.mkdir(parents=True)
    photo(1, (32, 32), "L").save(src / "d.png")
    out = tmp_path / "out"
    args = ["expand", "-r", str(CONFIGS / "digits.yaml"), str(tmp_path / "in"), str(out), "-q"]
    assert CliRunner().invoke(main, args).exit_code == 0
    modes = {Image.open(out / r["output_path"]).mode for r in read_manifest(out)}
    assert modes == {"L"}
