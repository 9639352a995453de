"""Interrupted runs (SIGKILL, Ctrl-C, a full disk) resume to the same bytes as a clean run."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import (
    FORKSERVER,
    augctl_cmd,
    env_with_site,
    make_tree,
    output_files,
    read_manifest,
    wait_for_fork_server,
)
from PIL import Image

from augctl import cli, pool
from augctl.cli import main
from augctl.images import TEMP_SUFFIX

RECIPE = """\
version: 1
seed: 3
variants: 6
output: {format: png}
pipeline:
  - rotate: {degrees: [-30, 30]}
  - contrast: {factor: [0.5, 1.5], p: 0.5}
  - random_resized_crop: {size: [160, 120], scale: [0.5, 1.0]}
"""


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A dataset big enough to interrupt, its recipe, and a clean reference run."""
    root = tmp_path_factory.mktemp("interrupt")
    src = make_tree(root / "in", {"a": 14, "b": 13, "c": 13}, size=(400, 300))
    recipe = root / "r.yaml"
    recipe.write_text(RECIPE)
    reference = root / "reference"
    assert (
        CliRunner()
        .invoke(main, ["expand", "-r", str(recipe), str(src), str(reference), "-q"])
        .exit_code
        == 0
    )
    return src, recipe, reference


def start(src: Path, recipe: Path, out: Path, **kw) -> subprocess.Popen:
    cmd = augctl_cmd("expand", "-r", recipe, src, out, "-j2", "-q")
    return subprocess.Popen(
        cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw
    )


