"""Running tasks: the per-source worker function (never raises) and the local process pool."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import errno
import functools
import hashlib
import itertools
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from . import __version__, dataset, images, pipeline, plan
from .errors import EngineError, SourceError, UsageError
from .ops import REGISTRY, resample
from .ops.base import Partners
from .plan import Task
from .pool import start_server, stop_signals_held
from .recipe import Recipe

# A source whose task was running when a worker died this many times is given up on.
MAX_WORKER_DEATHS = 2
# Variants 1..PROBE_VARIANTS of a source decide the JPEG draft scale it is decoded at once.
PROBE_VARIANTS = 8
# The shortest side a reduced-scale decode may leave (see decode_scales).
MIN_DRAFT_SIDE = 64


@dataclass(frozen=True)
class Job:
    """What every task of a run shares; sent to each worker once."""

    recipe: Recipe
    input_dir: str
    output_dir: str
    classes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # for mixing ops only

    def partners(self, source_rel: str, cls: str, fmt: str) -> Partners | None:
        """The mixing partners of one source (None when the recipe doesn't mix)."""
        if not self.classes:
            return None
        load = partner_loader(self.input_dir, self.recipe, images.keeps_alpha(fmt))
        return Partners(self.classes.get(cls, ()), source_rel, load)


@dataclass
class Result:
    """What a worker returns for one task: manifest rows, or why the source was skipped.

    `fatal` marks failures of the output side (disk full, permissions), which stop the run.
    """

    task: Task
    rows: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    fatal: bool = False


def library_versions(resampler: str = "pillow") -> dict[str, str]:
    """The versions of the libraries that decide output bytes (recorded in run.json)."""
    import PIL

    versions = {"pillow": PIL.__version__, "numpy": np.__version__}
    if resampler == "opencv":
        versions["opencv"] = _opencv_version()
    return versions


def _opencv_version() -> str:
    """cv2.__version__; an OpenCV that is missing or can't load is a UsageError saying why."""
    try:
        import cv2
    except ImportError as exc:  # a missing libGL, a half-uninstalled wheel
        raise UsageError(
            f"the recipe's resampler is opencv, but OpenCV can't be imported ({exc}); "
            "pip install 'augctl[opencv]'"
        ) from None
    return cv2.__version__


def rng_for(seed: int) -> np.random.Generator:
    """The generator of one variant (PCG64 seeded through SeedSequence)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))


@dataclass
class Loaded:
    """A decoded source with what its outputs need from the file."""

    image: Image.Image
    sha256: str
    meta: images.Metadata
    data: bytes | None  # kept only while a byte-for-byte copy may still be written


def load_source(path: str, recipe: Recipe, fmt: str, scale: int = 1) -> Loaded:
    """Decode a source as every variant of it sees it.

    `scale` is the JPEG draft scale a row's leading decode entry records (1: full size).
    """
    return decoded(images.read_source(path, recipe.max_pixels), recipe, fmt, scale)


def decoded(
    data: bytes, recipe: Recipe, fmt: str, scale: int = 1, header: images.Header | None = None
) -> Loaded:
    """A source's bytes decoded at 1/`scale` (`header` from `images.read_header`, if at hand)."""
    keep_alpha = images.keeps_alpha(fmt)
    image = images.decode(
        data,
        max_pixels=recipe.max_pixels,
        keep_alpha=keep_alpha,
        background=recipe.background,
        scale=scale,
        header=header,
    )
    meta = images.read_metadata(data, keep_alpha)
    copyable = recipe.format == "same" and meta.pristine and meta.format == fmt and scale == 1
    return Loaded(image, hashlib.sha256(data).hexdigest(), meta, data if copyable else None)


def render(
    source: Loaded,
    applied: list[dict[str, Any]],
    fmt: str,
    recipe: Recipe,
    partners: Partners | None = None,
) -> tuple[Image.Image, bytes]:
    """Run recorded ops on a decoded source and encode the result: the one path to output bytes.

    An original (no ops) in `same` format whose decoding changed nothing is the source's
    own bytes, unless metadata the recipe strips would come along.
    """
    out = pipeline.run(source.image, applied, partners, recipe.resampler)
    meta = source.meta
    keeps_all_metadata = (recipe.icc == "keep" or not meta.icc) and (
        recipe.exif == "keep" or not meta.has_exif
    )
    if not applied and source.data is not None and keeps_all_metadata:
        return out, source.data
    data = images.encode(
        out,
        fmt,
        recipe.quality,
        compress_level=recipe.compress_level,
        lossless=recipe.lossless,
        subsampling=recipe.subsampling,
        icc=meta.icc if recipe.icc == "keep" else None,
        exif=meta.exif if recipe.exif == "keep" else None,
    )
    return out, data


@functools.lru_cache(maxsize=8)  # per worker: a partner is not decoded again and again
def _decoded_partner(path: str, max_pixels: int, keep_alpha: bool, background: Any) -> Image.Image:
    data = images.read_source(path, max_pixels)
    return images.decode(data, max_pixels=max_pixels, keep_alpha=keep_alpha, background=background)


def partner_loader(root: str, recipe: Recipe, keep_alpha: bool) -> Callable[[str], Image.Image]:
    """Decode partner images (by path relative to `root`) as sources are decoded."""
    background = (
        tuple(recipe.background) if isinstance(recipe.background, list) else recipe.background
    )

    def load(rel: str) -> Image.Image:
        path = dataset.locate(root, rel)
        try:
            return _decoded_partner(path, recipe.max_pixels, keep_alpha, background)
        except SourceError as exc:
            raise SourceError(f"mixing partner {rel}: {exc}") from None

    return load


def readable_partners(
    applied: list[dict[str, Any]], partners: Partners | None
) -> list[dict[str, Any]]:
    """Mixing steps whose partner can't be decoded mix nothing, and are recorded so.

    A corrupt file in a class is that file's error, not every source that drew it.
    """
    if partners is None:
        return applied
    out = []
    for entry in applied:
        if entry.get("partner") is not None:
            try:
                partners.load(entry["partner"])
            except SourceError:
                entry = {**entry, "partner": None, "lam": 1.0}
                if "box" in entry:
                    entry["box"] = [0, 0, 0, 0]
        out.append(entry)
    return out


def decode_scales(
    recipe: Recipe,
    rel: str,
    header: images.Header,
    sampled: dict[int, list[dict[str, Any]]],
    partners: Partners | None = None,
) -> dict[int, int]:
    """The JPEG draft scale of each variant in `sampled` (variant index -> applied ops).

    A source is decoded once at the coarsest scale that gives variants 1..PROBE_VARIANTS all
    the pixels they need; a variant that needs more gets its own, finer decode. So a variant's
    scale depends on its source, its own ops and the recipe only, never on how many variants
    were planned or which of them are still to do.
    """
    if not header.draftable:
        return dict.fromkeys(sampled, 1)
    need: dict[int, int] = {}

    def needs(index: int) -> int:
        if index not in need:
            if index in sampled:
                ops = sampled[index]
            else:
                rng = rng_for(plan.variant_seed(recipe.seed, rel, index))
                ops = pipeline.sample(recipe.pipeline, rng, header.size, partners)
            need[index] = pipeline.draft_scale(ops, header.size)
        return need[index]

    common = pipeline.DRAFT_SCALES[0]
    for index in range(1, PROBE_VARIANTS + 1):
        common = min(common, needs(index))
        if common == 1:  # a full decode for all: no other variant's need matters
            return dict.fromkeys(sampled, 1)
    # A reduced image covers whole blocks of `s` pixels, so its last row and column reach up
    # to s - 1 pixels past the picture: at most one output pixel, unless the image is so
    # thin that one pixel is much of it. Scales that leave a side under MIN_DRAFT_SIDE pixels
    # are not used (and a side shorter than the scale would decode to nothing).
    cap = next(
        s for s in pipeline.DRAFT_SCALES if s == 1 or min(header.stored) >= MIN_DRAFT_SIDE * s
    )
    return {i: min(common, needs(i), cap) for i in sampled}


def check_sizes(
    size: tuple[int, int], sampled: dict[int, list[dict[str, Any]]], limit: int
) -> None:
    """Refuse variants whose ops would grow an image past input.max_pixels (pad, resize,
    scale): the output side gets the same guard as the input side, before any pixel."""
    for applied in sampled.values():
        w, h = size
        for entry in applied:
            params = {k: v for k, v in entry.items() if k != "op"}
            w, h = REGISTRY[entry["op"]].size_after((w, h), params)
            if w * h > limit:
                raise SourceError(
                    f"the recipe would make a {w}x{h} image from it ({entry['op']}), "
                    f"more than input.max_pixels ({limit:,})"
                )


def run_task(job: Job, task: Task) -> Result:
    """Decode one source once (per draft scale), write all its variants, return their rows."""
    # Pillow's and numpy's warnings ("Corrupt EXIF data", "invalid value") name no file and
    # would interleave on the terminal; what matters about a source is in its result.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _run_task(job, task)


def _run_task(job: Job, task: Task) -> Result:
    recipe = job.recipe
    result = Result(task)
    try:
        data = images.read_source(task.source.path, recipe.max_pixels)
        header = images.read_header(data, max_pixels=recipe.max_pixels)
        partners = job.partners(task.source.rel, task.source.cls, task.fmt)
        sampled = {
            v.index: readable_partners(
                pipeline.sample(recipe.pipeline, rng_for(v.seed), header.size, partners), partners
            )
            if v.index
            else []
            for v in task.variants
        }
        check_sizes(header.size, sampled, recipe.max_pixels)
        scales = decode_scales(recipe, task.source.rel, header, sampled, partners)
        recipe_sha = recipe.sha256  # a property that hashes the whole recipe: once per task
        rows: dict[int, dict[str, Any]] = {}
        for scale in sorted(set(scales.values()), reverse=True):
            source = decoded(data, recipe, task.fmt, scale, header)
            entry = (
                [pipeline.decode_entry(scale, header.size, images.draft_origin(header, scale))]
                if scale > 1
                else []
            )
            # Nothing changes a decoded source while its variants are made from it.
            with resample.pixels_reused(source.image):
                for variant in task.variants:
                    if scales[variant.index] != scale:
                        continue
                    applied = entry + sampled[variant.index]
                    out, encoded = render(source, applied, task.fmt, recipe, partners)
                    try:
                        images.write_atomic(os.path.join(job.output_dir, variant.out_rel), encoded)
                    except OSError as exc:
                        result.rows = [rows[i] for i in sorted(rows)]
                        result.error = f"cannot write {variant.out_rel}: {exc.strerror or exc}"
                        result.fatal = True
                        return result
                    rows[variant.index] = {
                        "output_path": variant.out_rel,
                        "source_path": task.source.rel,
                        "class": task.source.cls,
                        "variant": variant.index,
                        "seed": variant.seed,
                        "ops": json.dumps(applied, separators=(",", ":"), ensure_ascii=False),
                        "width": out.width,
                        "height": out.height,
                        "source_sha256": source.sha256,
                        "output_sha256": hashlib.sha256(encoded).hexdigest(),
                        "recipe_sha256": recipe_sha,
                        "augctl_version": __version__,
                    }
            del source
        result.rows = [rows[i] for i in sorted(rows)]
    except SourceError as exc:
        result.rows, result.error = [], str(exc)
    except MemoryError:
        result.rows, result.error = [], "out of memory while processing this image"
    except Exception as exc:  # a worker never raises: one bad file must not end the run
        result.rows, result.error = [], _failure(exc)
    return result


def _failure(exc: BaseException) -> str:
    """The errors.csv reason for an unexpected exception while making a source's outputs."""
    return f"failed while augmenting: {type(exc).__name__}: {exc}"


# --- the local process pool ------------------------------------------------------

_JOB: Job | None = None

NOT_STARTED = (
    "the worker processes exited before they could start (their error is above). From a "
    'Python script, call augctl.expand under `if __name__ == "__main__":`: each worker '
    "re-imports the script, as multiprocessing's spawn and forkserver do"
)
# Pools in a row whose workers were all killed (by a signal) before they started, and the
# pause (seconds, times the count) before the next try.
MAX_KILLED_STARTS = 3
KILLED_START_PAUSE = 0.25


def _init_worker(job: Job, started: Any, umask: int) -> None:
    global _JOB
    _JOB = job
    # A fork server's workers inherit the umask it started with, not the caller's today.
    os.umask(umask)
    if job.recipe.resampler == "opencv":
        import cv2

        # The pool is the parallelism: OpenCV's own threads would only contend with it.
        cv2.setNumThreads(1)
    started.set()
    # Ctrl-C is the parent's to handle: it stops the pool and keeps what is recorded.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A parent killed outright (kill -9, the OOM killer) can't stop its workers, and they
    # would wait for work forever: each leaves on its own once its parent is gone.
    threading.Thread(target=_exit_when_orphaned, daemon=True).start()


def _exit_when_orphaned() -> None:
    parent = multiprocessing.parent_process()
    if parent is not None:
        parent.join()  # returns when the parent's end of its pipe closes: the parent is gone
    os._exit(1)


def _run_in_worker(task: Task) -> Result:
    assert _JOB is not None
    return run_task(_JOB, task)


def default_workers() -> int:
    """The CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def _main_script_hidden() -> Iterator[None]:
    """Keep workers from re-running the caller's main script where it can't be, or needn't be.

    Spawn and the fork server re-run the parent's main script in each worker. One read
    from stdin or `python -c` has no file to re-run, so every worker would die at start;
    augctl's own console script only runs the CLI, and would import click and the CLI into
    every worker for nothing.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is None or (os.path.isfile(path) and not _is_augctl_script(main)):
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


def _is_augctl_script(main: Any) -> bool:
    """Whether the main module is augctl's console script: a wrapper that imports the CLI's
    `run` and nothing else (one that also sets something up, say a Pillow plugin, is the
    caller's own script, and workers re-run it)."""
    cli = sys.modules.get("augctl.cli")
    names = {name for name in vars(main) if not name.startswith("__")}
    return cli is not None and getattr(main, "run", None) is cli.run and names <= _WRAPPER_NAMES


# The globals of the console scripts pip, uv and distlib write: `import re, sys` (or just
# sys), `from augctl.cli import run`.
_WRAPPER_NAMES = frozenset({"re", "run", "sys"})


def run_local(job: Job, tasks: Iterable[Task], workers: int) -> Iterator[Result]:
    """Run tasks in a process pool (`pool_context`), yielding results as they finish.

    A bounded number of tasks is in flight, so memory stays flat. If a worker dies
    (OOM killer, a crash in a decoder) the pool is rebuilt and the tasks that were in
    flight are retried one at a time; one that kills its worker again is reported as
    an error instead of ending the run.
    """
    todo = iter(tasks)
    # A pool starts its workers as tasks come, so no more of them than there are tasks.
    first = list(itertools.islice(todo, workers))
    if not first:
        return
    _check_open_file_limit(len(first))
    with _main_script_hidden():
        yield from _run_pool(job, itertools.chain(first, todo), workers)


# Files a pool opens beyond those already open: measured 12 + 2 per worker (pools of 1-20
# on Linux, the fork server not yet started); the fixed part asked for with a margin.
POOL_FILES = 16
FILES_PER_WORKER = 2


def _check_open_file_limit(workers: int) -> None:
    """Refuse, before it starts, a pool the open-file limit (ulimit -n) can't hold: Python's
    pool and fork server, out of descriptors while a worker starts, leak some and print
    tracebacks. Where open files can't be counted (no /proc or /dev/fd), nothing is checked."""
    try:
        import resource
    except ImportError:
        return
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    for listing in ("/proc/self/fd", "/dev/fd"):
        try:
            in_use = len(os.listdir(listing))
            break
        except OSError:
            continue
    else:
        return
    need = in_use + POOL_FILES + FILES_PER_WORKER * workers
    if soft != resource.RLIM_INFINITY and soft < need:
        raise EngineError(
            f"the open-file limit (ulimit -n) is {soft}, with {in_use} files open: "
            f"{workers} worker(s) need about {need}; raise it, or use fewer workers"
        )


def _run_pool(job: Job, tasks: Iterable[Task], workers: int) -> Iterator[Result]:
    todo = iter(tasks)
    again: list[Task] = []  # not finished when the pool broke, through no fault of theirs
    suspects: list[Task] = []  # in flight when a worker died: retried alone
    deaths: dict[str, int] = {}
    killed_starts = 0
    while True:
        # Suspects run one at a time in a pool of one, so a death is theirs alone.
        alone = bool(suspects)
        size, window = (1, 1) if alone else (workers, max(2, workers * 4))
        try:
            # (Re)started here, not on demand by multiprocessing: see start_server.
            ctx = start_server(job.recipe.resampler)
            # Set by the first worker that starts: a pool that breaks before it is set
            # failed to start at all (a caller's unguarded script, a worker killed as it
            # started).
            started = ctx.Event()
            pool = cf.ProcessPoolExecutor(
                size, mp_context=ctx, initializer=_init_worker, initargs=(job, started, _umask())
            )
        except OSError as exc:  # out of descriptors, no /dev/shm for its locks
            raise EngineError(f"cannot start the worker pool: {exc}") from None
        running: dict[cf.Future, Task] = {}
        procs: dict[int, Any] = {}  # kept here: a broken pool may forget its processes
        finished = crashed = ended = False
        try:
            while not crashed:
                while len(running) < window and not (alone and not suspects):
                    queue = suspects or again
                    task = queue.pop(0) if queue else next(todo, None)
                    if task is None:
                        break
                    try:
                        with stop_signals_held():  # a worker may start here
                            future = pool.submit(_run_in_worker, task)
                        running[future] = task
                    # A worker died since the last wait; or the fork server died as a worker
                    # was being started: a killed start, as below.
                    except (cf.process.BrokenProcessPool, EOFError, OSError) as exc:
                        if isinstance(exc, OSError) and exc.errno in _OUT_OF_RESOURCES:
                            raise EngineError(f"cannot start a worker process: {exc}") from None
                        (suspects if queue is suspects else again).insert(0, task)
                        crashed = True
                        break
                    finally:  # a worker started, even if Ctrl-C came as it did, is stopped
                        procs.update(pool._processes or {})
                if crashed:
                    break
                if not running:
                    finished = not alone  # suspects cleared: on with a full pool
                    break
                done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    error = future.exception()
                    if isinstance(error, cf.process.BrokenProcessPool):
                        crashed = True
                        continue
                    task = running.pop(future)
                    if error is None:
                        yield future.result()
                    else:  # raised past run_task (SystemExit, a result that can't be pickled)
                        yield Result(task, error=_failure(error))
            ended = True
        finally:
            with stop_signals_held():  # a second Ctrl-C must not leave a worker writing
                if not ended or crashed:  # stopped early or broken: no worker writes after this
                    _stop(procs.values())
                # A broken pool's own thread is joining its workers: wait for it, so that
                # their exit codes (read below) have one reader.
                pool.shutdown(wait=ended, cancel_futures=True)
        if finished:
            return
        if not crashed:
            continue
        lost = [task for future, task in running.items() if not _succeeded(future)]
        yield from (future.result() for future in running if _succeeded(future))
        if not started.is_set():
            # An error in Python (exit code 1), the same every time. 255 is a fork server's
            # worker whose exit code the server could not report: the server was killed.
            if any(0 < (p.exitcode or 0) < 255 for p in procs.values()):
                raise EngineError(NOT_STARTED)
            killed_starts += 1
            if killed_starts >= MAX_KILLED_STARTS:
                raise EngineError(
                    f"the worker processes were killed as they started, {killed_starts} "
                    "times in a row (out of memory?)"
                )
            (suspects if alone else again)[:0] = lost
            # The fork server may be the cause: killed, or ending after a start that failed
            # mid-request (Python's server exits then). Once it is gone, the next pool's
            # start_server starts a new one; one still there is left alone (it may serve
            # the caller's own processes too).
            time.sleep(KILLED_START_PAUSE * killed_starts)
            continue
        killed_starts = 0
        for task in lost:
            deaths[task.source.rel] = deaths.get(task.source.rel, 0) + 1
            if deaths[task.source.rel] >= MAX_WORKER_DEATHS:
                yield Result(
                    task, error="the worker process died while processing this image (twice)"
                )
            else:
                suspects.append(task)


# A worker's start that fails with these is the caller's to see; any other failure (the
# fork server gone or going, the broken pool's pipes closed as they were being sent) is
# a killed start, tried again.
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN)


def _stop(procs: Iterable[Any], timeout: float = 5.0) -> None:
    """Stop worker processes: SIGTERM, then SIGKILL for any still there after `timeout`.

    Waits on their sentinels rather than joining: a fork server's worker reports its exit
    code once, on the sentinel, and a broken pool's thread may be joining it meanwhile.
    """
    procs = list(procs)
    for stop in ("terminate", "kill"):
        for proc in procs:
            getattr(proc, stop)()
        pending = {proc.sentinel: proc for proc in procs}
        deadline = time.monotonic() + timeout
        while pending and (left := deadline - time.monotonic()) > 0:
            for ready in multiprocessing.connection.wait(list(pending), timeout=left):
                del pending[ready]
        procs = list(pending.values())
        if not procs:
            return


def _umask() -> int:
    """This process's umask, read without changing it where Linux shows it."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere the only way to read it is to set it
    os.umask(mask)
    return mask


def _succeeded(future: cf.Future) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None
