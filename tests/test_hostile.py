"""Hostile inputs and misuse found in review: each test names the failure it guards against."""

from __future__ import annotations

import errno
import json
import os
import shlex
import signal
import struct
import subprocess
import sys
import time
import unicodedata
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import (
    augctl_cmd,
    make_tree,
    output_files,
    photo,
    proc_alive,
    proc_children,
    proc_cmdline,
    read_manifest,
)
from PIL import Image

import augctl
from augctl import dataset, execute, manifest
from augctl.cli import main
from augctl.errors import EngineError
from augctl.ops import REGISTRY

RECIPE = "version: 1\nseed: 4\nvariants: 2\npipeline:\n  - rotate: {degrees: [-15, 15]}\n  - hflip: {p: 0.5}\n"


def invoke(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE)
    return path


def test_rotate_expand_canvas_is_pils_for_odd_sizes() -> None:
    # Predicted sizes once differed from Image.rotate's by a pixel, so later ops were
    # sampled for the wrong size and whole sources failed.
    op = REGISTRY["rotate"]
    rng = np.random.default_rng(0)
    for w, h in ((101, 57), (640, 481), (31, 22), (3, 2), (113, 83)):
        image = Image.new("L", (w, h))
        for angle in [*np.round(rng.uniform(-180, 180, 20), 4), 1.3, 90.0, -90.0, 180.0]:
            params = {"angle": float(angle), "expand": True}
            assert op.apply(image, **params).size == op.size_after((w, h), params), (w, h, angle)


def test_resume_from_another_input_is_refused(tmp_path: Path, recipe: Path) -> None:
    # A resumed run trusted recorded outputs made from a different input tree.
    first, second = make_tree(tmp_path / "a", {"cat": 2}), make_tree(tmp_path / "b", {"cat": 2})
    out = tmp_path / "out"
    assert invoke("expand", "-r", recipe, first, out, "-q").exit_code == 0
    result = invoke("expand", "-r", recipe, second, out, "-q")
    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"augctl: error: output directory {out} holds a run made from another input directory ({first})"
    )
    assert invoke("expand", "-r", recipe, second, out, "-q", "--overwrite").exit_code == 0
    assert invoke("verify", out, "--deep").exit_code == 0  # every row now from the new input


def test_directory_link_above_the_input_is_not_followed(tmp_path: Path, recipe: Path) -> None:
    # cat/up -> ../.. once pulled the whole parent tree (other runs' outputs too) into "cat".
    src = make_tree(tmp_path / "in", {"cat": 1})
    make_tree(tmp_path / "elsewhere", {"x": 3})
    (src / "cat" / "up").symlink_to("../..")
    result = invoke("expand", "-r", recipe, src, tmp_path / "out", "-n", "1")
    assert result.exit_code == 0
    assert "folder cat/up links back to a folder above it; not followed" in result.stderr
    assert [r["source_path"] for r in read_manifest(tmp_path / "out")] == ["cat/img_0.jpg"]


def test_a_corrupt_partner_does_not_fail_the_sources_that_drew_it(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "in", {"cat": 4})
    (src / "cat" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    recipe = tmp_path / "mix.yaml"
    recipe.write_text("version: 1\nseed: 1\nvariants: 6\npipeline:\n  - mixup: {}\n")
    out = tmp_path / "out"
    assert invoke("expand", "-r", recipe, src, out, "-q").exit_code == 0
    errors = read_manifest(out, "errors.csv")
    assert [e["source_path"] for e in errors] == ["cat/bad.jpg"]
    rows = read_manifest(out)
    assert len(rows) == 4 * 6
    partners = [r["ops"] for r in rows]
    assert any('"partner":null' in ops for ops in partners)  # some drew bad.jpg...
    assert invoke("verify", out, "--deep").exit_code == 0  # ...and replay agrees


def test_class_named_like_a_bookkeeping_file_is_refused_before_work(
    tmp_path: Path, recipe: Path
) -> None:
    src = make_tree(tmp_path / "in", {"errors.csv": 1, "dog": 1})
    out = tmp_path / "out"
    result = invoke("expand", "-r", recipe, src, out)
    assert result.exit_code == 2
    assert result.stderr == (
        "augctl: error: class folder 'errors.csv' has the name of a file augctl writes in OUT; rename it\n"
    )
    assert not out.exists()


def test_torn_record_inside_a_quoted_line_break_is_repaired(tmp_path: Path, recipe: Path) -> None:
    src = make_tree(tmp_path / "in", {"ne\nwline": 2})
    out = tmp_path / "out"
    assert invoke("expand", "-r", recipe, src, out, "-q").exit_code == 0
    reference = (out / "manifest.csv").read_bytes()
    with open(out / "manifest.csv", "a", encoding="utf-8", newline="") as f:
        f.write('"ne\nwline/img_0_jpg_aug009.jpg","ne\nwl')  # an append cut off by a crash
    result = invoke("expand", "-r", recipe, src, out, "-q")
    assert result.exit_code == 0, result.output
    assert (out / "manifest.csv").read_bytes() == reference
    assert invoke("verify", out).exit_code == 0


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 10))


