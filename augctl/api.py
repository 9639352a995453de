"""The library entry point: expand() = walk -> plan -> execute -> manifest."""

from __future__ import annotations

import contextlib
import fcntl
import os
import posixpath
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from . import __version__, dataset, manifest, pipeline
from .dataset import Listing, Skipped
from .engines import Executor, get_executor
from .errors import OutputError, SourceError, UsageError
from .execute import Job, Result, check_sizes, default_workers, library_versions, rng_for
from .images import TEMP_SUFFIX, probe
from .limits import MAX_SEED, MAX_VARIANTS
from .ops import REGISTRY
from .ops.base import Partners
from .pipeline import Step, walk_steps
from .plan import Shard, Task, Variant, listing_sha256, make_plan, parse_shard
from .pool import stop_signals_held
from .recipe import Recipe, RecipeSource, load_recipe

Progress = Callable[[int, int], None]
ShardSpec = Shard | str | None

# Rough encoded bytes per output pixel of colour photos, by format (JPEG/WebP at quality 90),
# for the --dry-run size estimate. Flat graphics compress far better, noise far worse.
BYTES_PER_PIXEL = {
    "jpeg": 0.4,
    "webp": 0.3,
    "png": 2.0,
    "gif": 1.0,
    "bmp": 3.0,
    "tiff": 3.0,
}
# Beyond this many sources, the size estimate reads the headers of an evenly spaced sample.
ESTIMATE_SAMPLE = 1000


