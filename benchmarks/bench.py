"""Benchmark augctl against the decode+encode floor, plus start-up and planning checks.

    python benchmarks/bench.py [--corpus bench-data] [--quick]

Builds the corpora first if they are missing (``make_corpus.py``). For each corpus
(``imagenet``, ``large``) and each worker count, it times, interleaved and ``--repeats``
times each (each repeat starting with another kind; medians are printed, and each ratio is
the median of the repeats' own ratios, one run against the floor run of its repeat):

* the floor: every source read and decoded once, then encoded ``N`` times unchanged as
  JPEG q90 and written to a file, in the same kind of process pool as augctl (a fork
  server that has imported what the task needs, one task per source, the same bounded
  window of tasks in flight);
* augctl: the real ``augctl.expand`` with ``configs/benchmark.yaml`` (``N`` = its variants);
* augctl+opencv: the same recipe with ``resampler: opencv`` (the ``opencv`` extra; skipped,
  and printed as ``-``, where OpenCV is not installed).

Each timed run is its own subprocess, so the peak RSS of its pool workers is
``getrusage(RUSAGE_CHILDREN).ru_maxrss`` there (the fork server is stopped first, so its
workers count), and their CPU time (user and kernel, printed per source image beside the
parent's) comes from the same call; and how long each run took to finish its first source,
and its rate from then on (the start-up, and the steady state, the ratio of which to the
floor's a longer run would approach). Then ``augctl --help`` wall time (median of 7), the
start-up of a pool of one (spawned: bare, importing numpy, importing ``augctl.execute``;
augctl's own: with its fork server starting, and with it running) and walking + planning
100,000 generated empty files. ``--quick`` is
a smoke run (tiny corpus, one repeat, 2,000 files): it checks the script works, not the
numbers.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime
import importlib.util
import io
import json
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPE = REPO_ROOT / "configs" / "benchmark.yaml"
CORPORA = ("imagenet", "large")
QUALITY = 90


def _env() -> dict[str, str]:
    """The environment for child processes: this checkout's augctl first on the path.

    Bytecode is cached (in the checkout's __pycache__ folders), as it is for an installed
    package, even where PYTHONDONTWRITEBYTECODE is set: otherwise every pool worker would
    compile augctl anew while Pillow and numpy load compiled.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _warm_up() -> None:
    """Compile (and cache) what the timed children import, before any timing."""
    imports = "import augctl.cli, augctl.execute, augctl.api, concurrent.futures.process"
    subprocess.run([sys.executable, "-c", imports], check=True, env=_env())


def _child(*args: str, script: str = __file__) -> dict[str, Any]:
    """Run a script's `_run` mode in a fresh interpreter; returns its JSON report."""
    proc = subprocess.run(
        [sys.executable, script, "_run", *args],
        capture_output=True,
        text=True,
        env=_env(),
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child {args} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- the floor: decode once, encode N times unchanged -----------------------------


def _floor_task(src: str, dest_stem: str, n: int) -> int:
    from PIL import Image

    with open(src, "rb") as f:
        data = f.read()
    image = Image.open(io.BytesIO(data))
    image.load()
    for k in range(1, n + 1):
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=QUALITY)
        with open(f"{dest_stem}_floor{k:03d}.jpg", "wb") as f:
            f.write(buf.getvalue())
    return n


def pool_context(preload: Sequence[str]) -> Any:
    """A pool context as augctl's (`augctl.pool.pool_context`): a fork server that has
    imported `preload`, or spawn where there is none."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(preload))
    return ctx


def stop_fork_server() -> None:
    """Stop this process's fork server, if any, and reap it: only then do the workers it
    forked count in getrusage(RUSAGE_CHILDREN)."""
    from multiprocessing import forkserver

    stop = getattr(forkserver._forkserver, "_stop", None)  # private; Python 3.8+
    if stop is not None:
        stop()


def pool_run(
    task: Callable[[str, str, int], int],
    corpus: Path,
    out: Path,
    workers: int,
    n: int,
    preload: Sequence[str] = (),
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Run `task(source, dest_stem, n)` over a corpus in augctl's pool shape; returns sources.

    `progress(done, total)` is called as each source finishes, as `augctl.expand` calls it.
    """
    jobs = []
    for cls in sorted(p for p in corpus.iterdir() if p.is_dir()):
        (out / cls.name).mkdir(parents=True, exist_ok=True)
        for src in sorted(cls.iterdir()):
            jobs.append((str(src), str(out / cls.name / src.stem)))
    ctx = pool_context(preload)
    window = max(2, workers * 4)  # as augctl.execute.run_local
    done = 0
    todo = iter(jobs)
    with cf.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        running: set[cf.Future] = set()
        while True:
            while len(running) < window:
                job = next(todo, None)
                if job is None:
                    break
                running.add(pool.submit(task, *job, n))
            if not running:
                return done
            finished, running = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for future in finished:
                future.result()
                done += 1
                if progress:
                    progress(done, len(jobs))


TASKS: dict[str, Callable[[str, str, int], int]] = {"floor": _floor_task}
# What each kind's fork server imports, as augctl's imports numpy and Pillow's plugins.
PRELOAD: dict[str, tuple[str, ...]] = {"floor": ("PIL.Image", "PIL.JpegImagePlugin")}


def _run(kind: str, corpus: str, out: str, workers: int) -> dict[str, Any]:
    """One timed run in this process (called in a child); prints nothing itself."""
    sys.path.insert(0, str(REPO_ROOT))
    import augctl

    recipe = augctl.load_recipe(RECIPE)
    if kind == "augctl+opencv":
        recipe = recipe.replace(resampler="opencv")
    shutil.rmtree(out, ignore_errors=True)
    finished: list[float] = []  # when each source's outputs were all written

    def progress(done: int, total: int) -> None:
        finished.append(time.perf_counter())

    parent = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    if kind.startswith("augctl"):
        images = augctl.expand(corpus, out, recipe, workers=workers, progress=progress).processed
    else:
        task = TASKS[kind]
        images = pool_run(
            task,
            Path(corpus),
            Path(out),
            workers,
            recipe.variants,
            PRELOAD.get(kind, ()),
            progress,
        )
    seconds = time.perf_counter() - started
    stop_fork_server()
    after = resource.getrusage(resource.RUSAGE_SELF)
    shutil.rmtree(out, ignore_errors=True)
    pool = resource.getrusage(resource.RUSAGE_CHILDREN)  # the pool's workers, all ended
    return {
        "images": images,
        "seconds": seconds,
        "first": finished[0] - started,
        # sources per second from the first finished source to the last
        "after_first": (len(finished) - 1) / (finished[-1] - finished[0])
        if len(finished) > 1 and finished[-1] > finished[0]
        else float("nan"),
        "worker_rss_mb": pool.ru_maxrss / 1024,
        "worker_user": pool.ru_utime,
        "worker_sys": pool.ru_stime,
        "parent_cpu": after.ru_utime + after.ru_stime - parent.ru_utime - parent.ru_stime,
    }


# --- start-up and planning ---------------------------------------------------------


def _median_seconds(action: Callable[[], object], runs: int) -> float:
    """Median wall time of `runs` calls of `action`."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        action()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def startup_seconds(runs: int = 7) -> tuple[float, float]:
    """Median wall time of `augctl --help`, and of a bare interpreter for reference."""

    def median_of(cmd: list[str]) -> float:
        return _median_seconds(
            lambda: subprocess.run(cmd, capture_output=True, env=_env(), check=True), runs
        )

    return median_of([sys.executable, "-m", "augctl", "--help"]), median_of(
        [sys.executable, "-c", "pass"]
    )


def _import(module: str) -> None:
    sys.path.insert(0, str(REPO_ROOT))  # this checkout's augctl, as in the timed children
    if module:
        __import__(module)


def worker_startup_seconds(module: str, runs: int = 5) -> float:
    """Median wall time for a spawn pool of one, its worker importing `module`, to run a no-op."""
    ctx = multiprocessing.get_context("spawn")

    def start_and_stop() -> None:
        with cf.ProcessPoolExecutor(
            1, mp_context=ctx, initializer=_import, initargs=(module,)
        ) as pool:
            pool.submit(int).result()

    return _median_seconds(start_and_stop, runs)


def _augctl_pool_startup() -> dict[str, float]:
    """A pool of one in augctl's context running a no-op from augctl.execute (so its worker
    imports augctl, as a real one does): with its fork server starting (cold), then again
    with the server running (warm). Called in a child."""
    sys.path.insert(0, str(REPO_ROOT))
    from augctl.execute import default_workers
    from augctl.pool import pool_context

    def start_and_stop() -> float:
        t0 = time.perf_counter()
        with cf.ProcessPoolExecutor(1, mp_context=pool_context()) as pool:
            pool.submit(default_workers).result()
        return time.perf_counter() - t0

    return {"cold": start_and_stop(), "warm": start_and_stop()}


def make_empty_tree(root: Path, files: int, classes: int = 100) -> Path:
    """`root/cNNN/img_NNNNNN.jpg`, empty files (kept and reused if already complete)."""
    marker = root / f".complete-{files}"
    if marker.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    for i in range(files):
        cls = root / f"c{i % classes:03d}"
        if i < classes:
            cls.mkdir(parents=True)
        (cls / f"img_{i:06d}.jpg").touch()
    marker.touch()
    return root


def _plan(tree: str) -> dict[str, Any]:
    """Walk and plan `tree` with the benchmark recipe (called in a child)."""
    sys.path.insert(0, str(REPO_ROOT))
    from augctl import dataset, plan
    from augctl.recipe import load_recipe

    recipe = load_recipe(RECIPE)
    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    listing = dataset.walk(tree, recipe.extensions)
    t1 = time.perf_counter()
    tasks = plan.make_plan(listing, recipe)
    t2 = time.perf_counter()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "files": len(listing.sources),
        "outputs": sum(len(t.variants) for t in tasks),
        "walk": t1 - t0,
        "plan": t2 - t1,
        "peak_mb": peak_kb / 1024,
        "growth_mb": (peak_kb - base_kb) / 1024,
    }


# --- the report --------------------------------------------------------------------


def _ensure_corpus(corpus: Path, quick: bool) -> None:
    info = corpus / "corpus.json"
    if info.exists() and json.loads(info.read_text()).get("quick") == quick:
        return
    shutil.rmtree(corpus, ignore_errors=True)
    cmd = [sys.executable, str(Path(__file__).with_name("make_corpus.py")), str(corpus)]
    subprocess.run([*cmd, *(["--quick"] if quick else [])], check=True, env=_env())


def main(argv: list[str] | None = None) -> int:
    """Run every measurement and print the table."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_run":
        kind, *rest = argv[1:]
        if kind == "plan":
            report = _plan(rest[0])
        elif kind == "pool":
            report = _augctl_pool_startup()
        else:
            report = _run(kind, rest[0], rest[1], int(rest[2]))
        print(json.dumps(report))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=REPO_ROOT / "bench-data")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny corpus, 1 repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--only", choices=CORPORA, nargs="+", default=list(CORPORA))
    parser.add_argument("--plan-files", type=int, default=100_000)
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    plan_files = 2_000 if args.quick else args.plan_files
    corpus: Path = args.corpus
    _ensure_corpus(corpus, args.quick)
    _warm_up()
    scratch = corpus / "_out"

    lines = [
        f"augctl benchmark, {datetime.date.today().isoformat()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, Pillow {_version('pillow')}, "
        f"numpy {_version('numpy')}, {repeats} run(s) each, medians "
        "(ratios: the median of each repeat's ratio to its own floor run, and their range)"
        + (" (QUICK: smoke run, numbers mean nothing)" if args.quick else ""),
        "",
        "| corpus | images | workers | floor img/s | augctl img/s | augctl/floor "
        "| peak RSS/worker | augctl+opencv img/s | augctl+opencv/floor | peak RSS/worker |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    kinds = ["floor", "augctl"] + (["augctl+opencv"] if importlib.util.find_spec("cv2") else [])
    rates: dict[tuple[str, int], dict[str, float]] = {}
    cpu: list[str] = []
    steady: list[str] = []
    for name in args.only:
        for workers in args.workers:
            runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
            for repeat in range(repeats):
                for kind in in_turn(kinds, repeat):
                    runs[kind].append(
                        _child(kind, str(corpus / name), str(scratch / kind), str(workers))
                    )
            per_run = {k: [r["images"] / r["seconds"] for r in v] for k, v in runs.items()}
            rate = {k: statistics.median(v) for k, v in per_run.items()}
            rss = {k: max(r["worker_rss_mb"] for r in v) for k, v in runs.items()}
            rates[name, workers] = rate
            cv = rate.get("augctl+opencv")
            lines.append(
                f"| {name} | {runs['augctl'][0]['images']} | {workers} | {rate['floor']:.1f} "
                f"| {rate['augctl']:.1f} | {_paired(per_run['augctl'], per_run['floor'])} "
                f"| {rss['augctl']:.0f} MB "
                + (
                    f"| {cv:.1f} | {_paired(per_run['augctl+opencv'], per_run['floor'])} "
                    f"| {rss['augctl+opencv']:.0f} MB |"
                    if cv
                    else "| - | - | - |"
                )
            )
            print(lines[-1], file=sys.stderr, flush=True)
            cpu.append(
                f"  {name}, {workers} worker(s): "
                + "; ".join(f"{k} {_cpu(v)}" for k, v in runs.items())
            )
            after = {k: [r["after_first"] for r in v] for k, v in runs.items()}
            steady.append(
                f"  {name}, {workers} worker(s): "
                + "; ".join(
                    f"{k} {statistics.median(r['first'] for r in v):.2f} s, "
                    f"{statistics.median(after[k]):.1f} img/s"
                    + ("" if k == "floor" else f" ({_paired(after[k], after['floor'])})")
                    for k, v in runs.items()
                )
            )
    shutil.rmtree(scratch, ignore_errors=True)
    lines.append("")
    lines.append(
        "CPU per source image, ms (medians; the workers' user and kernel time, start-up "
        "included, and the parent's), less noisy than wall time:"
    )
    lines.extend(cpu)
    lines.append("")
    lines.append(
        "Start-up and steady state (medians): seconds to the first finished source, then "
        "img/s from it to the last (ratio to the floor's, paired as above):"
    )
    lines.extend(steady)
    lines.append("")
    if 1 in args.workers and 2 in args.workers:
        for name in args.only:
            one, two = rates[name, 1], rates[name, 2]
            lines.append(
                f"2 vs 1 workers, {name}: augctl {two['augctl'] / one['augctl']:.2f}x, "
                + (
                    f"augctl+opencv {two['augctl+opencv'] / one['augctl+opencv']:.2f}x, "
                    if "augctl+opencv" in one
                    else ""
                )
                + f"floor {two['floor'] / one['floor']:.2f}x"
            )
    help_s, bare_s = startup_seconds()
    lines.append(
        f"augctl --help: {help_s:.3f} s (median of 7; bare python -c pass: {bare_s:.3f} s)"
    )
    startup_runs = 1 if args.quick else 5
    bare, with_numpy, with_augctl = (
        worker_startup_seconds(m, startup_runs) for m in ("", "numpy", "augctl.execute")
    )
    lines.append(
        f"spawned worker start-up (pool of 1 to a no-op result, median of {startup_runs}): "
        f"{bare:.3f} s bare, "
        f"{with_numpy:.3f} s importing numpy, {with_augctl:.3f} s importing augctl.execute"
    )
    pools = [_child("pool") for _ in range(startup_runs)]
    cold, warm = (statistics.median(p[k] for p in pools) for k in ("cold", "warm"))
    lines.append(
        f"augctl's pool of 1 to a no-op result from augctl.execute (median of {startup_runs}): "
        f"{cold:.3f} s with "
        f"its fork server starting, {warm:.3f} s with the server running"
    )
    tree = make_empty_tree(corpus / f"_plan{plan_files}", plan_files)
    plan = _child("plan", str(tree))
    total = plan["walk"] + plan["plan"]
    lines.append(
        f"walk + plan {plan['files']:,} files ({plan['outputs']:,} outputs): {total:.2f} s "
        f"(walk {plan['walk']:.2f} s, plan {plan['plan']:.2f} s), "
        f"peak RSS {plan['peak_mb']:.0f} MB (+{plan['growth_mb']:.0f} MB for the plan)"
    )
    print("\n".join(lines))
    return 0


def in_turn(kinds: Sequence[str], repeat: int) -> list[str]:
    """The kinds in the order of a repeat: each repeat starts with the next kind, so none
    always runs first (right after the previous kind's output was deleted) or last."""
    start = repeat % len(kinds)
    return [*kinds[start:], *kinds[:start]]


def _cpu(runs: list[dict[str, Any]]) -> str:
    """Workers' user + kernel and the parent's CPU per source image, medians, in ms."""

    def per_image(key: str) -> float:
        return statistics.median(r[key] / r["images"] * 1000 for r in runs)

    return (
        f"{per_image('worker_user'):.1f} + {per_image('worker_sys'):.1f} "
        f"(parent {per_image('parent_cpu'):.1f})"
    )


def _paired(rates: list[float], floors: list[float]) -> str:
    """The median of each repeat's ratio to the floor run beside it, and their range: on a
    noisy machine a repeat's two runs share its moment, medians of each column don't."""
    ratios = sorted(r / f for r, f in zip(rates, floors))
    median = statistics.median(ratios)
    return f"{median:.2f}x" + (f" ({ratios[0]:.2f}-{ratios[-1]:.2f})" if len(ratios) > 1 else "")


def _version(dist: str) -> str:
    from importlib.metadata import version

    try:
        return version(dist)
    except Exception:
        return "?"


if __name__ == "__main__":
    raise SystemExit(main())
