"""A worker killed by the OS (OOM killer, a decoder crash) neither hangs nor aborts the run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import (
    augctl_cmd,
    env_with_site,
    make_tree,
    output_files,
    proc_alive,
    proc_parent,
    read_manifest,
    wait_until,
)

from augctl import pool

RECIPE = "version: 1\nseed: 5\nvariants: 3\npipeline:\n  - rotate: {degrees: [-20, 20]}\n  - hflip: {p: 0.5}\n"

# Loaded by every Python process started with this PYTHONPATH, the spawned workers
# included: it makes decoding one chosen source SIGKILL the worker, as the OOM killer would.
SITECUSTOMIZE = """
import os, signal
import PIL.Image

_open = PIL.Image.open

def open_or_die(fp, *args, **kwargs):
    data = fp.getvalue() if hasattr(fp, "getvalue") else b""
    if {marker!r} in data[-64:]:
        flag = {flag!r}
        if flag is None or not os.path.exists(flag):
            if flag is not None:
                open(flag, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
    return _open(fp, *args, **kwargs)

PIL.Image.open = open_or_die
"""


def run(src: Path, out: Path, recipe: Path, site: Path | None) -> subprocess.CompletedProcess:
    env = dict(os.environ) if site is None else env_with_site(site)
    cmd = augctl_cmd("expand", "-r", recipe, src, out, "-j2", "-q")
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)


def setup(tmp_path: Path, once: bool) -> tuple[Path, Path, Path]:
    src = make_tree(tmp_path / "in", {"a": 12, "b": 12})
    marker = b"augctl-crash-me"
    with open(src / "a" / "img_5.jpg", "ab") as f:
        f.write(marker)  # trailing bytes after the JPEG end: still a valid image
    site = tmp_path / "site"
    site.mkdir()
    flag = str(tmp_path / "killed-once") if once else None
    (site / "sitecustomize.py").write_text(
        textwrap.dedent(SITECUSTOMIZE.format(marker=marker, flag=flag))
    )
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    return src, site, recipe


def test_worker_killed_once_is_retried(tmp_path: Path) -> None:
    src, site, recipe = setup(tmp_path, once=True)
    crashed = run(src, tmp_path / "out", recipe, site)
    assert crashed.returncode == 0, crashed.stderr
    assert (tmp_path / "killed-once").exists()  # the worker really was killed
    clean = run(src, tmp_path / "clean", recipe, None)
    assert clean.returncode == 0
    assert output_files(tmp_path / "out") == output_files(tmp_path / "clean")
    assert (tmp_path / "out" / "manifest.csv").read_bytes() == (
        tmp_path / "clean" / "manifest.csv"
    ).read_bytes()


def test_source_that_kills_its_worker_twice_is_an_error(tmp_path: Path) -> None:
    src, site, recipe = setup(tmp_path, once=False)
    result = run(src, tmp_path / "out", recipe, site)
    assert result.returncode == 0, result.stderr
    errors = read_manifest(tmp_path / "out", "errors.csv")
    assert [(e["source_path"], e["reason"]) for e in errors] == [
        ("a/img_5.jpg", "the worker process died while processing this image (twice)")
    ]
    rows = read_manifest(tmp_path / "out")
    assert len(rows) == 23 * 3 and "a/img_5.jpg" not in {r["source_path"] for r in rows}


# Loaded by every Python process with this PYTHONPATH: the first pool worker to start is
# SIGKILLed before it runs anything, as the OOM killer might (the parent is left alone). A
# spawned worker is one started with --multiprocessing-fork; a fork server's workers are
# forked from it, so the server arms the kill for its children.
KILL_AT_START = """
import os, signal, sys

def die():
    if not os.path.exists({flag!r}):
        open({flag!r}, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)

if "--multiprocessing-fork" in sys.argv:
    die()
elif "multiprocessing.forkserver" in " ".join(sys.orig_argv):
    os.register_at_fork(after_in_child=die)
"""


def test_worker_killed_as_it_starts_is_replaced_and_blames_nothing(tmp_path: Path) -> None:
    src, site, recipe = setup(tmp_path, once=True)
    flag = tmp_path / "killed-at-start"
    (site / "sitecustomize.py").write_text(KILL_AT_START.format(flag=str(flag)))
    result = run(src, tmp_path / "out", recipe, site)
    assert result.returncode == 0, result.stderr
    assert flag.exists()  # a worker really was killed
    assert read_manifest(tmp_path / "out", "errors.csv") == []
    assert run(src, tmp_path / "clean", recipe, None).returncode == 0
    assert output_files(tmp_path / "out") == output_files(tmp_path / "clean")


# Loaded by every Python process with this PYTHONPATH: a pool worker notes its pid and then
# hangs in its first decode, so the test can kill the parent while the workers are busy.
HANG_IN_WORKER = """
import multiprocessing, os, time
import PIL.Image

_open = PIL.Image.open

def open_and_hang(*args, **kwargs):
    if multiprocessing.parent_process() is not None:
        open(os.path.join({pids!r}, str(os.getpid())), "w").close()
        time.sleep(120)
    return _open(*args, **kwargs)

PIL.Image.open = open_and_hang
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads processes from /proc")
def test_workers_leave_when_their_parent_is_killed(tmp_path: Path) -> None:
    # kill -9 or the OOM killer can't let the parent stop its workers: each must notice on
    # its own that the parent is gone, not wait for work forever (nor the fork server).
    src, site, recipe = setup(tmp_path, once=False)
    pids = tmp_path / "pids"
    pids.mkdir()
    (site / "sitecustomize.py").write_text(HANG_IN_WORKER.format(pids=str(pids)))
    env = env_with_site(site)
    cmd = augctl_cmd("expand", "-r", recipe, src, tmp_path / "out", "-j2", "-q")
    parent = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: len(list(pids.iterdir())) == 2, 60), "workers never started"
        workers = [int(p.name) for p in pids.iterdir()]
        # A fork server, where the pool has one, is the workers' parent and must go too.
        others = {proc_parent(pid) for pid in workers} - {parent.pid, None}
    finally:
        parent.kill()
        parent.wait()
    assert wait_until(lambda: not any(map(proc_alive, [*workers, *others])), 15)


