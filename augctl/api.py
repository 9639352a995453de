"""The library entry point: expand() = walk -> plan -> execute -> manifest."""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from . import __version__, dataset, manifest
from .errors import OutputError, SourceError, UsageError
from .execute import Job, Result, default_workers, run_local
from .images import TEMP_SUFFIX
from .limits import MAX_SEED, MAX_VARIANTS
from .pipeline import Step, walk_steps
from .plan import Task, make_plan
from .recipe import Recipe, RecipeSource, load_recipe

Progress = Callable[[int, int], None]


@dataclass
class Summary:
    """What a run did; `to_dict()` is what `--json` prints and run.json records."""

    input_dir: str
    output_dir: str
    recipe_sha256: str
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
) -> Summary:
    """Write augmented variants of every image under `input_dir` into `output_dir`.

    Re-running on the same output continues an interrupted run (and does nothing when
    it is complete). A different recipe on a used output is refused unless `overwrite`.
    A source that can't be used is listed in errors.csv; with `on_error="fail"` the
    first one stops the run with SourceError instead. `only` restricts the run to some
    files of `input_dir` (paths inside it, or relative to it) with the same seeds and
    names as a full run.
    """
    if on_error not in ("skip", "fail"):
        raise UsageError(f"on_error must be 'skip' or 'fail', not {on_error!r}")
    for name, value, hi in (("variants", variants, MAX_VARIANTS), ("seed", seed, MAX_SEED)):
        if value is not None and not (isinstance(value, int) and 0 <= value <= hi):
            raise UsageError(f"{name} must be an integer from 0 to {hi}, not {value!r}")
    if workers is not None and not (isinstance(workers, int) and workers >= 1):
        raise UsageError(f"workers must be a positive integer, not {workers!r}")
    started = time.monotonic()
    rec = load_recipe(recipe).replace(
        variants=variants, seed=seed, include_originals=include_originals
    )
    if variants is not None and rec.balance_target is not None:
        raise UsageError("--variants can't be combined with a recipe that sets 'balance'")
    if rec.balance_target is None and rec.variants == 0 and not rec.include_originals:
        raise UsageError(
            "the recipe would write no images: variants is 0 and include_originals is false"
        )
    in_dir, out_dir = os.path.abspath(input_dir), os.path.abspath(output_dir)
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
    tasks = make_plan(listing, rec)
    walked = {s.rel for s in listing.sources} | {s.rel for s in listing.skipped}
    if only is not None:
        tasks, listing.skipped = _select(tasks, listing.skipped, in_dir, only)
    if on_error == "fail" and listing.skipped:
        bad = listing.skipped[0]
        raise SourceError(f"{bad.rel}: {bad.reason}")
    summary = Summary(
        input_dir=str(input_dir),
        output_dir=str(output_dir),
        recipe_sha256=rec.sha256,
        sources=len(listing.sources),
        classes=len(listing.classes),
        planned=sum(len(t.variants) for t in tasks),
        warnings=list(listing.warnings),
        sources_per_class=dict(sorted(Counter(s.cls for s in listing.sources).items())),
    )
    with _output_errors(output_dir):
        done, old_errors = _prepare_output(out_dir, in_dir, rec, overwrite)
        for cls in {t.source.cls for t in tasks}:
            os.makedirs(os.path.join(out_dir, cls), exist_ok=True)
        run_info = {
            "augctl_version": __version__,
            "status": "running",
            "command": command,
            "recipe_sha256": rec.sha256,
            "recipe": rec.to_dict(),
            "input_dir": str(input_dir),
            "input_root": in_dir,
        }
        manifest.write_json(os.path.join(out_dir, manifest.RUN_JSON), run_info)
        writer = manifest.ManifestWriter(os.path.join(out_dir, manifest.MANIFEST))
    pending = _pending(tasks, done)
    summary.already_done = summary.planned - sum(len(t.variants) for t in pending)
    errors = [{"source_path": s.rel, "class": s.cls, "reason": s.reason} for s in listing.skipped]
    # Errors recorded earlier for sources this run leaves alone (--files-from) still stand.
    this_run = {t.source.rel for t in tasks} | {s.rel for s in listing.skipped}
    errors += [e for e in old_errors if e["source_path"] in walked - this_run]
    job = Job(
        recipe=rec, input_dir=in_dir, output_dir=out_dir, classes=_mixing_classes(rec, listing)
    )
    try:
        # closing(): on an early stop the pool is torn down now, not at interpreter exit.
        with contextlib.closing(run_local(job, pending, workers or default_workers())) as results:
            _collect(results, len(pending), writer, errors, summary, on_error, progress)
    finally:
        with _output_errors(output_dir):
            writer.close()
            errors.sort(key=lambda e: e["source_path"])
            manifest.write_csv(
                os.path.join(out_dir, manifest.ERRORS), errors, manifest.ERROR_COLUMNS
            )
    with _output_errors(output_dir):
        rows = _final_rows(os.path.join(out_dir, manifest.MANIFEST))
        manifest.write_csv(os.path.join(out_dir, manifest.MANIFEST), rows, manifest.COLUMNS)
        summary.skipped = len(errors)
        summary.per_class = dict(sorted(Counter(r["class"] for r in rows).items()))
        summary.seconds = time.monotonic() - started
        run_info.update(status="complete", summary=summary.to_dict())
        manifest.write_json(os.path.join(out_dir, manifest.RUN_JSON), run_info)
    return summary


