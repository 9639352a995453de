"""Merging shard parts: check that manifest-K-of-N files make one whole plan, then join them."""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from . import __version__, manifest
from .errors import MergeError, UsageError

_PART_FILE = re.compile(
    r"(?:manifest|errors)-(\d+)-of-(\d+)\.csv(?:\.partial)?|run-(\d+)-of-(\d+)\.json"
)
# What every part records about the plan it belongs to; parts that differ can't be joined.
PLAN_KEYS = ("shards", "recipe_sha256", "listing_sha256", "augctl_version")
_SHOWN = 5  # offenders named in a message before "and N more"


@dataclass
class MergeSummary:
    """What `merge` joined: the shard count, rows and errors, outputs per class."""

    output_dir: str
    shards: int
    rows: int = 0
    errors: int = 0
    per_class: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view of the summary."""
        return asdict(self)


def merge(output_dir: str | os.PathLike, *, command: list[str] | None = None) -> MergeSummary:
    """Join the shard parts in OUT into manifest.csv, errors.csv and run.json.

    Refuses (MergeError) when the parts come from different plans, a shard is missing or
    incomplete, a part's row count disagrees with its run file, an output is listed twice,
    or a listed file is not in OUT. Merging again gives the same files.
    """
    out = os.fspath(output_dir)
    if not os.path.isdir(out):
        raise UsageError(f"output directory {out} does not exist")
    count = _shard_count(out)
    infos = {
        k: manifest.read_json(os.path.join(out, f"run-{k}-of-{count}.json")) for k in range(count)
    }
    done = {
        k: info
        for k, info in infos.items()
        if info
        and info.get("status") == "complete"
        and os.path.isfile(os.path.join(out, f"manifest-{k}-of-{count}.csv"))
    }
    _check_one_plan(done, count)
    _check_complete(out, infos, done, count)
    rows, errors, owners = _read_parts(out, done, count)
    _check_present(out, owners, count)
    rows.sort(key=lambda r: r["output_path"])
    errors.sort(key=lambda e: e["source_path"])
    summary = MergeSummary(
        output_dir=out,
        shards=count,
        rows=len(rows),
        errors=len(errors),
        per_class=dict(sorted(Counter(r["class"] for r in rows).items())),
    )
    first = done[0]
    try:
        manifest.write_csv(os.path.join(out, manifest.ERRORS), errors, manifest.ERROR_COLUMNS)
        manifest.write_csv(os.path.join(out, manifest.MANIFEST), rows, manifest.COLUMNS)
        manifest.write_json(
            os.path.join(out, manifest.RUN_JSON),
            {
                "augctl_version": __version__,
                "status": "complete",
                "command": command,
                **{key: first.get(key) for key in PLAN_KEYS},
                "recipe": first.get("recipe"),
                "input_dir": first.get("input_dir"),
                "input_root": first.get("input_root"),
                "merged": [f"manifest-{k}-of-{count}.csv" for k in range(count)],
                "rows": len(rows),
                "errors": len(errors),
                "summary": summary.to_dict(),
            },
        )
    except OSError as exc:
        raise MergeError(f"cannot write to {out}: {exc.strerror or exc}") from None
    return summary


def _shard_count(out: str) -> int:
    """N of the K-of-N files in OUT; refuses none, and a mix of shard counts."""
    by_count: dict[int, list[str]] = {}
    for name in sorted(os.listdir(out)):
        match = _PART_FILE.fullmatch(name)
        if match:
            k, n = (int(g) for g in match.groups() if g is not None)
            by_count.setdefault(n, []).append(name)
            if k >= n:
                raise MergeError(f"{name}: there is no shard {k} of {n} (shards count from 0)")
    if not by_count:
        raise UsageError(
            f"{out} holds no shard parts (manifest-K-of-N.csv); "
            "run augctl expand --shard K/N into it first"
        )
    if len(by_count) > 1:
        splits = "; ".join(f"{n} shards: {_names(names)}" for n, names in sorted(by_count.items()))
        raise MergeError(
            f"parts from different plans: {out} holds parts of more than one split ({splits}); "
            "delete the files of the split you don't want"
        )
    return next(iter(by_count))


def _check_one_plan(done: dict[int, dict[str, Any]], count: int) -> None:
    for key in PLAN_KEYS:
        values = {k: info.get(key) for k, info in done.items()}
        if len(set(map(str, values.values()))) > 1:
            shown = ", ".join(f"run-{k}-of-{count}.json: {_short(v)}" for k, v in values.items())
            raise MergeError(
                f"parts from different plans: their {key} differs ({shown}); "
                "re-run every shard with the same recipe, input and augctl version"
            )


def _check_complete(
    out: str, infos: dict[int, dict[str, Any] | None], done: dict[int, Any], count: int
) -> None:
    missing = [k for k in range(count) if k not in done]
    if not missing:
        return
    notes = []
    for k in missing:
        info = infos[k]
        if info is not None and info.get("status") == "complete":
            notes.append(f"{k}: manifest-{k}-of-{count}.csv is gone")
        elif info is not None:
            notes.append(f"{k}: started but did not complete")
    note = f" ({'; '.join(notes)})" if notes else ""
    raise MergeError(
        f"missing shards: {_numbers(missing)} of {count}{note} — {_rerun(missing, count)}"
    )


def _read_parts(
    out: str, done: dict[int, dict[str, Any]], count: int
) -> tuple[list[dict[str, str]], list[dict[str, str]], dict[str, list[int]]]:
    """Every part's rows and errors (counts checked against its run file), and who lists what."""
    rows: list[dict[str, str]] = []
    errors: list[dict[str, str]] = []
    owners: dict[str, list[int]] = {}
    wrong: list[tuple[int, str]] = []
    for k, info in sorted(done.items()):
        part_name, errors_name = f"manifest-{k}-of-{count}.csv", f"errors-{k}-of-{count}.csv"
        part = manifest.read_rows(os.path.join(out, part_name))
        part_errors = manifest.read_rows(os.path.join(out, errors_name), manifest.ERROR_COLUMNS)
        run_name = f"run-{k}-of-{count}.json"
        if not os.path.isfile(os.path.join(out, errors_name)):
            wrong.append((k, f"{errors_name} is missing"))
        elif len(part_errors) != info.get("errors"):
            recorded = info.get("errors")
            wrong.append(
                (k, f"{errors_name} has {len(part_errors)} rows, {run_name} records {recorded}")
            )
        if len(part) != info.get("rows"):
            wrong.append(
                (k, f"{part_name} has {len(part)} rows, {run_name} records {info.get('rows')}")
            )
        if {r.get("recipe_sha256") for r in part} - {info.get("recipe_sha256")}:
            wrong.append((k, f"{part_name} has rows of another recipe than {run_name}"))
        for row in part:
            owners.setdefault(row["output_path"], []).append(k)
        rows.extend(part)
        errors.extend(part_errors)
    _check_doubled(owners, count)  # before the counts: a doubled row is the more precise news
    if wrong:
        problems = "; ".join(message for _, message in wrong)
        raise MergeError(f"{problems} — {_rerun(sorted({k for k, _ in wrong}), count)}")
    return rows, errors, owners


