"""The local pool's start method: a fork server that imports numpy and Pillow once (this
module imports neither, so the CLI can start the server before it imports them itself)."""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.context
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

# What the fork server imports once for every worker it forks: the libraries augctl's
# workers use, the image plugins Pillow loads on its first open (and WebP, a default
# extension, which would otherwise make Pillow load every plugin; TIFF, which reads EXIF),
# and the standard modules augctl and the worker's own loop use. A test checks that a worker
# imports nothing else after its fork, except numpy.random: importing it seeds numpy's
# global generator, which every fork would then share, the caller's own forkserver pools'
# workers too (augctl never uses it; their code may).
# Not augctl itself: the server finds modules on a fresh interpreter's sys.path, and a
# caller may run another augctl (a checkout put first on sys.path); each worker imports
# augctl after it has taken its parent's sys.path, as a spawned one does.
PRELOAD = (
    "numpy",
    "yaml",
    "PIL.Image",
    "PIL.ImageEnhance",
    "PIL.ImageFilter",
    "PIL.ImageOps",
    "PIL.ImageStat",
    "PIL.BmpImagePlugin",
    "PIL.GifImagePlugin",
    "PIL.JpegImagePlugin",
    "PIL.PngImagePlugin",
    "PIL.PpmImagePlugin",
    "PIL.TiffImagePlugin",
    "PIL.WebPImagePlugin",
    "concurrent.futures.process",
    "multiprocessing.popen_forkserver",
    "multiprocessing.synchronize",
    "dataclasses",
    "hashlib",
    "json",
    "pathlib",
    "secrets",
    "unicodedata",
)

# The numeric libraries' own thread pools, limited to one thread by `augctl expand` for
# itself, and so for its fork server and workers: the pool is the parallelism. (numpy's
# OpenBLAS otherwise starts a thread per core as the server imports numpy, which spins for
# about 0.1 s of CPU doing nothing.) A library caller's environment is its own: the server
# of `augctl.expand` starts with it as it is, and it serves the caller's other pools too.
THREAD_LIMITS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def limit_threads() -> None:
    """Set THREAD_LIMITS to one thread where unset, for this process and all it starts (the
    CLI calls it before it imports numpy, whose linear algebra it never uses)."""
    for name in THREAD_LIMITS:
        os.environ.setdefault(name, "1")


def pool_context(resampler: str = "pillow") -> multiprocessing.context.BaseContext:
    """The start method of the local pool: a fork server where the platform has one, else spawn.

    The server is started like a spawned worker (a new interpreter, none of the caller's
    threads) and imports numpy, Pillow and, for an opencv recipe, OpenCV once; every worker
    is then forked from it. So a pool of N costs one interpreter start-up, not N, and a pool
    rebuilt after a worker's death starts in milliseconds. One server serves the whole
    process: one already running (augctl's or anyone's) is reused as it is, and a preload
    the caller set is kept, with augctl's modules added.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    from multiprocessing import forkserver

    ctx = multiprocessing.get_context("forkserver")
    ours = [*PRELOAD, *(["cv2"] if resampler == "opencv" else [])]
    # The default preload is ['__main__'], which would run the caller's script in the
    # server (an unguarded one would start augctl there): replaced, any other is extended.
    theirs = getattr(forkserver._forkserver, "_preload_modules", None) or []
    theirs = [] if theirs == ["__main__"] else [m for m in theirs if m not in ours]
    ctx.set_forkserver_preload([*theirs, *ours])
    return ctx


def start_server(resampler: str = "pillow") -> multiprocessing.context.BaseContext:
    """The pool's context (`pool_context`), its fork server started now if it isn't running.

    The CLI calls it first thing, so the server imports numpy and Pillow while the CLI does
    too and plans. The server is started with SIGINT blocked, and keeps it so: Ctrl-C is
    the parent's to handle, and a server interrupted in its imports would print a traceback.
    """
    ctx = pool_context(resampler)
    if ctx.get_start_method() == "forkserver":
        from multiprocessing import forkserver, resource_tracker

        # The server's start starts the resource tracker first, which unblocks SIGINT as it
        # starts; started beforehand, it leaves the mask alone.
        resource_tracker.ensure_running()
        # Blocked in this thread for the fork only: a Ctrl-C meanwhile arrives right after.
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            forkserver.ensure_running()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return ctx


# Signals whose Python handler stops a run (Ctrl-C's KeyboardInterrupt; the CLI's SIGTERM).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_signals_held() -> Iterator[None]:
    """Run the block whole, then act on any SIGINT or SIGTERM that came meanwhile.

    For what a stop must not cut short: starting a worker (the pool waits for the fork
    server to report its pid; a KeyboardInterrupt there loses the pid, and the worker, never
    stopped, goes on to read the pool's semaphores after the run has released them: a
    traceback on the terminal), and a run's own stop. Holds nest. Only Python handlers are
    held: a default action or an ignored signal is left as it is, and so is a caller outside
    the main thread, which Python's handlers never interrupt.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: dict[int, Any] = {}
    caught: list[tuple[int, Any]] = []
    over = [False]

    def record(signum: int, frame: Any) -> None:
        if over[0]:  # left installed by a restore that a signal cut short: the original
            held[signum](signum, frame)
        else:
            caught.append((signum, frame))

    try:
        for signum in STOP_SIGNALS:
            previous = signal.getsignal(signum)
            if callable(previous):
                held[signum] = previous  # first: restored even if the swap is cut short
                signal.signal(signum, record)
        yield
    finally:
        over[0] = True
        # signal.signal() first runs the handler of a signal that is pending: one restored
        # already may raise there, and every handler must be put back all the same.
        raised: list[BaseException] = []
        for signum, previous in held.items():
            while signal.getsignal(signum) is not previous:
                try:
                    signal.signal(signum, previous)
                except BaseException as exc:
                    raised.append(exc)
        for signum, frame in caught:
            held[signum](signum, frame)
        if raised:
            raise raised[0]