@dataclass
class Summary:
    """What a run did; `to_dict()` is what `--json` prints and run.json records."""

    input_dir: str
    output_dir: str
    recipe_sha256: str
    shard: str | None = None
    sources: int = 0
    classes: int = 0
    planned: int = 0
    written: int = 0
    already_done: int = 0
    skipped: int = 0
    seconds: float = 0.0
    per_class: dict[str, int] = field(default_factory=dict)
    sources_per_class: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    processed: int = 0

    @property
    def images_per_second(self) -> float:
        """Source images processed per second of wall time in this run."""
        return 0.0 if self.seconds <= 0 else self.processed / self.seconds

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view of the summary."""
        data = asdict(self)
        data["images_per_second"] = round(self.images_per_second, 2)
        data["seconds"] = round(self.seconds, 3)
        return data


def expand(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    recipe: RecipeSource,
    *,
    workers: int | None = None,
    variants: int | None = None,
    seed: int | None = None,
    include_originals: bool | None = None,
    only: Iterable[str] | None = None,
    overwrite: bool = False,
    on_error: str = "skip",
    allow_split_dirs: bool = False,
    progress: Progress | None = None,
    command: list[str] | None = None,
    shard: ShardSpec = None,
    executor: str | Executor = "local",
    scheduler: str | None = None,
    scheduler_file: str | None = None,
) -> Summary:
    """Write augmented variants of every image under `input_dir` into `output_dir`.

    Re-running on the same output continues an interrupted run (and does nothing when
    it is complete). A different recipe on a used output is refused unless `overwrite`.
    A source that can't be used is listed in errors.csv; with `on_error="fail"` the
    first one stops the run with SourceError instead. `only` restricts the run to some
    files of `input_dir` (paths inside it, or relative to it) with the same seeds and
    names as a full run.

    With `shard` ("K/N" or a Shard) only the sources of shard K of N are done, and the
    run's files are manifest-K-of-N.csv, errors-K-of-N.csv and run-K-of-N.json, so N
    shards can share one output directory; `merge` joins them. `executor` is "local"
    (a process pool), "dask" (with `scheduler` address or `scheduler_file`, or a local
    cluster) or an Executor function.
    """
    if on_error not in ("skip", "fail"):
        raise UsageError(f"on_error must be 'skip' or 'fail', not {on_error!r}")
    if workers is not None and not (isinstance(workers, int) and workers >= 1):
        raise UsageError(f"workers must be a positive integer, not {workers!r}")
    run = (
        executor
        if callable(executor)
        else get_executor(executor, scheduler=scheduler, scheduler_file=scheduler_file)
    )
    started = time.monotonic()
    part = _as_shard(shard)
    rec, listing, tasks, skipped, identity = _plan(
        input_dir,
        output_dir,
        recipe,
        variants=variants,
        seed=seed,
        include_originals=include_originals,
        only=only,
        allow_split_dirs=allow_split_dirs,
        shard=part,
    )
    in_dir, out_dir = os.path.abspath(input_dir), os.path.abspath(output_dir)
    libraries = library_versions(rec.resampler)  # before OUT is touched: OpenCV may not load
    if on_error == "fail" and skipped:
        raise SourceError(f"{skipped[0].rel}: {skipped[0].reason}")
    files = manifest.RunFiles.for_shard(part.suffix if part else None)
    summary = Summary(
        input_dir=str(input_dir),
        output_dir=str(output_dir),
        recipe_sha256=rec.sha256,
        shard=str(part) if part else None,
        sources=sum(1 for s in listing.sources if _in(part, s.rel)),
        classes=len(listing.classes),
        planned=sum(len(t.variants) for t in tasks),
        warnings=list(listing.warnings),
        sources_per_class=dict(
            sorted(Counter(s.cls for s in listing.sources if _in(part, s.rel)).items())
        ),
    )
    lock = _lock_output(out_dir, files.run_json)
    try:
        with _output_errors(output_dir):
            owned = None  # the files of this run: all of OUT, or a shard's own
            if part is not None:
                owned = {v.out_rel for t in tasks for v in t.variants} | set(files.names())
            recorded, old_errors = _prepare_output(
                out_dir, in_dir, rec, overwrite, files, owned, listing.classes if part else ()
            )
            walked = {s.rel for s in listing.sources} | {s.rel for s in listing.skipped}
            done, gone = _recorded_outputs(out_dir, files, walked) if recorded else (set(), None)
            run_info = {
                "augctl_version": __version__,
                "libraries": libraries,
                "status": "running",
                "command": command,
                "recipe_sha256": rec.sha256,
                "recipe": rec.to_dict(),
                "listing_sha256": identity,
                "shard": part.index if part else None,
                "shards": part.count if part else None,
                "input_dir": str(input_dir),
                "input_root": in_dir,
            }
            # The run file goes first: a shard starting beside this one then sees whose
            # class folders these are.
            manifest.write_json(os.path.join(out_dir, files.run_json), run_info)
            for cls in {t.source.cls for t in tasks}:
                os.makedirs(os.path.join(out_dir, cls), exist_ok=True)
            writer = manifest.ManifestWriter(os.path.join(out_dir, files.working))
        pending = _pending(tasks, done)
        summary.already_done = summary.planned - sum(len(t.variants) for t in pending)
        errors = [{"source_path": s.rel, "class": s.cls, "reason": s.reason} for s in skipped]
        # Errors recorded earlier for sources this run leaves alone (--files-from) still stand.
        this_run = {t.source.rel for t in tasks} | {s.rel for s in skipped}
        errors += [
            e
            for e in old_errors
            if e["source_path"] in walked - this_run and _in(part, e["source_path"])
        ]
        if gone:
            summary.warnings.append(
                f"{gone[0]} output(s) recorded in {files.manifest} come from sources no longer "
                f"in {input_dir} (e.g. {gone[1]}); they are kept, with their rows (a new OUT, or "
                "--overwrite with another recipe, leaves them out)"
            )
        job = Job(
            recipe=rec, input_dir=in_dir, output_dir=out_dir, classes=_mixing_classes(rec, listing)
        )
        in_flight: dict[str, Task] = {}  # handed to the executor, rows not yet recorded

        def handed(tasks: list[Task]) -> Iterator[Task]:
            for task in tasks:
                in_flight[task.source.rel] = task
                yield task

        # A stop (stopping the workers, removing what they left unrecorded, committing the
        # rows that came back) runs whole, and so does a finished run's last commit: a
        # Ctrl-C meanwhile is raised after it, with the error that began the stop, if any,
        # as its context.
        stopping: contextlib.AbstractContextManager[None] | None = None
        try:
            # closing(): on an early stop the workers are stopped now, not at interpreter exit.
            with contextlib.closing(run(job, handed(pending), workers or default_workers())) as (
                results
            ):
                try:
                    _collect(
                        results,
                        len(pending),
                        writer,
                        errors,
                        summary,
                        on_error,
                        progress,
                        in_flight,
                    )
                except BaseException:
                    stopping = _signals_held()
                    raise
        except BaseException:
            # Stopped early (Ctrl-C, --on-error fail, disk full): files of tasks whose rows
            # never came back have no manifest row; they go, and the next run redoes them.
            _remove_unrecorded(out_dir, in_flight.values())
            raise
        finally:
            try:
                if stopping is None:  # a finished run: its last commit runs whole too
                    stopping = _signals_held()
            finally:
                try:
                    with _output_errors(output_dir):
                        writer.close()
                        errors.sort(key=lambda e: e["source_path"])
                        if part is None:  # a shard writes its errors part only once complete
                            _write_errors(out_dir, files, errors)
                finally:
                    if stopping is not None:
                        stopping.__exit__(None, None, None)
        with _output_errors(output_dir):
            count, per_class = manifest.write_sorted_manifest(
                os.path.join(out_dir, files.manifest), _recorded_rows(out_dir, files)
            )
            if part is not None:
                _write_errors(out_dir, files, errors)
            summary.skipped = len(errors)
            summary.per_class = dict(sorted(per_class.items()))
            summary.seconds = time.monotonic() - started
            run_info.update(
                status="complete", rows=count, errors=len(errors), summary=summary.to_dict()
            )
            manifest.write_json(os.path.join(out_dir, files.run_json), run_info)
            # A worker killed while writing (OOM, a lost Dask worker) left its temporary file.
            _remove_temp_files(out_dir, owned)
            if files.working != files.manifest:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(out_dir, files.working))
        return summary
    finally:
        os.close(lock)


def _as_shard(shard: ShardSpec) -> Shard | None:
    return parse_shard(shard) if isinstance(shard, str) else shard


def _in(shard: Shard | None, rel: str) -> bool:
    return shard is None or shard.owns(rel)


def _plan(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike | None,
    recipe: RecipeSource,
    *,
    variants: int | None,
    seed: int | None,
    include_originals: bool | None,
    only: Iterable[str] | None,
    allow_split_dirs: bool,
    shard: Shard | None,
) -> tuple[Recipe, Listing, list[Task], list[Skipped], str]:
    """Recipe, whole listing, this run's tasks and skipped files, and the plan's identity.

    The plan is made from the whole listing (balancing, mixing partners, the name check),
    then reduced to the `only` files and to `shard`, so every shard agrees with a single
    run. The identity hashes the whole plan's source list: the same in every shard.
    """
    for name, value, hi in (("variants", variants, MAX_VARIANTS), ("seed", seed, MAX_SEED)):
        if value is not None and not (isinstance(value, int) and 0 <= value <= hi):
            raise UsageError(f"{name} must be an integer from 0 to {hi}, not {value!r}")
    rec = load_recipe(recipe)
    if variants is not None and rec.balance_target is not None:
        raise UsageError("--variants can't be combined with a recipe that sets 'balance'")
    rec = rec.replace(variants=variants, seed=seed, include_originals=include_originals)
    if rec.balance_target is None and rec.variants == 0 and not rec.include_originals:
        raise UsageError(
            "the recipe would write no images: variants is 0 and include_originals is false"
        )
    in_dir = os.path.abspath(input_dir)
    out_dir = None if output_dir is None else os.path.abspath(output_dir)
    _check_dirs(in_dir, out_dir)
    listing = dataset.walk(in_dir, rec.extensions, exclude=out_dir)
    if not listing.classes:
        raise UsageError(
            f"input directory {input_dir} has no class folders; "
            f"expected {input_dir}/<class>/<image>"
        )
    if not allow_split_dirs:
        _refuse_split_dirs(str(input_dir), listing.classes)
    reserved = [c for c in listing.classes if manifest.is_reserved(c)]
    if reserved:
        raise UsageError(
            f"class folder '{reserved[0]}' has the name of a file augctl writes in OUT; rename it"
        )
    tasks, skipped = make_plan(listing, rec), list(listing.skipped)
    if only is not None:
        if isinstance(only, (str, bytes, os.PathLike)):
            raise UsageError("only= takes a list of paths, not one path: only=[path]")
        tasks, skipped = _select(tasks, skipped, in_dir, only)
    identity = listing_sha256([t.source.rel for t in tasks], [s.rel for s in skipped])
    tasks = [t for t in tasks if _in(shard, t.source.rel)]
    skipped = [s for s in skipped if _in(shard, s.rel)]
    return rec, listing, tasks, skipped, identity


def _write_errors(out_dir: str, files: manifest.RunFiles, errors: list[dict[str, str]]) -> None:
    manifest.write_csv(os.path.join(out_dir, files.errors), errors, manifest.ERROR_COLUMNS)


@dataclass
class PlanSummary:
    """What a run would do (`--dry-run`): counts per class, skipped files, estimated size."""

    input_dir: str
    recipe_sha256: str
    listing_sha256: str
    shard: str | None
    sources: int = 0
    outputs: int = 0
    per_class: dict[str, dict[str, int]] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    estimated_bytes: int = 0
    estimate: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view of the plan."""
        return asdict(self)


