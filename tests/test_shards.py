"""Shards (--shard K/N, --shard-from-env), merge, and --dry-run."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO, SMALL_RECIPE, augctl_cmd, make_tree, output_files, read_manifest
from PIL import Image

from augctl import UsageError, api
from augctl.cli import main
from augctl.plan import Shard, shard_from_env, shard_of

SHARD_VARS = (
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_COUNT",
    "SLURM_ARRAY_TASK_STEP",
    "JOB_COMPLETION_INDEX",
)


def cli(*args: object, env: dict[str, str | None] | None = None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def bookkeeping(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in ("manifest.csv", "errors.csv")}


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A dataset with a bad file and a broken link, its recipe, and an unsharded reference run."""
    root = tmp_path_factory.mktemp("shards")
    src = make_tree(root / "in", {"cat": 5, "dog": 4, "fox": 3})
    (src / "dog" / "empty.jpg").write_bytes(b"")
    (src / "fox" / "gone.jpg").symlink_to(root / "nowhere.jpg")
    recipe = root / "r.yaml"
    recipe.write_text(SMALL_RECIPE)
    reference = root / "reference"
    result = cli("expand", "-r", recipe, src, reference, "-j1", "-q")
    assert result.exit_code == 0, result.output
    assert len(read_manifest(reference, "errors.csv")) == 2
    return src, recipe, reference


