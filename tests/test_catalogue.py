"""The whole op catalogue end to end, `augctl ops`, `augctl preview`, and docs that can't drift."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import REPO, SAMPLE_DATA, make_tree, output_files, read_manifest
from PIL import Image

from augctl.cli import main
from augctl.ops import REGISTRY
from augctl.ops.describe import markdown_table


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def every_op_run(tmp_path_factory):
    """Every registered op as one step (defaults, p=1) over a small tree, with 1 and 2 workers."""
    root = tmp_path_factory.mktemp("catalogue")
    src = make_tree(root / "in", {"a": 2, "b": 2}, size=(96, 72))
    steps = [{name: None} for name in sorted(REGISTRY)]
    recipe = root / "all.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {"version": 1, "seed": 2, "variants": 2, "output": {"format": "png"}, "pipeline": steps}
        )
    )
    outs = {}
    for j in ("1", "2"):
        result = invoke("expand", "-r", recipe, src, root / f"out{j}", "-j", j, "-q")
        assert result.exit_code == 0, result.output
        outs[j] = root / f"out{j}"
    return outs


def test_every_op_runs_and_is_deterministic_across_workers(every_op_run) -> None:
    one, two = every_op_run["1"], every_op_run["2"]
    assert output_files(one) == output_files(two)
    assert (one / "manifest.csv").read_bytes() == (two / "manifest.csv").read_bytes()
    rows = read_manifest(two)
    assert len(rows) == 8
    applied = {entry["op"] for row in rows for entry in json.loads(row["ops"])}
    assert applied == set(REGISTRY)
    for row in rows:  # mixing partners: another image of the same class, recorded by path
        for entry in json.loads(row["ops"]):
            if entry["op"] in ("mixup", "cutmix"):
                assert entry["partner"].split("/")[0] == row["class"]
                assert entry["partner"] != row["source_path"]


def test_every_output_replays_byte_identical(every_op_run) -> None:
    result = invoke("verify", every_op_run["2"], "--deep")
    assert result.exit_code == 0, result.output
    assert result.stderr == "augctl: verified 8 manifest rows, 8 re-created: OK\n"


def test_ops_lists_every_op_with_params() -> None:
    result = invoke("ops", "--json")
    assert result.exit_code == 0
    table = json.loads(result.stdout)
    assert [e["name"] for e in table] == sorted(REGISTRY)
    rotate = next(e for e in table if e["name"] == "rotate")
    assert {p["name"]: p["default"] for p in rotate["params"]}["degrees"] == [-15.0, 15.0]
    one = invoke("ops", "rotat")
    assert (
        one.exit_code == 2
        and one.stderr == "augctl: error: unknown op 'rotat'; did you mean 'rotate'?\n"
    )
    upper = invoke("ops", "HFlip")
    assert upper.stderr == "augctl: error: unknown op 'HFlip'; did you mean 'hflip'?\n"


def test_readme_op_table_is_generated_from_the_registry() -> None:
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- ops-table:start -->\n(.*?)<!-- ops-table:end -->", readme, re.S)
    assert block, "README lacks the generated op table"
    assert block.group(1) == markdown_table(), (
        "README op table is stale: run `augctl ops --markdown`"
    )
    assert invoke("ops", "--markdown").stdout == markdown_table()


def test_every_command_has_help_and_is_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    for name, command in main.commands.items():
        assert command.help, f"augctl {name} has no help"
        assert f"augctl {name}" in readme, f"augctl {name} is not documented in the README"


def test_preview_writes_a_captioned_grid(tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    image = SAMPLE_DATA / "cat" / "cat_01.jpg"
    result = invoke(
        "preview",
        "-r",
        REPO / "configs" / "basic.yaml",
        image,
        "-n",
        "6",
        "-o",
        out,
        "--tile",
        "100",
    )
    assert result.exit_code == 0, result.output
    with Image.open(out) as sheet:
        assert sheet.format == "PNG"
        # 6 tiles in a 3-column grid of 100-px tiles, each with a 4-line caption strip below.
        assert sheet.width == 300 and sheet.height % 2 == 0 and sheet.height > 200
        tile_h = sheet.height // 2
        rows = [
            sheet.crop((c * 100, r * tile_h, c * 100 + 100, r * tile_h + 100))
            for r in range(2)
            for c in range(3)
        ]
    assert all(t.convert("L").getextrema() != (255, 255) for t in rows)  # every tile has a picture
    assert len({t.tobytes() for t in rows}) == 6  # and they differ


def test_preview_mixes_nothing_in_from_a_partner_that_cannot_be_decoded(tmp_path: Path) -> None:
    """As `expand` does: an undecodable file beside the image is no partner (the whole preview
    failed on it, naming the other file)."""
    folder = tmp_path / "k"
    folder.mkdir()
    for name in ("cat_01.jpg", "cat_02.jpg"):
        (folder / name).write_bytes((SAMPLE_DATA / "cat" / name).read_bytes())
    (folder / "empty.jpg").write_bytes(b"")
    recipe = tmp_path / "mix.yaml"
    recipe.write_text("version: 1\nvariants: 2\npipeline:\n  - mixup: {}\n")
    out = tmp_path / "g.png"
    result = invoke("preview", "-r", recipe, folder / "cat_01.jpg", "-n", "12", "-o", out)
    assert result.exit_code == 0, result.output
    with Image.open(out) as sheet:
        assert sheet.width == 4 * 256  # 12 tiles, 4 columns of the default 256-px tile


def test_preview_of_a_bad_image_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"")
    result = invoke("preview", "-r", REPO / "configs" / "basic.yaml", bad, "-o", tmp_path / "g.png")
    assert result.exit_code == 2
    assert result.stderr == f"augctl: error: {bad}: empty file (0 bytes)\n"
