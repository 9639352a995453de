"""Erasing ops: fill boxes of the image (cutout, random erasing); the boxes are recorded."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from .base import (
    SEED_MAX,
    Color,
    Num,
    Pair,
    ParamError,
    Size,
    bands_without_alpha,
    ensure_size,
    fill_for,
    integer,
    register,
    uniform,
)

Box = list[int]  # [left, top, right, bottom], right and bottom exclusive


def _erase(image: Image.Image, boxes: list[Box], value: Any, seed: int | None) -> Image.Image:
    """Fill each box with `value`, or with uniform random values from `seed` if "random"."""

    def erased(im: Image.Image) -> Image.Image:
        out = im.copy()
        noise = np.random.default_rng(seed) if value == "random" else None
        for left, top, right, bottom in boxes:
            if noise is None:
                out.paste(fill_for(im.mode, value), (left, top, right, bottom))
                continue
            shape = (bottom - top, right - left, len(im.getbands()))
            patch = noise.integers(0, 256, shape, dtype=np.uint8)
            out.paste(Image.fromarray(patch[..., 0] if shape[2] == 1 else patch), (left, top))
        return out

    return bands_without_alpha(image, erased)


def cutout(image: Image.Image, *, boxes: list[Box], fill: Any = 0) -> Image.Image:
    """Fill the recorded `boxes` with `fill` (DeVries & Taylor's Cutout); alpha is kept."""
    return _erase(image, boxes, fill, None)


def _sample_cutout(
    rng: np.random.Generator,
    image_size: Size,
    *,
    holes: Any,
    size: Any,
    fraction: Any,
    fill: Any,
) -> dict[str, Any]:
    # As in the paper: each hole's centre is anywhere in the image and the box is clipped.
    w, h = image_size
    if size is not None:
        hw, hh = size
    else:
        f = uniform(rng, fraction)
        hw, hh = ensure_size((round(w * f), round(h * f)))
    boxes = []
    for _ in range(integer(rng, holes)):
        cx, cy = integer(rng, [0, w - 1]), integer(rng, [0, h - 1])
        left, top = max(0, cx - hw // 2), max(0, cy - hh // 2)
        boxes.append([left, top, min(w, cx - hw // 2 + hw), min(h, cy - hh // 2 + hh)])
    return {"boxes": boxes, "fill": fill}


@dataclass(frozen=True)
class EraseValue(Color):
    """A 0-255 value, [r, g, b], or "random" for per-pixel noise."""

    def normalize(self, value: Any) -> Any:
        if value == "random":
            return value
        try:
            return super().normalize(value)
        except ParamError:
            raise ParamError(f'expected 0-255, [r, g, b] or "random", got {value!r}') from None

    def describe(self) -> str:
        return '0-255, [r, g, b] or "random"'


def random_erasing(
    image: Image.Image, *, boxes: list[Box], value: Any = 0, seed: int | None = None
) -> Image.Image:
    """torchvision's RandomErasing of the recorded box; "random" is 0-255 noise, not N(0, 1)."""
    return _erase(image, boxes, value, seed)


def _sample_erasing(
    rng: np.random.Generator, image_size: Size, *, scale: Any, ratio: Any, value: Any
) -> dict[str, Any]:
    # torchvision's RandomErasing.get_params: 10 tries, then no box (the image is kept).
    w, h = image_size
    lo_s, hi_s = scale if isinstance(scale, list) else (scale, scale)
    lo_r, hi_r = (math.log(r) for r in (ratio if isinstance(ratio, list) else (ratio, ratio)))
    boxes = []
    for _ in range(10):
        target = w * h * (lo_s + (hi_s - lo_s) * float(rng.random()))
        aspect = math.exp(lo_r + (hi_r - lo_r) * float(rng.random()))  # height / width
        eh, ew = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < eh < h and 0 < ew < w:
            top, left = integer(rng, [0, h - eh]), integer(rng, [0, w - ew])
            boxes.append([left, top, left + ew, top + eh])
            break
    params: dict[str, Any] = {"boxes": boxes, "value": value}
    if value == "random":
        params["seed"] = integer(rng, [0, SEED_MAX])
    return params


register(
    "cutout",
    family="erasing",
    apply=cutout,
    params={
        "holes": Num(1, "number of holes", lo=1, hi=1000, integer=True),
        "size": Pair(None, "[w, h] of each hole in pixels (instead of fraction)", optional=True),
        "fraction": Num(0.25, "hole side as a fraction of the image side", lo=0.001, hi=1),
        "fill": Color(0, "colour of the holes"),
    },
    sample=_sample_cutout,
)
register(
    "random_erasing",
    family="erasing",
    apply=random_erasing,
    params={
        "scale": Num([0.02, 0.33], "box area as a fraction of the image", lo=0.0001, hi=1),
        "ratio": Num([0.3, 3.3], "aspect ratio height/width of the box", lo=0.01, hi=100),
        "value": EraseValue(0, "colour of the box"),
    },
    sample=_sample_erasing,
)
