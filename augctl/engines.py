"""Executors: one signature shared by the local process pool and the Dask engine.

An executor takes the run's Job, the tasks to do and a worker count, and yields one
Result per task as it finishes. The parent consumes the stream and stays the only
manifest writer; nothing is accumulated. Dask is imported only when it is used.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import signal
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from . import __version__
from .errors import EngineError, UsageError
from .execute import Job, Result, _main_script_hidden, library_versions, run_local, run_task
from .plan import Task
from .pool import stop_signals_held

Executor = Callable[[Job, Iterable[Task], int], Iterator[Result]]

EXECUTORS = ("local", "dask")
# Sources per Dask task: Dask spends ~1.7 ms scheduling a task, a source takes ~10-100 ms.
BATCH_SIZE = 256
INSTALL_DASK = "install augctl[dask]: pip install 'augctl[dask]'"


def get_executor(
    name: str, *, scheduler: str | None = None, scheduler_file: str | None = None
) -> Executor:
    """The executor called `name` ('local' or 'dask'), with the Dask scheduler to use."""
    if name == "local":
        if scheduler or scheduler_file:
            raise UsageError("a Dask scheduler is only used with executor 'dask'")
        return run_local
    if name == "dask":
        if scheduler and scheduler_file:
            raise UsageError("give a Dask scheduler address or a scheduler file, not both")
        if scheduler_file and not os.path.isfile(scheduler_file):
            # distributed would wait for it forever
            raise UsageError(
                f"Dask scheduler file {scheduler_file} does not exist; start the scheduler "
                f"first: dask scheduler --scheduler-file {scheduler_file}"
            )
        _import_distributed()  # fail before any file is written when the extra is missing
        return functools.partial(run_dask, scheduler=scheduler, scheduler_file=scheduler_file)
    raise UsageError(f"unknown executor {name!r}; expected one of: {', '.join(EXECUTORS)}")


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise UsageError(INSTALL_DASK) from None
    return distributed


def dask_setup(worker: Any) -> None:
    """Preload of the workers of the LocalCluster augctl starts: Ctrl-C is the parent's."""
    # Without this, a Ctrl-C in the terminal also reaches the workers, which die printing
    # tracebacks while the parent is still shutting the cluster down in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_batch(
    job: Job, tasks: Sequence[Task], version: str, libraries: dict[str, str] | None = None
) -> list[Result]:
    """Run a batch of tasks in a Dask worker (never raises for a bad source).

    `version` and `libraries` are the client's augctl and `library_versions`: a worker
    that differs could write other bytes than run.json says, so it refuses the batch.
    """
    if version != __version__:
        raise RuntimeError(f"this Dask worker runs augctl {__version__}, the client {version}")
    if libraries is not None:
        _check_libraries(job, libraries)
    return [run_task(job, task) for task in tasks]


def _check_libraries(job: Job, client: dict[str, str]) -> None:
    try:
        mine = library_versions(job.recipe.resampler)
    except UsageError as exc:  # only the opencv resampler needs anything the core doesn't
        raise RuntimeError(f"on this Dask worker, {exc} there") from None
    differ = [k for k in sorted(client) if mine.get(k) != client[k]]
    if differ:
        ours = ", ".join(f"{k} {mine.get(k)}" for k in differ)
        theirs = ", ".join(f"{k} {client[k]}" for k in differ)
        raise RuntimeError(f"this Dask worker has {ours}, the client {theirs}")


def run_dask(
    job: Job,
    tasks: Iterable[Task],
    workers: int,
    *,
    scheduler: str | None = None,
    scheduler_file: str | None = None,
    batch_size: int = BATCH_SIZE,
) -> Iterator[Result]:
    """Run tasks on a Dask cluster in batches of sources, yielding results as batches finish.

    Without a scheduler, a LocalCluster of `workers` processes on 127.0.0.1 (no dashboard)
    is started for the run. A bounded number of batches is in flight. Dask re-runs a batch
    whose worker died; a batch Dask gives up on (KilledWorker) is retried one source at a
    time, and a source that still kills its worker is reported as an error.
    """
    distributed = _import_distributed()
    todo = list(tasks)
    if not todo:
        return
    # Our LocalCluster's workers are spawned (and re-spawned after a crash); like the pool's,
    # they re-import the caller's main script.
    with _main_script_hidden():
        yield from _run_on_cluster(
            distributed, job, todo, workers, scheduler, scheduler_file, batch_size
        )


