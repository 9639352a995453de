"""The `augctl` command: a thin click layer over the library (parse, one call, report)."""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import re
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import click

from . import __version__
from .errors import AugctlError, OutputError, RecipeError, UsageError, did_you_mean
from .limits import MAX_SEED, MAX_VARIANTS


class _Failure(click.ClickException):
    """A library error shown as one message, with the library's exit code."""

    def __init__(self, error: AugctlError) -> None:
        super().__init__(str(error))
        self.exit_code = error.exit_code

    def show(self, file: Any = None) -> None:
        _say(f"augctl: error: {self.format_message()}")


def _usage(message: str) -> _Failure:
    """A usage error (exit 2) shown like every other augctl error."""
    return _Failure(UsageError(message))


# What writing to a stream that can't take it raises: a closed pipe or a full disk, a
# closed file object.
_UNWRITABLE = (OSError, ValueError)


def _say(message: str) -> None:
    """A line on stderr, where it can be written: a closed pipe or a full disk there must
    not turn finished work into a failure."""
    with contextlib.suppress(*_UNWRITABLE):
        click.echo(message, err=True)


def _warn(message: str) -> None:
    _say(f"augctl: warning: {message}")


def _load(recipe: str) -> Any:
    from .recipe import load_recipe

    if recipe == "-":
        try:
            text = sys.stdin.buffer.read().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RecipeError(f"not valid UTF-8 (byte {exc.start})", file="<stdin>") from None
        return load_recipe(text, name="<stdin>")
    return load_recipe(recipe)


class _Progress:
    """A tqdm bar on a terminal; otherwise a plain line every few seconds."""

    def __init__(self, quiet: bool, interval: float = 10.0) -> None:
        self.quiet, self.interval = quiet, interval
        self.bar: Any = None
        self.last = time.monotonic()
        self.started = self.last

    def __call__(self, done: int, total: int) -> None:
        if self.quiet or sys.stderr is None:  # None: started with stderr closed
            return
        try:
            self._show(done, total)
        except _UNWRITABLE:  # stderr a closed pipe or file, a full disk: the run goes on
            self.quiet = True

    def _show(self, done: int, total: int) -> None:
        if sys.stderr.isatty():
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="img", file=sys.stderr, dynamic_ncols=True)
            self.bar.update(done - self.bar.n)
            return
        now = time.monotonic()
        if now - self.last >= self.interval or done == total:
            self.last = now
            rate = done / max(now - self.started, 1e-9)
            click.echo(f"augctl: {done}/{total} images ({rate:.1f}/s)", err=True)

    def close(self) -> None:
        if self.bar is not None:
            with contextlib.suppress(*_UNWRITABLE):
                self.bar.close()


def option(*decls: str, **kwargs: Any) -> Callable[[Any], Any]:
    """A click option that can also be set from AUGCTL_<OPTION> (as CI jobs configure tools).

    Options that delete files (--overwrite, --force) are plain click options: a variable
    left in a CI environment must not destroy anything.
    """
    long = max((d for d in decls if d.startswith("--")), key=len)
    kwargs.setdefault("envvar", "AUGCTL_" + long[2:].upper().replace("-", "_"))
    kwargs.setdefault("show_envvar", True)
    return click.option(*decls, **kwargs)


def _read_list(source: str, null: bool) -> list[str]:
    """Paths from a file (or - for stdin): one a line, or NUL-separated with -0."""
    try:
        if source == "-":
            text = sys.stdin.buffer.read()
        else:
            with open(source, "rb") as f:
                text = f.read()
    except OSError as exc:
        raise _usage(f"cannot read --files-from {source}: {exc.strerror or exc}") from None
    sep = b"\0" if null else b"\n"
    return [os.fsdecode(p.rstrip(b"\r") if not null else p) for p in text.split(sep) if p.strip()]