def _check_doubled(owners: dict[str, list[int]], count: int) -> None:
    """No output listed twice, in one part or in two."""
    doubled = sorted(path for path, ks in owners.items() if len(ks) > 1)
    if doubled:
        shown = [f"{p} ({len(owners[p])} times, in {_parts(owners[p], count)})" for p in doubled]
        advice = _rerun(_shards_of(doubled, owners), count)
        raise MergeError(f"duplicated output paths: {_names(shown)} — {advice}")


def _check_present(out: str, owners: dict[str, list[int]], count: int) -> None:
    """Every listed file is in OUT."""
    absent = sorted(p for p in owners if not os.path.isfile(os.path.join(out, p)))
    if absent:
        raise MergeError(
            f"listed files missing from {out}: {_names(absent)} — "
            f"{_rerun(_shards_of(absent, owners), count)}"
        )


def _shards_of(paths: list[str], owners: dict[str, list[int]]) -> list[int]:
    return sorted({k for p in paths for k in owners[p]})


def _parts(ks: list[int], count: int) -> str:
    return ", ".join(f"manifest-{k}-of-{count}.csv" for k in sorted(set(ks)))


def _rerun(ks: list[int], count: int) -> str:
    """The advice that ends a refusal: which shards to run again."""
    flags = " and ".join(f"--shard {k}/{count}" for k in ks)
    return f"re-run {'them' if len(ks) > 1 else 'it'} with {flags}, then merge again"


def _names(items: list[str]) -> str:
    more = len(items) - _SHOWN
    return ", ".join(items[:_SHOWN]) + (f" and {more} more" if more > 0 else "")


def _numbers(ks: list[int]) -> str:
    return ", ".join(str(k) for k in ks)


def _short(value: Any) -> str:
    text = str(value)
    return text[:12] if len(text) == 64 else text
