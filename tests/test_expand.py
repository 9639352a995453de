"""End to end: `augctl expand` writes N variants per source with a manifest that matches."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import (
    CONFIGS,
    SAMPLE_DATA,
    SMALL_RECIPE,
    augctl_cmd,
    make_tree,
    output_files,
    photo,
    read_manifest,
    sha256,
)
from PIL import Image

import augctl
from augctl import images, pipeline
from augctl.cli import main
from augctl.manifest import COLUMNS

SAMPLE_SOURCES = sorted(
    p
    for p in SAMPLE_DATA.rglob("*")
    if p.suffix.lower() in (".jpg", ".png") and p.parent != SAMPLE_DATA
)


def expand_cli(*args: str, input: str | None = None):
    return CliRunner().invoke(main, ["expand", *map(str, args)], input=input)


def check_output_tree(out: Path, source_root: Path, expected_rows: int) -> list[dict[str, str]]:
    """Every manifest row has its file, every file its row, and the hashes match the bytes."""
    rows = read_manifest(out)
    assert list(rows[0].keys()) == list(COLUMNS)
    files = output_files(out)
    assert len(rows) == expected_rows
    assert {r["output_path"] for r in rows} == set(files)
    for row in rows:
        data = files[row["output_path"]]
        assert row["output_sha256"] == sha256(data)
        assert row["source_sha256"] == sha256((source_root / row["source_path"]).read_bytes())
        with Image.open(out / row["output_path"]) as im:
            assert (im.width, im.height) == (int(row["width"]), int(row["height"]))
        assert row["output_path"].split("/")[0] == row["class"]
        assert row["output_path"].count("/") == 1  # directly inside its class folder
        assert isinstance(json.loads(row["ops"]), list)
    run = json.loads((out / "run.json").read_text())
    assert {r["recipe_sha256"] for r in rows} == {run["recipe_sha256"]}
    assert run["status"] == "complete"
    return rows


def test_readme_demo_on_sample_data(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = expand_cli("--recipe", CONFIGS / "basic.yaml", SAMPLE_DATA, out, "-j2", "--json")
    assert result.exit_code == 0, result.output
    assert len(SAMPLE_SOURCES) >= 12
    rows = check_output_tree(out, SAMPLE_DATA, len(SAMPLE_SOURCES) * 5)
    summary = json.loads(result.stdout)
    assert summary["written"] == len(rows) and summary["skipped"] == 0
    assert (out / "errors.csv").read_text().strip() == "source_path,class,reason"
    assert {r["width"] + "x" + r["height"] for r in rows} == {"224x224"}


def test_subprocess_python_m(tmp_path: Path, recipe_file: Path) -> None:
    src = make_tree(tmp_path / "in", {"a": 2, "b": 1})
    out = tmp_path / "out"
    cmd = augctl_cmd("expand", "-r", recipe_file, src, out)
    proc = subprocess.run([*cmd, "-j", "2", "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["written"] == 9
    check_output_tree(out, src, 9)
    assert "Traceback" not in proc.stderr


def test_worker_count_does_not_change_bytes(tree: Path, recipe_file: Path, tmp_path: Path) -> None:
    outs = []
    for j in ("1", "2"):
        out = tmp_path / f"out{j}"
        assert expand_cli("-r", recipe_file, tree, out, "-j", j, "-q").exit_code == 0
        outs.append(out)
    assert output_files(outs[0]) == output_files(outs[1])
    assert (outs[0] / "manifest.csv").read_bytes() == (outs[1] / "manifest.csv").read_bytes()


def test_unrelated_files_change_no_output(tree: Path, recipe_file: Path, tmp_path: Path) -> None:
    before = tmp_path / "before"
    assert expand_cli("-r", recipe_file, tree, before, "-q").exit_code == 0
    photo(999).save(tree / "dog" / "aaa_new.jpg")
    (tree / "zebra").mkdir()
    photo(998).save(tree / "zebra" / "z.png")
    after = tmp_path / "after"
    assert expand_cli("-r", recipe_file, tree, after, "-q").exit_code == 0
    old, new = output_files(before), output_files(after)
    assert len(new) == len(old) + 6
    assert {k: new[k] for k in old} == old
    new_rows = {r["output_path"]: r for r in read_manifest(after)}
    assert all(new_rows[r["output_path"]] == r for r in read_manifest(before))


def test_same_seed_reproduces_and_other_seed_differs(
    tree: Path, recipe_file: Path, tmp_path: Path
) -> None:
    runs = {}
    for name, extra in (("a", []), ("b", []), ("c", ["--seed", "8"])):
        out = tmp_path / name
        assert expand_cli("-r", recipe_file, tree, out, "-q", *extra).exit_code == 0
        runs[name] = output_files(out)
    assert runs["a"] == runs["b"]
    assert runs["a"].keys() == runs["c"].keys()
    assert all(runs["a"][k] != runs["c"][k] for k in runs["a"])


def test_manifest_ops_recreate_every_output(tree: Path, recipe_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert expand_cli("-r", recipe_file, tree, out, "-q").exit_code == 0
    applied_ops = set()
    for row in read_manifest(out):
        image = images.decode(
            (tree / row["source_path"]).read_bytes(), max_pixels=10**8, keep_alpha=False
        )
        ops = json.loads(row["ops"])
        applied_ops |= {o["op"] for o in ops}
        data = images.encode(pipeline.run(image, ops), "jpeg", 90)
        assert sha256(data) == row["output_sha256"], row["output_path"]
    assert {"rotate", "random_resized_crop"} <= applied_ops


def test_names_are_readable_and_never_collide(tmp_path: Path, recipe_file: Path) -> None:
    src = tmp_path / "in"
    (src / "dog" / "sub" / "deeper").mkdir(parents=True)
    photo(1).save(src / "dog" / "x.jpg")
    photo(2).save(src / "dog" / "x.png")
    photo(3).save(src / "dog" / "sub" / "deeper" / "x.jpg")
    photo(4).save(src / "dog" / "-lead dash é.JPG")
    out = tmp_path / "out"
    result = expand_cli("-r", recipe_file, src, out, "-n", "1", "-q")
    assert result.exit_code == 0, result.output
    assert sorted(output_files(out)) == [
        "dog/-lead dash é_JPG_aug001.jpg",
        "dog/sub__deeper__x_jpg_aug001.jpg",
        "dog/x_jpg_aug001.jpg",
        "dog/x_png_aug001.jpg",
    ]
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert all(p.startswith(("in/", "out/")) or p == "recipe.yaml" for p in written)


def test_variants_override_and_recipe_on_stdin(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = expand_cli("-r", "-", tree, out, "-n", "2", "-q", input=SMALL_RECIPE)
    assert result.exit_code == 0, result.output
    rows = read_manifest(out)
    assert len(rows) == 7 * 2
    assert {r["variant"] for r in rows} == {"1", "2"}


def test_second_run_is_a_no_op(tree: Path, recipe_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert expand_cli("-r", recipe_file, tree, out, "-q").exit_code == 0
    first = output_files(out)
    result = expand_cli("-r", recipe_file, tree, out, "--json")
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert (summary["written"], summary["already_done"]) == (0, 21)
    assert output_files(out) == first


def test_outputs_of_sources_gone_from_in_are_kept_and_said(
    tree: Path, recipe_file: Path, tmp_path: Path
) -> None:
    """A source (or a class) deleted from IN between runs: its recorded outputs stay, as a
    resume deletes nothing it recorded, and the run says so (it said nothing, and a removed
    class stayed a class folder for ImageFolder to load)."""
    out = tmp_path / "out"
    assert expand_cli("-r", recipe_file, tree, out, "-q").exit_code == 0
    (tree / "dog" / "img_0.jpg").unlink()
    result = expand_cli("-r", recipe_file, tree, out, "-q")
    assert result.exit_code == 0
    assert (
        "augctl: warning: 3 output(s) recorded in manifest.csv come from sources no longer in "
        f"{tree} (e.g. dog/img_0.jpg)"
    ) in result.stderr
    assert len(read_manifest(out)) == 21
    again = expand_cli("-r", recipe_file, tree, tmp_path / "fresh", "-q")
    assert again.exit_code == 0 and "no longer in" not in again.stderr


def test_other_recipe_on_used_output_is_refused(
    tree: Path, recipe_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert expand_cli("-r", recipe_file, tree, out, "-q").exit_code == 0
    (out / "notes.txt").write_text("mine")
    result = expand_cli("-r", recipe_file, tree, out, "--seed", "99", "-q")
    assert result.exit_code == 2
    assert "holds a run of a different recipe" in result.stderr
    assert "--overwrite" in result.stderr
    result = expand_cli("-r", recipe_file, tree, out, "--seed", "99", "-q", "--overwrite")
    assert result.exit_code == 0
    assert len(read_manifest(out)) == 21 and len(output_files(out)) == 21
    assert (out / "notes.txt").read_text() == "mine"  # only what the old manifest listed is removed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["{tmp}/missing", "{tmp}/out"],
            "augctl: error: input directory {tmp}/missing does not exist\n",
        ),
        (
            ["{tmp}", "{tmp}/in/out"],
            "augctl: error: output directory {tmp}/in/out is inside the input",
        ),
        (
            ["{tmp}/in", "{tmp}"],
            "augctl: error: output directory {tmp} contains the input; choose another one\n",
        ),
    ],
)
def test_bad_directories_exit_2(
    tmp_path: Path, recipe_file: Path, args: list[str], message: str
) -> None:
    make_tree(tmp_path / "in", {"a": 1})
    result = expand_cli("-r", recipe_file, *[a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2
    assert result.stderr.startswith(message.format(tmp=tmp_path))
    assert "Traceback" not in result.output


def test_python_api_matches_cli(tree: Path, recipe_file: Path, tmp_path: Path) -> None:
    summary = augctl.expand(tree, tmp_path / "api", recipe_file, workers=2)
    assert expand_cli("-r", recipe_file, tree, tmp_path / "cli", "-q").exit_code == 0
    assert summary.written == 21 and summary.per_class == {"cat": 9, "dog": 6, "fox": 6}
    assert output_files(tmp_path / "api") == output_files(tmp_path / "cli")


def test_progress_is_plain_lines_off_a_terminal(
    tree: Path, recipe_file: Path, tmp_path: Path
) -> None:
    result = expand_cli("-r", recipe_file, tree, tmp_path / "out")
    assert "augctl: 7/7 images" in result.stderr
    assert "\r" not in result.stderr
    quiet = expand_cli("-r", recipe_file, tree, tmp_path / "out2", "-q")
    assert quiet.stderr == ""


def test_python_api_from_a_script_on_stdin(tree: Path, recipe_file: Path, tmp_path: Path) -> None:
    # Spawned workers re-import the caller's script; one read from stdin has no file.
    script = f"import augctl\nprint(augctl.expand({str(tree)!r}, {str(tmp_path / 'out')!r}, {str(recipe_file)!r}, workers=2).written)\n"
    proc = subprocess.run(
        [sys.executable, "-"], input=script, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "21"
    assert (tmp_path / "out" / "errors.csv").read_text().strip() == "source_path,class,reason"


def test_python_api_from_an_unguarded_script_says_why_and_blames_no_image(
    tree: Path, recipe_file: Path, tmp_path: Path
) -> None:
    # Without the __main__ guard every spawned worker re-runs the script and dies at start:
    # that is one clear error, fast, not every source recorded as having killed a worker.
    call = (
        f"augctl.expand({str(tree)!r}, {str(tmp_path / 'out')!r}, {str(recipe_file)!r}, workers=2)"
    )
    script = tmp_path / "unguarded.py"
    script.write_text(f"import augctl\n{call}\n")
    proc = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("augctl.errors.EngineError: the worker processes exited before")
    assert 'if __name__ == "__main__":' in last
    assert (
        not (tmp_path / "out" / "errors.csv").exists()
        or read_manifest(tmp_path / "out", "errors.csv") == []
    )
    # Nothing was lost or blamed: the guarded script then does the whole run in the same OUT.
    script.write_text(f"import augctl\nif __name__ == '__main__':\n    print({call}.written)\n")
    proc = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "21"


def test_names_that_differ_only_in_case_are_all_reported_before_any_work(
    tmp_path: Path, recipe_file: Path
) -> None:
    src = make_tree(tmp_path / "in", {"a": 2})
    (src / "a" / "p").mkdir()
    for name in ("x.jpg", "x.JPG", "Y.png", "y.png", "p/q.png", "p__q.png"):
        Image.new("RGB", (8, 8)).save(src / "a" / name, format="PNG" if "png" in name else "JPEG")
    result = expand_cli("-r", recipe_file, src, tmp_path / "out")
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert message.count("would both be written as") == 3, message
    assert "a/x.JPG and a/x.jpg" in message and "a/Y.png and a/y.png" in message
    assert "a/p/q.png and a/p__q.png would both be written as a/p__q_png_aug001" in message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_broken_link_at_the_input_root_is_a_warning(tmp_path: Path, recipe_file: Path) -> None:
    src = make_tree(tmp_path / "in", {"a": 1})
    (src / "gone").symlink_to(tmp_path / "nowhere")
    result = expand_cli("-r", recipe_file, src, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "'gone' at the input root is a broken link" in result.stderr