_stopped_by = [signal.SIGINT]


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """Ctrl-C and SIGTERM (a cancelled CI job, a pod shut down) raise KeyboardInterrupt, which
    stops a run cleanly (the run holds both while it stops: `augctl.pool.stop_signals_held`).

    The handlers the caller had are put back after, except in augctl's own process once a
    signal has stopped it: that ignores both to its end, as Python would otherwise restore
    their default action (death by the signal) as it exits.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    from .pool import STOP_SIGNALS  # light: no numpy or Pillow

    fired: list[int] = []
    _stopped_by[0] = signal.SIGINT

    def stop(signum: int, frame: Any) -> None:
        _stopped_by[0] = signum
        fired.append(signum)
        raise KeyboardInterrupt

    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    try:
        for signum in STOP_SIGNALS:
            signal.signal(signum, stop)
        yield
    finally:
        program = bool(fired) and _PROGRAM[0]
        for signum, handler in previous.items():
            if program:
                signal.signal(signum, signal.SIG_IGN)
            elif handler is not None:
                signal.signal(signum, handler)


# Set by `run`: this process is augctl's own command, not a caller running the CLI in its
# own process (click's CliRunner).
_PROGRAM = [False]


def _stoppable(command: Callable[..., None]) -> Callable[..., None]:
    """Run a command with Ctrl-C and SIGTERM stopping it cleanly (`_stop_on_signals`)."""

    @functools.wraps(command)
    def run(**kwargs: Any) -> None:
        with _stop_on_signals():
            command(**kwargs)

    return run


def _run(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except AugctlError as exc:
        raise _Failure(exc) from None


class _ShardType(click.ParamType):
    """K/N on the command line -> plan.Shard."""

    name = "K/N"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        from .plan import Shard, parse_shard

        if isinstance(value, Shard):
            return value
        try:
            return parse_shard(value)
        except UsageError as exc:
            self.fail(str(exc), param, ctx)


def _shard(shard: Any, from_env: bool, shards: int | None) -> Any:
    """The shard the options ask for (or None): --shard K/N, or --shard-from-env [--shards N]."""
    if shard is not None and from_env:
        raise _usage("use --shard K/N or --shard-from-env, not both")
    if shards is not None and not from_env:
        raise _usage("--shards N goes with --shard-from-env (use --shard K/N)")
    if not from_env:
        return shard
    from .plan import shard_from_env

    return _run(lambda: shard_from_env(os.environ, shards))


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""  # unreachable


def _print_plan(plan: Any) -> None:
    """The human-readable --dry-run report, on stdout."""
    where = f", shard {plan.shard}" if plan.shard else ""
    click.echo(f"plan for {plan.input_dir} (recipe sha256 {plan.recipe_sha256[:12]}{where})")
    width = max([5, *map(len, plan.per_class)])
    click.echo(f"  {'class':<{width}}  {'sources':>8}  {'outputs':>8}")
    for cls, c in plan.per_class.items():
        click.echo(f"  {cls:<{width}}  {c['sources']:>8}  {c['outputs']:>8}")
    click.echo(f"  {'total':<{width}}  {plan.sources:>8}  {plan.outputs:>8}")
    if plan.skipped:
        click.echo(f"skipped ({len(plan.skipped)}):")
        for e in plan.skipped:
            click.echo(f"  {e['source_path']}: {e['reason']}")
    est = plan.estimate
    basis = ", ".join(f"{fmt} {bpp} B/pixel" for fmt, bpp in est["bytes_per_pixel"].items())
    pixels = sum(est["output_pixels"].values())
    sample = (
        "every source's header"
        if est["sources_read"] >= plan.sources
        else f"a sample of {est['sources_read']} sources' headers"
    )
    click.echo(
        f"estimated output size: {_size(plan.estimated_bytes)} "
        f"({pixels:,} output pixels x {basis or 'n/a'}; sizes from {sample})"
    )


class _Group(click.Group):
    """The command group; Ctrl-C anywhere (even while a command starts) exits 130."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:  # click itself would print "Aborted!" and exit 1
            _say("augctl: interrupted")
            sys.exit(128 + _stopped_by[0])


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="augctl")
def main() -> None:
    """Expand an image-classification dataset with reproducible, recorded augmentations."""


