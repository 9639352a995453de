"""Pipeline nodes (steps and compose blocks), sampling them, and running applied ops."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
from PIL import Image

from .ops import REGISTRY
from .ops.base import RESAMPLE, Matrix, Op, Partners, Size, fill_for

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

_RANK = {"nearest": 0, "bilinear": 1, "bicubic": 2}


def run(image: Image.Image, applied: Applied, partners: Partners | None = None) -> Image.Image:
    """Apply recorded ops in order; a run of 2+ geometric ops is resampled once.

    `partners` loads the images that mixing ops recorded (only they need it).
    """
    i = 0
    while i < len(applied):
        j = _fusable_run_end(applied, i)
        if j - i >= 2:
            image = _run_fused(image, applied[i:j])
            i = j
            continue
        params = dict(applied[i])
        op = REGISTRY[params.pop("op")]
        if op.uses_partners:
            params["partners"] = partners
        image = op.apply(image, **params)
        i += 1
    return image


def _fusable_run_end(applied: Applied, start: int) -> int:
    """End index of the run of affine ops from `start` whose fill colours agree."""
    fill = None
    end = start
    for entry in applied[start:]:
        if REGISTRY[entry["op"]].geometry is None:
            break
        if "fill" in entry:
            if fill is not None and entry["fill"] != fill:
                break
            fill = entry["fill"]
        end += 1
    return end


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


def _run_fused(image: Image.Image, group: Applied) -> Image.Image:
    matrix: Matrix = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    size: Size = image.size
    fill: Any = 0
    resample = "nearest"
    for entry in group:
        params = {k: v for k, v in entry.items() if k != "op"}
        step, size = REGISTRY[entry["op"]].geometry(size, **params)
        matrix = _compose(step, matrix)
        fill = params.get("fill", fill)
        if _RANK.get(params.get("resample", "nearest"), 0) > _RANK[resample]:
            resample = params["resample"]
    # Bilinear/bicubic sampling aliases when shrinking by more than 2x: pre-shrink with a
    # box filter by a whole factor so that the remaining scale stays in [0.5, 1].
    scale = math.sqrt(abs(matrix[0] * matrix[4] - matrix[1] * matrix[3]))
    if resample != "nearest" and scale < 0.5:
        k = int(1.0 / scale)
        image = image.reduce(k)
        matrix = _compose(matrix, (float(k), 0.0, 0.0, 0.0, float(k), 0.0))
    return image.transform(
        size,
        Image.Transform.AFFINE,
        _invert(matrix),
        resample=RESAMPLE[resample],
        fillcolor=fill_for(image.mode, fill),
    )