def test_max_pixels_above_pillows_own_limit_is_honoured(tmp_path: Path) -> None:
    src = tmp_path / "in" / "big"
    src.mkdir(parents=True)
    (src / "huge.png").write_bytes(_png_header_only(14_000, 14_000))  # 196 Mpx, a few bytes
    for max_pixels, reason in (
        (300_000_000, "corrupt or truncated"),
        (100_000_000, "more than input.max_pixels"),
    ):
        recipe = tmp_path / f"r{max_pixels}.yaml"
        recipe.write_text(f"version: 1\nvariants: 1\ninput: {{max_pixels: {max_pixels}}}\n")
        out = tmp_path / f"out{max_pixels}"
        assert invoke("expand", "-r", recipe, tmp_path / "in", out, "-q").exit_code == 0
        (error,) = read_manifest(out, "errors.csv")
        assert reason in error["reason"] and "decompression bomb" not in error["reason"]


def test_files_from_run_keeps_earlier_errors(tmp_path: Path, recipe: Path) -> None:
    src = make_tree(tmp_path / "in", {"cat": 2})
    (src / "cat" / "bad.jpg").write_bytes(b"not an image")
    out = tmp_path / "out"
    assert invoke("expand", "-r", recipe, src, out, "-q").exit_code == 0
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"cat/img_0.jpg\ncat/\xff\xfe.jpg\n")
    result = invoke("expand", "-r", recipe, src, out, "-q", "--files-from", listing)
    assert result.exit_code == 0, result.output
    errors = {e["source_path"]: e["reason"] for e in read_manifest(out, "errors.csv")}
    assert set(errors) == {"cat/bad.jpg", "cat/\\xff\\xfe.jpg"}
    assert errors["cat/\\xff\\xfe.jpg"] == "file name is not valid UTF-8; rename it"


def test_overrides_are_bounded_and_destructive_flags_ignore_the_environment(
    tmp_path: Path, recipe: Path, tree: Path
) -> None:
    result = invoke("expand", "-r", recipe, tree, tmp_path / "o", "-n", "100000000")
    assert result.exit_code == 2 and "100000000 is not in the range 0<=x<=100000" in result.stderr
    out = tmp_path / "out"
    assert invoke("expand", "-r", recipe, tree, out, "-q").exit_code == 0
    result = invoke(
        "expand", "-r", recipe, tree, out, "-q", "--seed", "9", env={"AUGCTL_OVERWRITE": "1"}
    )
    assert result.exit_code == 2 and "holds a run of a different recipe" in result.stderr


def _slow_job(tmp_path: Path) -> tuple[Path, Path, Path]:
    src = make_tree(tmp_path / "in", {"a": 20, "b": 20}, size=(400, 300))
    recipe = tmp_path / "slow.yaml"
    recipe.write_text(
        "version: 1\nvariants: 8\noutput: {format: png}\npipeline:\n  - elastic: {}\n"
    )
    return src, recipe, tmp_path / "out"


