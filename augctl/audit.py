"""Checking an output tree against its manifest, and re-creating outputs from their rows."""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from . import __version__, manifest
from .dataset import is_junk, locate
from .errors import UsageError
from .images import TEMP_SUFFIX, keeps_alpha, output_format
from .recipe import Recipe, load_recipe


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an output tree."""

    path: str
    kind: str  # missing | mismatch | orphan | temporary | duplicate | unsafe | replay
    detail: str


@dataclass
class Report:
    """The result of `verify`: rows checked and problems found."""

    checked: int = 0
    replayed: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self)}


@dataclass(frozen=True)
class Replayed:
    """The outcome of re-creating one output from its manifest row."""

    output_path: str
    identical: bool
    detail: str


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _safe_rel(rel: str) -> bool:
    norm = posixpath.normpath(rel)
    return bool(rel) and not rel.startswith("/") and norm == rel and not norm.startswith("..")


def _read_manifest(out_dir: str) -> list[dict[str, str]]:
    path = os.path.join(out_dir, manifest.MANIFEST)
    if not os.path.isfile(path):
        raise UsageError(f"{out_dir} has no {manifest.MANIFEST}; is it an augctl output directory?")
    return manifest.read_rows(path)


def _run_info(out_dir: str) -> dict[str, Any]:
    info = manifest.read_run(out_dir)
    if info is None or "recipe" not in info:
        raise UsageError(f"{out_dir} has no readable {manifest.RUN_JSON}; cannot replay")
    return info


def verify(
    out_dir: str | os.PathLike, *, deep: bool = False, input_dir: str | None = None
) -> Report:
    """Check every manifest row against its file (exists, sha256) and list orphans.

    With `deep`, every row is also re-created from its source and recorded ops.
    """
    out = os.fspath(out_dir)
    rows = _read_manifest(out)
    report = Report(checked=len(rows))
    listed: set[str] = set()
    for row in rows:
        rel = row["output_path"]
        if not _safe_rel(rel):
            report.problems.append(Problem(rel, "unsafe", "path leaves the output directory"))
            continue
        if rel in listed:
            report.problems.append(Problem(rel, "duplicate", "listed more than once"))
        listed.add(rel)
        path = os.path.join(out, rel)
        if not os.path.isfile(path):
            report.problems.append(
                Problem(rel, "missing", "listed in the manifest but not on disk")
            )
        elif _sha256_file(path) != row["output_sha256"]:
            size = os.path.getsize(path)
            report.problems.append(
                Problem(rel, "mismatch", f"sha256 differs from the manifest ({size} bytes on disk)")
            )
    for rel in _files_under_classes(out):
        if rel.endswith(TEMP_SUFFIX):
            report.problems.append(Problem(rel, "temporary", "left by an interrupted run"))
        elif rel not in listed:
            report.problems.append(Problem(rel, "orphan", "on disk but not in the manifest"))
    if deep:
        for result in replay(
            out,
            [r["output_path"] for r in rows if _safe_rel(r["output_path"])],
            input_dir=input_dir,
        ):
            report.replayed += 1
            if not result.identical:
                report.problems.append(Problem(result.output_path, "replay", result.detail))
    report.problems.sort(key=lambda p: (p.path, p.kind))
    return report


def _files_under_classes(out: str) -> Iterable[str]:
    for entry in sorted(os.scandir(out), key=lambda e: e.name):
        if not entry.is_dir(follow_symlinks=False) or is_junk(entry.name):
            continue
        for base, dirs, files in os.walk(entry.path):
            dirs.sort()
            for name in sorted(files):
                if name.endswith(TEMP_SUFFIX) or not is_junk(name):
                    yield os.path.relpath(os.path.join(base, name), out).replace(os.sep, "/")


def replay(
    out_dir: str | os.PathLike, paths: Iterable[str], *, input_dir: str | None = None
) -> list[Replayed]:
    """Re-create outputs from their manifest rows (source + recorded ops, no rng)."""
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise UsageError("replay takes a list of paths, not one path: [path]")
    # Quiet as `expand` is: Pillow's warnings about a damaged source name no file, and what
    # matters about a source is in its result.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _replay(out_dir, paths, input_dir)


def _replay(
    out_dir: str | os.PathLike, paths: Iterable[str], input_dir: str | None
) -> list[Replayed]:
    from .execute import load_source, partner_loader, render  # numpy/Pillow only when replaying
    from .ops.base import Partners
    from .pipeline import split_decode

    out = os.fspath(out_dir)
    info = _run_info(out)
    recipe: Recipe = load_recipe(info["recipe"], name=os.path.join(out, "run.json") + " recipe")
    root = input_dir or info.get("input_root") or info.get("input_dir")
    rows = {r["output_path"]: r for r in _read_manifest(out)}
    wanted = [_as_output_rel(out, p) for p in paths]
    results: list[Replayed] = []
    cache: tuple[str, Any] | None = None
    for rel in sorted(wanted, key=lambda r: (rows[r]["source_path"], r) if r in rows else ("", r)):
        row = rows.get(rel)
        if row is None:
            results.append(Replayed(rel, False, "not in the manifest"))
            continue
        source = locate(root, row["source_path"])
        fmt, _ = output_format(recipe.format, posixpath.splitext(row["source_path"])[1])
        ops = json.loads(row["ops"])
        draft = split_decode(ops)[0]
        scale = int(draft["scale"]) if draft else 1  # decode as the run did
        try:
            if cache is None or cache[0] != (source, fmt, scale):
                cache = ((source, fmt, scale), load_source(source, recipe, fmt, scale))
            loaded = cache[1]
        except Exception as exc:
            results.append(Replayed(rel, False, f"cannot load source {row['source_path']}: {exc}"))
            continue
        if loaded.sha256 != row["source_sha256"]:
            results.append(
                Replayed(rel, False, f"source {row['source_path']} changed since the run")
            )
            continue
        partners = Partners((), row["source_path"], partner_loader(root, recipe, keeps_alpha(fmt)))
        _, data = render(loaded, ops, fmt, recipe, partners)
        made = hashlib.sha256(data).hexdigest()
        results.append(
            _compare(rel, made, row, os.path.join(out, rel), _versions_differ(info, row))
        )
    return results


def _versions_differ(info: dict[str, Any], row: dict[str, str]) -> str:
    """Why bytes may legitimately differ: the run's augctl, Pillow or numpy is not this one."""
    from .execute import library_versions

    then = {"augctl": row.get("augctl_version", ""), **info.get("libraries", {})}
    resampler = info.get("recipe", {}).get("resampler", "pillow")
    now = {"augctl": __version__, **library_versions(resampler)}
    changed = [
        f"{k} {then[k]} then, {now[k]} now" for k in now if then.get(k) not in ("", None, now[k])
    ]
    return f" (made with other versions: {', '.join(changed)})" if changed else ""


def _compare(rel: str, made: str, row: dict[str, str], path: str, versions: str = "") -> Replayed:
    """Compare re-created bytes with the manifest's record and the file on disk."""
    if made != row["output_sha256"]:
        return Replayed(rel, False, f"re-created bytes differ from the manifest's sha256{versions}")
    if not os.path.isfile(path):
        return Replayed(rel, False, "re-created bytes match the manifest, but the file is missing")
    if _sha256_file(path) != made:
        return Replayed(
            rel, False, "re-created bytes match the manifest, but the file on disk differs"
        )
    return Replayed(rel, True, "identical")


def _as_output_rel(out: str, path: str) -> str:
    """Accept a path relative to OUT, or a path to a file inside OUT."""
    if os.path.exists(path):
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(out))
        if not rel.startswith(".."):
            return rel.replace(os.sep, "/")
    return path.replace(os.sep, "/")
