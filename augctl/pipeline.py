"""Pipeline nodes (steps and compose blocks), sampling them, and running applied ops."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
from PIL import Image

from .ops import REGISTRY
from .ops.base import RESAMPLE, Matrix, Op, Partners, Size, fill_for, map_bands

COMPOSE_KINDS = ("sequence", "one_of", "some_of", "random_order")


@dataclass(frozen=True)
class Step:
    """One op with its normalized recipe parameters and probability."""

    op: Op
    config: dict[str, Any]
    p: float = 1.0


@dataclass(frozen=True)
class Compose:
    """A compose block: `sequence`, `one_of`, `some_of` (with `n`) or `random_order`."""

    kind: str
    children: tuple[Node, ...]
    p: float = 1.0
    n: tuple[int, int] = (1, 1)


Node = Union[Step, Compose]
Applied = list[dict[str, Any]]


def walk_steps(nodes: tuple[Node, ...], path: str = "pipeline") -> Iterator[tuple[str, Node]]:
    """Every node with its step path (`pipeline[2].one_of[0]`), depth first."""
    for i, node in enumerate(nodes):
        here = f"{path}[{i}]"
        yield here, node
        if isinstance(node, Compose):
            yield from walk_steps(node.children, f"{here}.{node.kind}")


def sample(
    nodes: tuple[Node, ...],
    rng: np.random.Generator,
    size: Size,
    partners: Partners | None = None,
) -> Applied:
    """Draw the concrete ops (with params) one variant applies, in order."""
    applied: Applied = []
    for node in nodes:
        size = _sample_node(node, rng, size, applied, partners, forced=False)
    return applied


def _sample_node(
    node: Node,
    rng: np.random.Generator,
    size: Size,
    out: Applied,
    partners: Partners | None,
    *,
    forced: bool,
) -> Size:
    # One draw per p-test, always taken, so the rng stream's shape doesn't depend on p.
    if not forced and not float(rng.random()) < node.p:
        return size
    if isinstance(node, Step):
        extra = {"partners": partners} if node.op.uses_partners else {}
        params = node.op.sample(rng, size, **node.config, **extra)
        out.append({"op": node.op.name, **params})
        return node.op.size_after(size, params)
    children = node.children
    if node.kind == "sequence":
        chosen, forced_children = list(children), False
    elif node.kind == "random_order":
        chosen, forced_children = [children[i] for i in rng.permutation(len(children))], False
    elif node.kind == "one_of":
        chosen, forced_children = _weighted_pick(rng, children, 1), True
    else:
        lo, hi = node.n
        k = min(int(rng.integers(lo, hi + 1)), len(children))
        chosen, forced_children = _weighted_pick(rng, children, k), True
    for child in chosen:
        size = _sample_node(child, rng, size, out, partners, forced=forced_children)
    return size


def _weighted_pick(rng: np.random.Generator, children: tuple[Node, ...], k: int) -> list[Node]:
    """Pick `k` distinct children, weighted by their `p`, kept in recipe order."""
    weights = [c.p for c in children]
    picked: list[int] = []
    for _ in range(k):
        total = sum(w for i, w in enumerate(weights) if i not in picked)
        if total <= 0:
            break
        u = float(rng.random()) * total
        for i, w in enumerate(weights):
            if i in picked or w <= 0:
                continue
            u -= w
            if u < 0:
                picked.append(i)
                break
        else:  # float round-off left u at ~0: take the last eligible child
            picked.append(max(i for i, w in enumerate(weights) if i not in picked and w > 0))
    return [children[i] for i in sorted(picked)]


# --- running applied ops ------------------------------------------------------
#
# A "segment" is a maximal run of geometric ops and pure lookup-table ops (see README,
# "Performance"): its geometric ops are composed into one matrix and resampled once, and
# its table ops are composed into one table applied after the resample. A leading
# {"op": "decode", ...} entry says the image was decoded at a reduced JPEG scale.

DECODE = "decode"
DRAFT_SCALES = (8, 4, 2, 1)  # the DCT scales libjpeg decodes at, coarsest first
_RANK = {"nearest": 0, "bilinear": 1, "bicubic": 2}
_IDENTITY: Matrix = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
_EPS = 1e-9
_TOL = 1e-6


def run(image: Image.Image, applied: Applied, partners: Partners | None = None) -> Image.Image:
    """Apply recorded ops in order, fusing geometry and lookup tables (see README).

    `partners` loads the images that mixing ops recorded (only they need it).
    """
    draft, applied = split_decode(applied)
    size: Size = image.size
    if draft is not None:
        size = (int(draft["size"][0]), int(draft["size"][1]))
        expected = tuple(-(-n // int(draft["scale"])) for n in size)
        if image.size != expected:
            raise ValueError(f"the image was not decoded at 1/{draft['scale']} of {size}")
    i = 0
    while i < len(applied):
        j = segment_end(applied, i, size)
        if j == i:  # an op that is neither geometric nor a pure table: run it as it is
            params = dict(applied[i])
            op = REGISTRY[params.pop("op")]
            if op.uses_partners:
                params["partners"] = partners
            image = op.apply(image, **params)
            size = image.size  # pad, for one, changes it
            i += 1
            continue
        image = _run_segment(image, size, applied[i:j], draft if i == 0 else None)
        size, draft, i = image.size, None, j
    if draft is not None:
        raise ValueError("a decode entry must be followed by a geometric op")
    return image


def split_decode(applied: Applied) -> tuple[dict[str, Any] | None, Applied]:
    """The leading decode entry (None if the source was fully decoded) and the other ops."""
    if applied and applied[0]["op"] == DECODE:
        return applied[0], applied[1:]
    return None, applied


def decode_entry(scale: int, size: Size, origin: tuple[float, float]) -> dict[str, Any]:
    """The record of a source decoded at 1/`scale` of its upright size `size`."""
    entry: dict[str, Any] = {"op": DECODE, "scale": scale, "size": [size[0], size[1]]}
    if origin != (0, 0):
        entry["origin"] = [origin[0], origin[1]]
    return entry


def _table(entry: dict[str, Any]) -> list[int]:
    return REGISTRY[entry["op"]].lut(**{k: v for k, v in entry.items() if k != "op"})


def _may_move_past(entry: dict[str, Any], geometric: dict[str, Any]) -> bool:
    """Whether a table op may run after a geometric op that the recipe puts after it.

    Its table must be smooth (second differences of at most 2: no steps, as posterize and
    solarize have), and it must leave the geometric op's fill colour as it is. Mapping
    interpolated values then differs from interpolating mapped values only by rounding,
    except where a table clips (brightness above 1) and a filter averages values on both
    sides of the clip point: at such edges a few levels, up to a few tens at hard ones
    (measured on photos: mean under 1 level at brightness 1.2). We accept that for the
    speed of one pass and of draft decoding; README "Performance" says so.
    """
    table = _table(entry)
    if any(abs(table[v + 1] - 2 * table[v] + table[v - 1]) > 2 for v in range(1, 255)):
        return False
    if "fill" not in geometric:
        return True
    fill = geometric["fill"]
    values = [fill] * 3 if isinstance(fill, int) else list(fill)
    values.append(fill_for("L", fill))
    return all(table[v] == v for v in values)


def segment_end(applied: Applied, start: int, size: Size) -> int:
    """End of the segment from `start`: geometric and table ops; `start` if there is none.

    Geometric ops in a segment must agree on their fill colour, every table op of the
    segment must be allowed to move past the geometric ops after it (`_may_move_past`), and
    an op may only join if it reads nothing outside the canvases before it: what a crop or
    a rotation cut off must stay cut off, as when the ops run one by one.
    """
    fill = None
    tables: list[dict[str, Any]] = []
    canvases: list[tuple[Matrix, Size]] = []  # segment input -> each op's output canvas
    matrix, current = _IDENTITY, size
    end = start
    for entry in applied[start:]:
        op = REGISTRY[entry["op"]]
        if op.lut is not None:
            tables.append(entry)
        elif op.geometry is not None:
            if "fill" in entry and fill is not None and entry["fill"] != fill:
                break
            if not all(_may_move_past(t, entry) for t in tables):
                break
            step, current_next = op.geometry(
                current, **{k: v for k, v in entry.items() if k != "op"}
            )
            composed = _compose(step, matrix)
            if not _inside_canvases(composed, current_next, canvases):
                break
            matrix, current = composed, current_next
            canvases.append((matrix, current))
            fill = entry.get("fill", fill)
        else:
            break
        end += 1
    return end


def _inside_canvases(matrix: Matrix, size: Size, canvases: list[tuple[Matrix, Size]]) -> bool:
    """Whether the output canvas of `matrix`, mapped back, lies inside every earlier canvas
    (within the one pixel a bilinear or bicubic tap reaches)."""
    if not canvases:
        return True
    back = _invert(matrix)
    corners = [_apply(back, x, y) for x, y in ((0, 0), (size[0], 0), (0, size[1]), size)]
    for to_canvas, (w, h) in canvases:
        for x, y in (_apply(to_canvas, cx, cy) for cx, cy in corners):
            if not (-1 - _TOL <= x <= w + 1 + _TOL and -1 - _TOL <= y <= h + 1 + _TOL):
                return False
    return True


def _apply(m: Matrix, x: float, y: float) -> tuple[float, float]:
    return m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5]


def segment_matrix(group: Applied, size: Size) -> tuple[Matrix, Size, str, Any]:
    """Forward matrix, output size, resample filter and fill of a segment's geometric ops."""
    matrix = _IDENTITY
    fill: Any = 0
    resample = "nearest"
    for entry in group:
        op = REGISTRY[entry["op"]]
        if op.geometry is None:
            continue
        params = {k: v for k, v in entry.items() if k != "op"}
        step, size = op.geometry(size, **params)
        matrix = _compose(step, matrix)
        fill = params.get("fill", fill)
        if _RANK.get(params.get("resample", "nearest"), 0) > _RANK[resample]:
            resample = params["resample"]
    return matrix, size, resample, fill


