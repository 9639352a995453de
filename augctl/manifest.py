"""The manifest and errors CSV files: columns, the single durable writer, reading back."""

from __future__ import annotations

import contextlib
import csv
import ctypes
import functools
import heapq
import io
import itertools
import json
import os
import re
import time
from collections import Counter
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .errors import OutputError
from .images import TEMP_SUFFIX

COLUMNS = (
    "output_path",
    "source_path",
    "class",
    "variant",
    "seed",
    "ops",
    "width",
    "height",
    "source_sha256",
    "output_sha256",
    "recipe_sha256",
    "augctl_version",
)
ERROR_COLUMNS = ("source_path", "class", "reason")
MANIFEST = "manifest.csv"
ERRORS = "errors.csv"
RUN_JSON = "run.json"
PARTIAL_SUFFIX = ".partial"  # a shard's manifest while it runs; renamed into place when done

# Bookkeeping files a run (unsharded, or shard K of N) or a merge may leave at the root of OUT.
_BOOKKEEPING = re.compile(
    r"(?:(?:manifest|errors)(?:-\d+-of-\d+)?\.csv(?:\.partial)?|run(?:-\d+-of-\d+)?\.json)"
)
RUN_PART = re.compile(r"run-(\d+)-of-(\d+)\.json")


@dataclass(frozen=True)
class RunFiles:
    """The bookkeeping file names of one run: unsharded, or shard K of N.

    `working` is where rows are appended while the run goes on; `manifest` is the sorted
    file written when it completes (the same name for an unsharded run).
    """

    manifest: str = MANIFEST
    working: str = MANIFEST
    errors: str = ERRORS
    run_json: str = RUN_JSON

    @classmethod
    def for_shard(cls, suffix: str | None) -> RunFiles:
        """The names of shard `K-of-N` (`suffix`), or of an unsharded run (None)."""
        if suffix is None:
            return cls()
        part = f"manifest-{suffix}.csv"
        return cls(part, part + PARTIAL_SUFFIX, f"errors-{suffix}.csv", f"run-{suffix}.json")

    def names(self) -> tuple[str, ...]:
        """Every file name this run owns at the root of OUT."""
        return tuple(dict.fromkeys((self.manifest, self.working, self.errors, self.run_json)))


def is_bookkeeping(name: str) -> bool:
    """Whether a file at the root of OUT is augctl's own (a manifest, run file or temp file)."""
    return bool(_BOOKKEEPING.fullmatch(name)) or name.endswith(TEMP_SUFFIX)