def _collect(
    results: Iterable[Result],
    total: int,
    writer: manifest.ManifestWriter,
    errors: list[dict[str, str]],
    summary: Summary,
    on_error: str,
    progress: Progress | None,
) -> None:
    """Record each worker result as it arrives (the parent is the only writer)."""
    for n, result in enumerate(results, 1):
        if result.fatal:
            raise OutputError(
                f"{result.error}; what was written so far is recorded; re-run to continue"
            )
        if result.error is not None:
            source = result.task.source
            errors.append({"source_path": source.rel, "class": source.cls, "reason": result.error})
            if on_error == "fail":
                raise SourceError(f"{source.rel}: {result.error}")
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


def _final_rows(path: str) -> list[dict[str, str]]:
    """The manifest's rows sorted by output path, the last row kept where one was redone."""
    rows = {r["output_path"]: r for r in manifest.read_rows(path)}
    return [rows[k] for k in sorted(rows)]


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


def _check_dirs(in_dir: str, out_dir: str) -> None:
    if not os.path.isdir(in_dir):
        what = "does not exist" if not os.path.exists(in_dir) else "is not a directory"
        raise UsageError(f"input directory {in_dir} {what}")
    real_in, real_out = os.path.realpath(in_dir), os.path.realpath(out_dir)
    if real_out == real_in or real_in.startswith(real_out.rstrip(os.sep) + os.sep):
        raise UsageError(f"output directory {out_dir} contains the input; choose another one")
    if real_out.startswith(real_in.rstrip(os.sep) + os.sep):
        raise UsageError(
            f"output directory {out_dir} is inside the input directory {in_dir}; its files "
            "would be read as a class of the input next time; choose a directory outside it"
        )


def _prepare_output(
    out_dir: str, in_dir: str, recipe: Recipe, overwrite: bool
) -> tuple[set[str], list[dict[str, str]]]:
    """Create or reopen OUT: the outputs already recorded by a run of this recipe on this
    input, and the errors that run recorded."""
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create output directory {out_dir}: {exc.strerror or exc}"
        ) from None
    if not os.access(out_dir, os.W_OK):
        raise OutputError(f"output directory {out_dir} is not writable")
    manifest_path = os.path.join(out_dir, manifest.MANIFEST)
    rows = manifest.read_rows(manifest_path)
    run = manifest.read_run(out_dir) or {}
    previous = run.get("recipe_sha256") or (rows[0]["recipe_sha256"] if rows else None)
    old_root = run.get("input_root")
    if previous == recipe.sha256 and old_root and not _same_dir(old_root, in_dir):
        if not overwrite:
            raise UsageError(
                f"output directory {out_dir} holds a run made from another input directory "
                f"({old_root}); continue it with that input, use another directory, or pass "
                "--overwrite to delete the files its manifest lists and start again"
            )
        previous = None
        _remove_listed(out_dir, rows)
        rows = []
    if previous is None:
        used = [e for e in os.listdir(out_dir) if not dataset.is_junk(e)]
        if used and not overwrite:
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
        _remove_listed(out_dir, rows)
        rows = []
    _remove_temp_files(out_dir)
    done = {
        r["output_path"] for r in rows if os.path.isfile(os.path.join(out_dir, r["output_path"]))
    }
    old_errors = manifest.read_rows(os.path.join(out_dir, manifest.ERRORS), manifest.ERROR_COLUMNS)
    return done, old_errors if rows else []


def _same_dir(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _remove_listed(out_dir: str, rows: list[dict[str, str]]) -> None:
    """Delete what an old manifest lists (and only that), then the manifest files."""
    for row in rows:
        path = os.path.normpath(os.path.join(out_dir, row["output_path"]))
        if path.startswith(out_dir + os.sep) and os.path.isfile(path):
            os.unlink(path)
    for name in (manifest.MANIFEST, manifest.ERRORS, manifest.RUN_JSON):
        try:
            os.unlink(os.path.join(out_dir, name))
        except FileNotFoundError:
            pass


def _remove_temp_files(out_dir: str) -> None:
    """Delete temporary files a killed run left behind (never a final name)."""
    for base, _dirs, files in os.walk(out_dir):
        for name in files:
            if name.endswith(TEMP_SUFFIX):
                os.unlink(os.path.join(base, name))


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


__all__ = ["Summary", "expand", "Result"]