def max_stretch(matrix: Matrix) -> float:
    """The largest factor by which the matrix stretches any direction (its top singular value)."""
    a, b, _, d, e, _ = matrix
    p, q = a * a + b * b + d * d + e * e, a * e - b * d
    return math.sqrt((p + math.sqrt(max(p * p - 4 * q * q, 0.0))) / 2)


def draft_scale(applied: Applied, size: Size) -> int:
    """The coarsest JPEG DCT scale from which these ops still never magnify (1: full decode).

    Only the first segment reads the decoded pixels; it must hold a geometric op.
    """
    end = segment_end(applied, 0, size)
    group = applied[:end]
    if not any(REGISTRY[e["op"]].geometry is not None for e in group):
        return 1
    stretch = max_stretch(segment_matrix(group, size)[0])
    return next(s for s in DRAFT_SCALES if s == 1 or s * stretch <= 1 + _EPS)


def _run_segment(
    image: Image.Image, size: Size, group: Applied, draft: dict[str, Any] | None
) -> Image.Image:
    """Resample a segment's geometric ops once, then apply its composed table once."""
    table = None
    for entry in group:
        op = REGISTRY[entry["op"]]
        if op.lut is not None:
            step = op.lut(**{k: v for k, v in entry.items() if k != "op"})
            table = step if table is None else [step[v] for v in table]
    if any(REGISTRY[e["op"]].geometry is not None for e in group):
        matrix, out_size, resample, fill = segment_matrix(group, size)
        if draft is not None:
            s = float(draft["scale"])
            ox, oy = draft.get("origin", (0, 0))
            matrix = _compose(matrix, (s, 0.0, float(ox), 0.0, s, float(oy)))
        image = warp(image, matrix, out_size, resample, fill)
    elif table is None:
        return image.copy()
    return image if table is None else map_bands(image, table)