def _resampler_hint(recipe: str) -> str:
    """The resampler a recipe file names, found by a pattern before any import, for the fork
    server to preload OpenCV. Only speed depends on it (a worker imports what its server
    didn't; a server preloading OpenCV for nothing costs its import): a recipe the pattern
    misreads (flow style, a quoted key), or one that is not a regular file (stdin, a pipe,
    which a read here would consume), gets Pillow's preload."""
    try:
        if recipe == "-" or not stat.S_ISREG(os.stat(recipe).st_mode):
            return "pillow"
        with open(recipe, encoding="utf-8") as f:
            text = f.read(1 << 16)
    except (OSError, UnicodeDecodeError, ValueError):
        return "pillow"
    return "opencv" if re.search(r"^resampler\s*:\s*['\"]?opencv\b", text, re.M) else "pillow"


@main.command()
@click.argument("input_dir", metavar="IN", type=click.Path(file_okay=False))
@click.argument("output_dir", metavar="OUT", type=click.Path(file_okay=False))
@option("-r", "--recipe", required=True, help="Recipe YAML file, or - for stdin.")
@option(
    "-n",
    "--variants",
    type=click.IntRange(0, MAX_VARIANTS),
    help="Variants per image (overrides the recipe).",
)
@option("--seed", type=click.IntRange(0, MAX_SEED), help="Seed (overrides the recipe).")
@option(
    "-j", "--workers", type=click.IntRange(1), help="Worker processes [default: CPUs available]."
)
@click.option(  # never from the environment: it deletes files
    "--overwrite", is_flag=True, help="Replace the files of a different recipe's run in OUT."
)
@option(
    "--on-error",
    type=click.Choice(["skip", "fail"]),
    default="skip",
    show_default=True,
    help="What a source that can't be used does: a row in errors.csv, or stop (exit 1).",
)
@option("--strict", is_flag=True, help="Exit 1 at the end if any source was skipped.")
@option(
    "--include-originals", is_flag=True, default=None, help="Also write each source as variant 0."
)
@option(
    "--files-from",
    metavar="FILE",
    help="Expand only the files of IN listed in FILE (- for stdin), with the same seeds and names.",
)
@option("-0", "--null", is_flag=True, help="--files-from is NUL-separated (find -print0).")
@option(
    "--allow-split-dirs",
    is_flag=True,
    help="Allow IN to hold train/ and val/ or test/ folders (usually splits, not classes).",
)
@option(
    "--shard",
    type=_ShardType(),
    help="Do only shard K of N (0-based); writes manifest-K-of-N.csv. Join with merge.",
)
@option(
    "--shard-from-env",
    is_flag=True,
    help="Take K and N from a Slurm array (SLURM_ARRAY_TASK_*) or JOB_COMPLETION_INDEX.",
)
@option(
    "--shards",
    type=click.IntRange(1),
    help="N for --shard-from-env with JOB_COMPLETION_INDEX (a Kubernetes indexed Job).",
)
@option(
    "--executor",
    type=click.Choice(["local", "dask"]),
    default="local",
    show_default=True,
    help="Where the work runs: a local process pool, or Dask (pip install 'augctl[dask]').",
)
@option("--scheduler", metavar="ADDRESS", help="Dask scheduler address (tcp://host:8786).")
@option(
    "--scheduler-file",
    type=click.Path(dir_okay=False),
    help="Dask scheduler file (dask scheduler --scheduler-file F).",
)
@option("--dry-run", is_flag=True, help="Print the plan and its estimated size; write nothing.")
@option("-q", "--quiet", is_flag=True, help="No progress or summary on stderr.")
@option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@_stoppable
def expand(
    input_dir: str,
    output_dir: str,
    recipe: str,
    variants: int | None,
    seed: int | None,
    workers: int | None,
    overwrite: bool,
    on_error: str,
    strict: bool,
    include_originals: bool | None,
    files_from: str | None,
    null: bool,
    allow_split_dirs: bool,
    shard: Any,
    shard_from_env: bool,
    shards: int | None,
    executor: str,
    scheduler: str | None,
    scheduler_file: str | None,
    dry_run: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Write augmented variants of every image in IN/<class>/ to OUT/<class>/.

    Re-running the same command continues an interrupted run.
    """
    if executor == "local" and not dry_run:
        from .pool import limit_threads, start_server

        limit_threads()
        # The workers' fork server imports numpy and Pillow while this process does too.
        with contextlib.suppress(OSError):  # the pool's own start reports it
            start_server(_resampler_hint(recipe))
    from .api import describe_plan
    from .api import expand as expand_

    if recipe == "-" and files_from == "-":
        raise _usage("--recipe and --files-from can't both read stdin")
    part = _shard(shard, shard_from_env, shards)
    if (scheduler or scheduler_file) and executor != "dask":
        raise _usage("--scheduler and --scheduler-file go with --executor dask")
    only = _read_list(files_from, null) if files_from is not None else None
    common = dict(  # what a dry run and a real run are planned from
        variants=variants,
        seed=seed,
        include_originals=include_originals or None,
        only=only,
        allow_split_dirs=allow_split_dirs,
        shard=part,
    )
    if dry_run:
        plan = _run(
            lambda: describe_plan(input_dir, _load(recipe), output_dir=output_dir, **common)
        )
        for message in plan.warnings:
            _warn(message)
        if as_json:
            click.echo(json.dumps(plan.to_dict(), indent=2, ensure_ascii=False))
        else:
            _print_plan(plan)
        if not quiet:
            _say("augctl: dry run: nothing was written")
        return
    progress = _Progress(quiet)
    try:
        summary = _run(
            lambda: expand_(
                input_dir,
                output_dir,
                _load(recipe),
                workers=workers,
                overwrite=overwrite,
                on_error=on_error,
                progress=progress,
                command=sys.argv,
                executor=executor,
                scheduler=scheduler,
                scheduler_file=scheduler_file,
                **common,
            )
        )
    except KeyboardInterrupt as exc:
        progress.close()
        if isinstance(exc.__context__, AugctlError):
            # The run was already stopping for this error when the signal came: it says why.
            raise _Failure(exc.__context__) from None
        _say("augctl: interrupted; re-run the same command to continue")
        sys.exit(128 + _stopped_by[0])
    progress.close()
    for message in summary.warnings:
        _warn(message)
    if summary.skipped:
        _warn(f"{summary.skipped} source(s) skipped; see {output_dir}/errors.csv")
    if not quiet:
        where = f"shard {summary.shard}: " if summary.shard else ""
        _say(
            f"augctl: {where}wrote {summary.written} images from {summary.processed} sources "
            f"({summary.already_done} already done, {summary.skipped} skipped) "
            f"in {summary.seconds:.1f}s ({summary.images_per_second:.1f} sources/s) "
            f"to {output_dir}",
        )
        if summary.shard:
            _say(f"augctl: when every shard is done: augctl merge {output_dir}")
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False))
    if strict and summary.skipped:
        sys.exit(1)


@main.command()
@click.argument("output_dir", metavar="OUT", type=click.Path(file_okay=False))
@option("--deep", is_flag=True, help="Also re-create every output from its row and compare.")
@option(
    "--input",
    "input_dir",
    type=click.Path(file_okay=False),
    help="Where the sources are now (for --deep).",
)
@option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
def verify(output_dir: str, deep: bool, input_dir: str | None, as_json: bool) -> None:
    """Check every manifest row of OUT against its file (exists, sha256); report orphans.

    Exits 1 if anything is missing, changed, unlisted or (with --deep) not reproducible.
    """
    from .audit import verify as verify_

    report = _run(lambda: verify_(output_dir, deep=deep, input_dir=input_dir))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        for problem in report.problems:
            click.echo(f"{problem.kind}: {problem.path}: {problem.detail}")
        deep_note = f", {report.replayed} re-created" if deep else ""
        verdict = "OK" if report.ok else f"{len(report.problems)} problem(s)"
        _say(f"augctl: verified {report.checked} manifest rows{deep_note}: {verdict}")
    if not report.ok:
        sys.exit(1)


@main.command()
@click.argument("output_dir", metavar="OUT", type=click.Path(file_okay=False))
@click.argument("paths", metavar="PATH...", nargs=-1, required=True)
@option("--input", "input_dir", type=click.Path(file_okay=False), help="Where the sources are now.")
@option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
def replay(output_dir: str, paths: tuple[str, ...], input_dir: str | None, as_json: bool) -> None:
    """Re-create outputs from their manifest rows (source + recorded ops, no rng).

    PATH is an output path relative to OUT, or a path to the file. Exits 1 unless every
    re-created file is byte-identical to the one the manifest records.
    """
    from .audit import replay as replay_

    results = _run(lambda: replay_(output_dir, list(paths), input_dir=input_dir))
    if as_json:
        click.echo(json.dumps([r.__dict__ for r in results], indent=2, ensure_ascii=False))
    else:
        for r in results:
            click.echo(
                f"{'identical' if r.identical else 'DIFFERENT'}: {r.output_path}"
                + ("" if r.identical else f": {r.detail}")
            )
    if not all(r.identical for r in results):
        sys.exit(1)


@main.command()
@click.argument("output_dir", metavar="OUT", type=click.Path(file_okay=False))
@option("-q", "--quiet", is_flag=True, help="No summary on stderr.")
@option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
def merge(output_dir: str, quiet: bool, as_json: bool) -> None:
    """Join the shard parts in OUT (manifest-K-of-N.csv, ...) into manifest.csv.

    Refuses (exit 1) parts of different plans, missing shards, parts whose rows disagree
    with their run file, outputs listed twice, and listed files missing from OUT.
    """
    from .shards import merge as merge_

    summary = _run(lambda: merge_(output_dir, command=sys.argv))
    if not quiet:
        _say(
            f"augctl: merged {summary.shards} shards: {summary.rows} rows in "
            f"{output_dir}/manifest.csv, {summary.errors} in errors.csv",
        )
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False))


@main.command()
@click.argument("recipe")
def validate(recipe: str) -> None:
    """Check RECIPE (a file, or - for stdin) and print its normalized form.

    The YAML on stdout is a valid recipe with every default filled in; the comment
    after it lists the ops each step path resolves to.
    """
    from .pipeline import Step, walk_steps

    rec = _run(lambda: _load(recipe))
    click.echo(rec.to_yaml(), nl=False)
    click.echo("# steps:")
    for path, node in walk_steps(rec.pipeline):
        if isinstance(node, Step):
            params = ", ".join(f"{k}={json.dumps(v)}" for k, v in node.config.items())
            click.echo(f"#   {path:<28} {node.op.name}({params})  p={node.p:g}")
    click.echo(f"# recipe sha256: {rec.sha256}")


@main.command()
@click.argument("path", default="augctl.yaml", required=False)
@click.option("--force", is_flag=True, help="Overwrite PATH if it exists.")
def init(path: str, force: bool) -> None:
    """Write a commented starter recipe to PATH (default augctl.yaml; - for stdout)."""
    from .starter import STARTER

    text = STARTER.format(name="recipe.yaml" if path == "-" else path)
    if path == "-":
        click.echo(text, nl=False)
        return
    if os.path.exists(path) and not force:
        raise _usage(f"{path} already exists; pass --force to overwrite it")
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise _Failure(OutputError(f"cannot write {path}: {exc.strerror or exc}")) from None
    _say(f"augctl: wrote {path}; check it with: augctl validate {path}")


@main.command()
@click.argument("image", type=click.Path(dir_okay=False))
@option("-r", "--recipe", required=True, help="Recipe YAML file, or - for stdin.")
@option(
    "-n",
    "--count",
    "n",
    type=click.IntRange(1, 400),
    default=16,
    show_default=True,
    help="Variants to show.",
)
@option(
    "-o",
    "--output",
    default="preview.png",
    show_default=True,
    help="Where to write the contact sheet.",
)
@option(
    "--tile",
    type=click.IntRange(32, 2048),
    default=256,
    show_default=True,
    help="Tile size in pixels.",
)
@option("--seed", type=click.IntRange(0, MAX_SEED), help="Seed (overrides the recipe).")
def preview(image: str, recipe: str, n: int, output: str, tile: int, seed: int | None) -> None:
    """Write a contact sheet of N variants of IMAGE, each captioned with its ops."""
    from .contact_sheet import preview as preview_

    sheet = _run(lambda: preview_(_load(recipe), image, n=n, tile=tile, seed=seed))
    try:
        sheet.save(output)
    except (OSError, ValueError) as exc:
        raise _Failure(OutputError(f"cannot write {output}: {exc}")) from None
    _say(f"augctl: wrote {output} ({sheet.width}x{sheet.height}, {n} variants)")


@main.command()
@click.argument("name", required=False)
@option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@option("--markdown", is_flag=True, help="The README's op table.")
def ops(name: str | None, as_json: bool, markdown: bool) -> None:
    """List the ops with their parameters, defaults and accepted values."""
    from .ops import REGISTRY
    from .ops.describe import describe_ops

    if name is not None and name not in REGISTRY:
        raise _usage(f"unknown op '{name}'{did_you_mean(name, REGISTRY)}")
    if markdown:
        from .ops.describe import markdown_table

        click.echo(markdown_table(), nl=False)
        return
    table = describe_ops([name] if name else sorted(REGISTRY))
    if as_json:
        click.echo(json.dumps(table, indent=2))
        return
    for entry in table:
        click.echo(f"{entry['name']}  ({entry['family']})  {entry['doc']}")
        for param in entry["params"]:
            default = json.dumps(param["default"])
            click.echo(f"    {param['name']:<14} default {default:<16} {param['accepts']}")
        click.echo("    p              default 1.0              probability the step is applied")


# Errors of a write to standard output that failed (`run`).
_STREAM_ERRORS = frozenset({errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG, errno.EBADF})


def run() -> None:
    """The `augctl` program (its console script and `python -m augctl`): the CLI, as the
    whole process."""
    _PROGRAM[0] = True
    _hold_closed_standard_descriptors()
    try:
        main()
    except OSError as exc:
        # What escapes the commands unconverted is a write to standard output that failed (a
        # full disk behind a redirect; click handles a closed pipe): the library turns every
        # file error of its own into a typed one, naming the file.
        if exc.filename is not None or exc.errno not in _STREAM_ERRORS:
            raise
        # What stdout holds unwritten goes nowhere, so that Python's flush at exit can't fail.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            _point_at_null(sys.stdout.fileno())
        _say(f"augctl: error: cannot write to standard output: {exc.strerror}")
        sys.exit(1)


def _hold_closed_standard_descriptors() -> None:
    """Give a standard descriptor the process started without (`2>&-`) to /dev/null: else
    the next file opened takes its number (a lock file, a worker's pipe), and whatever is
    written to "stderr" at the C level lands there. Python leaves sys.stderr None (nothing
    is printed) either way."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            with contextlib.suppress(OSError):
                _point_at_null(fd)


def _point_at_null(fd: int) -> None:
    """Make descriptor `fd` /dev/null."""
    null = os.open(os.devnull, os.O_RDWR)
    if null != fd:
        os.dup2(null, fd)
        os.close(null)
