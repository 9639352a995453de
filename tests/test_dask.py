"""The Dask executor on a real LocalCluster: the same bytes as the local pool, even when a
worker process is SIGKILLed mid-job."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import make_tree, output_files

import augctl
from augctl.cli import main

RECIPE = """\
version: 1
seed: 9
variants: 3
output: {format: png}
pipeline:
  - rotate: {degrees: [-25, 25]}
  - hflip: {p: 0.5}
  - contrast: {factor: [0.7, 1.3], p: 0.5}
"""


@pytest.fixture(scope="module")
def distributed() -> Any:
    """dask.distributed, or a skip; in CI (CI set) a missing extra fails instead of skipping."""
    try:
        import distributed
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("CI must install the dask extra: pip install '.[test,dask]'", pytrace=False)
        pytest.skip("dask[distributed] is not installed (pip install 'augctl[dask]')")
    return distributed


def start_cluster(distributed: Any, n_workers: int = 2, **options: Any) -> Any:
    return distributed.LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=logging.ERROR,
        **options,
    )


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> tuple[Path, Path, Path]:
    """24 sources, the recipe, and the local pool's output."""
    root = tmp_path_factory.mktemp("dask")
    src = make_tree(root / "in", {"a": 12, "b": 12}, size=(160, 120))
    (src / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    recipe = root / "r.yaml"
    recipe.write_text(RECIPE)
    local = root / "local"
    result = CliRunner().invoke(main, ["expand", "-r", str(recipe), str(src), str(local), "-q"])
    assert result.exit_code == 0, result.output
    return src, recipe, local


def same_as(out: Path, reference: Path) -> None:
    assert output_files(out) == output_files(reference)
    for name in ("manifest.csv", "errors.csv"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


def test_dask_cluster_gives_the_local_pools_bytes(distributed, job, tmp_path: Path) -> None:
    src, recipe, local = job
    with start_cluster(distributed) as cluster:
        summary = augctl.expand(
            src, tmp_path / "api", recipe, executor="dask", scheduler=cluster.scheduler_address
        )
        assert (summary.written, summary.skipped) == (72, 1)
        same_as(tmp_path / "api", local)
        # What `dask scheduler --scheduler-file` writes, as far as a client reads it (the
        # client's own write_scheduler_file fails now and then on tuple keys in its info).
        scheduler_file = {"type": "Scheduler", "address": cluster.scheduler_address}
        (tmp_path / "s.json").write_text(json.dumps(scheduler_file))
        result = CliRunner().invoke(
            main,
            ["expand", "-r", str(recipe), str(src), str(tmp_path / "cli"), "-q"]
            + ["--executor", "dask", "--scheduler-file", str(tmp_path / "s.json")],
        )
        assert result.exit_code == 0, result.output
        same_as(tmp_path / "cli", local)


def test_dask_without_a_scheduler_starts_its_own_local_cluster(
    distributed, job, tmp_path: Path
) -> None:
    src, recipe, local = job
    result = CliRunner().invoke(
        main,
        ["expand", "-r", str(recipe), str(src), str(tmp_path / "out"), "-q", "-j2"]
        + ["--executor", "dask"],
    )
    assert result.exit_code == 0, result.output
    same_as(tmp_path / "out", local)


def test_dask_from_a_script_on_stdin(distributed, job, tmp_path: Path) -> None:
    # The LocalCluster's workers are spawned too; a script read from stdin has no file.
    src, recipe, local = job
    out = tmp_path / "out"
    script = (
        "import augctl\n"
        f"print(augctl.expand({str(src)!r}, {str(out)!r}, {str(recipe)!r}, executor='dask', workers=2).written)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-"], input=script, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "72"
    same_as(out, local)


def kill_once_plugin(distributed: Any, flag: str) -> Any:
    """A worker plugin: the first worker to start its second batch SIGKILLs itself shortly
    after, in the middle of that batch, as the OOM killer would. Once per flag file."""

    class KillOnce(distributed.WorkerPlugin):  # local: cloudpickle ships it by value
        def __init__(self) -> None:
            self.started = 0

        def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
            if finish != "executing" or "run_batch" not in str(key):
                return
            self.started += 1
            if self.started < 2:
                return
            try:
                os.close(os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return
            timer = threading.Timer(0.03, os.kill, (os.getpid(), signal.SIGKILL))
            timer.daemon = True
            timer.start()

    return KillOnce()


def test_a_killed_dask_worker_changes_nothing(distributed, job, tmp_path: Path) -> None:
    src, recipe, local = job
    flag = tmp_path / "killed"
    with start_cluster(distributed) as cluster, distributed.Client(cluster) as client:
        before = set(client.run(os.getpid).values())
        client.register_plugin(kill_once_plugin(distributed, str(flag)), name="kill-once")
        summary = augctl.expand(
            src, tmp_path / "out", recipe, executor="dask", scheduler=cluster.scheduler_address
        )
        client.wait_for_workers(2, timeout=30)
        after = set(client.run(os.getpid).values())
    assert flag.exists()
    assert len(before - after) == 1  # one worker process really died (and was replaced)
    assert (summary.written, summary.skipped) == (72, 1)
    same_as(tmp_path / "out", local)


def test_a_source_that_kills_every_dask_worker_is_an_error(
    distributed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dask

    src = make_tree(tmp_path / "in", {"a": 6, "b": 6})
    marker = b"augctl-kill-the-worker"
    with open(src / "a" / "img_2.jpg", "ab") as f:
        f.write(marker)  # trailing bytes after the JPEG end: still a valid image
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    local = tmp_path / "local"
    augctl.expand(src, local, recipe, workers=1)

    class DieOnMarker(distributed.WorkerPlugin):  # local: cloudpickle ships it by value
        def setup(self, worker: Any) -> None:
            import PIL.Image

            original = PIL.Image.open

            def open_or_die(fp: Any, *args: Any, **kwargs: Any) -> Any:
                data = fp.getvalue() if hasattr(fp, "getvalue") else b""
                if marker in data[-64:]:
                    os.kill(os.getpid(), signal.SIGKILL)
                return original(fp, *args, **kwargs)

            PIL.Image.open = open_or_die

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = start_cluster(distributed)
    with cluster, distributed.Client(cluster) as client:
        client.register_plugin(DieOnMarker(), name="die-on-marker")
        summary = augctl.expand(
            src, tmp_path / "out", recipe, executor="dask", scheduler=cluster.scheduler_address
        )
        assert (summary.written, summary.skipped) == (33, 1)
        errors = (tmp_path / "out" / "errors.csv").read_bytes().decode()
        assert errors == (
            "source_path,class,reason\r\n"
            "a/img_2.jpg,a,a Dask worker process died each time it processed this image\r\n"
        )
        kept = {k: v for k, v in output_files(local).items() if "img_2_jpg" not in k or k[0] != "a"}
        assert output_files(tmp_path / "out") == kept

        from augctl import engines

        monkeypatch.setattr(engines, "__version__", "9.9.9")  # this process only, not the workers
        with pytest.raises(augctl.EngineError) as exc:
            augctl.expand(
                src,
                tmp_path / "other",
                recipe,
                executor="dask",
                scheduler=cluster.scheduler_address,
            )
    assert str(exc.value).startswith(
        f"a Dask task failed: RuntimeError: this Dask worker runs augctl {augctl.__version__}, "
        "the client 9.9.9 "
        "(every worker needs the same augctl and libraries installed"
    )


def test_dask_with_the_opencv_resampler_gives_the_local_pools_bytes(
    distributed, tmp_path: Path
) -> None:
    """Dask workers leave OpenCV its own threads (a pool's workers run it on one): the rows a
    thread computes don't depend on how many there are, so the bytes are the same."""
    src = make_tree(tmp_path / "in", {"a": 6, "b": 6}, size=(320, 240))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.replace("pipeline:", "resampler: opencv\npipeline:"))
    local = tmp_path / "local"
    result = CliRunner().invoke(main, ["expand", "-r", str(recipe), str(src), str(local), "-q"])
    assert result.exit_code == 0, result.output
    with start_cluster(distributed) as cluster:
        augctl.expand(
            src, tmp_path / "dask", recipe, executor="dask", scheduler=cluster.scheduler_address
        )
    same_as(tmp_path / "dask", local)
    assert json.loads((local / "run.json").read_text())["recipe"]["resampler"] == "opencv"


def test_dask_workers_must_have_the_clients_libraries(
    distributed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker without OpenCV (for an opencv recipe), or with other versions of the
    libraries that decide the bytes, refuses the work instead of failing every source or
    writing bytes run.json doesn't describe."""
    src = make_tree(tmp_path / "in", {"a": 2}, size=(64, 48))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.replace("pipeline:", "resampler: opencv\npipeline:"))
    no_cv2 = tmp_path / "no_cv2.py"  # run in each worker as it starts: cv2 can't be imported
    no_cv2.write_text("import sys\nsys.modules['cv2'] = None\n")
    with start_cluster(distributed, 1, preload=[str(no_cv2)]) as cluster:
        with pytest.raises(augctl.EngineError) as exc:
            augctl.expand(
                src, tmp_path / "out", recipe, executor="dask", scheduler=cluster.scheduler_address
            )
        assert str(exc.value).startswith(
            "a Dask task failed: RuntimeError: on this Dask worker, the recipe's resampler is "
            "opencv, but OpenCV can't be imported (import of cv2 halted; None in sys.modules); "
            "pip install 'augctl[opencv]' there"
        )
        assert not list((tmp_path / "out" / "a").iterdir())

        from augctl import engines

        real = engines.library_versions
        monkeypatch.setattr(  # this process only, not the workers
            engines, "library_versions", lambda resampler: {**real(resampler), "pillow": "1.0"}
        )
        plain = tmp_path / "plain.yaml"  # needs no OpenCV: only the versions differ
        plain.write_text(RECIPE)
        with pytest.raises(augctl.EngineError) as exc:
            augctl.expand(
                src, tmp_path / "other", plain, executor="dask", scheduler=cluster.scheduler_address
            )
        import PIL

        assert str(exc.value).startswith(
            f"a Dask task failed: RuntimeError: this Dask worker has pillow {PIL.__version__}, "
            "the client pillow 1.0 "
        )
        monkeypatch.undo()
        summary = augctl.expand(
            src, tmp_path / "ok", plain, executor="dask", scheduler=cluster.scheduler_address
        )
        assert summary.written == 6
