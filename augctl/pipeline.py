"""Pipeline nodes (steps and compose blocks), sampling them, and running applied ops."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from .ops import REGISTRY
from .ops.base import Matrix, Op, Partners, Size, fill_for, map_bands
from .ops.resample import compose, invert, max_stretch, min_stretch, warp

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


Node = Step | Compose
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


def run(
    image: Image.Image,
    applied: Applied,
    partners: Partners | None = None,
    resampler: str = "pillow",
) -> Image.Image:
    """Apply recorded ops in order, fusing geometry and lookup tables (see README).

    `partners` loads the images that mixing ops recorded (only they need it); `resampler`
    is the recipe's (`resample.RESAMPLERS`).
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
            if op.uses_resampler:
                params["resampler"] = resampler
            image = op.apply(image, **params)
            size = image.size  # pad, for one, changes it
            i += 1
            continue
        image = _run_segment(image, size, applied[i:j], draft if i == 0 else None, resampler)
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


def _may_move_past(entry: dict[str, Any], geometric: dict[str, Any], step: Matrix) -> bool:
    """Whether a table op may run after a geometric op (forward matrix `step`) that the
    recipe puts after it: only where that gives the same pixels, up to rounding.

    It must leave the geometric op's fill colour as it is, and either the geometric op
    only moves whole pixels (flips, right-angle turns, whole-pixel crops, nearest
    sampling), or the table is a straight line within one level (invert, brightness up to
    1, posterize 7 bits; past bicubic only identity and invert): only then does mapping
    interpolated values equal interpolating mapped ones. A curved or clipping table (gamma,
    brightness above 1, solarize) stays in front of an interpolating op.
    """
    table = _table(entry)
    if "fill" in geometric:
        fill = geometric["fill"]
        values = [fill] * 3 if isinstance(fill, int) else list(fill)
        values.append(fill_for("L", fill))
        if any(table[v] != v for v in values):
            return False
    resample = geometric.get("resample")
    if resample == "nearest" or _moves_whole_pixels(step):
        return True
    if not _straight(table):
        return False
    # Bicubic overshoots and is clipped to 0-255: a straight table commutes with that clip
    # only if it maps 0-255 onto itself (identity, invert); bilinear never leaves the range.
    return resample == "bilinear" or {table[0], table[255]} == {0, 255}


def _straight(table: list[int]) -> bool:
    """Whether a table is within one level of the line through its two ends."""
    first, slope = table[0], (table[255] - table[0]) / 255
    return all(abs(t - (first + slope * v)) <= 1 + _TOL for v, t in enumerate(table))


def _moves_whole_pixels(m: Matrix) -> bool:
    """Whether a matrix maps the pixel grid onto itself (a signed permutation of the axes
    and a whole-pixel shift): every output pixel is one input pixel, nothing is blended."""
    a, b, _, d, e, _ = m
    linear = sorted(abs(v) for v in (a, b, d, e))
    return (
        all(abs(v - round(v)) < _TOL for v in m)
        and [round(v) for v in linear] == [0, 0, 1, 1]
        and abs(abs(a * e - b * d) - 1) < _TOL
    )


def _keeps_lost_detail_lost(matrix: Matrix, canvases: list[Canvas]) -> bool:
    """Whether a segment's matrix so far never samples finer than an earlier canvas that
    shrank: detail a downscale removed must stay removed, as when ops run one by one (a
    shrink, then an enlargement, is a low-resolution copy, not the image back)."""
    for to_canvas, _, _ in canvases:
        if (
            min_stretch(to_canvas) < 1 - _TOL
            and max_stretch(compose(matrix, invert(to_canvas))) > 1 + _TOL
        ):
            return False
    return True


