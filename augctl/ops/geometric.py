"""Geometric ops: flips, rotations, scaling, resizing and crops.

Every op here also declares its forward affine matrix (`geometry`), so the
pipeline runner can fuse a run of them into one resample.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

from .base import (
    RESAMPLE,
    Bool,
    Choice,
    Color,
    Enum,
    Matrix,
    Num,
    Pair,
    Size,
    ensure_size,
    fill_for,
    integer,
    pick,
    register,
    uniform,
)

_RESAMPLE = Enum("bilinear", "interpolation filter", options=tuple(RESAMPLE))
_FILL = Color(0, "colour of uncovered pixels")


def _translate(dx: float, dy: float) -> Matrix:
    return (1.0, 0.0, dx, 0.0, 1.0, dy)


def _scale(sx: float, sy: float) -> Matrix:
    return (sx, 0.0, 0.0, 0.0, sy, 0.0)


# --- flips and right-angle rotations (exact, no resampling) -----------------


def hflip(image: Image.Image) -> Image.Image:
    """Mirror left to right."""
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def _hflip_geometry(image_size: Size) -> tuple[Matrix, Size]:
    return (-1.0, 0.0, float(image_size[0]), 0.0, 1.0, 0.0), image_size


def vflip(image: Image.Image) -> Image.Image:
    """Mirror top to bottom."""
    return image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)


def _vflip_geometry(image_size: Size) -> tuple[Matrix, Size]:
    return (1.0, 0.0, 0.0, 0.0, -1.0, float(image_size[1])), image_size


_ROT90 = {
    90: Image.Transpose.ROTATE_90,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_270,
}


def rotate90(image: Image.Image, *, angle: int) -> Image.Image:
    """Rotate counter-clockwise by a multiple of 90 degrees, exactly."""
    return image.transpose(_ROT90[angle]) if angle % 360 else image.copy()


def _rotate90_geometry(image_size: Size, *, angle: int) -> tuple[Matrix, Size]:
    w, h = image_size
    if angle == 90:
        return (0.0, 1.0, 0.0, -1.0, 0.0, float(w)), (h, w)
    if angle == 180:
        return (-1.0, 0.0, float(w), 0.0, -1.0, float(h)), image_size
    if angle == 270:
        return (0.0, -1.0, float(h), 1.0, 0.0, 0.0), (h, w)
    return _translate(0, 0), image_size


# --- rotate, scale, resize ---------------------------------------------------


def rotate(
    image: Image.Image,
    *,
    angle: float,
    expand: bool = False,
    fill: Any = 0,
    resample: str = "bilinear",
) -> Image.Image:
    """Rotate counter-clockwise by `angle` degrees about the centre (PIL and torchvision agree).

    With `expand` the canvas grows to hold the whole rotated image, as in PIL.
    """
    return image.rotate(
        angle, resample=RESAMPLE[resample], expand=expand, fillcolor=fill_for(image.mode, fill)
    )


def _sample_rotate(
    rng: np.random.Generator,
    image_size: Size,
    *,
    degrees: Any,
    expand: bool,
    fill: Any,
    resample: str,
) -> dict[str, Any]:
    return {"angle": uniform(rng, degrees), "expand": expand, "fill": fill, "resample": resample}


def _rotate_geometry(
    image_size: Size, *, angle: float, expand: bool = False, **_: Any
) -> tuple[Matrix, Size]:
    # Mirrors PIL's Image.rotate (rounded cos/sin, ceil/floor canvas) so sizes agree exactly.
    w, h = image_size
    rad = math.radians(angle % 360.0)
    cos, sin = round(math.cos(rad), 15), round(math.sin(rad), 15)
    cx, cy = w / 2.0, h / 2.0
    nw, nh = w, h
    if expand:
        xs, ys = [], []
        for x, y in ((0, 0), (w, 0), (w, h), (0, h)):
            xs.append(cos * (x - cx) + sin * (y - cy))
            ys.append(-sin * (x - cx) + cos * (y - cy))
        nw = math.ceil(max(xs)) - math.floor(min(xs))
        nh = math.ceil(max(ys)) - math.floor(min(ys))
    ox, oy = nw / 2.0, nh / 2.0
    matrix = (cos, sin, ox - cos * cx - sin * cy, -sin, cos, oy + sin * cx - cos * cy)
    return matrix, (nw, nh)


def _scaled_size(size: Size, factor: float) -> Size:
    return ensure_size((round(size[0] * factor), round(size[1] * factor)))


def scale(
    image: Image.Image,
    *,
    factor: float,
    keep_canvas: bool = False,
    fill: Any = 0,
    resample: str = "bilinear",
) -> Image.Image:
    """Zoom by `factor`; with `keep_canvas`, centre-crop or pad back to the original size."""
    w, h = image.size
    nw, nh = _scaled_size(image.size, factor)
    out = image.resize((nw, nh), RESAMPLE[resample])
    if not keep_canvas:
        return out
    canvas = Image.new(image.mode, (w, h), fill_for(image.mode, fill))
    canvas.paste(out, ((w - nw) // 2, (h - nh) // 2))
    return canvas


def _scale_geometry(
    image_size: Size, *, factor: float, keep_canvas: bool = False, **_: Any
) -> tuple[Matrix, Size]:
    w, h = image_size
    nw, nh = _scaled_size(image_size, factor)
    if not keep_canvas:
        return _scale(nw / w, nh / h), (nw, nh)
    return (nw / w, 0.0, float((w - nw) // 2), 0.0, nh / h, float((h - nh) // 2)), image_size


def _fit_size(size: Size, target: list[int], fit: str) -> Size:
    w, h = size
    tw, th = target
    if fit == "stretch":
        return tw, th
    ratio = (max if fit == "cover" else min)(tw / w, th / h)
    return ensure_size((round(w * ratio), round(h * ratio)))


def resize(
    image: Image.Image, *, size: list[int], fit: str = "stretch", resample: str = "bilinear"
) -> Image.Image:
    """Resize to `size` [w, h]: `stretch` exactly, or keep the aspect ratio and `cover` or
    `contain` it (torchvision's Resize(n) is `size: n, fit: cover`)."""
    return image.resize(_fit_size(image.size, size, fit), RESAMPLE[resample])


def _resize_geometry(
    image_size: Size, *, size: list[int], fit: str = "stretch", **_: Any
) -> tuple[Matrix, Size]:
    nw, nh = _fit_size(image_size, size, fit)
    return _scale(nw / image_size[0], nh / image_size[1]), (nw, nh)


# --- crops ------------------------------------------------------------------


def crop(image: Image.Image, *, left: int, top: int, width: int, height: int) -> Image.Image:
    """Cut out the box at (`left`, `top`) of `width` x `height` pixels."""
    return image.crop((left, top, left + width, top + height))


def _sample_crop(
    rng: np.random.Generator, image_size: Size, *, size: Any, fraction: Any, position: str
) -> dict[str, Any]:
    w, h = image_size
    if size is not None:
        cw, ch = min(size[0], w), min(size[1], h)
    else:
        f = uniform(rng, fraction)
        cw, ch = ensure_size((round(w * f), round(h * f)))
    if position == "center":
        left, top = (w - cw) // 2, (h - ch) // 2
    else:
        left, top = integer(rng, [0, w - cw]), integer(rng, [0, h - ch])
    return {"left": left, "top": top, "width": cw, "height": ch}


def _crop_geometry(
    image_size: Size, *, left: int, top: int, width: int, height: int
) -> tuple[Matrix, Size]:
    return _translate(-left, -top), (width, height)


def random_resized_crop(
    image: Image.Image,
    *,
    left: int,
    top: int,
    width: int,
    height: int,
    size: list[int],
    resample: str = "bilinear",
) -> Image.Image:
    """Crop the box and resize it to `size` [w, h] in one antialiased resample."""
    box = (left, top, left + width, top + height)
    return image.resize(tuple(size), RESAMPLE[resample], box=box)


def _sample_rrc(
    rng: np.random.Generator,
    image_size: Size,
    *,
    size: list[int],
    scale: Any,
    ratio: Any,
    resample: str,
) -> dict[str, Any]:
    # torchvision's RandomResizedCrop.get_params: 10 tries, then a centre-crop fallback.
    w, h = image_size
    area = w * h
    lo_s, hi_s = scale if isinstance(scale, list) else (scale, scale)
    lo_r, hi_r = ratio if isinstance(ratio, list) else (ratio, ratio)
    log_lo, log_hi = math.log(lo_r), math.log(hi_r)
    box = None
    for _ in range(10):
        target = area * (lo_s + (hi_s - lo_s) * float(rng.random()))
        aspect = math.exp(log_lo + (log_hi - log_lo) * float(rng.random()))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            box = (integer(rng, [0, w - cw]), integer(rng, [0, h - ch]), cw, ch)
            break
    if box is None:
        in_ratio = w / h
        if in_ratio < lo_r:
            cw, ch = w, round(w / lo_r)
        elif in_ratio > hi_r:
            cw, ch = round(h * hi_r), h
        else:
            cw, ch = w, h
        cw, ch = ensure_size((min(cw, w), min(ch, h)))
        box = ((w - cw) // 2, (h - ch) // 2, cw, ch)
    left, top, cw, ch = box
    return {
        "left": left,
        "top": top,
        "width": cw,
        "height": ch,
        "size": list(size),
        "resample": resample,
    }


def _rrc_geometry(
    image_size: Size, *, left: int, top: int, width: int, height: int, size: list[int], **_: Any
) -> tuple[Matrix, Size]:
    tw, th = size
    sx, sy = tw / width, th / height
    return (sx, 0.0, -left * sx, 0.0, sy, -top * sy), (tw, th)


register("hflip", family="geometric", apply=hflip, geometry=_hflip_geometry)
register("vflip", family="geometric", apply=vflip, geometry=_vflip_geometry)
register(
    "rotate90",
    family="geometric",
    apply=rotate90,
    params={"angles": Choice([90, 180, 270], "angles to draw from", options=(0, 90, 180, 270))},
    sample=lambda rng, image_size, *, angles: {"angle": int(pick(rng, angles))},
    geometry=_rotate90_geometry,
)
register(
    "rotate",
    family="geometric",
    apply=rotate,
    params={
        "degrees": Num([-15, 15], "angle in degrees, counter-clockwise", lo=-360, hi=360),
        "expand": Bool(False, "grow the canvas to hold the whole rotated image"),
        "fill": _FILL,
        "resample": _RESAMPLE,
    },
    sample=_sample_rotate,
    geometry=_rotate_geometry,
)
register(
    "scale",
    family="geometric",
    apply=scale,
    params={
        "factor": Num([0.8, 1.2], "zoom factor", lo=0.01, hi=16),
        "keep_canvas": Bool(False, "pad or crop back to the original size"),
        "fill": _FILL,
        "resample": _RESAMPLE,
    },
    geometry=_scale_geometry,
)
register(
    "resize",
    family="geometric",
    apply=resize,
    params={
        "size": Pair([224, 224], "[w, h] in pixels"),
        "fit": Enum(
            "stretch", "how to treat the aspect ratio", options=("stretch", "cover", "contain")
        ),
        "resample": _RESAMPLE,
    },
    geometry=_resize_geometry,
)
register(
    "crop",
    family="geometric",
    apply=crop,
    params={
        "size": Pair(None, "[w, h] in pixels (instead of fraction)", optional=True),
        "fraction": Num(0.9, "side length as a fraction of the image", lo=0.01, hi=1),
        "position": Enum("center", "where the box goes", options=("center", "random")),
    },
    sample=_sample_crop,
    geometry=_crop_geometry,
)
register(
    "random_resized_crop",
    family="geometric",
    apply=random_resized_crop,
    params={
        "size": Pair([224, 224], "output [w, h] in pixels"),
        "scale": Num([0.08, 1.0], "area of the box as a fraction of the image", lo=0.0001, hi=1),
        "ratio": Num([0.75, 1.3333], "aspect ratio w/h of the box", lo=0.01, hi=100),
        "resample": _RESAMPLE,
    },
    sample=_sample_rrc,
    geometry=_rrc_geometry,
)
