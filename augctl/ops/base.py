"""The op registry, parameter kinds and the sampling helpers every op shares."""

from __future__ import annotations

import bisect
import importlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

Size = tuple[int, int]
Matrix = tuple[float, float, float, float, float, float]  # forward affine: input -> output coords
Geometry = Callable[..., tuple[Matrix, Size]]
Table = Callable[..., list[int]]  # params -> 256 values every colour band is mapped through

RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}
DECIMALS = (
    4  # sampled floats are rounded so the manifest stays readable; apply uses the rounded value
)


class ParamError(ValueError):
    """A recipe value does not fit its parameter; the message says what was expected."""


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class Param:
    """Base parameter kind: `normalize` checks a recipe value, `describe` documents it."""

    default: Any
    doc: str = ""

    def normalize(self, value: Any) -> Any:
        return value

    def describe(self) -> str:
        return ""


@dataclass(frozen=True)
class Num(Param):
    """A number, fixed or `[lo, hi]` sampled uniformly per variant."""

    lo: float = -math.inf
    hi: float = math.inf
    integer: bool = False

    def _check(self, v: Any) -> float:
        if not _is_number(v) or (self.integer and float(v) != int(v)):
            raise ParamError(f"expected {'an integer' if self.integer else 'a number'}, got {v!r}")
        if not self.lo <= v <= self.hi:
            raise ParamError(f"expected a value in {self.describe()}, got {v!r}")
        return int(v) if self.integer else float(v)

    def normalize(self, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            if len(value) != 2:
                raise ParamError(f"expected a number or a [lo, hi] pair, got {list(value)!r}")
            lo, hi = (self._check(v) for v in value)
            if lo > hi:
                raise ParamError(f"expected lo <= hi, got [{lo}, {hi}]")
            return lo if lo == hi else [lo, hi]
        return self._check(value)

    def describe(self) -> str:
        kind = "int" if self.integer else "number"
        lo = "" if self.lo == -math.inf else f"{self.lo:g}"
        hi = "" if self.hi == math.inf else f"{self.hi:g}"
        return f"{kind} or [lo, hi] in [{lo}..{hi}]" if lo or hi else f"{kind} or [lo, hi]"


@dataclass(frozen=True)
class Choice(Param):
    """One value, or a list of values of which one is drawn per variant."""

    options: tuple[Any, ...] = ()

    def normalize(self, value: Any) -> Any:
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if not values:
            raise ParamError(f"expected one of {list(self.options)} or a list of them, got []")
        for v in values:
            if v not in self.options or isinstance(v, bool) != any(
                isinstance(o, bool) and o == v for o in self.options
            ):
                raise ParamError(f"expected one of {list(self.options)}, got {v!r}")
        return values[0] if len(values) == 1 else values

    def describe(self) -> str:
        return f"one of {list(self.options)}, or a list to draw from"


@dataclass(frozen=True)
class Enum(Param):
    """A fixed setting from a closed set (never sampled)."""

    options: tuple[str, ...] = ()

    def normalize(self, value: Any) -> Any:
        if value not in self.options:
            raise ParamError(f"expected one of {list(self.options)}, got {value!r}")
        return value

    def describe(self) -> str:
        return " | ".join(self.options)


@dataclass(frozen=True)
class Bool(Param):
    """true or false."""

    def normalize(self, value: Any) -> Any:
        if not isinstance(value, bool):
            raise ParamError(f"expected true or false, got {value!r}")
        return value

    def describe(self) -> str:
        return "true | false"


@dataclass(frozen=True)
class Color(Param):
    """A fill colour: one 0-255 value for every band, or [r, g, b]."""

    def normalize(self, value: Any) -> Any:
        if isinstance(value, (list, tuple)) and len(value) == 3:
            vals = list(value)
        elif not isinstance(value, (list, tuple)):
            vals = [value]
        else:
            raise ParamError(f"expected a 0-255 value or [r, g, b], got {list(value)!r}")
        if not all(_is_number(v) and v == int(v) and 0 <= v <= 255 for v in vals):
            raise ParamError(f"expected 0-255 integers, got {value!r}")
        return int(vals[0]) if len(vals) == 1 else [int(v) for v in vals]

    def describe(self) -> str:
        return "0-255 or [r, g, b]"


@dataclass(frozen=True)
class Pair(Param):
    """A fixed pair of positive numbers such as [width, height]; a single value means both."""

    integer: bool = True
    lo: float = 0
    optional: bool = False

    def normalize(self, value: Any) -> Any:
        if value is None and self.optional:
            return None
        vals = list(value) if isinstance(value, (list, tuple)) else [value, value]
        ok = len(vals) == 2 and all(_is_number(v) and v > self.lo for v in vals)
        if ok and self.integer:
            ok = all(float(v) == int(v) for v in vals)
        if not ok:
            kind = "integers" if self.integer else "numbers"
            raise ParamError(f"expected one or two {kind} > {self.lo:g}, got {value!r}")
        return [int(v) if self.integer else float(v) for v in vals]

    def describe(self) -> str:
        return "[w, h] or one value for both"


FILL = Color(0, "colour of uncovered pixels")


@dataclass(frozen=True)
class Op:
    """A registered op: recipe parameters, a pure sampler and a pure kernel."""

    name: str
    family: str
    apply: Callable[..., Image.Image]
    params: dict[str, Param]
    sample: Callable[..., dict[str, Any]]
    geometry: Geometry | None = None
    out_size: Callable[..., Size] | None = None
    doc: str = ""
    uses_partners: bool = False  # sample and apply also take `partners=` (mixing ops)
    # apply also takes `resampler=` (the recipe's: ops that resample through `warp`, and
    # the policies that run them)
    uses_resampler: bool = False
    lut: Table | None = None  # set for pure point ops: apply maps colour bands through it

    def size_after(self, image_size: Size, params: dict[str, Any]) -> Size:
        """The image size after this op runs with `params`."""
        if self.geometry is not None:
            return self.geometry(image_size, **params)[1]
        if self.out_size is not None:
            return self.out_size(image_size, **params)
        return image_size

    def __reduce__(self) -> tuple[Any, ...]:
        # Ops travel to worker processes by name; their functions are found in the registry.
        return (registered, (self.name,))

    def defaults(self) -> dict[str, Any]:
        """The op's recipe parameters with every default filled in."""
        return {k: p.normalize(p.default) for k, p in self.params.items()}


REGISTRY: dict[str, Op] = {}


@dataclass(frozen=True)
class Partners:
    """The other images of a source's class, for the mixing ops.

    `paths` is the class's sorted source paths (relative to the input root) and may
    include `own`, the source itself, which is never drawn; `load` decodes one by path.
    """

    paths: tuple[str, ...]
    own: str
    load: Callable[[str], Image.Image]

    def draw(self, rng: np.random.Generator) -> str | None:
        """A partner drawn uniformly from the class, never the source itself (None if alone)."""
        others = len(self.paths) - (1 if self.own in self.paths else 0)
        if others <= 0:
            return None
        i = integer(rng, [0, others - 1])
        own = bisect.bisect_left(self.paths, self.own)
        if self.own in self.paths and i >= own:
            i += 1
        return self.paths[i]


def registered(name: str) -> Op:
    """The op registered under `name`, loading every op family first."""
    importlib.import_module("augctl.ops")
    return REGISTRY[name]


def register(
    name: str,
    *,
    family: str,
    apply: Callable[..., Image.Image],
    params: dict[str, Param] | None = None,
    sample: Callable[..., dict[str, Any]] | None = None,
    geometry: Geometry | None = None,
    out_size: Callable[..., Size] | None = None,
    uses_partners: bool = False,
    uses_resampler: bool = False,
    lut: Table | None = None,
) -> Op:
    """Add an op to the registry under its recipe name (names are never reused)."""
    if name in REGISTRY:
        raise ValueError(f"op {name!r} is already registered")
    summary = (apply.__doc__ or "").strip().split("\n\n")[0]  # the first paragraph
    doc = " ".join(line.strip() for line in summary.splitlines())
    op = Op(
        name=name,
        family=family,
        apply=apply,
        params=dict(params or {}),
        sample=sample or make_sampler(params or {}),
        geometry=geometry,
        out_size=out_size,
        doc=doc,
        uses_partners=uses_partners,
        uses_resampler=uses_resampler,
        lut=lut,
    )
    REGISTRY[name] = op
    return op


def uniform(rng: np.random.Generator, spec: Any) -> float:
    """Draw from a normalized `Num` value: a fixed number or a [lo, hi] range."""
    if isinstance(spec, list):
        lo, hi = spec
        return round(lo + (hi - lo) * float(rng.random()), DECIMALS)
    return float(spec)


def integer(rng: np.random.Generator, spec: Any) -> int:
    """Draw an integer from a fixed value or an inclusive [lo, hi] range."""
    if isinstance(spec, list):
        return int(rng.integers(spec[0], spec[1] + 1))
    return int(spec)


def pick(rng: np.random.Generator, spec: Any) -> Any:
    """Draw one value from a normalized `Choice` value."""
    if isinstance(spec, list):
        return spec[int(rng.integers(len(spec)))]
    return spec


def make_sampler(params: dict[str, Param]) -> Callable[..., dict[str, Any]]:
    """A sampler that draws every Num/Choice parameter and passes the rest through."""

    def sample(rng: np.random.Generator, image_size: Size, **config: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, kind in params.items():
            value = config[key]
            if isinstance(kind, Num):
                out[key] = integer(rng, value) if kind.integer else uniform(rng, value)
            elif isinstance(kind, Choice):
                out[key] = pick(rng, value)
            else:
                out[key] = value
        return out

    return sample


SEED_MAX = 2**31 - 1  # seeds recorded in params stay small, JSON-safe integers


def seeded_sampler(params: dict[str, Param]) -> Callable[..., dict[str, Any]]:
    """The default sampler plus a `seed` from which `apply` regenerates its random field."""
    base = make_sampler(params)

    def sample(rng: np.random.Generator, image_size: Size, **config: Any) -> dict[str, Any]:
        out = base(rng, image_size, **config)
        out["seed"] = integer(rng, [0, SEED_MAX])
        return out

    return sample


def fill_for(mode: str, fill: Any) -> Any:
    """Turn a recipe fill (int or [r, g, b]) into a PIL colour for `mode`."""
    rgb = [fill] * 3 if isinstance(fill, int) else list(fill)
    if mode in ("L", "LA"):
        gray = (rgb[0] * 299 + rgb[1] * 587 + rgb[2] * 114 + 500) // 1000
        return gray if mode == "L" else (gray, 255)
    if mode == "RGBA":
        return (*rgb, 255)
    if mode == "RGB":
        return tuple(rgb)
    return rgb[0]


_RAMP: list[Image.Image] = []  # a 256x1 image of 0..255, made on first use
_KEEP = list(range(256))


def blend_table(base: int, factor: float) -> list[int]:
    """The table of `Image.blend(flat(base), image, factor)` per 8-bit value, exactly as PIL."""
    if not _RAMP:
        _RAMP.append(Image.frombytes("L", (256, 1), bytes(range(256))))
    return list(Image.blend(Image.new("L", (256, 1), base), _RAMP[0], factor).tobytes())


def map_bands(image: Image.Image, table: list[int]) -> Image.Image:
    """Map every colour band through a 256-entry table of ints; alpha is kept as it is."""
    bands = len(image.getbands())
    full = table * (bands - 1) + _KEEP if image.mode in ("LA", "RGBA") else table * bands
    # Image.point re-rounds all 256 * bands entries in Python, which costs as much as the
    # mapping itself on a 224 px image; the tables here are ints already.
    image.load()
    return image._new(image.im.point(full, None))


def bands_without_alpha(
    image: Image.Image, fn: Callable[[Image.Image], Image.Image]
) -> Image.Image:
    """Apply a colour op to the colour bands only, keeping any alpha band as it is."""
    if image.mode not in ("LA", "RGBA"):
        return fn(image)
    color = image.convert(image.mode[:-1])
    out = fn(color)
    out.putalpha(image.getchannel("A"))
    return out


def ensure_size(size: Sequence[int]) -> Size:
    """A (w, h) tuple of at least 1x1."""
    return max(1, int(size[0])), max(1, int(size[1]))