def describe_plan(
    input_dir: str | os.PathLike,
    recipe: RecipeSource,
    *,
    output_dir: str | os.PathLike | None = None,
    variants: int | None = None,
    seed: int | None = None,
    include_originals: bool | None = None,
    only: Iterable[str] | None = None,
    allow_split_dirs: bool = False,
    shard: ShardSpec = None,
) -> PlanSummary:
    """What `expand` would do, without writing anything: the plan and its estimated size.

    The size is estimated as output pixels x a per-format constant (BYTES_PER_PIXEL); the
    output sizes come from each source's header and the variant's sampled ops, for every
    source, or an evenly spaced sample of ESTIMATE_SAMPLE sources scaled up.
    """
    part = _as_shard(shard)
    rec, listing, tasks, skipped, identity = _plan(
        input_dir,
        output_dir,
        recipe,
        variants=variants,
        seed=seed,
        include_originals=include_originals,
        only=only,
        allow_split_dirs=allow_split_dirs,
        shard=part,
    )
    in_dir = os.path.abspath(input_dir)
    job = Job(recipe=rec, input_dir=in_dir, output_dir="", classes=_mixing_classes(rec, listing))
    plan = PlanSummary(
        input_dir=str(input_dir),
        recipe_sha256=rec.sha256,
        listing_sha256=identity,
        shard=str(part) if part else None,
        warnings=list(listing.warnings),
    )
    plan.skipped = [{"source_path": s.rel, "class": s.cls, "reason": s.reason} for s in skipped]
    counts = {cls: {"sources": 0, "outputs": 0} for cls in listing.classes}
    # Evenly spaced, exactly min(ESTIMATE_SAMPLE, all) of them (a whole step read fewer).
    sample = {i * len(tasks) // ESTIMATE_SAMPLE for i in range(ESTIMATE_SAMPLE)}
    read = 0
    pixels: Counter[str] = Counter()
    for i, task in enumerate(tasks):
        source = task.source
        if i in sample:
            try:
                size = probe(source.path, rec.max_pixels)
            except SourceError as exc:
                plan.skipped.append(
                    {"source_path": source.rel, "class": source.cls, "reason": str(exc)}
                )
                continue
            partners = job.partners(source.rel, source.cls, task.fmt)  # drawn, never decoded
            sampled = {v.index: _sampled(rec, v, size, partners) for v in task.variants}
            try:
                check_sizes(size, sampled, rec.max_pixels)  # as the run refuses it
            except SourceError as exc:
                plan.skipped.append(
                    {"source_path": source.rel, "class": source.cls, "reason": str(exc)}
                )
                continue
            read += 1
            for applied in sampled.values():
                pixels[task.fmt] += _output_pixels(applied, size)
        counts[source.cls]["sources"] += 1
        counts[source.cls]["outputs"] += len(task.variants)
    plan.skipped.sort(key=lambda e: e["source_path"])
    plan.per_class = counts
    plan.sources = sum(c["sources"] for c in counts.values())
    plan.outputs = sum(c["outputs"] for c in counts.values())
    scale = plan.sources / read if read else 0.0  # 1.0 unless a sample was read
    output_pixels = {fmt: round(n * scale) for fmt, n in sorted(pixels.items())}
    plan.estimated_bytes = round(sum(n * BYTES_PER_PIXEL[f] for f, n in output_pixels.items()))
    plan.estimate = {
        "method": "output pixels x bytes per pixel of the output format",
        "bytes_per_pixel": {fmt: BYTES_PER_PIXEL[fmt] for fmt in output_pixels},
        "output_pixels": output_pixels,
        "sources_read": read,
    }
    return plan


def _sampled(
    recipe: Recipe, variant: Variant, size: tuple[int, int], partners: Partners | None
) -> list[dict[str, Any]]:
    """One variant's ops, sampled exactly as the run will (none for an original)."""
    if not variant.index:
        return []
    return pipeline.sample(recipe.pipeline, rng_for(variant.seed), size, partners)


def _output_pixels(applied: list[dict[str, Any]], size: tuple[int, int]) -> int:
    """Pixels of one variant's output: its ops' sizes, not the ops applied."""
    for entry in applied:
        params = {k: v for k, v in entry.items() if k != "op"}
        size = REGISTRY[entry["op"]].size_after(size, params)
    return size[0] * size[1]


def _signals_held() -> contextlib.AbstractContextManager[None]:
    """A `stop_signals_held` hold, already entered; its caller exits it. (Assigned from
    here only once entered: from then on a stop signal just waits.)"""
    hold = stop_signals_held()
    hold.__enter__()
    return hold


def _collect(
    results: Iterable[Result],
    total: int,
    writer: manifest.ManifestWriter,
    errors: list[dict[str, str]],
    summary: Summary,
    on_error: str,
    progress: Progress | None,
    in_flight: dict[str, Task],
) -> None:
    """Record each worker result as it arrives (the parent is the only writer)."""
    for n, result in enumerate(results, 1):
        if result.fatal:
            raise OutputError(
                f"{result.error}; what earlier sources wrote is recorded; re-run to continue"
            )
        if result.error is not None:
            source = result.task.source
            errors.append({"source_path": source.rel, "class": source.cls, "reason": result.error})
            # A source given up on (its worker died twice) may have written some outputs.
            _remove_unrecorded(summary.output_dir, [result.task])
            if on_error == "fail":
                raise SourceError(f"{source.rel}: {result.error}")
        # Rows handed to the writer are committed even if this add fails (close() retries),
        # so their files must not count as unrecorded; and a Ctrl-C must not come between
        # the two, which would leave the files neither recorded nor removed.
        with stop_signals_held():
            in_flight.pop(result.task.source.rel, None)
            with _output_errors(summary.output_dir):
                writer.add(result.rows)
        summary.written += len(result.rows)
        summary.processed += 1
        if progress:
            progress(n, total)


@contextlib.contextmanager
def _output_errors(output_dir: str) -> Iterator[None]:
    """Turn an OSError from writing bookkeeping files into an OutputError."""
    try:
        yield
    except OSError as exc:
        where = exc.filename or output_dir
        raise OutputError(f"cannot write {where}: {exc.strerror or exc}") from None


def _recorded_outputs(
    out_dir: str, files: manifest.RunFiles, walked: set[str]
) -> tuple[set[str], tuple[int, str] | None]:
    """In one pass over a run's recorded rows: the outputs present in OUT, and how many rows
    come from sources no longer in IN (with one of those sources), which a resume keeps as
    it never deletes what it recorded (a removed class stays a class folder of OUT)."""
    done: set[str] = set()
    count, example = 0, ""
    for row in _recorded_rows(out_dir, files):
        if os.path.isfile(os.path.join(out_dir, row["output_path"])):
            done.add(row["output_path"])
        if row["source_path"] not in walked:
            count += 1
            example = example or row["source_path"]
    return done, (count, example) if count else None


def _first_row(out_dir: str, files: manifest.RunFiles) -> dict[str, str] | None:
    """The first row a run has recorded, its file closed after it."""
    rows = _recorded_rows(out_dir, files)
    try:
        return next(rows, None)
    finally:
        rows.close()  # and its file


def _recorded_rows(out_dir: str, files: manifest.RunFiles) -> Iterator[dict[str, str]]:
    """The rows a run has recorded, read as they are used: its completed manifest, then its
    working file."""
    for name in dict.fromkeys((files.manifest, files.working)):
        yield from manifest.iter_rows(os.path.join(out_dir, name))


def _mixing_classes(recipe: Recipe, listing: dataset.Listing) -> dict[str, tuple[str, ...]]:
    """Each class's sorted sources, when the recipe has mixing ops (their partners)."""
    if not any(isinstance(n, Step) and n.op.uses_partners for _, n in walk_steps(recipe.pipeline)):
        return {}
    classes: dict[str, list[str]] = {}
    for source in listing.sources:  # already sorted
        classes.setdefault(source.cls, []).append(source.rel)
    return {cls: tuple(paths) for cls, paths in classes.items()}


SPLIT_NAMES = frozenset({"val", "valid", "validation", "test", "testing", "eval", "dev"})


def _refuse_split_dirs(input_dir: str, classes: list[str]) -> None:
    """Refuse a dataset root with train/val/test folders: augmenting held-out data leaks."""
    names = {c.lower() for c in classes}
    held_out = sorted(c for c in classes if c.lower() in SPLIT_NAMES)
    if "train" in names and held_out:
        train = next(c for c in classes if c.lower() == "train")
        raise UsageError(
            f"input directory {input_dir} looks like a dataset root with split folders "
            f"({', '.join([train, *held_out])}); point augctl at the training split "
            f"({os.path.join(input_dir, train)}): augmenting validation or test data "
            "inflates scores. If these really are class names, pass --allow-split-dirs."
        )


def _select(
    tasks: list[Task], skipped: list[dataset.Skipped], in_dir: str, only: Iterable[str]
) -> tuple[list[Task], list[dataset.Skipped]]:
    """The tasks of the listed files, and the listed files that can't be used (with why)."""
    by_rel = {t.source.rel: t for t in tasks}
    walk_skipped = {s.rel: s for s in skipped}
    chosen: dict[str, Task] = {}
    bad: dict[str, dataset.Skipped] = {}
    for raw in only:
        if not dataset.valid_text(raw):
            shown = dataset.shown_name(raw)
            bad[shown] = dataset.Skipped(shown, "", "file name is not valid UTF-8; rename it")
            continue
        rel = _relative_to_input(in_dir, raw)
        if rel is None:
            bad[raw] = dataset.Skipped(
                raw, "", "listed in --files-from but outside the input directory"
            )
        elif rel in by_rel:
            chosen[rel] = by_rel[rel]
        else:
            bad[rel] = walk_skipped.get(rel) or dataset.Skipped(
                rel,
                rel.split("/")[0] if "/" in rel else "",
                "listed in --files-from but not a source: missing, not in a class folder, "
                "hidden, or without an allowed extension",
            )
    return [chosen[k] for k in sorted(chosen)], [bad[k] for k in sorted(bad)]


def _relative_to_input(in_dir: str, path: str) -> str | None:
    """A listed path as a source path relative to IN (POSIX, NFC), or None if outside IN."""
    candidate = path if os.path.isabs(path) else os.path.abspath(path)
    if not os.path.isabs(path) and not os.path.exists(candidate):
        candidate = os.path.join(in_dir, path)  # already relative to IN
    rel = os.path.relpath(os.path.normpath(candidate), in_dir)
    if rel == "." or rel.startswith(".." + os.sep) or rel == "..":
        return None
    return dataset.nfc(rel.replace(os.sep, "/"))


def _check_dirs(in_dir: str, out_dir: str | None) -> None:
    if not os.path.isdir(in_dir):
        what = "does not exist" if not os.path.exists(in_dir) else "is not a directory"
        raise UsageError(f"input directory {in_dir} {what}")
    if out_dir is None:
        return
    real_in, real_out = os.path.realpath(in_dir), os.path.realpath(out_dir)
    if real_out == real_in or real_in.startswith(real_out.rstrip(os.sep) + os.sep):
        raise UsageError(f"output directory {out_dir} contains the input; choose another one")
    if real_out.startswith(real_in.rstrip(os.sep) + os.sep):
        raise UsageError(
            f"output directory {out_dir} is inside the input directory {in_dir}; its files "
            "would be read as a class of the input next time; choose a directory outside it"
        )


def _prepare_output(
    out_dir: str,
    in_dir: str,
    recipe: Recipe,
    overwrite: bool,
    files: manifest.RunFiles,
    owned: set[str] | None = None,
    shared: Collection[str] = (),
) -> tuple[bool, list[dict[str, str]]]:
    """Create or reopen OUT: whether a run of this recipe on this input has recorded rows
    there (`_recorded_outputs` reads them), and the errors that run recorded.

    `owned` (a shard's outputs and files) limits the clean-up of temporary files to this
    run's own; `shared` names folders other shards may have created in OUT already.
    """
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create output directory {out_dir}: {exc.strerror or exc}"
        ) from None
    if not os.access(out_dir, os.W_OK):
        raise OutputError(f"output directory {out_dir} is not writable")
    if overwrite and files.run_json == manifest.RUN_JSON:
        # Only an unsharded run: a shard's siblings may be writing beside it, and each
        # removes its own part's predecessor (below), whose outputs are its own sources'.
        _remove_other_recipes_runs(out_dir, recipe.sha256, files)
    first = _first_row(out_dir, files)
    run = manifest.read_run(out_dir, files.run_json) or {}
    previous = run.get("recipe_sha256") or (first["recipe_sha256"] if first else None)
    old_root = run.get("input_root")
    if previous == recipe.sha256 and old_root and not _same_dir(old_root, in_dir):
        if not overwrite:
            raise UsageError(
                f"output directory {out_dir} holds a run made from another input directory "
                f"({old_root}); continue it with that input, use another directory, or pass "
                "--overwrite to delete the files its manifest lists and start again"
            )
        _remove_listed(out_dir, _recorded_rows(out_dir, files), files)
        previous, first = None, None
    if previous is None:
        others = manifest.recorded_recipes(out_dir)
        other = next((name for name, sha in others.items() if sha != recipe.sha256), None)
        if other is not None and not overwrite:
            raise UsageError(
                f"output directory {out_dir} holds a run of a different recipe ({other}: "
                f"sha256 {others[other][:12]}, this one is {recipe.sha256[:12]}); use another "
                "directory, or --overwrite to write into it anyway"
            )
        used = [
            e
            for e in os.listdir(out_dir)
            if not (dataset.is_junk(e) or manifest.is_bookkeeping(e) or e in shared)
        ]
        if used and not others and not overwrite:
            raise UsageError(
                f"output directory {out_dir} is not empty and holds no augctl run; "
                "choose an empty or new directory (or pass --overwrite to write into it anyway)"
            )
    elif previous != recipe.sha256:
        if not overwrite:
            raise UsageError(
                f"output directory {out_dir} holds a run of a different recipe "
                f"(sha256 {previous[:12]}, this one is {recipe.sha256[:12]}); use another "
                "directory, or --overwrite to delete the files its manifest lists and start again"
            )
        _remove_listed(out_dir, _recorded_rows(out_dir, files), files)
        first = None
    _remove_temp_files(out_dir, owned)
    if first is None:
        return False, []
    return True, manifest.read_rows(os.path.join(out_dir, files.errors), manifest.ERROR_COLUMNS)