def _run_on_cluster(
    distributed: Any,
    job: Job,
    todo: list[Task],
    workers: int,
    scheduler: str | None,
    scheduler_file: str | None,
    batch_size: int,
) -> Iterator[Result]:
    """Connect to the scheduler (or start a LocalCluster), stream the batches, close."""
    cluster = client = None
    try:
        try:
            if scheduler or scheduler_file:
                client = distributed.Client(
                    scheduler, scheduler_file=scheduler_file, timeout=30, set_as_default=False
                )
            else:
                cluster = distributed.LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                    preload=[__name__],  # runs dask_setup in each worker
                )
                client = distributed.Client(cluster, set_as_default=False)
        except (OSError, TimeoutError, ValueError, RuntimeError) as exc:
            where = scheduler or scheduler_file or "a local cluster"
            raise EngineError(
                f"cannot start or reach the Dask scheduler ({where}): {exc}"
            ) from None
        yield from _stream(distributed, client, job, todo, batch_size)
    finally:
        with stop_signals_held():  # a second Ctrl-C must not leave the local cluster running
            if client is not None:
                client.close()
            if cluster is not None:
                cluster.close()


def _stream(
    distributed: Any,
    client: Any,
    job: Job,
    todo: list[Task],
    batch_size: int,
) -> Iterator[Result]:
    """Submit batches (a bounded number in flight) and yield their results as they finish."""

    def slots() -> int:  # worker threads now: workers may join (or leave) during the run
        return max(1, sum(client.nthreads().values()))

    # Smaller batches when there is little work, so every worker gets some.
    size = max(1, min(batch_size, math.ceil(len(todo) / (slots() * 4))))
    batches: Iterator[Sequence[Task]] = (todo[i : i + size] for i in range(0, len(todo), size))
    retry: list[Sequence[Task]] = []
    running: dict[Any, Sequence[Task]] = {}
    alone: set[Any] = set()  # futures that ran with nothing else on the cluster
    # Our client's loop, explicitly: as_completed() would take the default client's, which
    # is the caller's own when it has one (a notebook, a test).
    stream = distributed.as_completed(loop=client.loop)
    libraries = library_versions(job.recipe.resampler)

    def submit() -> bool:
        batch = retry.pop() if retry else next(batches, None)
        if batch is None:
            return False
        future = client.submit(run_batch, job, batch, __version__, libraries, pure=False)
        if not running:
            alone.add(future)
        running[future] = batch
        stream.add(future)
        return True

    def window() -> int:
        # Suspects of a worker's death run alone, so a death convicts only its own source
        # (a worker runs several tasks at once, and they all die with it).
        return 1 if retry else 2 * slots()

    try:
        while len(running) < window() and submit():
            pass
        for future in stream:
            batch = running.pop(future)
            if future.status == "finished":
                yield from future.result()
            else:
                yield from _failed(distributed, future, batch, retry, future in alone)
            alone.discard(future)
            while len(running) < window() and submit():
                pass
    finally:
        for future in running:
            future.cancel()


def _failed(
    distributed: Any,
    future: Any,
    batch: Sequence[Task],
    retry: list[Sequence[Task]],
    ran_alone: bool,
) -> Iterator[Result]:
    """Handle a batch Dask gave up on: split it, or report its one source as an error once it
    has killed a worker while running alone."""
    if future.status == "cancelled":
        raise EngineError("Dask cancelled a task (was the scheduler restarted or shut down?)")
    exc = future.exception()
    if not isinstance(exc, distributed.KilledWorker):
        raise EngineError(
            f"a Dask task failed: {type(exc).__name__}: {exc} (every worker needs the same "
            "augctl and libraries installed, and IN and OUT at the same paths as this machine)"
        )
    if len(batch) > 1 or not ran_alone:
        retry.extend([task] for task in batch)
        return
    yield Result(batch[0], error="a Dask worker process died each time it processed this image")