def warp(image: Image.Image, matrix: Matrix, size: Size, resample: str, fill: Any) -> Image.Image:
    """Resample `image` through a forward affine matrix onto a canvas of `size`.

    Axis-aligned matrices (scales, crops, flips, right-angle turns) inside the image use an
    exact crop or Pillow's antialiased resize, then an exact transpose; anything else is one
    affine transform (see `_affine`).
    """
    a, b, c, d, e, f = matrix
    swap = abs(a) < _EPS and abs(e) < _EPS
    if swap:  # output axes swapped: resample to the transposed size, then transpose
        a, b, c, d, e, f = d, e, f, a, b, c
        out = _axis_aligned(image, (a, e, c, f), (size[1], size[0]), resample)
        if out is not None:
            return out.transpose(Image.Transpose.TRANSPOSE)
    elif abs(b) < _EPS and abs(d) < _EPS:
        out = _axis_aligned(image, (a, e, c, f), size, resample)
        if out is not None:
            return out
    return _affine(image, matrix, size, resample, fill)


def _axis_aligned(
    image: Image.Image, scale_shift: tuple[float, float, float, float], size: Size, resample: str
) -> Image.Image | None:
    """X = sx*x + cx, Y = sy*y + cy onto `size` as crop/resize plus flips; None if it
    reaches outside the image."""
    sx, sy, cx, cy = scale_shift
    w, h = image.size
    x0, x1 = sorted(((0 - cx) / sx, (size[0] - cx) / sx))
    y0, y1 = sorted(((0 - cy) / sy, (size[1] - cy) / sy))
    if x0 < -_EPS * w or y0 < -_EPS * h or x1 > w * (1 + _EPS) or y1 > h * (1 + _EPS):
        return None
    box = (max(x0, 0.0), max(y0, 0.0), min(x1, float(w)), min(y1, float(h)))
    ints = [round(v) for v in box]
    if (
        abs(abs(sx) - 1) < _EPS
        and abs(abs(sy) - 1) < _EPS
        and all(abs(v - i) < 1e-6 for v, i in zip(box, ints))
    ):
        out = image.crop(tuple(ints))
    else:
        # reducing_gap: shrinks of 3x or more start with a whole-factor box reduction.
        out = image.resize(size, RESAMPLE[resample], box=box, reducing_gap=3.0)
    if sx < 0:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if sy < 0:
        out = out.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    return out


