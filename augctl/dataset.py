"""Walk a class-per-folder image tree: classes, sources, junk, and what to warn about."""

from __future__ import annotations

import os
import threading
import unicodedata
from dataclasses import dataclass, field

from .errors import PlanError

# Files and folders that tools and operating systems leave in datasets; never images.
JUNK_NAMES = frozenset({"thumbs.db", "desktop.ini", "__macosx", "$recycle.bin", "lost+found"})


@dataclass(frozen=True, slots=True)
class Source:
    """One source image: `path` to read it, `rel` (POSIX, NFC, relative to the root) to name it."""

    path: str
    rel: str
    cls: str


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file that looks like a source but can't be used, with the reason."""

    rel: str
    cls: str
    reason: str


@dataclass
class Listing:
    """Everything found under the input root, sorted by relative path."""

    root: str
    sources: list[Source] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def is_junk(name: str) -> bool:
    """Hidden files (.DS_Store, ._x, .ipynb_checkpoints, ...) and OS litter."""
    return name.startswith(".") or name.lower() in JUNK_NAMES


def nfc(text: str) -> str:
    """Unicode NFC, so one name typed on macOS and Linux is one identity."""
    return unicodedata.normalize("NFC", text)


def locate(root: str, rel: str) -> str:
    """The path under `root` of the source named `rel` (NFC), whatever normal form its folder
    and file names have on disk (files copied from macOS are often NFD); if there is no such
    file, the path `rel` spells."""
    path = os.path.join(root, *rel.split("/"))
    if os.path.lexists(path):
        return path
    return _locate(root, rel.split("/")) or path


def _locate(folder: str, parts: list[str]) -> str | None:
    """`parts` under `folder`, each part matched by its NFC form; None if nothing matches.
    Two names that differ only in normal form may both exist: each is tried in turn."""
    exact = os.path.join(folder, parts[0])
    names = [parts[0]] if os.path.lexists(exact) else []
    names += [n for n in _nfc_names(folder, parts[0]) if n != parts[0]]
    for name in names:
        path = os.path.join(folder, name)
        if len(parts) == 1:
            return path
        found = _locate(path, parts[1:])
        if found is not None:
            return found
    return None


# The last few folders read (first in, first out): names by NFC form, with the folder's
# mtime then, so that finding many files in one folder stored in NFD lists it once, not
# once per file; a name missing from it reads the folder again only if it changed since.
_LISTINGS: dict[str, tuple[int, dict[str, list[str]]]] = {}
_LISTINGS_KEPT = 4
_LISTINGS_LOCK = threading.Lock()


def _nfc_names(folder: str, part: str) -> list[str]:
    """The names in `folder` whose NFC form is `part`."""
    key = os.path.abspath(folder)
    cached = _LISTINGS.get(key)
    if cached is not None and part in cached[1]:
        return cached[1][part]
    try:
        mtime = os.stat(key).st_mtime_ns
        if cached is not None and cached[0] == mtime:
            return []
        names = sorted(os.listdir(key))
    except OSError:
        return []
    listing: dict[str, list[str]] = {}
    for name in names:
        listing.setdefault(nfc(name), []).append(name)
    with _LISTINGS_LOCK:
        _LISTINGS.pop(key, None)
        while len(_LISTINGS) >= _LISTINGS_KEPT:
            del _LISTINGS[next(iter(_LISTINGS))]
        _LISTINGS[key] = (mtime, listing)
    return listing.get(part, [])


