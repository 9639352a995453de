"""The executor interface: the local pool and Dask behind one signature; dask stays optional."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import output_files

import augctl
from augctl.cli import main
from augctl.engines import get_executor
from augctl.execute import Job, Result, run_local, run_task
from augctl.plan import Task


def test_the_core_never_imports_dask() -> None:
    code = (
        "import sys, augctl, augctl.api, augctl.cli, augctl.engines, augctl.shards\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed'))\n"
        "assert not loaded, loaded\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_missing_dask_extra_is_a_usage_error(
    tree: Path, recipe_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["expand", "-r", str(recipe_file), str(tree), str(out), "--executor", "dask"]
    )
    assert result.exit_code == 2
    assert result.stderr == "augctl: error: install augctl[dask]: pip install 'augctl[dask]'\n"
    assert not out.exists()


def test_scheduler_options_need_the_dask_executor(
    tree: Path, recipe_file: Path, tmp_path: Path
) -> None:
    args = ["expand", "-r", str(recipe_file), str(tree), str(tmp_path / "out")]
    result = CliRunner().invoke(main, [*args, "--scheduler", "tcp://127.0.0.1:1"])
    assert (result.exit_code, result.stderr) == (
        2,
        "augctl: error: --scheduler and --scheduler-file go with --executor dask\n",
    )
    result = CliRunner().invoke(
        main, [*args, "--executor", "dask", "--scheduler-file", str(tmp_path / "s.json")]
    )
    assert (result.exit_code, result.stderr) == (
        2,
        f"augctl: error: Dask scheduler file {tmp_path}/s.json does not exist; start the "
        f"scheduler first: dask scheduler --scheduler-file {tmp_path}/s.json\n",
    )
    assert not (tmp_path / "out").exists()
    assert get_executor("local") is run_local
    with pytest.raises(augctl.UsageError, match="unknown executor 'ray'"):
        get_executor("ray")


def test_any_executor_function_drives_the_same_loop(
    tree: Path, recipe_file: Path, tmp_path: Path
) -> None:
    seen: list[int] = []

    def serial(job: Job, tasks: Iterable[Task], workers: int) -> Iterator[Result]:
        seen.append(workers)
        for task in reversed(list(tasks)):  # another order: the manifest must not care
            yield run_task(job, task)

    augctl.expand(tree, tmp_path / "serial", recipe_file, executor=serial, workers=3)
    augctl.expand(tree, tmp_path / "local", recipe_file, workers=1)
    assert seen == [3]
    assert output_files(tmp_path / "serial") == output_files(tmp_path / "local")
    assert (tmp_path / "serial" / "manifest.csv").read_bytes() == (
        tmp_path / "local" / "manifest.csv"
    ).read_bytes()
