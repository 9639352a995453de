"""Planning: which variants each source gets, their seeds and their output names."""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass

from .dataset import Listing, Source
from .errors import PlanError
from .images import output_format
from .recipe import Recipe

_MAX_NAME_BYTES = 200  # well under the 255-byte file-name limit of common filesystems


@dataclass(frozen=True)
class Variant:
    """One output: its variant index (0 = the original), rng seed and path relative to OUT."""

    index: int
    seed: int
    out_rel: str


@dataclass(frozen=True)
class Task:
    """One unit of work: a source decoded once, and the variants made from it."""

    source: Source
    fmt: str
    variants: tuple[Variant, ...]


def stable_hash(*parts: object) -> int:
    """A 64-bit hash of `parts` that is the same in every process and on every machine."""
    text = "\x00".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def variant_seed(seed: int, rel: str, index: int) -> int:
    """The seed of one variant: a pure function of recipe seed, source path and index."""
    return stable_hash("augctl-variant", seed, rel, index)


def output_stem(rel: str) -> str:
    """The readable output stem of a source: `cls/sub/x.jpg` -> `sub__x_jpg`.

    Subfolders are folded into the name (outputs sit directly in their class folder)
    and the source extension is kept, so `x.jpg` and `x.png` never collide.
    """
    parts = rel.split("/")[1:]
    base, ext = posixpath.splitext(parts[-1])
    stem = "__".join([*parts[:-1], base]) + ("_" + ext[1:] if ext else "")
    if len(stem.encode("utf-8")) > _MAX_NAME_BYTES:
        cut = stem.encode("utf-8")[: _MAX_NAME_BYTES - 17].decode("utf-8", "ignore")
        stem = f"{cut}~{stable_hash('augctl-name', rel):016x}"
    return stem


def variant_indices(recipe: Recipe, count: int) -> list[int]:
    """Variant indices of a source with `count` augmented variants (0 is the original)."""
    return ([0] if recipe.include_originals else []) + list(range(1, count + 1))


def make_plan(listing: Listing, recipe: Recipe) -> list[Task]:
    """One task per source with its variants, names proven collision-free."""
    counts = _augmented_counts(listing.sources, recipe)
    tasks = []
    seen: dict[str, str] = {}
    for source, count in zip(listing.sources, counts):
        fmt, ext = output_format(recipe.format, posixpath.splitext(source.rel)[1])
        stem = output_stem(source.rel)
        variants = []
        for index in variant_indices(recipe, count):
            out_rel = f"{source.cls}/{stem}_aug{index:03d}{ext}"
            key = out_rel.casefold()  # collisions on case-insensitive filesystems count too
            if key in seen:
                raise PlanError(
                    f"sources {seen[key]} and {source.rel} would both be written as {out_rel} "
                    f"(on a case-insensitive filesystem); rename one of them"
                )
            seen[key] = source.rel
            variants.append(Variant(index, variant_seed(recipe.seed, source.rel, index), out_rel))
        if variants:
            tasks.append(Task(source=source, fmt=fmt, variants=tuple(variants)))
    return tasks


def _augmented_counts(sources: list[Source], recipe: Recipe) -> list[int]:
    """Augmented variants per source: `variants`, or spread evenly to a class target."""
    if recipe.balance_target is None:
        return [recipe.variants] * len(sources)
    by_class: dict[str, list[int]] = {}
    for i, s in enumerate(sources):
        by_class.setdefault(s.cls, []).append(i)
    counts = [0] * len(sources)
    for members in by_class.values():
        have = len(members) if recipe.include_originals else 0
        need = max(0, recipe.balance_target - have)
        base, extra = divmod(need, len(members))
        # Which sources get the one extra variant is decided by a stable hash, not list order,
        # so it doesn't drift when unrelated files are added.
        ranked = sorted(
            members, key=lambda i: stable_hash("augctl-balance", recipe.seed, sources[i].rel)
        )
        for rank, i in enumerate(ranked):
            counts[i] = base + (1 if rank < extra else 0)
    return counts