def segment_end(applied: Applied, start: int, size: Size) -> int:
    """End of the segment from `start`: geometric and table ops; `start` if there is none.

    Geometric ops in a segment must agree on their fill colour, every table op of the
    segment must be allowed to move past the geometric ops after it (`_may_move_past`), and
    an op may only join if it reads nothing outside the canvases before it: what a crop or
    a rotation cut off must stay cut off, as when the ops run one by one.
    """
    fill = None
    tables: list[dict[str, Any]] = []
    canvases: list[Canvas] = []  # segment input -> each op's output canvas
    matrix, current = _IDENTITY, size
    end = start
    for entry in applied[start:]:
        op = REGISTRY[entry["op"]]
        if op.lut is not None:
            tables.append(entry)
        elif op.geometry is not None:
            if "fill" in entry and fill is not None and entry["fill"] != fill:
                break
            step, current_next = op.geometry(
                current, **{k: v for k, v in entry.items() if k != "op"}
            )
            if not all(_may_move_past(t, entry, step) for t in tables):
                break
            composed = compose(step, matrix)
            past_whole = _mixes_axes(composed) and entry.get("resample", "nearest") != "nearest"
            if not _inside_canvases(composed, current_next, canvases, past_whole):
                break
            if not _keeps_lost_detail_lost(composed, canvases):
                break
            whole = _keeps_the_whole_canvas(step, current, current_next)
            canvases.append((composed, current_next, whole))
            matrix, current = composed, current_next
            fill = entry.get("fill", fill)
        else:
            break
        end += 1
    return end


# An op's output canvas, as the segment's input maps onto it, and whether the op kept the
# whole canvas before it (`_keeps_the_whole_canvas`).
Canvas = tuple[Matrix, Size, bool]


def _mixes_axes(matrix: Matrix) -> bool:
    """Whether each output axis takes from both input axes (a turn by no right angle).

    Only then, and interpolating, may a segment read past a whole canvas: Pillow's test of
    whether a sample lands on the image is half-open, [0, w), which a flip mirrors, and an
    axis-aligned or right-angle segment, a shear along one axis, or a nearest pick puts
    samples on (or a rounding away from) pixel edges all along a row or column, where fused
    and op by op would differ."""
    return all(abs(v) > _TOL for v in (matrix[0], matrix[1], matrix[3], matrix[4]))


def _keeps_the_whole_canvas(step: Matrix, before: Size, after: Size) -> bool:
    """Whether an op moves whole pixels and keeps every one (a flip, a right-angle turn of
    the whole image): it cuts nothing off, so reading past its canvas is reading past the
    one before it, which the ops after it are checked against already."""
    if not _moves_whole_pixels(step):
        return False
    corners = [_apply(step, 0.0, 0.0), _apply(step, float(before[0]), float(before[1]))]
    xs, ys = sorted(x for x, _ in corners), sorted(y for _, y in corners)
    return all(abs(v - target) < _TOL for v, target in zip((*xs, *ys), (0, after[0], 0, after[1])))


def _inside_canvases(
    matrix: Matrix, size: Size, canvases: list[Canvas], past_whole: bool = False
) -> bool:
    """Whether the output canvas of `matrix`, mapped back, lies inside every earlier canvas
    (within the one pixel a bilinear or bicubic tap reaches); whole canvases are passed
    over if `past_whole`."""
    if not canvases:
        return True
    back = invert(matrix)
    corners = [_apply(back, x, y) for x, y in ((0, 0), (size[0], 0), (0, size[1]), size)]
    for to_canvas, (w, h), whole in canvases:
        if whole and past_whole:
            continue
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
        matrix = compose(step, matrix)
        fill = params.get("fill", fill)
        if _RANK.get(params.get("resample", "nearest"), 0) > _RANK[resample]:
            resample = params["resample"]
    return matrix, size, resample, fill


def draft_scale(applied: Applied, size: Size) -> int:
    """The coarsest JPEG DCT scale from which these ops still never magnify (1: full decode).

    Only the first segment reads the decoded pixels; it must hold a geometric op that
    interpolates.
    """
    end = segment_end(applied, 0, size)
    group = applied[:end]
    if not any(REGISTRY[e["op"]].geometry is not None for e in group):
        return 1
    matrix, _, resample, _ = segment_matrix(group, size)
    if resample == "nearest":  # nearest picks pixels; a reduced decode would average them
        return 1
    stretch = max_stretch(matrix)
    return next(s for s in DRAFT_SCALES if s == 1 or s * stretch <= 1 + _EPS)


def _run_segment(
    image: Image.Image,
    size: Size,
    group: Applied,
    draft: dict[str, Any] | None,
    resampler: str,
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
            matrix = compose(matrix, (s, 0.0, float(ox), 0.0, s, float(oy)))
        image = warp(image, matrix, out_size, resample, fill, resampler)
    elif table is None:
        return image.copy()
    return image if table is None else map_bands(image, table)
