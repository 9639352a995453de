"""`augctl verify` and `augctl replay` on clean and tampered outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import read_manifest

import augctl.audit as v
from augctl.cli import main


@pytest.fixture
def done(tree: Path, recipe_file: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    assert (
        CliRunner()
        .invoke(main, ["expand", "-r", str(recipe_file), str(tree), str(out), "-q"])
        .exit_code
        == 0
    )
    return out


def invoke(*args: str):
    return CliRunner().invoke(main, [*map(str, args)])


def test_clean_output_verifies_and_replays(done: Path) -> None:
    result = invoke("verify", done, "--deep")
    assert result.exit_code == 0, result.output
    assert result.stderr == "augctl: verified 21 manifest rows, 21 re-created: OK\n"
    paths = [r["output_path"] for r in read_manifest(done)]
    result = invoke("replay", done, paths[0], done / paths[1])
    assert result.exit_code == 0
    assert result.stdout == f"identical: {paths[0]}\nidentical: {paths[1]}\n"


def test_tampering_is_reported(done: Path) -> None:
    rows = read_manifest(done)
    truncated, changed, deleted = (done / rows[i]["output_path"] for i in (0, 1, 2))
    truncated.write_bytes(truncated.read_bytes()[:100])
    data = bytearray(changed.read_bytes())
    data[len(data) // 2] ^= 0x01
    changed.write_bytes(bytes(data))
    deleted.unlink()
    (done / "cat" / "extra.jpg").write_bytes(b"not from augctl")
    result = invoke("verify", done, "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert not report["ok"] and report["checked"] == 21
    kinds = {(p["kind"], p["path"]) for p in report["problems"]}
    assert kinds == {
        ("mismatch", rows[0]["output_path"]),
        ("mismatch", rows[1]["output_path"]),
        ("missing", rows[2]["output_path"]),
        ("orphan", "cat/extra.jpg"),
    }
    result = invoke("replay", done, rows[1]["output_path"], rows[3]["output_path"])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"DIFFERENT: {rows[1]['output_path']}: re-created bytes match the manifest, but the file on disk differs",
        f"identical: {rows[3]['output_path']}",
    ]


def forge(done: Path, row: dict[str, str]) -> None:
    """Rewrite an output and its manifest hash together, as a forger would."""
    forged = done / row["output_path"]
    forged.write_bytes(forged.read_bytes() + b"\x00")
    text = (done / "manifest.csv").read_text(encoding="utf-8")
    (done / "manifest.csv").write_text(
        text.replace(row["output_sha256"], v._sha256_file(str(forged)))
    )


def test_deep_verify_catches_a_forged_manifest(done: Path) -> None:
    # A file rewritten together with its manifest hash passes the shallow check;
    # only re-creating it from its source and ops shows it is not what augctl made.
    rows = read_manifest(done)
    forge(done, rows[4])
    assert invoke("verify", done).exit_code == 0
    result = invoke("verify", done, "--deep")
    assert result.exit_code == 1
    assert (
        f"replay: {rows[4]['output_path']}: re-created bytes differ from the manifest's sha256"
        in result.stdout
    )


def test_replay_of_a_moved_dataset_uses_input(done: Path, tree: Path, tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    tree.rename(moved)
    path = read_manifest(done)[0]["output_path"]
    assert invoke("replay", done, path).exit_code == 1
    result = invoke("replay", done, path, "--input", moved)
    assert result.exit_code == 0, result.output


def test_verify_of_a_non_output_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke("verify", tmp_path)
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"augctl: error: {tmp_path} has no manifest.csv; is it an augctl output directory?\n"
    )


def test_python_api(done: Path) -> None:
    import augctl

    report = augctl.verify(done, deep=True)
    assert report.ok and report.checked == 21 and report.replayed == 21
    path = read_manifest(done)[0]["output_path"]
    assert [r.identical for r in augctl.replay(done, [path])] == [True]


def test_deep_verify_says_when_the_run_was_made_with_other_versions(done: Path) -> None:
    # The same recipe can give other bytes under another Pillow: say so, not just "differs".
    run = json.loads((done / "run.json").read_text())
    assert set(run["libraries"]) == {"pillow", "numpy"}
    run["libraries"]["pillow"] = "1.0"
    (done / "run.json").write_text(json.dumps(run))
    forge(done, read_manifest(done)[0])
    result = invoke("verify", done, "--deep")
    assert result.exit_code == 1
    assert "(made with other versions: pillow 1.0 then, " in result.stdout
