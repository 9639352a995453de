"""Planning: which variants each source gets, their seeds and their output names."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import posixpath
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from .dataset import Listing, Source
from .errors import PlanError, UsageError
from .images import output_format
from .recipe import Recipe

_MAX_NAME_BYTES = 200  # well under the 255-byte file-name limit of common filesystems


@dataclass(frozen=True, slots=True)
class Variant:
    """One output: its variant index (0 = the original), rng seed and path relative to OUT."""

    index: int
    seed: int
    out_rel: str


@dataclass(frozen=True, slots=True)
class Task:
    """One unit of work: a source decoded once, and the variants made from it."""

    source: Source
    fmt: str
    variants: tuple[Variant, ...]


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0-based): the sources whose stable hash falls in it."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise UsageError(
                f"shard {self.index}/{self.count} does not exist: "
                f"K/N needs N >= 1 and 0 <= K < N (shards are numbered from 0)"
            )

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def suffix(self) -> str:
        """What this shard's bookkeeping files are named with: `K-of-N`."""
        return f"{self.index}-of-{self.count}"

    def owns(self, rel: str) -> bool:
        """Whether the source with this relative path belongs to this shard."""
        return shard_of(rel, self.count) == self.index


def stable_hash(*parts: object) -> int:
    """A 64-bit hash of `parts` that is the same in every process and on every machine."""
    text = "\x00".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def variant_seed(seed: int, rel: str, index: int) -> int:
    """The seed of one variant: a pure function of recipe seed, source path and index."""
    return stable_hash("augctl-variant", seed, rel, index)


def shard_of(rel: str, count: int) -> int:
    """The shard (of `count`) a source belongs to: a pure function of its relative path."""
    return stable_hash("augctl-shard", rel) % count


def parse_shard(text: str) -> Shard:
    """`K/N` -> Shard(K, N)."""
    k, sep, n = text.partition("/")
    if not sep or not k.strip().isdigit() or not n.strip().isdigit():
        raise UsageError(f"expected K/N with whole numbers, e.g. 0/4, not {text!r}")
    return Shard(int(k), int(n))


def shard_from_env(env: Mapping[str, str], shards: int | None = None) -> Shard:
    """The shard of a Slurm array task or a Kubernetes indexed Job, from its environment.

    Slurm: SLURM_ARRAY_TASK_ID, _MIN, _COUNT (and _STEP when the array has one).
    Kubernetes: JOB_COMPLETION_INDEX, with the Job's completion count as `shards`.
    """
    if "SLURM_ARRAY_TASK_ID" in env:
        names = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT")
        missing = [name for name in names if name not in env]
        if missing:
            raise UsageError(
                f"--shard-from-env: SLURM_ARRAY_TASK_ID is set but {', '.join(missing)} "
                "is not; run inside a Slurm job array (sbatch --array=0-N)"
            )
        task, low, count = (_env_int(env, name) for name in names)
        step = _env_int(env, "SLURM_ARRAY_TASK_STEP") if "SLURM_ARRAY_TASK_STEP" in env else 1
        offset = task - low
        if step < 1 or offset < 0 or offset % step or offset // step >= count:
            raise UsageError(
                f"--shard-from-env: SLURM_ARRAY_TASK_ID={task} does not fit an array of "
                f"{count} tasks from {low} in steps of {step}; use a contiguous array "
                f"(sbatch --array=0-{count - 1})"
            )
        if shards is not None and shards != count:
            raise UsageError(
                f"--shard-from-env: --shards {shards} disagrees with "
                f"SLURM_ARRAY_TASK_COUNT={count}; leave --shards out under Slurm"
            )
        return Shard(offset // step, count)
    if "JOB_COMPLETION_INDEX" in env:
        index = _env_int(env, "JOB_COMPLETION_INDEX")
        if shards is None:
            raise UsageError(
                "--shard-from-env: JOB_COMPLETION_INDEX is set but --shards is not; "
                "pass the Job's completions count as --shards N"
            )
        if index >= shards:
            raise UsageError(
                f"--shard-from-env: JOB_COMPLETION_INDEX={index} is not below --shards {shards}"
            )
        return Shard(index, shards)
    raise UsageError(
        "--shard-from-env: neither SLURM_ARRAY_TASK_ID (a Slurm job array) nor "
        "JOB_COMPLETION_INDEX (a Kubernetes indexed Job) is set; use --shard K/N instead"
    )


def _env_int(env: Mapping[str, str], name: str) -> int:
    value = env[name].strip()
    if not value.isdigit():
        raise UsageError(f"--shard-from-env: {name}={env[name]!r} is not a whole number")
    return int(value)


def listing_sha256(sources: Iterable[str], skipped: Iterable[str] = ()) -> str:
    """A hash of a sorted input listing: the relative paths of its sources and skipped files."""
    lines = [f"source\t{rel}\n" for rel in sources] + [f"skipped\t{rel}\n" for rel in skipped]
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def variant_seeds(seed: int, rel: str, indices: list[int]) -> list[int]:
    """`variant_seed` of several variants of one source, hashing the shared prefix once."""
    prefix = hashlib.sha256(f"augctl-variant\x00{seed}\x00{rel}\x00".encode())
    seeds = []
    for index in indices:
        digest = prefix.copy()
        digest.update(str(index).encode())
        seeds.append(int.from_bytes(digest.digest()[:8], "big"))
    return seeds


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


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    # Planning makes several small objects per output and none of them form cycles; left on,
    # the cyclic collector re-scans the growing plan over and over (a third of the time).
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def make_plan(listing: Listing, recipe: Recipe) -> list[Task]:
    """One task per source with its variants, names proven collision-free."""
    with _gc_paused():
        return _make_plan(listing, recipe)


def _make_plan(listing: Listing, recipe: Recipe) -> list[Task]:
    counts = _augmented_counts(listing.sources, recipe)
    tasks = []
    # Names are `<cls>/<stem>_aug<digits><ext>`: as the digits can't hold "_aug" or the "."
    # of an extension, two names are equal exactly when stem, extension and digits are. Every
    # source's indices start at the same first index, so two sources with outputs clash iff
    # their `<cls>/<stem><ext>` are equal: one key per source, not one per output.
    seen: dict[str, str] = {}
    clashes: dict[tuple[str, str], str] = {}  # (source, source) -> a name both would get
    for source, count in zip(listing.sources, counts):
        fmt, ext = output_format(recipe.format, posixpath.splitext(source.rel)[1])
        stem = output_stem(source.rel)
        indices = variant_indices(recipe, count)
        if not indices:
            continue
        prefix = f"{source.cls}/{stem}_aug"
        key = f"{source.cls}/{stem}{ext}".casefold()  # case-insensitive filesystems count too
        if key in seen:
            clashes.setdefault((seen[key], source.rel), f"{prefix}{indices[0]:03d}{ext}")
            continue
        seen[key] = source.rel
        seeds = variant_seeds(recipe.seed, source.rel, indices)
        variants = tuple(
            Variant(index, seed, f"{prefix}{index:03d}{ext}") for index, seed in zip(indices, seeds)
        )
        tasks.append(Task(source=source, fmt=fmt, variants=variants))
    if clashes:
        pairs = [f"{a} and {b} would both be written as {out}" for (a, b), out in clashes.items()]
        more = f" (and {len(pairs) - 10} more)" if len(pairs) > 10 else ""
        raise PlanError(
            "output names would collide (compared ignoring case, as macOS and Windows "
            f"filesystems do): "
            f"{'; '.join(pairs[:10])}{more}; rename one of each pair"
        )
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