def wait_for_files(out: Path, count: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(list(out.glob("*/*.png"))) >= count:
            return
        assert proc.poll() is None, "the run ended before it could be interrupted"
        time.sleep(0.005)
    raise AssertionError("no progress")


def assert_no_partial_files(out: Path) -> None:
    for path in out.glob("*/*"):
        if path.name.endswith(TEMP_SUFFIX):
            continue
        with Image.open(path) as im:
            im.load()  # a truncated file under a final name would fail here


def assert_same_as_reference(out: Path, reference: Path) -> None:
    assert output_files(out) == output_files(reference)
    assert (out / "manifest.csv").read_bytes() == (reference / "manifest.csv").read_bytes()
    result = CliRunner().invoke(main, ["verify", str(out)])
    assert result.exit_code == 0, result.output


def test_sigkill_twice_then_resume(job, tmp_path: Path) -> None:
    src, recipe, reference = job
    out = tmp_path / "out"
    for threshold in (15, 90):
        proc = start(src, recipe, out)
        wait_for_files(out, threshold, proc)
        os.killpg(proc.pid, signal.SIGKILL)  # the parent and its workers, like a power cut
        proc.wait(timeout=30)
        assert_no_partial_files(out)
        rows = read_manifest(out)
        assert all((out / r["output_path"]).is_file() for r in rows)  # no row without its file
    proc = start(src, recipe, out)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert_same_as_reference(out, reference)
    assert not list(out.rglob(f"*{TEMP_SUFFIX}"))


def test_torn_manifest_line_and_temp_files_are_repaired(job, tmp_path: Path) -> None:
    src, recipe, reference = job
    out = tmp_path / "out"
    proc = start(src, recipe, out)
    wait_for_files(out, 30, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    with open(out / "manifest.csv", "a", encoding="utf-8") as f:
        f.write("a/img_0_jpg_aug001.png,a/img_0.jpg,a,1,123")  # a row cut off mid-write
    (out / "a" / f".img_9_jpg_aug001.png.999{TEMP_SUFFIX}").write_bytes(b"\x89PNG partial")
    proc = start(src, recipe, out)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert_same_as_reference(out, reference)


def test_ctrl_c_exits_130_and_resumes(job, tmp_path: Path) -> None:
    src, recipe, reference = job
    out = tmp_path / "out"
    proc = start(src, recipe, out)
    wait_for_files(out, 20, proc)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert "interrupted; re-run the same command to continue" in err.decode()
    assert "Traceback" not in err.decode()
    assert all((out / r["output_path"]).is_file() for r in read_manifest(out))
    proc = start(src, recipe, out)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert_same_as_reference(out, reference)


@pytest.mark.parametrize("limit", [20_000, 120_000], ids=["image-write", "manifest-write"])
def test_full_disk_is_a_clear_error_and_loses_nothing(job, tmp_path: Path, limit: int) -> None:
    src, recipe, reference = job
    out = tmp_path / "out"

    def small_disk() -> None:
        # Writing a file past this size fails with EFBIG, as a write to a full disk fails:
        # 20 kB stops the workers' first image, 120 kB the parent's manifest part-way.
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = start(src, recipe, out, preexec_fn=small_disk)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert err.decode().startswith("augctl: error: cannot write"), err.decode()
    assert "File too large" in err.decode() and "Traceback" not in err.decode()
    assert all((out / r["output_path"]).is_file() for r in read_manifest(out))
    proc = start(src, recipe, out)  # with room again, the same command finishes the job
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert_same_as_reference(out, reference)


def test_ctrl_c_while_a_command_starts_exits_130(tmp_path: Path, monkeypatch) -> None:
    # Before expand's own handler is in place (reading --files-from here), click alone
    # would print "Aborted!" and exit 1.
    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_read_list", interrupted)
    args = ["expand", "-r", "r.yaml", "in", str(tmp_path / "out"), "--files-from", "list.txt"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 130
    assert "Aborted" not in result.output
    assert not (tmp_path / "out").exists()


# Loaded by every Python process with this PYTHONPATH: the fork server reports each new
# worker's pid to the pool half a second late, and the worker reads what it is sent a
# second late, so a Ctrl-C can land while the pool waits for the pid.
SLOW_WORKER_START = """
import os, sys, time
if "multiprocessing.forkserver" in " ".join(sys.orig_argv):
    os.register_at_fork(
        after_in_parent=lambda: time.sleep(0.5), after_in_child=lambda: time.sleep(1.0)
    )
"""


@pytest.mark.skipif(not FORKSERVER, reason="this platform's pool has no fork server")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_while_a_worker_starts_leaves_no_worker_behind(tmp_path: Path, signum) -> None:
    # Stopped there, the pool once lost the worker's pid: the worker, never stopped, read
    # the run's semaphores after the run had released them, and printed a traceback.
    src = make_tree(tmp_path / "in", {"a": 4})
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SLOW_WORKER_START)
    proc = start(src, recipe, tmp_path / "out", env=env_with_site(site))
    try:
        # A worker is forked; its pid is still to come.
        server = wait_for_fork_server(proc, with_worker=True)
        assert server is not None, "no fork server with a worker was seen"
        os.kill(proc.pid, signum)
        # Returns when the stderr pipe closes: when the workers, which share it, are gone.
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signum, err.decode()
    assert err.decode() == "augctl: interrupted; re-run the same command to continue\n"


# Loaded by every Python process with this PYTHONPATH: in augctl's own (`python -m augctl`),
# each commit of manifest rows takes a second more, so a run's stop, which ends with one,
# lasts a second.
SLOW_COMMIT = """
import sys, time
if "multiprocessing" not in " ".join(sys.orig_argv):  # the run's own process, not its pool's
    from augctl import manifest

    sync = manifest._sync_filesystem
    def slow_sync(fd):
        time.sleep(1.0)
        sync(fd)
    manifest._sync_filesystem = slow_sync
"""

# augctl.expand from a caller's script, which stops on Ctrl-C as Python's default handler has it.
LIBRARY_CALLER = """
import sys
import augctl

if __name__ == "__main__":
    src, out, recipe = sys.argv[1:]
    try:
        augctl.expand(src, out, recipe, workers=2)
    except KeyboardInterrupt:
        print("stopped")
"""


@pytest.mark.parametrize("caller", ["cli", "library"])
def test_a_second_ctrl_c_while_stopping_loses_nothing(job, tmp_path: Path, caller: str) -> None:
    # An impatient second Ctrl-C once cut the stop short: the rows of files already
    # written were never committed, and the next run could only redo them.
    src, recipe, reference = job
    out = tmp_path / "out"
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SLOW_COMMIT)
    if caller == "cli":
        proc = start(src, recipe, out, env=env_with_site(site))
    else:
        (tmp_path / "caller.py").write_text(LIBRARY_CALLER)
        cmd = [sys.executable, str(tmp_path / "caller.py"), str(src), str(out), str(recipe)]
        proc = subprocess.Popen(
            cmd,
            env=env_with_site(site),
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    wait_for_files(out, 20, proc)
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.3)  # the stop is committing the rows that came back
    os.killpg(proc.pid, signal.SIGINT)
    stdout, err = proc.communicate(timeout=60)
    if caller == "cli":
        assert proc.returncode == 130, err.decode()
        assert err.decode() == "augctl: interrupted; re-run the same command to continue\n"
    else:  # the second KeyboardInterrupt comes once the stop is done
        assert (proc.returncode, stdout, err) == (0, b"stopped\n", b"")
    rows = {r["output_path"] for r in read_manifest(out)}
    assert rows and all((out / rel).is_file() for rel in rows)
    assert {p.relative_to(out).as_posix() for p in out.glob("*/*.png")} == rows
    proc = start(src, recipe, out)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert_same_as_reference(out, reference)


def test_a_run_stopped_by_a_bad_source_leaves_no_file_without_its_row(tmp_path: Path) -> None:
    # --on-error fail stops at the first bad source while other sources are in flight; what
    # they had written has no row, and must not stay behind as unexplained files.
    src = make_tree(tmp_path / "in", {"a": 24}, size=(320, 240))
    (src / "a" / "img_3_bad.jpg").write_bytes(b"")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("version: 1\nvariants: 6\npipeline:\n  - rotate: {degrees: [-30, 30]}\n")
    for attempt in range(3):
        out = tmp_path / f"out{attempt}"
        cmd = augctl_cmd("expand", "-r", recipe, src, out, "-j2", "-q", "--on-error", "fail")
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1, proc.stderr
        assert "img_3_bad.jpg" in proc.stderr
        verified = subprocess.run(augctl_cmd("verify", out), capture_output=True, text=True)
        assert "orphan" not in verified.stdout + verified.stderr, verified.stdout


def test_rows_handed_to_the_manifest_keep_their_files_when_a_commit_fails(
    tmp_path: Path, monkeypatch
) -> None:
    # The disk fills while the parent commits a group of rows: the run stops, but those
    # rows still reach the manifest when it closes, so their files must stay.
    import errno

    import augctl
    from augctl import manifest
    from augctl.execute import run_task

    def serial(job, tasks, workers):
        for i, task in enumerate(tasks):
            result = run_task(job, task)
            if i == 0:
                time.sleep(1.2)  # the next add commits the group
            yield result

    real, calls = manifest._sync_filesystem, []

    def disk_full_once(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(manifest, "_sync_filesystem", disk_full_once)
    src = make_tree(tmp_path / "in", {"a": 3})
    recipe = tmp_path / "r.yaml"
    recipe.write_text("version: 1\nseed: 5\nvariants: 2\npipeline:\n  - hflip: {p: 0.5}\n")
    out = tmp_path / "out"
    with pytest.raises(augctl.OutputError):
        augctl.expand(src, out, recipe, executor=serial)
    assert calls  # the commit really failed once
    result = CliRunner().invoke(main, ["verify", str(out)])
    assert "missing" not in result.output, result.output


def test_a_stop_signal_inside_a_held_block_is_acted_on_after_it() -> None:
    before = signal.getsignal(signal.SIGINT)
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with pool.stop_signals_held():
            signal.raise_signal(signal.SIGINT)
            steps.append("the block ran to its end")
    assert steps == ["the block ran to its end"]
    assert signal.getsignal(signal.SIGINT) is before


def test_held_stop_signals_nest_and_leave_ignored_ones_alone() -> None:
    calls = []
    before = {s: signal.getsignal(s) for s in pool.STOP_SIGNALS}
    try:
        signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
        with pool.stop_signals_held():
            with pool.stop_signals_held():
                signal.raise_signal(signal.SIGTERM)
                signal.raise_signal(signal.SIGTERM)
            assert calls == []  # the inner block's signals wait for the outer one
        assert calls == [signal.SIGTERM, signal.SIGTERM]
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with pool.stop_signals_held():
            assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
            signal.raise_signal(signal.SIGTERM)  # ignored, as before
        with pytest.raises(ValueError):  # the block's own error, handlers put back
            with pool.stop_signals_held():
                raise ValueError
        assert signal.getsignal(signal.SIGINT) is before[signal.SIGINT]
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def test_the_cli_in_process_puts_the_callers_handlers_back(tmp_path: Path, monkeypatch) -> None:
    # Only augctl's own process ignores stop signals from a stop to its end; a caller that
    # runs the CLI in its own process (CliRunner here) must still answer Ctrl-C after it.
    src = make_tree(tmp_path / "in", {"a": 2})
    (tmp_path / "r.yaml").write_text(RECIPE)
    before = {s: signal.getsignal(s) for s in pool.STOP_SIGNALS}

    def ctrl_c(recipe: str) -> None:
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(cli, "_load", ctrl_c)
    args = ["expand", "-r", str(tmp_path / "r.yaml"), str(src), str(tmp_path / "out")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 130, result.output
    assert {s: signal.getsignal(s) for s in pool.STOP_SIGNALS} == before


def test_ctrl_c_while_a_failed_run_stops_still_reports_the_failure(
    tmp_path: Path, monkeypatch
) -> None:
    # --on-error fail was stopping the run for a bad file when Ctrl-C came: the run stops
    # as it would have, and the message names the file, not an interruption.
    from augctl import api

    src = make_tree(tmp_path / "in", {"a": 3})
    (src / "a" / "img_1.jpg").write_bytes(b"not an image")
    (tmp_path / "r.yaml").write_text(RECIPE)
    write_errors = api._write_errors

    def interrupted_write(*args: object) -> None:  # the stop's last step
        signal.raise_signal(signal.SIGINT)
        write_errors(*args)

    monkeypatch.setattr(api, "_write_errors", interrupted_write)
    args = ["expand", "-r", str(tmp_path / "r.yaml"), str(src), str(tmp_path / "out")]
    result = CliRunner().invoke(main, [*args, "--on-error", "fail", "-j1"])
    assert result.exit_code == 1, result.output
    assert "augctl: error: a/img_1.jpg" in result.output


def test_ctrl_c_as_a_result_is_recorded_leaves_no_file_without_its_row(
    tmp_path: Path, monkeypatch
) -> None:
    # A source's result leaves the in-flight list (whose files a stop removes) and its rows
    # join the manifest's queue: a Ctrl-C between the two once left its files in neither.
    from augctl import manifest

    src = make_tree(tmp_path / "in", {"a": 3})
    (tmp_path / "r.yaml").write_text(RECIPE)
    add = manifest.ManifestWriter.add

    def interrupted_add(self, rows) -> None:
        signal.raise_signal(signal.SIGINT)
        add(self, rows)

    monkeypatch.setattr(manifest.ManifestWriter, "add", interrupted_add)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["expand", "-r", str(tmp_path / "r.yaml"), str(src), str(out)]
    )
    assert result.exit_code == 130, result.output
    rows = {r["output_path"] for r in read_manifest(out)}
    assert rows and {p.relative_to(out).as_posix() for p in out.glob("*/*.png")} == rows


def test_ctrl_c_in_a_finished_runs_last_commit_leaves_no_file_without_its_row(
    tmp_path: Path, monkeypatch
) -> None:
    # Every result is in and the manifest commits the last rows (up to a second's worth):
    # a Ctrl-C there once dropped them, their files left behind.
    from augctl import manifest

    src = make_tree(tmp_path / "in", {"a": 3})
    (tmp_path / "r.yaml").write_text(RECIPE)
    close, sync = manifest.ManifestWriter.close, manifest._sync_filesystem
    closing = []

    def last_commit(self) -> None:
        closing.append(True)
        close(self)

    def interrupted_sync(fd: int) -> None:
        if closing:
            signal.raise_signal(signal.SIGINT)
        sync(fd)

    monkeypatch.setattr(manifest.ManifestWriter, "close", last_commit)
    monkeypatch.setattr(manifest, "_sync_filesystem", interrupted_sync)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["expand", "-r", str(tmp_path / "r.yaml"), str(src), str(out)]
    )
    assert result.exit_code == 130, result.output
    rows = {r["output_path"] for r in read_manifest(out)}
    assert (
        len(rows) == 3 * 6 and {p.relative_to(out).as_posix() for p in out.glob("*/*.png")} == rows
    )