def run_shards(src: Path, recipe: Path, out: Path, count: int) -> None:
    """Shards 0..count-1 as separate processes, all at once, into one OUT."""
    procs = [
        subprocess.Popen(
            augctl_cmd("expand", "-r", recipe, src, out, "--shard", f"{k}/{count}", "-j1", "-q"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(count)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err


@pytest.mark.parametrize("count", [2, 3])
def test_shards_merge_to_the_unsharded_run(job, tmp_path: Path, count: int) -> None:
    src, recipe, reference = job
    out = tmp_path / "out"
    run_shards(src, recipe, out, count)
    # Hidden files are the runs' lock files; the visible ones are exactly the parts.
    visible = (p.name for p in out.iterdir() if p.is_file() and not p.name.startswith("."))
    assert sorted(visible) == sorted(
        f"{kind}-{k}-of-{count}.{ext}"
        for k in range(count)
        for kind, ext in (("manifest", "csv"), ("errors", "csv"), ("run", "json"))
    )
    for k in range(count):  # each shard did its own sources only
        assert {
            shard_of(r["source_path"], count)
            for r in read_manifest(out, f"manifest-{k}-of-{count}.csv")
        } <= {k}

    merged = cli("merge", out)
    assert merged.exit_code == 0, merged.output
    assert output_files(out) == output_files(reference)
    assert bookkeeping(out) == bookkeeping(reference)
    assert cli("verify", out).exit_code == 0
    run = json.loads((out / "run.json").read_text())
    assert (run["status"], run["shards"], run["rows"], run["errors"]) == ("complete", count, 36, 2)

    assert cli("merge", out).exit_code == 0  # idempotent
    assert bookkeeping(out) == bookkeeping(reference)

    (out / f"manifest-1-of-{count}.csv").unlink()
    result = cli("merge", out)
    assert result.exit_code == 1
    assert result.stderr == (
        f"augctl: error: missing shards: 1 of {count} (1: manifest-1-of-{count}.csv is gone) "
        f"— re-run it with --shard 1/{count}, then merge again\n"
    )
    rerun = cli("expand", "-r", recipe, src, out, "--shard", f"1/{count}", "-j1", "-q")
    assert rerun.exit_code == 0, rerun.output
    assert cli("merge", out).exit_code == 0
    assert bookkeeping(out) == bookkeeping(reference)
    assert output_files(out) == output_files(reference)


def test_shards_on_separate_machines_copied_together(job, tmp_path: Path) -> None:
    # The README's CI matrix: each job has its own OUT; the last one gathers and merges them.
    src, recipe, reference = job
    gathered = tmp_path / "gathered"
    for k in (0, 1):
        own = tmp_path / f"machine{k}"
        assert (
            cli("expand", "-r", recipe, src, own, "--shard", f"{k}/2", "-j1", "-q").exit_code == 0
        )
        shutil.copytree(own, gathered, dirs_exist_ok=True)
    assert cli("merge", gathered).exit_code == 0
    assert cli("verify", gathered).exit_code == 0
    assert output_files(gathered) == output_files(reference)
    assert bookkeeping(gathered) == bookkeeping(reference)


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    install = next(line for line in ci.splitlines() if "pip install" in line and "'." in line)
    extras = install.split()[-1]
    assert f"pip install {extras} && python -m pytest -q" in readme
    assert ci.rstrip().endswith("python -m pytest -q")


@pytest.fixture(scope="module")
def two_shards_once(job, tmp_path_factory) -> Path:
    src, recipe, _ = job
    out = tmp_path_factory.mktemp("two") / "out"
    for k in (0, 1):
        result = cli("expand", "-r", recipe, src, out, "--shard", f"{k}/2", "-j1", "-q")
        assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def two_shards(two_shards_once: Path, tmp_path: Path) -> Path:
    """A fresh copy of an OUT holding shards 0/2 and 1/2 of the job (not merged)."""
    return Path(shutil.copytree(two_shards_once, tmp_path / "out", symlinks=True))


def test_merge_refuses_parts_of_different_recipes(job, two_shards: Path, tmp_path: Path) -> None:
    src, recipe, _ = job
    out = two_shards
    (out / "run-1-of-2.json").unlink()
    (out / "manifest-1-of-2.csv").unlink()
    other = cli("expand", "-r", recipe, src, out, "--shard", "1/2", "--seed", "8", "-q")
    assert other.exit_code == 2
    assert "holds a run of a different recipe (run-0-of-2.json: sha256 " in other.stderr
    # (--overwrite would delete part 0 first: parts of another recipe are brought in.)
    elsewhere = tmp_path / "elsewhere"
    other = cli("expand", "-r", recipe, src, elsewhere, "--shard", "1/2", "--seed", "8", "-q")
    assert other.exit_code == 0, other.output
    for name in ("run-1-of-2.json", "manifest-1-of-2.csv", "errors-1-of-2.csv"):
        shutil.copy(elsewhere / name, out / name)
    shas = [json.loads((out / f"run-{k}-of-2.json").read_text())["recipe_sha256"] for k in (0, 1)]
    result = cli("merge", out)
    assert result.exit_code == 1
    assert result.stderr == (
        "augctl: error: parts from different plans: their recipe_sha256 differs "
        f"(run-0-of-2.json: {shas[0][:12]}, run-1-of-2.json: {shas[1][:12]}); "
        "re-run every shard with the same recipe, input and augctl version\n"
    )
    assert not (out / "manifest.csv").exists()


def test_merge_refuses_a_duplicated_row(two_shards: Path) -> None:
    out = two_shards
    part0 = (out / "manifest-0-of-2.csv").read_text(encoding="utf-8")
    row = part0.splitlines(keepends=True)[1]
    with open(out / "manifest-1-of-2.csv", "a", encoding="utf-8", newline="") as f:
        f.write(row)
    run1 = json.loads((out / "run-1-of-2.json").read_text())
    run1["rows"] += 1  # so only the doubling is wrong
    (out / "run-1-of-2.json").write_text(json.dumps(run1))
    result = cli("merge", out)
    assert result.exit_code == 1
    path = row.split(",")[0]
    assert result.stderr == (
        f"augctl: error: duplicated output paths: {path} (2 times, in manifest-0-of-2.csv, "
        "manifest-1-of-2.csv) — re-run them with --shard 0/2 and --shard 1/2, then merge again\n"
    )


def test_merge_refuses_a_part_whose_rows_disagree_with_its_run_file(two_shards: Path) -> None:
    out = two_shards
    part = out / "manifest-0-of-2.csv"
    lines = part.read_text(encoding="utf-8").splitlines(keepends=True)
    part.write_text("".join(lines[:-1]), encoding="utf-8", newline="")
    result = cli("merge", out)
    assert result.exit_code == 1
    assert result.stderr == (
        f"augctl: error: manifest-0-of-2.csv has {len(lines) - 2} rows, run-0-of-2.json records "
        f"{len(lines) - 1} — re-run it with --shard 0/2, then merge again\n"
    )


def test_merge_refuses_a_missing_file_and_a_rerun_fixes_it(job, two_shards: Path) -> None:
    src, recipe, reference = job
    out = two_shards
    victim = read_manifest(out, "manifest-1-of-2.csv")[0]["output_path"]
    (out / victim).unlink()
    result = cli("merge", out)
    assert result.exit_code == 1
    assert result.stderr == (
        f"augctl: error: listed files missing from {out}: {victim} — "
        "re-run it with --shard 1/2, then merge again\n"
    )
    assert cli("expand", "-r", recipe, src, out, "--shard", "1/2", "-q").exit_code == 0
    assert cli("merge", out).exit_code == 0
    assert output_files(out) == output_files(reference)
    assert bookkeeping(out) == bookkeeping(reference)


def test_merge_refuses_parts_of_two_splits_and_an_empty_out(
    job, two_shards: Path, tmp_path: Path
) -> None:
    src, recipe, _ = job
    out = two_shards
    assert cli("expand", "-r", recipe, src, out, "--shard", "0/3", "-q").exit_code == 0
    result = cli("merge", out)
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "augctl: error: parts from different plans: "
        f"{out} holds parts of more than one split (2 shards: errors-0-of-2.csv, "
    )
    assert "3 shards: errors-0-of-3.csv, manifest-0-of-3.csv, run-0-of-3.json)" in result.stderr
    (tmp_path / "empty").mkdir()
    result = cli("merge", tmp_path / "empty")
    assert result.exit_code == 2
    assert "holds no shard parts (manifest-K-of-N.csv)" in result.stderr


def test_an_interrupted_shard_is_missing_and_resumes(job, two_shards: Path) -> None:
    src, recipe, reference = job
    out = two_shards
    # What a shard killed mid-run leaves: a working file, a 'running' run file, no part.
    part = out / "manifest-0-of-2.csv"
    lines = part.read_text(encoding="utf-8").splitlines(keepends=True)
    (out / "manifest-0-of-2.csv.partial").write_text("".join(lines[:3]), newline="")
    part.unlink()
    (out / "errors-0-of-2.csv").unlink()
    run0 = json.loads((out / "run-0-of-2.json").read_text())
    (out / "run-0-of-2.json").write_text(json.dumps({**run0, "status": "running"}))
    result = cli("merge", out)
    assert result.exit_code == 1
    assert "missing shards: 0 of 2 (0: started but did not complete)" in result.stderr
    resumed = cli("expand", "-r", recipe, src, out, "--shard", "0/2", "--json", "-q")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["already_done"] == 2
    assert not (out / "manifest-0-of-2.csv.partial").exists()
    assert cli("merge", out).exit_code == 0
    assert bookkeeping(out) == bookkeeping(reference)


def test_a_shard_leaves_other_shards_temporary_files_alone(job, tmp_path: Path) -> None:
    src, recipe, _ = job
    out = tmp_path / "out"
    assert cli("expand", "-r", recipe, src, out, "--shard", "0/2", "-q").exit_code == 0
    rows = {r["output_path"] for r in read_manifest(out, "manifest-0-of-2.csv")}
    cls, name = sorted(rows)[0].split("/")
    mine = out / cls / f".{name}.999.augctl-tmp"
    theirs = out / cls / ".img_99_jpg_aug001.jpg.999.augctl-tmp"  # not a 0/2 output
    mine.write_bytes(b"torn")
    theirs.write_bytes(b"being written by shard 1")
    assert cli("expand", "-r", recipe, src, out, "--shard", "0/2", "-q").exit_code == 0
    assert not mine.exists() and theirs.exists()


BALANCED = """\
version: 1
seed: 11
balance: {target_per_class: 7}
include_originals: true
pipeline:
  - rotate: {degrees: [-20, 20], expand: true}
  - mixup: {alpha: 0.4, p: 0.6}
  - random_resized_crop: {size: [24, 24], scale: [0.5, 1.0], p: 0.5}
"""


def test_balancing_and_mixing_are_the_same_sharded(tmp_path: Path) -> None:
    # Both are whole-dataset decisions: variants per source, partners drawn from the class.
    src = make_tree(tmp_path / "in", {"a": 5, "b": 2, "c": 3})
    recipe = tmp_path / "r.yaml"
    recipe.write_text(BALANCED)
    whole = tmp_path / "whole"
    assert cli("expand", "-r", recipe, src, whole, "-j1", "-q").exit_code == 0
    counts = {}
    for r in read_manifest(whole):
        counts[r["class"]] = counts.get(r["class"], 0) + 1
    assert counts == {"a": 7, "b": 7, "c": 7}
    assert any(
        json.loads(r["ops"])[1:2] and json.loads(r["ops"])[1]["op"] == "mixup"
        for r in read_manifest(whole)
    )
    plan = json.loads(cli("expand", "-r", recipe, src, whole, "--dry-run", "--json").stdout)
    pixels = sum(int(r["width"]) * int(r["height"]) for r in read_manifest(whole))
    assert plan["estimate"]["output_pixels"] == {"jpeg": pixels}  # sizes sampled, not guessed
    out = tmp_path / "sharded"
    for k in range(3):
        assert (
            cli("expand", "-r", recipe, src, out, "--shard", f"{k}/3", "-j1", "-q").exit_code == 0
        )
    assert cli("merge", out).exit_code == 0
    assert output_files(out) == output_files(whole)
    assert bookkeeping(out) == bookkeeping(whole)


def test_shards_split_by_a_stable_hash_of_the_path() -> None:
    rels = [f"c/img_{i}.jpg" for i in range(200)]
    assert {shard_of(r, 4) for r in rels} == {0, 1, 2, 3}
    assert [shard_of(r, 4) for r in rels[:8]] == [1, 2, 3, 3, 3, 1, 1, 2]  # never changes
    assert sum(Shard(k, 4).owns(r) for r in rels for k in range(4)) == len(rels)


@pytest.mark.parametrize(
    ("env", "shards", "expected"),
    [
        (
            {
                "SLURM_ARRAY_TASK_ID": "0",
                "SLURM_ARRAY_TASK_MIN": "0",
                "SLURM_ARRAY_TASK_COUNT": "4",
            },
            None,
            Shard(0, 4),
        ),
        (
            {
                "SLURM_ARRAY_TASK_ID": "4",
                "SLURM_ARRAY_TASK_MIN": "1",
                "SLURM_ARRAY_TASK_COUNT": "4",
            },
            None,
            Shard(3, 4),
        ),
        (
            {
                "SLURM_ARRAY_TASK_ID": "10",
                "SLURM_ARRAY_TASK_MIN": "0",
                "SLURM_ARRAY_TASK_COUNT": "6",
                "SLURM_ARRAY_TASK_STEP": "2",
            },
            None,
            Shard(5, 6),
        ),
        (
            {
                "SLURM_ARRAY_TASK_ID": "2",
                "SLURM_ARRAY_TASK_MIN": "0",
                "SLURM_ARRAY_TASK_COUNT": "3",
            },
            3,
            Shard(2, 3),
        ),
        ({"JOB_COMPLETION_INDEX": "2"}, 5, Shard(2, 5)),
    ],
)
def test_shard_from_env(env: dict[str, str], shards: int | None, expected: Shard) -> None:
    assert shard_from_env(env, shards) == expected


@pytest.mark.parametrize(
    ("env", "shards", "message"),
    [
        (
            {},
            None,
            "--shard-from-env: neither SLURM_ARRAY_TASK_ID (a Slurm job array) nor JOB_COMPLETION_INDEX (a Kubernetes indexed Job) is set; use --shard K/N instead",
        ),
        (
            {"SLURM_ARRAY_TASK_ID": "3"},
            None,
            "--shard-from-env: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_MIN, SLURM_ARRAY_TASK_COUNT is not; run inside a Slurm job array (sbatch --array=0-N)",
        ),
        (
            {
                "SLURM_ARRAY_TASK_ID": "7",
                "SLURM_ARRAY_TASK_MIN": "0",
                "SLURM_ARRAY_TASK_COUNT": "4",
            },
            None,
            "--shard-from-env: SLURM_ARRAY_TASK_ID=7 does not fit an array of 4 tasks from 0 in steps of 1; use a contiguous array (sbatch --array=0-3)",
        ),
        (
            {
                "SLURM_ARRAY_TASK_ID": "1",
                "SLURM_ARRAY_TASK_MIN": "0",
                "SLURM_ARRAY_TASK_COUNT": "4",
            },
            3,
            "--shard-from-env: --shards 3 disagrees with SLURM_ARRAY_TASK_COUNT=4; leave --shards out under Slurm",
        ),
        (
            {
                "SLURM_ARRAY_TASK_ID": "x",
                "SLURM_ARRAY_TASK_MIN": "0",
                "SLURM_ARRAY_TASK_COUNT": "4",
            },
            None,
            "--shard-from-env: SLURM_ARRAY_TASK_ID='x' is not a whole number",
        ),
        (
            {"JOB_COMPLETION_INDEX": "1"},
            None,
            "--shard-from-env: JOB_COMPLETION_INDEX is set but --shards is not; pass the Job's completions count as --shards N",
        ),
        (
            {"JOB_COMPLETION_INDEX": "3"},
            3,
            "--shard-from-env: JOB_COMPLETION_INDEX=3 is not below --shards 3",
        ),
    ],
)
def test_shard_from_env_refuses(env: dict[str, str], shards: int | None, message: str) -> None:
    with pytest.raises(UsageError) as exc:
        shard_from_env(env, shards)
    assert str(exc.value) == message


def clean_env(**values: str) -> dict[str, str | None]:
    """An environment for CliRunner with exactly these shard variables set."""
    return {**dict.fromkeys(SHARD_VARS), **values}


def test_cli_shard_from_env(tree: Path, recipe_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    slurm = clean_env(SLURM_ARRAY_TASK_ID="3", SLURM_ARRAY_TASK_MIN="1", SLURM_ARRAY_TASK_COUNT="3")
    result = cli(
        "expand", "-r", recipe_file, tree, out, "--shard-from-env", "--dry-run", "--json", env=slurm
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["shard"] == "2/3"
    k8s = clean_env(JOB_COMPLETION_INDEX="1")
    result = cli(
        "expand",
        "-r",
        recipe_file,
        tree,
        out,
        "--shard-from-env",
        "--shards",
        "2",
        "-q",
        "--json",
        env=k8s,
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["shard"] == "1/2"
    assert (out / "manifest-1-of-2.csv").is_file() and not (out / "manifest.csv").exists()

    result = cli("expand", "-r", recipe_file, tree, out, "--shard-from-env", env=k8s)
    assert result.exit_code == 2
    assert result.stderr == (
        "augctl: error: --shard-from-env: JOB_COMPLETION_INDEX is set but --shards is not; "
        "pass the Job's completions count as --shards N\n"
    )
    result = cli(
        "expand", "-r", recipe_file, tree, out, "--shard-from-env", "--shard", "0/2", env=k8s
    )
    assert (result.exit_code, result.stderr) == (
        2,
        "augctl: error: use --shard K/N or --shard-from-env, not both\n",
    )
    result = cli("expand", "-r", recipe_file, tree, out, "--shards", "2")
    assert (result.exit_code, result.stderr) == (
        2,
        "augctl: error: --shards N goes with --shard-from-env (use --shard K/N)\n",
    )


@pytest.mark.parametrize("bad", ["3/3", "1", "a/2", "-1/2"])
def test_bad_shard_is_a_usage_error(
    tree: Path, recipe_file: Path, tmp_path: Path, bad: str
) -> None:
    result = cli("expand", "-r", recipe_file, tree, tmp_path / "out", "--shard", bad)
    assert result.exit_code == 2
    assert "Invalid value for '--shard'" in result.stderr
    assert not (tmp_path / "out").exists()


def test_dry_run_writes_nothing_and_counts_per_class(
    tree: Path, recipe_file: Path, tmp_path: Path
) -> None:
    (tree / "dog" / "empty.jpg").write_bytes(b"")
    (tree / "fox" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    out = tmp_path / "out"
    before = sorted(p for p in tmp_path.rglob("*"))
    result = cli("expand", "-r", recipe_file, tree, out, "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert not out.exists()
    assert sorted(p for p in tmp_path.rglob("*")) == before
    plan = json.loads(result.stdout)
    assert plan["per_class"] == {
        "cat": {"sources": 3, "outputs": 9},
        "dog": {"sources": 2, "outputs": 6},
        "fox": {"sources": 2, "outputs": 6},
    }
    assert (plan["sources"], plan["outputs"]) == (7, 21)
    assert plan["skipped"] == [
        {"source_path": "dog/empty.jpg", "class": "dog", "reason": "empty file (0 bytes)"},
        {"source_path": "fox/gone.jpg", "class": "fox", "reason": "broken symbolic link"},
    ]
    # Every output is a 32x32 random_resized_crop: the pixel count is exact, the bytes a guess.
    assert plan["estimate"]["output_pixels"] == {"jpeg": 21 * 32 * 32}
    assert plan["estimate"]["bytes_per_pixel"] == {"jpeg": 0.4}
    assert plan["estimated_bytes"] == round(21 * 32 * 32 * 0.4)

    text = cli("expand", "-r", recipe_file, tree, out, "--dry-run")
    assert text.exit_code == 0 and not out.exists()
    assert "  cat           3         9\n" in text.stdout
    assert "  dog/empty.jpg: empty file (0 bytes)\n" in text.stdout
    assert (
        "estimated output size: 8.6 kB (21,504 output pixels x jpeg 0.4 B/pixel; sizes from every source's header)"
        in text.stdout
    )
    assert text.stderr.endswith("augctl: dry run: nothing was written\n")

    shards = [
        json.loads(
            cli(
                "expand", "-r", recipe_file, tree, out, "--dry-run", "--json", "--shard", f"{k}/2"
            ).stdout
        )
        for k in (0, 1)
    ]
    assert sum(s["outputs"] for s in shards) == 21
    assert sorted(e["source_path"] for s in shards for e in s["skipped"]) == [
        "dog/empty.jpg",
        "fox/gone.jpg",
    ]
    assert not out.exists()


@pytest.mark.parametrize("sample", [2, 5, 10])
def test_dry_run_estimates_large_inputs_from_a_sample(
    tree: Path, recipe_file: Path, monkeypatch: pytest.MonkeyPatch, sample: int
) -> None:
    monkeypatch.setattr(api, "ESTIMATE_SAMPLE", sample)
    plan = api.describe_plan(tree, recipe_file)
    assert plan.estimate["sources_read"] == min(sample, 7)  # of 7 (5 of 7 read 4)
    assert (plan.sources, plan.outputs) == (7, 21)
    assert plan.estimate["output_pixels"] == {"jpeg": 21 * 32 * 32}  # all alike: scales exactly


def test_dry_run_sizes_follow_exif_orientation(tmp_path: Path) -> None:
    from conftest import photo
    from PIL import Image

    src = tmp_path / "in"
    (src / "a").mkdir(parents=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    photo(1, (60, 20)).save(src / "a" / "turned.jpg", exif=exif)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("version: 1\nvariants: 1\noutput: {format: png}\npipeline:\n  - hflip\n")
    result = cli("expand", "-r", recipe, src, tmp_path / "out", "--dry-run", "--json")
    assert json.loads(result.stdout)["estimate"]["output_pixels"] == {"png": 1200}
    assert cli("expand", "-r", recipe, src, tmp_path / "out", "-q").exit_code == 0
    with Image.open(tmp_path / "out" / "a" / "turned_jpg_aug001.png") as im:
        assert im.size == (20, 60)


def test_shard_into_an_out_with_another_shards_class_folders(job, tmp_path: Path) -> None:
    # Shards start at once: one may see another's class folders before its run file.
    src, recipe, _ = job
    out = tmp_path / "out"
    (out / "cat").mkdir(parents=True)
    assert cli("expand", "-r", recipe, src, out, "--shard", "0/2", "-q").exit_code == 0
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    result = cli("expand", "-r", recipe, src, tmp_path / "other", "--shard", "0/2", "-q")
    assert result.exit_code == 2
    assert "is not empty and holds no augctl run" in result.stderr


def old_recipe_in_two_shards(tmp_path: Path) -> tuple[Path, Path, Path]:
    """IN, a second recipe, and OUT holding the two shard parts of a first recipe's run."""
    src = make_tree(tmp_path / "in", {"cat": 3, "dog": 2})
    old, new = tmp_path / "a.yaml", tmp_path / "b.yaml"
    old.write_text("version: 1\nvariants: 2\npipeline:\n  - hflip\n")
    new.write_text("version: 1\nvariants: 1\noutput: {format: png}\npipeline:\n  - vflip\n")
    out = tmp_path / "out"
    for k in range(2):
        assert cli("expand", "-r", old, src, out, "--shard", f"{k}/2", "-q").exit_code == 0
    return src, new, out


@pytest.mark.parametrize("merged", [False, True])
def test_overwrite_removes_another_recipes_shard_parts(tmp_path: Path, merged: bool) -> None:
    """--overwrite with another recipe deletes what the old run's manifests list, shard parts
    included: unmerged, none of the old outputs was deleted (the class folders held both
    recipes' images); merged, the old parts stayed and a later merge refused them."""
    src, new, out = old_recipe_in_two_shards(tmp_path)
    if merged:
        assert cli("merge", out).exit_code == 0
    result = cli("expand", "-r", new, src, out, "-q", "--overwrite")
    assert result.exit_code == 0, result.output
    assert sorted(output_files(out)) == sorted(r["output_path"] for r in read_manifest(out))
    assert all(name.endswith(".png") for name in output_files(out)) and len(output_files(out)) == 5
    assert not [p.name for p in out.iterdir() if "-of-" in p.name and not p.name.startswith(".")]
    assert cli("verify", out).exit_code == 0


def test_dry_run_skips_what_the_run_refuses_for_its_output_size(tmp_path: Path) -> None:
    """A source whose ops would make an image past input.max_pixels is refused by the run
    from its header; the dry run counted its outputs and pixels as if it would be made."""
    src = tmp_path / "in" / "c"
    src.mkdir(parents=True)
    Image.new("RGB", (10, 1000), "gray").save(src / "thin.png")
    Image.new("RGB", (50, 50), "gray").save(src / "ok.png")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "version: 1\nvariants: 1\noutput: {format: png}\n"
        "pipeline:\n  - resize: {size: [3000, 2], fit: cover}\n"
    )
    dry = cli("expand", "--dry-run", "--json", "-r", recipe, tmp_path / "in", tmp_path / "out")
    assert dry.exit_code == 0, dry.output
    plan = json.loads(dry.stdout)
    run = cli("expand", "-q", "-r", recipe, tmp_path / "in", tmp_path / "out")
    assert run.exit_code == 0, run.output
    errors = read_manifest(tmp_path / "out", "errors.csv")
    assert [e["source_path"] for e in plan["skipped"]] == [e["source_path"] for e in errors]
    assert [e["reason"] for e in plan["skipped"]] == [e["reason"] for e in errors]
    (row,) = read_manifest(tmp_path / "out")
    assert plan["outputs"] == 1
    assert plan["estimate"]["output_pixels"] == {"png": int(row["width"]) * int(row["height"])}


def test_overwrite_leaves_a_run_that_is_writing_alone(tmp_path: Path) -> None:
    """A shard part whose lock is held is a run writing now: --overwrite deletes none of its
    files (it deleted them under a live shard, which then finished with its rows unlinked)."""
    src, new, out = old_recipe_in_two_shards(tmp_path)
    live = {r["output_path"] for r in read_manifest(out, "manifest-0-of-2.csv")}
    gone = {r["output_path"] for r in read_manifest(out, "manifest-1-of-2.csv")}
    fd = os.open(out / ".run-0-of-2.json.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = cli("expand", "-r", new, src, out, "-q", "--overwrite")
    finally:
        os.close(fd)
    assert result.exit_code == 0, result.output
    assert (out / "run-0-of-2.json").exists() and not (out / "run-1-of-2.json").exists()
    assert all((out / p).exists() for p in live) and not any((out / p).exists() for p in gone)