def csv_text(rows: Iterable[dict[str, Any]], columns: tuple[str, ...], header: bool) -> str:
    """Rows as RFC 4180 CSV text (CRLF line ends, minimal quoting)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\r\n")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_text_atomic(path: str, text: str) -> None:
    """Replace a small text file atomically and durably."""
    with _replacing(path) as f:
        f.write(text)


@contextlib.contextmanager
def _replacing(path: str) -> Iterator[Any]:
    """A text file to write that replaces `path` atomically and durably once the block ends."""
    tmp = f"{path}.{os.getpid()}{TEMP_SUFFIX}"
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # disk full, interrupted: leave no temporary file behind
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(os.path.dirname(path) or ".")


# Rows a finished run sorts in memory at once; more go through sorted runs on disk, so its
# last step holds this many rows, not the whole manifest (a few kB each as dicts).
SORT_CHUNK_ROWS = 50_000
# Sorted files merged at once: the open files a final sort needs at most.
SORT_FAN_IN = 64
_CLASS = COLUMNS.index("class")


def write_sorted_manifest(path: str, rows: Iterable[dict[str, str]]) -> tuple[int, Counter[str]]:
    """Write `rows` to `path` sorted by output path, a later row for an output replacing an
    earlier one (a source redone); returns the row count and the rows per class."""
    spilled: list[str] = []
    numbers = itertools.count()
    # Temporary files beside `path`, `path.sortN-PID.augctl-tmp`: no dot after `path`'s own
    # but the one before the pid, so `api._temp_target` names `path` as theirs, and a killed
    # run's next run (a shard's too) removes them.

    def spill(sorted_rows: Iterable[tuple[str, int, list[str]]]) -> None:
        _spill(sorted_rows, f"{path}.sort{next(numbers)}-{os.getpid()}", spilled)

    chunk: list[tuple[str, int, list[str]]] = []
    try:
        for seq, row in enumerate(rows):
            chunk.append((row["output_path"], seq, [row[c] for c in COLUMNS]))
            if len(chunk) >= SORT_CHUNK_ROWS:
                chunk.sort()  # (output path, seq): seqs are unique, records never compared
                spill(chunk)
                chunk = []
        chunk.sort()
        if spilled:
            spill(chunk)
            # SORT_FAN_IN files merged at a time: a huge manifest needs no more open files.
            while len(spilled) > SORT_FAN_IN:
                group = spilled[:SORT_FAN_IN]
                spill(heapq.merge(*(_spilled(name) for name in group)))
                del spilled[:SORT_FAN_IN]
                for name in group:
                    with contextlib.suppress(OSError):
                        os.unlink(name)
            merged: Iterable[tuple[str, int, list[str]]] = heapq.merge(
                *(_spilled(name) for name in spilled)
            )
        else:
            merged = chunk
        count, per_class = 0, Counter[str]()
        with _replacing(path) as f:
            out = csv.writer(f, lineterminator="\r\n")
            out.writerow(COLUMNS)
            for _, group in itertools.groupby(merged, key=lambda item: item[0]):
                *_, (_, _, record) = group  # the last row for this output
                out.writerow(record)
                count += 1
                per_class[record[_CLASS]] += 1
        return count, per_class
    finally:
        for name in spilled:
            with contextlib.suppress(OSError):
                os.unlink(name)


def _spill(rows: Iterable[tuple[str, int, list[str]]], name: str, spilled: list[str]) -> None:
    """Write sorted rows to a new temporary file, recorded in `spilled` before it is written
    (an interrupted write is removed too)."""
    name += TEMP_SUFFIX
    spilled.append(name)
    with open(name, "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f, lineterminator="\r\n")
        for key, seq, record in rows:
            out.writerow([key, seq, *record])


def _spilled(name: str) -> Iterator[tuple[str, int, list[str]]]:
    with open(name, encoding="utf-8", newline="") as f:
        for key, seq, *record in csv.reader(f, strict=True):
            yield key, int(seq), record


def _fsync_dir(path: str) -> None:
    """Make a rename in `path` durable (a no-op where directories can't be synced)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_csv(path: str, rows: Iterable[dict[str, Any]], columns: tuple[str, ...]) -> None:
    """Write a whole CSV file (header included) atomically."""
    write_text_atomic(path, csv_text(rows, columns, header=True))


def write_json(path: str, data: Any) -> None:
    """Write a JSON file atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def read_rows(path: str, columns: tuple[str, ...] = COLUMNS) -> list[dict[str, str]]:
    """The complete rows of a manifest-like CSV; a torn last record (from a crash) is dropped."""
    return list(iter_rows(path, columns))


def iter_rows(path: str, columns: tuple[str, ...] = COLUMNS) -> Iterator[dict[str, str]]:
    """`read_rows`, one row at a time (a manifest can hold millions)."""
    yield from _records(path, columns)


def _torn(path: str, columns: tuple[str, ...] = COLUMNS) -> bool:
    """Whether a manifest-like CSV ends in a record a crash cut short (`iter_rows` drops it)."""
    records = _records(path, columns)
    while True:
        try:
            next(records)
        except StopIteration as end:
            return bool(end.value)


def _records(path: str, columns: tuple[str, ...]) -> Generator[dict[str, str], None, bool]:
    """The complete rows of a CSV file, read as a stream; returns whether its last record was
    torn (cut inside a quoted field, right after a field, or before its line terminator)."""
    try:
        with open(path, "rb") as f:
            if f.seek(0, os.SEEK_END) == 0:
                return False
            f.seek(-1, os.SEEK_END)
            terminated = f.read(1) == b"\n"
        with open(path, encoding="utf-8", newline="") as f:
            records = csv.reader(f, strict=True)
            try:
                header = next(records, None)
            except csv.Error:
                return True
            if header is None:
                return True
            if tuple(header) != columns:
                raise OutputError(
                    f"{path} is not an augctl file: its columns are not {', '.join(columns)}"
                )
            # A row is given once the next one parses: the last only if it was terminated.
            held: dict[str, str] | None = None
            try:
                for record in records:
                    if len(record) != len(columns):
                        break
                    if held is not None:
                        yield held
                    held = dict(zip(columns, record))
                else:
                    if held is not None and terminated:
                        yield held
                    return held is not None and not terminated
            except csv.Error:
                pass
            if held is not None:  # the torn record is the one after it
                yield held
            return True
    except FileNotFoundError:
        return False
    except (OSError, UnicodeDecodeError) as exc:
        raise OutputError(f"cannot read {path}: {exc}") from None


_SHARD_FILE = re.compile(r"(manifest|errors|run)-\d+-of-\d+\.(csv|json)")


def is_reserved(name: str) -> bool:
    """Whether a class folder would clash with a file augctl keeps in OUT."""
    return name in (MANIFEST, ERRORS, RUN_JSON) or bool(_SHARD_FILE.fullmatch(name))


def read_run(out_dir: str, name: str = RUN_JSON) -> dict[str, Any] | None:
    """A run file of OUT (run.json by default) as a dict, or None when there is none."""
    return read_json(os.path.join(out_dir, name))


class ManifestWriter:
    """Appends rows only after their files are durable, syncing in groups about once a second."""

    def __init__(self, path: str, sync_interval: float = 1.0) -> None:
        self.path = path
        self.sync_interval = sync_interval
        self.pending: list[dict[str, Any]] = []
        self.last_sync = time.monotonic()
        self._repair_tail()
        new = not os.path.exists(path) or os.path.getsize(path) == 0
        self.file = open(path, "a", encoding="utf-8", newline="")
        if new:
            self.file.write(csv_text([], COLUMNS, header=True))
            self.file.flush()

    def _repair_tail(self) -> None:
        """Drop a torn last record left by a crash so the next append starts a fresh row
        (read as a stream, and rewritten only if torn: a manifest can hold millions)."""
        if not _torn(self.path):
            return
        with _replacing(self.path) as f:
            out = csv.writer(f, lineterminator="\r\n")
            out.writerow(COLUMNS)
            for row in iter_rows(self.path):
                out.writerow([row[c] for c in COLUMNS])

    def add(self, rows: list[dict[str, Any]]) -> None:
        """Queue rows whose files were written; commit the group when it is due."""
        self.pending.extend(rows)
        if time.monotonic() - self.last_sync >= self.sync_interval:
            self.commit()

    def commit(self) -> None:
        """Make queued files durable (one sync for the group), then append their rows."""
        if self.pending:
            _sync_filesystem(self.file.fileno())
            self.file.write(csv_text(self.pending, COLUMNS, header=False))
            self.file.flush()
            os.fsync(self.file.fileno())
            self.pending.clear()
        self.last_sync = time.monotonic()

    def close(self) -> None:
        """Commit what is queued and close the file."""
        try:
            self.commit()
        finally:
            self.file.close()


def _sync_filesystem(fd: int) -> None:
    """Flush the filesystem holding `fd` (Linux syncfs); elsewhere every filesystem."""
    syncfs = _libc_syncfs()
    if syncfs is None or syncfs(fd) != 0:
        os.sync()


@functools.lru_cache(maxsize=1)
def _libc_syncfs() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None


def read_json(path: str) -> dict[str, Any] | None:
    """A JSON object from a file, or None when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_run_recipe(out_dir: str, name: str = RUN_JSON) -> str | None:
    """The recipe sha256 recorded in a run file of OUT, or None when there is none."""
    return (read_run(out_dir, name) or {}).get("recipe_sha256")


def recorded_recipes(out_dir: str) -> dict[str, str]:
    """Run file name -> recipe sha256, for every run (merged or shard) recorded in OUT."""
    found = {}
    for name in sorted(os.listdir(out_dir)):
        if name == RUN_JSON or RUN_PART.fullmatch(name):
            sha = read_run_recipe(out_dir, name)
            if sha:
                found[name] = sha
    return found