def valid_text(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes survive as lone surrogates
        return False
    return True


def shown_name(name: str) -> str:
    """A name that isn't valid UTF-8, bad bytes as \\xNN (readable; two such names stay two)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def walk(root: str, extensions: tuple[str, ...], exclude: str | None = None) -> Listing:
    """List the sources under `root`: `root/<class>/**/<image>`; `exclude` is never entered."""
    if not os.path.isdir(root):
        what = "does not exist" if not os.path.exists(root) else "is not a directory"
        raise PlanError(f"input directory {root} {what}")
    exts = {e.lower() for e in extensions}
    listing = Listing(root=root)
    skip_dir = os.path.realpath(exclude) if exclude else None
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        raise PlanError(f"cannot list input directory {root}: {exc.strerror or exc}") from None
    root_images = []
    # IN and every folder above it count as ancestors, so a link such as cls/up -> ../..
    # is a loop that is cut, not a way to pull the whole disk into a class.
    above = _folder_and_parents(root)
    for entry in entries:
        if is_junk(entry.name):
            continue
        if _is_dir(entry):
            if skip_dir and os.path.realpath(entry.path) == skip_dir:
                continue
            if not valid_text(entry.name):
                listing.warnings.append(f"class folder {entry.name!r} is not valid UTF-8; skipped")
                continue
            cls = nfc(entry.name)
            found = _walk_class(listing, entry.path, cls, cls, exts, skip_dir, above)
            listing.classes.append(cls)
            if not found:
                listing.warnings.append(
                    f"class folder '{cls}' has no images; nothing written for it"
                )
        elif os.path.splitext(entry.name)[1].lower() in exts:
            root_images.append(entry.name)
        elif entry.is_symlink() and not os.path.exists(entry.path):
            listing.warnings.append(
                f"{entry.name!r} at the input root is a broken link; no class folder read from it"
            )
    if root_images:
        listing.warnings.append(
            f"{len(root_images)} image(s) at the input root are in no class folder and are skipped "
            f"(e.g. {root_images[0]}); put them in {root}/<class>/"
        )
    listing.sources.sort(key=lambda s: s.rel)
    listing.skipped.sort(key=lambda s: s.rel)
    listing.classes.sort()
    return listing


def _folder_and_parents(path: str) -> set[tuple[int, int]]:
    keys = set()
    current = os.path.realpath(path)
    while True:
        try:
            st = os.stat(current)
            keys.add((st.st_dev, st.st_ino))
        except OSError:
            pass
        parent = os.path.dirname(current)
        if parent == current:
            return keys
        current = parent


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows symlinks
    except OSError:
        return False


def _walk_class(
    listing: Listing,
    path: str,
    rel: str,
    cls: str,
    exts: set[str],
    skip_dir: str | None,
    ancestors: set[tuple[int, int]],
) -> int:
    """Add the sources below one folder; returns how many it found (loops are cut)."""
    try:
        st = os.stat(path)
        entries = list(os.scandir(path))
    except OSError as exc:
        listing.warnings.append(f"cannot list folder {rel}: {exc.strerror or exc}; skipped")
        return 0
    key = (st.st_dev, st.st_ino)
    if key in ancestors:
        listing.warnings.append(f"folder {rel} links back to a folder above it; not followed")
        return 0
    ancestors = ancestors | {key}
    found = 0
    for entry in entries:
        if is_junk(entry.name):
            continue
        child_rel = f"{rel}/{entry.name}"
        if _is_dir(entry):
            if skip_dir and os.path.realpath(entry.path) == skip_dir:
                continue
            found += _walk_class(listing, entry.path, child_rel, cls, exts, skip_dir, ancestors)
            continue
        if os.path.splitext(entry.name)[1].lower() not in exts:
            continue
        if not valid_text(child_rel):
            listing.skipped.append(
                Skipped(shown_name(child_rel), cls, "file name is not valid UTF-8; rename it")
            )
            continue
        child_rel = nfc(child_rel)
        try:
            is_file = entry.is_file()  # follows symlinks
        except OSError:
            is_file = False
        if not is_file:
            broken = entry.is_symlink() and not os.path.exists(entry.path)
            reason = "broken symbolic link" if broken else "not a regular file"
            listing.skipped.append(Skipped(child_rel, cls, reason))
            continue
        listing.sources.append(Source(path=entry.path, rel=child_rel, cls=cls))
        found += 1
    return found