PARENT_GONE = """
import multiprocessing, os, sys, time

def child(pid_file):
    time.sleep(1)  # by now the parent has exited
    from augctl.execute import Job, _init_worker
    from augctl.recipe import Recipe

    class Event:
        def set(self):
            pass

    with open(pid_file + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(pid_file + ".tmp", pid_file)
    _init_worker(Job(Recipe(), ".", "."), Event())
    time.sleep(120)

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    ctx.Process(target=child, args=(sys.argv[2],)).start()
    os._exit(0)
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads processes from /proc")
@pytest.mark.parametrize("method", sorted({"spawn", pool.pool_context().get_start_method()}))
def test_worker_whose_parent_is_already_gone_leaves(tmp_path: Path, method: str) -> None:
    # A parent killed while its workers start: a worker starting after that must still
    # notice, not take its new parent (init, a subreaper) for the one to watch.
    script = tmp_path / "gone.py"
    script.write_text(PARENT_GONE)
    pid_file = tmp_path / "worker.pid"
    proc = subprocess.run(
        [sys.executable, str(script), method, str(pid_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    # The worker writes its pid, then runs _init_worker: from there it must leave on its own.
    assert wait_until(pid_file.exists, 30), "the worker never started"
    assert wait_until(lambda: not proc_alive(int(pid_file.read_text())), 20)


SLOW_CONSUMER = """
import sys, time
import augctl

def progress(n, total):
    if n == 1:
        time.sleep(2)  # meanwhile a worker dies: the pool is broken at the next submit

if __name__ == "__main__":
    src, out, recipe = sys.argv[1:]
    summary = augctl.expand(src, out, recipe, workers=2, progress=progress)
    print(summary.processed, summary.skipped)
"""


def test_a_pool_broken_while_the_parent_is_busy_is_rebuilt(tmp_path: Path) -> None:
    src, site, recipe = setup(tmp_path, once=False)
    script = tmp_path / "slow.py"
    script.write_text(SLOW_CONSUMER)
    env = env_with_site(site)
    cmd = [sys.executable, str(script), str(src), str(tmp_path / "out"), str(recipe)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["24", "1"]
    errors = read_manifest(tmp_path / "out", "errors.csv")
    assert [e["source_path"] for e in errors] == ["a/img_5.jpg"]


RAISING_JOB = """
import sys
import augctl
from augctl import execute


def _install(job):
    real = execute.run_task

    def run_task(job, task):
        if task.source.rel == "a/img_1.jpg":
            raise SystemExit(3)  # past run_task's own net, which catches Exception
        return real(job, task)

    execute.run_task = run_task
    return job


class Job:
    def __init__(self, job):
        self.job = job
        self.recipe = job.recipe

    def __reduce__(self):  # unpickled in each worker: patches it, then is the real job
        return (_install, (self.job,))


def executor(job, tasks, workers):
    yield from execute._run_pool(Job(job), tasks, workers)


if __name__ == "__main__":
    src, out, recipe = sys.argv[1:]
    summary = augctl.expand(src, out, recipe, workers=2, executor=executor)
    print(summary.processed, summary.skipped, summary.written)
"""


def test_a_task_raising_past_run_task_is_its_own_error_not_a_crash(tmp_path: Path) -> None:
    src, _, recipe = setup(tmp_path, once=False)
    script = tmp_path / "raising.py"
    script.write_text(RAISING_JOB)
    cmd = [sys.executable, str(script), str(src), str(tmp_path / "out"), str(recipe)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["24", "1", str(23 * 3)]
    errors = read_manifest(tmp_path / "out", "errors.csv")
    assert [(e["source_path"], e["reason"]) for e in errors] == [
        ("a/img_1.jpg", "failed while augmenting: SystemExit: 3")
    ]
    assert len(read_manifest(tmp_path / "out")) == 23 * 3  # nothing made twice


# Loaded by every Python process with this PYTHONPATH: a worker dies right after writing the
# second output of img_5, every time (a crash part-way through a source).
DIE_AFTER_WRITING = """
import os, signal
import augctl.images as images

_write = images.write_atomic

def write_then_die(path, data):
    _write(path, data)
    if path.endswith("/a/img_5_jpg_aug002.jpg"):
        os.kill(os.getpid(), signal.SIGKILL)

images.write_atomic = write_then_die
"""


def test_a_source_given_up_on_leaves_no_outputs_behind(tmp_path: Path) -> None:
    src, site, recipe = setup(tmp_path, once=False)
    (site / "sitecustomize.py").write_text(DIE_AFTER_WRITING)
    result = run(src, tmp_path / "out", recipe, site)
    assert result.returncode == 0, result.stderr
    errors = read_manifest(tmp_path / "out", "errors.csv")
    assert [e["source_path"] for e in errors] == ["a/img_5.jpg"]
    assert not any(name.startswith("a/img_5_") for name in output_files(tmp_path / "out"))
    verified = subprocess.run(
        augctl_cmd("verify", tmp_path / "out"), capture_output=True, text=True
    )
    assert verified.returncode == 0, verified.stdout
