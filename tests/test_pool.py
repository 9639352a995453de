"""The local pool's fork server: workers run the caller's augctl with the caller's umask, and
a server that dies is replaced without blaming any image."""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    FORKSERVER,
    REPO,
    augctl_cmd,
    env_with_site,
    make_tree,
    output_files,
    read_manifest,
    wait_for_fork_server,
)

from augctl import pool

RECIPE = "version: 1\nseed: 3\nvariants: 2\npipeline:\n  - rotate: {degrees: [-20, 20]}\n"


def run_script(tmp_path: Path, code: str, *args: object) -> subprocess.CompletedProcess:
    script = tmp_path / "script.py"
    script.write_text(code)
    cmd = [sys.executable, str(script), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=tmp_path)


UMASKS = """
import os, sys
import augctl

if __name__ == "__main__":
    src, recipe, out = sys.argv[1:]
    for mask in (0o022, 0o077):
        os.umask(mask)
        augctl.expand(src, f"{out}-{mask:o}", recipe, workers=2)
"""


def test_outputs_follow_the_umask_of_each_run(tmp_path: Path) -> None:
    # A long-lived caller (a service, a notebook) that tightens its umask between two runs:
    # the second run's images are as private as its manifest, whoever forked the workers.
    src = make_tree(tmp_path / "in", {"a": 3, "b": 2})
    (tmp_path / "r.yaml").write_text(RECIPE)
    proc = run_script(tmp_path, UMASKS, src, tmp_path / "r.yaml", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    for mask, mode in ((0o022, 0o644), (0o077, 0o600)):
        out = tmp_path / f"out-{mask:o}"
        modes = {stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*.jpg")}
        assert modes == {mode}, (oct(mask), sorted(map(oct, modes)))
        assert stat.S_IMODE((out / "manifest.csv").stat().st_mode) == mode


OTHER_AUGCTL = """
import sys
sys.path.insert(0, sys.argv[1])  # a checkout first on the path, another augctl installed
import augctl

if __name__ == "__main__":
    assert augctl.__version__ == "9.9.9", augctl.__file__
    augctl.expand(sys.argv[2], sys.argv[3], sys.argv[4], workers=2)
"""


def test_workers_run_the_callers_augctl_not_the_one_installed(tmp_path: Path) -> None:
    # The fork server imports modules from a fresh interpreter's sys.path; the workers must
    # still run the augctl the caller imported (its rows record the worker's version).
    alt = tmp_path / "alt"
    shutil.copytree(REPO / "augctl", alt / "augctl", ignore=shutil.ignore_patterns("__pycache__"))
    init = alt / "augctl" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "9.9.9"  # ', 1))
    src = make_tree(tmp_path / "in", {"a": 3, "b": 2})
    (tmp_path / "r.yaml").write_text(RECIPE)
    out = tmp_path / "out"
    proc = run_script(tmp_path, OTHER_AUGCTL, alt, src, out, tmp_path / "r.yaml")
    assert proc.returncode == 0, proc.stderr
    assert {r["augctl_version"] for r in read_manifest(out)} == {"9.9.9"}


# Loaded by every Python process with this PYTHONPATH: in the fork server, every worker it
# forks waits a second before it starts, so the test can kill the server meanwhile.
SLOW_START = """
import os, sys, time
if "multiprocessing.forkserver" in " ".join(sys.orig_argv):
    os.register_at_fork(after_in_child=lambda: time.sleep(1.0))
"""


@pytest.mark.skipif(not FORKSERVER, reason="this platform's pool has no fork server")
@pytest.mark.parametrize("when", ["as it starts", "as its workers start"])
def test_a_killed_fork_server_is_replaced_and_blames_nothing(tmp_path: Path, when: str) -> None:
    src = make_tree(tmp_path / "in", {"a": 6, "b": 6})
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SLOW_START)
    cmd = augctl_cmd("expand", "-r", recipe, src, tmp_path / "out", "-j2", "-q")
    proc = subprocess.Popen(
        cmd, env=env_with_site(site), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        # Importing its preload, or its first workers waiting.
        server = wait_for_fork_server(proc, with_worker=when != "as it starts")
        assert server is not None, "no fork server with workers was seen"
        os.kill(server, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert read_manifest(tmp_path / "out", "errors.csv") == []
    clean = subprocess.run(
        augctl_cmd("expand", "-r", recipe, src, tmp_path / "clean", "-q"), capture_output=True
    )
    assert clean.returncode == 0
    assert output_files(tmp_path / "out") == output_files(tmp_path / "clean")


PRELOADS = """
import multiprocessing
from multiprocessing import forkserver
from augctl.pool import pool_context

multiprocessing.set_forkserver_preload(["__main__", "csv"])
pool_context("opencv")
print(forkserver._forkserver._preload_modules)
"""


@pytest.mark.skipif(not FORKSERVER, reason="this platform's pool has no fork server")
def test_a_callers_own_fork_server_preload_is_kept(tmp_path: Path) -> None:
    proc = run_script(tmp_path, PRELOADS)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(["__main__", "csv", *pool.PRELOAD, "cv2"])


SERVER_SIGNALS = """
import os
from augctl.pool import start_server

start_server()
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/stat") as f:
            parent = int(f.read().rsplit(")", 1)[1].split()[1])
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            server = parent == os.getpid() and b"forkserver" in f.read()
    except OSError:
        continue
    if server:
        with open(f"/proc/{pid}/status") as f:
            masks = dict(line.split(":\t") for line in f if line.startswith(("SigBlk", "SigIgn")))
        print(int(masks["SigBlk"], 16) | int(masks["SigIgn"], 16))
"""


@pytest.mark.skipif(not FORKSERVER, reason="this platform's pool has no fork server")
def test_the_fork_server_never_takes_ctrl_c(tmp_path: Path) -> None:
    # Ctrl-C reaches the whole process group: a server interrupted while it imports numpy
    # would print a traceback beside augctl's own one-line message.
    proc = run_script(tmp_path, SERVER_SIGNALS)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) & (1 << (signal.SIGINT - 1))


# Loaded by every Python process with this PYTHONPATH (workers inherit it through the fork
# server): records each module each process imports, by pid.
IMPORT_WATCH = """
import os, sys

class _Watch:
    @staticmethod
    def find_spec(name, path=None, target=None):
        with open(os.environ["AUGCTL_TEST_IMPORTS"], "a") as f:
            f.write(f"{os.getpid()} {name}\\n")
        return None

sys.meta_path.insert(0, _Watch)
"""

# What pip writes as the `augctl` console script.
CONSOLE_SCRIPT = """
import sys
from augctl.cli import run
if __name__ == "__main__":
    sys.exit(run())
"""


def imports_by_pid(tmp_path: Path, script: Path, *args: object) -> tuple[int, dict[int, set[str]]]:
    """Run `script` with IMPORT_WATCH: its pid, and the modules each process imported."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(IMPORT_WATCH)
    log = tmp_path / "imports.txt"
    proc = subprocess.Popen(
        [sys.executable, str(script), *map(str, args)],
        env={**env_with_site(site), "AUGCTL_TEST_IMPORTS": str(log)},
        stderr=subprocess.PIPE,
        text=True,
    )
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stderr
    by_pid: dict[int, set[str]] = {}
    for line in log.read_text().splitlines():
        pid, name = line.split()
        by_pid.setdefault(int(pid), set()).add(name)
    return proc.pid, by_pid


def workers_imports(
    tmp_path: Path, ext: str = ".jpg", recipe_text: str = RECIPE
) -> tuple[set[str], list[set[str]]]:
    """What `augctl expand -j2` (run by its console script) and each of its workers import."""
    src = make_tree(tmp_path / "in", {"a": 3, "b": 3}, ext=ext)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(recipe_text)
    script = tmp_path / "augctl-script"
    script.write_text(CONSOLE_SCRIPT)
    pid, by_pid = imports_by_pid(
        tmp_path, script, "expand", "-r", recipe, src, tmp_path / "out", "-j2", "-q"
    )
    parent = by_pid.pop(pid)
    workers = [names for names in by_pid.values() if "augctl.execute" in names]
    assert workers, "no worker was seen importing augctl"
    assert len(read_manifest(tmp_path / "out")) == 6 * 2  # every source's 2 variants
    return parent, workers


def test_workers_do_not_rerun_the_console_script(tmp_path: Path) -> None:
    # Workers re-run the parent's main script; augctl's own only runs the CLI, which would
    # import click and the CLI into every worker for nothing.
    parent, workers = workers_imports(tmp_path)
    assert {"click", "augctl.cli"} <= parent
    assert all(not names & {"click", "augctl.cli"} for names in workers), workers


@pytest.mark.skipif(not FORKSERVER, reason="this platform's pool has no fork server")
@pytest.mark.parametrize(
    ("ext", "recipe_text"),
    [(".jpg", RECIPE), (".webp", RECIPE + "output: {format: webp}\n")],
    ids=["jpeg", "webp"],
)
def test_the_fork_server_imports_what_workers_need(
    tmp_path: Path, ext: str, recipe_text: str
) -> None:
    # Whatever a worker imports after its fork, every worker of every pool imports again
    # (built-in modules cost nothing). numpy.random is left to each worker (see PRELOAD).
    _, workers = workers_imports(tmp_path, ext, recipe_text)
    free = {"augctl", *sys.builtin_module_names}
    for names in workers:
        extra = {n for n in names if n.split(".")[0] not in free}
        assert {n for n in extra if not n.startswith("numpy.random")} == set(), names


def test_every_preloaded_module_exists() -> None:
    # The fork server skips a name it can't import without a word.
    for name in pool.PRELOAD:
        importlib.import_module(name)


def test_only_augctls_own_script_is_hidden_from_workers(monkeypatch, tmp_path: Path) -> None:
    # A caller's script may define what its workers need; augctl's console script doesn't.
    import types

    from augctl import cli, execute

    script = tmp_path / "script.py"
    script.write_text("")
    plugin = {"register": lambda: None}  # a caller's wrapper that sets something up first
    cases = [({"sys": sys}, cli.run, True), (plugin, cli.run, False), ({}, lambda: None, False)]
    for extra, run, hidden in cases:
        module = types.ModuleType("__main__")
        module.__file__ = str(script)
        module.run = run
        vars(module).update(extra)
        monkeypatch.setitem(sys.modules, "__main__", module)
        with execute._main_script_hidden():
            assert hasattr(module, "__file__") is not hidden
        assert module.__file__ == str(script)


GLOBAL_DRAWS = """
import concurrent.futures as cf
from augctl.pool import start_server

def draw():
    import numpy as np
    return float(np.random.random())

if __name__ == "__main__":
    ctx = start_server()
    for _ in range(2):  # two pools: two workers forked from the one server
        with cf.ProcessPoolExecutor(1, mp_context=ctx) as pool:
            print(pool.submit(draw).result())
"""


@pytest.mark.skipif(not FORKSERVER, reason="this platform's pool has no fork server")
@pytest.mark.skipif(
    int(np.__version__.split(".")[0]) < 2,
    reason="numpy 1.x imports numpy.random with numpy, so its server's forks share it",
)
def test_forked_workers_do_not_share_numpys_global_generator(tmp_path: Path) -> None:
    # augctl never draws from it, but a caller's own forkserver pools share augctl's server.
    proc = run_script(tmp_path, GLOBAL_DRAWS)
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.split()
    assert first != second