def _affine(
    image: Image.Image, matrix: Matrix, size: Size, resample: str, fill: Any
) -> Image.Image:
    """One affine resample. A bilinear one that shrinks to 0.6x or less is done as 2x2
    supersampling: nearest samples on a canvas twice the size, averaged in 2x2 blocks.
    That antialiases better than a single bilinear tap at those scales and costs less than
    half; below 0.3x the image is first reduced by a whole factor (box filter) to about 0.6x."""
    # How much each input axis shrinks, so that a squeeze along one axis is filtered along
    # that axis, not along the geometric mean of both.
    shrink_x = math.hypot(matrix[0], matrix[3])
    shrink_y = math.hypot(matrix[1], matrix[4])
    supersample = resample == "bilinear" and min(shrink_x, shrink_y) <= 0.6
    kx, ky = (_reduction(shrink, resample) for shrink in (shrink_x, shrink_y))
    if kx > 1 or ky > 1:
        image = image.reduce((kx, ky))
        matrix = _compose(matrix, (float(kx), 0.0, 0.0, 0.0, float(ky), 0.0))
    colour = fill_for(image.mode, fill)
    if supersample:
        matrix = _compose((2.0, 0.0, 0.0, 0.0, 2.0, 0.0), matrix)
        big = (size[0] * 2, size[1] * 2)
        inverse = _invert(matrix)
        out = image.transform(big, Image.Transform.AFFINE, inverse, fillcolor=colour)
        return out.reduce(2)
    return image.transform(
        size, Image.Transform.AFFINE, _invert(matrix), resample=RESAMPLE[resample], fillcolor=colour
    )


def _reduction(shrink: float, resample: str) -> int:
    """Whole box-filter factor to shrink an axis by first: below 0.3x bilinear keeps about
    0.6x for its supersampling, bicubic keeps [0.5, 1], where it is sharp."""
    if resample == "bilinear" and shrink < 0.3:
        return int(0.6 / shrink)
    if resample == "bicubic" and shrink < 0.5:
        return int(1.0 / shrink)
    return 1


def _compose(outer: Matrix, inner: Matrix) -> Matrix:
    a, b, c, d, e, f = outer
    A, B, C, D, E, F = inner
    return (
        a * A + b * D,
        a * B + b * E,
        a * C + b * F + c,
        d * A + e * D,
        d * B + e * E,
        d * C + e * F + f,
    )


def _invert(m: Matrix) -> Matrix:
    a, b, c, d, e, f = m
    det = a * e - b * d
    ia, ib, id_, ie = e / det, -b / det, -d / det, a / det
    return (ia, ib, -(ia * c + ib * f), id_, ie, -(id_ * c + ie * f))