def _try_lock(out_dir: str, run_file: str) -> int | None:
    """`_lock_output`, or None if another run holds the lock."""
    try:
        return _lock_output(out_dir, run_file)
    except UsageError:
        return None


def _lock_output(out_dir: str, run_file: str) -> int:
    """Hold OUT for this run (or this shard): a second run would interleave its writes.

    The lock is released by the kernel however the process ends, so a killed run
    never leaves OUT locked.
    """
    try:
        os.makedirs(out_dir, exist_ok=True)
        fd = os.open(os.path.join(out_dir, f".{run_file}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise OutputError(f"cannot use output directory {out_dir}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise UsageError(
            f"another augctl run is writing to {out_dir} ({run_file}); wait for it to finish"
        ) from None
    return fd


def _same_dir(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _remove_listed(out_dir: str, rows: Iterable[dict[str, str]], files: manifest.RunFiles) -> None:
    """Delete what an old manifest lists (and only that), then the run's own files."""
    for row in rows:
        path = os.path.normpath(os.path.join(out_dir, row["output_path"]))
        if path.startswith(out_dir + os.sep) and os.path.isfile(path):
            with contextlib.suppress(FileNotFoundError):  # another shard's clean-up got it
                os.unlink(path)
    for name in files.names():
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(out_dir, name))


def _remove_other_recipes_runs(out_dir: str, sha256: str, files: manifest.RunFiles) -> None:
    """--overwrite: the runs of other recipes recorded in OUT besides this run's own (shard
    parts, merged or not), each as `_remove_listed` removes a run: what it lists, its files.
    A run that is writing now (its lock is held) is left alone."""
    for name, sha in manifest.recorded_recipes(out_dir).items():
        if sha == sha256 or name == files.run_json:
            continue
        lock = _try_lock(out_dir, name)
        if lock is None:
            continue
        try:
            if manifest.read_run_recipe(out_dir, name) in (sha256, None):
                continue  # replaced meanwhile
            part = manifest.RUN_PART.fullmatch(name)
            other = manifest.RunFiles.for_shard(f"{part[1]}-of-{part[2]}" if part else None)
            _remove_listed(out_dir, _recorded_rows(out_dir, other), other)
        finally:
            os.close(lock)


def _remove_unrecorded(out_dir: str, tasks: Iterable[Task]) -> None:
    """Delete the outputs of tasks stopped before their rows were recorded (none was)."""
    for task in tasks:
        for variant in task.variants:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(out_dir, variant.out_rel))


def _remove_temp_files(out_dir: str, owned: set[str] | None) -> None:
    """Delete temporary files a killed run left behind (never a final name).

    With `owned`, only the temporary files of those outputs: other shards writing into
    the same OUT right now have theirs.
    """
    for base, _dirs, names in os.walk(out_dir):
        for name in names:
            if not name.endswith(TEMP_SUFFIX):
                continue
            path = os.path.join(base, name)
            if owned is None or _temp_target(os.path.relpath(path, out_dir)) in owned:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)


def _temp_target(rel: str) -> str:
    """The path (relative to OUT) a temporary file was to be renamed to.

    Images go through `.NAME.PID.augctl-tmp`, bookkeeping files through `NAME.PID.augctl-tmp`.
    """
    folder, name = posixpath.split(rel.replace(os.sep, "/"))
    name = name[: -len(TEMP_SUFFIX)].rsplit(".", 1)[0]
    return posixpath.join(folder, name[1:] if name.startswith(".") else name)


def _pending(tasks: Iterable[Task], done: set[str]) -> list[Task]:
    """The tasks, each reduced to its variants not yet recorded; finished tasks dropped."""
    out = []
    for task in tasks:
        left = tuple(v for v in task.variants if v.out_rel not in done)
        if left:
            out.append(
                task if len(left) == len(task.variants) else Task(task.source, task.fmt, left)
            )
    return out


__all__ = ["PlanSummary", "Summary", "describe_plan", "expand"]