def test_workers_leave_when_the_parent_is_killed_alone(tmp_path: Path) -> None:
    src, recipe, out = _slow_job(tmp_path)
    proc = subprocess.Popen(
        augctl_cmd("expand", "-r", recipe, src, out, "-j2", "-q"), stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    workers: list[int] = []
    while time.monotonic() < deadline and not list(out.glob("*/*.png")):
        time.sleep(0.05)
    # The pool's processes: a fork server's workers are its children, not the parent's.
    kids = proc_children(proc.pid)
    workers = [
        p
        for p in kids + [g for k in kids for g in proc_children(k)]
        if b"python" in proc_cmdline(p)
    ]
    assert workers, "no worker processes found"
    os.kill(proc.pid, signal.SIGKILL)  # the parent only, as the OOM killer would
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(proc_alive(p) for p in workers):
        time.sleep(0.2)
    assert not any(proc_alive(p) for p in workers), "workers outlived their parent"


def test_sigterm_stops_like_ctrl_c(tmp_path: Path) -> None:
    src, recipe, out = _slow_job(tmp_path)
    proc = subprocess.Popen(
        augctl_cmd("expand", "-r", recipe, src, out, "-j2", "-q"), stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(out.glob("*/*.png")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err.decode()
    assert "interrupted; re-run the same command to continue" in err.decode()
    assert all((out / r["output_path"]).is_file() for r in read_manifest(out))
    assert "Traceback" not in err.decode()


def test_posterize_zero_bits_is_a_recipe_error(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("version: 1\npipeline:\n  - posterize: {bits: 0}\n")
    result = invoke("validate", bad)
    assert result.exit_code == 2
    assert (
        "pipeline[0].posterize.bits: expected a value in int or [lo, hi] in [1..8], got 0"
        in result.stderr
    )


def test_outputs_are_identical_with_more_tasks_than_the_window(
    tmp_path: Path, recipe: Path
) -> None:
    # 40 sources over 2 workers keep the bounded window full and finish out of order.
    src = make_tree(tmp_path / "in", {"a": 20, "b": 20}, size=(40, 30))
    for j in ("1", "2"):
        assert invoke("expand", "-r", recipe, src, tmp_path / j, "-q", "-j", j).exit_code == 0
    assert output_files(tmp_path / "1") == output_files(tmp_path / "2")
    assert (tmp_path / "1" / "manifest.csv").read_bytes() == (
        tmp_path / "2" / "manifest.csv"
    ).read_bytes()


def test_a_second_run_on_the_same_output_waits_its_turn(
    tmp_path: Path, recipe: Path, tree: Path
) -> None:
    import fcntl

    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".run.json.lock", "w") as held:  # what a running expand holds
        fcntl.flock(held, fcntl.LOCK_EX)
        result = invoke("expand", "-r", recipe, tree, out)
        assert result.exit_code == 2
        assert (
            result.stderr
            == f"augctl: error: another augctl run is writing to {out} (run.json); wait for it to finish\n"
        )
    assert invoke("expand", "-r", recipe, tree, out, "-q").exit_code == 0


def test_ops_that_would_grow_an_image_past_max_pixels_are_refused(
    tmp_path: Path, tree: Path
) -> None:
    # resize: {size: [100000, 100000]} once validated, then every source ran out of memory.
    recipe = tmp_path / "big.yaml"
    recipe.write_text("version: 1\nvariants: 1\npipeline:\n  - resize: {size: [100000, 100000]}\n")
    out = tmp_path / "out"
    assert invoke("expand", "-r", recipe, tree, out, "-q").exit_code == 0
    errors = read_manifest(out, "errors.csv")
    assert len(errors) == 7
    assert errors[0]["reason"] == (
        "the recipe would make a 100000x100000 image from it (resize), "
        "more than input.max_pixels (89,478,485)"
    )


def test_a_bookkeeping_file_that_cannot_be_written_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch
) -> None:
    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(manifest.os, "fsync", disk_full)
    with pytest.raises(OSError):
        manifest.write_text_atomic(str(tmp_path / "run.json"), "{}")
    assert list(tmp_path.iterdir()) == []


def test_library_warnings_about_a_source_stay_off_the_terminal(tmp_path: Path) -> None:
    # An EXIF entry pointing past its block: Pillow warns "Tag data larger than file",
    # naming no file. The source is fine; the terminal should hear nothing about it.
    exif = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x01\x00\x0f\x01\x02\x00\x64\x00\x00\x00"
    src = make_tree(tmp_path / "in", {"a": 2})
    photo_file = src / "a" / "odd_exif.jpg"
    Image.new("RGB", (40, 30), (10, 200, 30)).save(photo_file, exif=exif + b"\x1a" + bytes(7))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("version: 1\nvariants: 2\npipeline:\n  - hflip: {}\n")
    cmd = augctl_cmd("expand", "-r", recipe, src, tmp_path / "out", "-j2", "-q")
    env = {**os.environ, "PYTHONWARNINGS": "always"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert len(read_manifest(tmp_path / "out")) == 3 * 2
    # Re-creating its outputs decodes it again: as quiet.
    out, mine = tmp_path / "out", "a/odd_exif_jpg_aug001.jpg"
    for args in (("verify", out, "--deep"), ("replay", out, mine)):
        proc = subprocess.run(augctl_cmd(*args), capture_output=True, text=True, env=env)
        assert proc.returncode == 0 and "Warning" not in proc.stderr, proc.stderr
        assert proc.stderr in ("", "augctl: verified 6 manifest rows, 6 re-created: OK\n")


def with_open_file_limit(limit: int, *args: object) -> subprocess.CompletedProcess:
    """augctl run by a shell that set `ulimit -n` first."""
    cmd = f"ulimit -n {limit} && exec {shlex.join(augctl_cmd(*args))}"
    return subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="open files are counted in /proc")
def test_a_low_open_file_limit_is_a_message_not_a_traceback(tmp_path: Path, recipe: Path) -> None:
    # Python's pool and fork server, out of descriptors while a worker starts, print
    # tracebacks (the server's own, beside augctl's message) and leak pipes. A limit too low
    # for the pool is refused before it starts; once it holds the pool, the run completes.
    src = make_tree(tmp_path / "in", {"a": 3, "b": 2})
    done = None
    for limit in range(11, 80, 3):  # from where Python itself starts
        out = tmp_path / f"out{limit}"
        proc = with_open_file_limit(limit, "expand", "-q", "-j2", "-r", recipe, src, out)
        assert "Traceback" not in proc.stderr, (limit, proc.stderr)
        if proc.returncode == 0:
            done = out
            break
        assert proc.returncode == 1, (limit, proc.stderr)
        assert proc.stderr.startswith("augctl: error:"), (limit, proc.stderr)
    assert done is not None
    assert len(read_manifest(done)) == 10


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="open files are counted in /proc")
def test_the_open_file_check_counts_the_workers_a_run_can_use(tmp_path: Path, recipe: Path) -> None:
    # A pool starts no more workers than it has tasks: 64 asked for on 5 images fit in 40
    # descriptors, and a finished run done again starts none.
    src = make_tree(tmp_path / "in", {"a": 3, "b": 2})
    out = tmp_path / "out"
    args = ("expand", "-q", "-j64", "-r", recipe, src, out)
    for _ in range(2):
        proc = with_open_file_limit(40, *args)
        assert proc.returncode == 0, proc.stderr
        assert len(read_manifest(out)) == 10
    proc = with_open_file_limit(14, *args, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["already_done"] == 10


def test_a_pool_that_cannot_start_is_an_engine_error(
    tmp_path: Path, recipe: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No /dev/shm for the pool's locks (some containers, AWS Lambda), or no descriptors left.
    def no_pool(resampler: str = "pillow") -> None:
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(execute, "start_server", no_pool)
    src = make_tree(tmp_path / "in", {"a": 2})
    with pytest.raises(EngineError, match="cannot start the worker pool: .*not implemented"):
        augctl.expand(src, tmp_path / "out", recipe, workers=2)


def test_names_stored_decomposed_are_found_for_mixing_verify_and_replay(tmp_path: Path) -> None:
    """Folder and file names stored in NFD (files copied from macOS often are): rows name them
    in NFC, and mixing, `verify --deep` and `replay` still find their files (they looked for
    the NFC spelling: every mix recorded no partner, and verify failed on a clean run)."""
    root = tmp_path / "in"
    folder = root / unicodedata.normalize("NFD", "crème")
    folder.mkdir(parents=True)
    for i, name in enumerate(("café.jpg", "naïve.jpg", "été.jpg")):
        photo(i).save(folder / unicodedata.normalize("NFD", name))
    recipe = tmp_path / "mix.yaml"
    recipe.write_text("version: 1\nseed: 3\nvariants: 3\npipeline:\n  - mixup: {}\n")
    out = tmp_path / "out"
    result = invoke("expand", "--recipe", recipe, root, out, "-q")
    assert result.exit_code == 0, result.output
    rows = read_manifest(out)
    assert len(rows) == 9 and read_manifest(out, "errors.csv") == []
    assert {r["source_path"] for r in rows} == {
        f"crème/{n}" for n in ("café.jpg", "naïve.jpg", "été.jpg")
    }
    mixes = [json.loads(r["ops"])[0] for r in rows]
    assert all(m["partner"] is not None and m["lam"] < 1 for m in mixes), mixes
    verify = invoke("verify", out, "--deep")
    assert verify.exit_code == 0, verify.output
    replay = invoke("replay", out, rows[0]["output_path"], rows[-1]["output_path"])
    assert replay.exit_code == 0, replay.output


def test_a_run_with_stderr_closed_finishes(tmp_path: Path, recipe: Path) -> None:
    """Started with stderr closed (`2>&-`, as some job wrappers do), Python has no sys.stderr:
    the progress report raised on it, and the run stopped after its first source, exit 1."""
    src = make_tree(tmp_path / "in", {"a": 4, "b": 3})
    out = tmp_path / "out"
    cmd = augctl_cmd("expand", "--recipe", recipe, src, out)
    done = subprocess.run(["sh", "-c", 'exec "$@" 2>&-', "sh", *cmd], timeout=120)
    assert done.returncode == 0
    assert len(read_manifest(out)) == 14
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


@pytest.mark.parametrize(
    "args",
    [
        ("ops",),
        ("validate", "{recipe}"),
        ("expand", "--recipe", "{recipe}", "{src}", "{out}", "--json"),
    ],
)
def test_standard_output_that_cannot_be_written_is_a_message(
    tmp_path: Path, recipe: Path, args: tuple[str, ...]
) -> None:
    """stdout on a full disk (/dev/full): one line naming the problem, exit 1, no traceback;
    a run's work is done and kept all the same."""
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    src = make_tree(tmp_path / "in", {"a": 2})
    out = tmp_path / "out"
    cmd = augctl_cmd(*(a.format(recipe=recipe, src=src, out=out) for a in args))
    with open("/dev/full", "w") as full:
        done = subprocess.run(cmd, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == "augctl: error: cannot write to standard output: No space left on device"
    assert "Traceback" not in done.stderr and len(lines) == (3 if args[0] == "expand" else 1)
    if args[0] == "expand":
        assert json.loads((out / "run.json").read_text())["status"] == "complete"
        assert len(read_manifest(out)) == 4


def test_a_progress_report_that_cannot_be_written_never_stops_a_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """stderr a closed pipe: the progress line raised BrokenPipeError into the run's loop
    (every 10 s, so only long runs stopped); now the report goes quiet and the run goes on."""
    from augctl.cli import _Progress

    class Closed:
        def write(self, text: str) -> int:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

        def flush(self) -> None:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

        def isatty(self) -> bool:
            return False

    monkeypatch.setattr("sys.stderr", Closed())
    progress = _Progress(quiet=False, interval=0.0)
    progress(1, 3)
    assert progress.quiet
    progress(3, 3)
    progress.close()


def test_locate_finds_every_spelling_and_reads_a_folder_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An NFC name that is plain ASCII (K from the Kelvin sign) is looked for too; of two
    folders that differ only in normal form, the one holding the file is found; a folder of
    NFD names is listed once for all its files, not once per file (which made mixing and
    verify quadratic in a class's size)."""
    root = tmp_path
    (root / "a").mkdir()
    kelvin = root / "a" / "\u212aitten.png"
    kelvin.write_bytes(b"")
    assert dataset.locate(str(root), "a/Kitten.png") == str(kelvin)
    (root / "crème").mkdir()
    nfd = root / unicodedata.normalize("NFD", "crème")
    nfd.mkdir()
    (nfd / "x.png").write_bytes(b"")
    assert dataset.locate(str(root), "crème/x.png") == str(nfd / "x.png")
    assert dataset.locate(str(root), "crème/y.png") == str(root / "crème" / "y.png")
    many = root / unicodedata.normalize("NFD", "été")
    many.mkdir()
    for i in range(50):
        (many / unicodedata.normalize("NFD", f"é{i}.png")).write_bytes(b"")
    listed: list[str] = []
    listdir = os.listdir
    monkeypatch.setattr(os, "listdir", lambda path: listed.append(path) or listdir(path))
    for i in range(50):
        assert dataset.locate(str(root), f"été/é{i}.png") == str(
            many / unicodedata.normalize("NFD", f"é{i}.png")
        )
    assert len(listed) <= 2, listed  # IN (which the earlier lookups listed without été), été
    for i in range(20):  # files that aren't there (deleted sources, in verify --deep)
        assert dataset.locate(str(root), f"été/gone{i}.png") == str(root / "été" / f"gone{i}.png")
    assert len(listed) <= 2, listed  # the folder hasn't changed: not listed again
    (many / "new.png").write_bytes(b"")
    os.utime(many, ns=(0, 0))  # a change the listing can't have seen
    assert dataset.locate(str(root), "été/new.png") == str(many / "new.png")


@pytest.mark.parametrize("stderr", ["closed pipe", "/dev/full"])
def test_messages_that_cannot_be_written_leave_a_finished_run_finished(
    tmp_path: Path, recipe: Path, stderr: str
) -> None:
    """stderr a pipe nobody reads or a full disk: the summary line raised after the run, so a
    finished run exited 1 and its --json summary never reached stdout."""
    if stderr == "/dev/full" and not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    src = make_tree(tmp_path / "in", {"a": 2, "b": 1})
    out = tmp_path / "out"
    cmd = augctl_cmd("expand", "--recipe", recipe, src, out, "--json")
    if stderr == "closed pipe":
        read, write = os.pipe()
        os.close(read)
        try:
            done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=write, timeout=120)
        finally:
            os.close(write)
    else:
        with open("/dev/full", "w") as full:
            done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=full, timeout=120)
    assert done.returncode == 0
    assert json.loads(done.stdout)["written"] == 6 == len(read_manifest(out))


def test_a_closed_standard_descriptor_is_held_on_dev_null(tmp_path: Path) -> None:
    """Started with stderr closed, the process's next file took descriptor 2 (the run's lock
    file, a worker's pipe), where C-level writes to stderr would land."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd")
    code = (
        "import os; from augctl import cli; cli._hold_closed_standard_descriptors(); "
        "print(os.readlink('/proc/self/fd/2'), open(os.devnull).fileno() > 2)"
    )
    script = f"exec {shlex.quote(sys.executable)} -c {shlex.quote(code)} 2>&-"
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == [os.devnull, "True"], done


def test_library_misuse_gets_typed_errors(tmp_path: Path, recipe: Path) -> None:
    """A string where a list of paths goes was read character by character (junk rows in
    errors.csv, nothing done, no error); a folder given to preview raised IsADirectoryError."""
    src = make_tree(tmp_path / "in", {"a": 2})
    with pytest.raises(augctl.UsageError, match="only= takes a list of paths"):
        augctl.expand(src, tmp_path / "out", recipe, only="a/img_0.jpg", workers=1)
    assert not (tmp_path / "out").exists()
    with pytest.raises(augctl.UsageError, match="a list of paths"):
        augctl.replay(tmp_path / "out", "a/img_0_jpg_aug001.jpg")
    with pytest.raises(augctl.UsageError, match="not a regular file"):
        augctl.preview(recipe, src / "a", n=1)
