"""Geometric ops: flips, rotations, scaling, resizing, crops, padding and warps.

Every affine op here also declares its forward matrix (`geometry`), so the
pipeline runner can fuse a run of them into one resample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from PIL import Image

from .base import (
    FILL,
    RESAMPLE,
    Bool,
    Choice,
    Enum,
    Matrix,
    Num,
    Pair,
    Param,
    ParamError,
    Size,
    ensure_size,
    fill_for,
    integer,
    pick,
    register,
    seeded_sampler,
    uniform,
)
from .resample import warp

_RESAMPLE = Enum("bilinear", "interpolation filter", options=tuple(RESAMPLE))


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
    resampler: str = "pillow",
) -> Image.Image:
    """Rotate counter-clockwise by `angle` degrees about the centre (PIL and torchvision agree).

    With `expand` the canvas grows to hold the whole rotated image, as in PIL. Resampled as
    a fused segment is (`resample.warp`), so the op alone and fused give the same pixels.
    """
    matrix, size = _rotate_geometry(image.size, angle=angle, expand=expand)
    return warp(image, matrix, size, resample, fill, resampler)


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
    w, h = image_size
    rad = math.radians(angle % 360.0)
    cos, sin = round(math.cos(rad), 15), round(math.sin(rad), 15)
    cx, cy = w / 2.0, h / 2.0
    matrix = (cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy)
    nw, nh = _pil_rotated_canvas(w, h, angle % 360.0) if expand else (w, h)
    shift = ((nw - w) / 2.0, (nh - h) / 2.0)  # keep the centre at the centre
    return (*matrix[:2], matrix[2] + shift[0], *matrix[3:5], matrix[5] + shift[1]), (nw, nh)


def _pil_rotated_canvas(w: int, h: int, angle: float) -> Size:
    """The canvas of PIL's `Image.rotate(expand=True)`, reproduced step by step (its
    rounding of cos/sin and its ceil/floor of the corners in PIL's own frame), so that
    sizes predicted while sampling equal the sizes `rotate` makes."""
    if angle in (0.0, 180.0):
        return w, h
    if angle in (90.0, 270.0):
        return h, w
    rad = -math.radians(angle)
    a, b = round(math.cos(rad), 15), round(math.sin(rad), 15)
    d, e = round(-math.sin(rad), 15), round(math.cos(rad), 15)
    cx, cy = w / 2, h / 2
    c = a * -cx + b * -cy + cx
    f = d * -cx + e * -cy + cy
    xs = [a * x + b * y + c for x, y in ((0, 0), (w, 0), (w, h), (0, h))]
    ys = [d * x + e * y + f for x, y in ((0, 0), (w, 0), (w, h), (0, h))]
    return math.ceil(max(xs)) - math.floor(min(xs)), math.ceil(max(ys)) - math.floor(min(ys))


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


# --- pad ----------------------------------------------------------------------


@dataclass(frozen=True)
class Sides(Param):
    """Pixels per side: one value for all four sides, or [left, top, right, bottom]."""

    def normalize(self, value: Any) -> Any:
        vals = list(value) if isinstance(value, (list, tuple)) else [value] * 4
        if len(vals) != 4 or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 100_000 for v in vals
        ):
            # A 2-list is refused rather than read as torchvision's [left/right, top/bottom]:
            # elsewhere in a recipe [a, b] means a range.
            raise ParamError(
                f"expected an integer >= 0 or [left, top, right, bottom], got {value!r}"
            )
        return vals[0] if len(set(vals)) == 1 else vals

    def describe(self) -> str:
        return "int or [left, top, right, bottom]"


def pad(
    image: Image.Image, *, padding: list[int], fill: Any = 0, mode: str = "constant"
) -> Image.Image:
    """Add [left, top, right, bottom] pixels of `fill`, or of the `edge` or `reflect`ed image."""
    left, top, right, bottom = padding
    w, h = image.size
    if mode == "constant":
        out = Image.new(
            image.mode, (w + left + right, h + top + bottom), fill_for(image.mode, fill)
        )
        out.paste(image, (left, top))
        return out
    arr = np.asarray(image)
    widths = [(top, bottom), (left, right)] + [(0, 0)] * (arr.ndim - 2)
    return Image.fromarray(np.pad(arr, widths, mode=mode))


def _pad_size(image_size: Size, *, padding: list[int], **_: Any) -> Size:
    left, top, right, bottom = padding
    return image_size[0] + left + right, image_size[1] + top + bottom


# --- affine -------------------------------------------------------------------


@dataclass(frozen=True)
class Fractions(Param):
    """A fraction in [0, 1] for both axes, or [fx, fy]."""

    def normalize(self, value: Any) -> Any:
        vals = list(value) if isinstance(value, (list, tuple)) else [value, value]
        if len(vals) != 2 or not all(_is_fraction(v) for v in vals):
            raise ParamError(f"expected a fraction in [0, 1] or [fx, fy], got {value!r}")
        return [float(v) for v in vals]

    def describe(self) -> str:
        return "fraction in [0..1] or [fx, fy]"


def _is_fraction(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1


def _rotate_shear(angle: float, shear: list[float]) -> tuple[float, float, float, float]:
    # torchvision's R(angle) SHy(shear_y) SHx(shear_x) in y-down coordinates; its det is 1.
    rot, sx, sy = math.radians(angle), math.radians(shear[0]), math.radians(shear[1])
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    return a, b, c, d


def _affine_geometry(
    image_size: Size,
    *,
    angle: float,
    translate: list[float],
    scale: float,
    shear: list[float],
    **_: Any,
) -> tuple[Matrix, Size]:
    cx, cy = image_size[0] * 0.5, image_size[1] * 0.5
    a, b, c, d = (v * scale for v in _rotate_shear(angle, shear))
    tx, ty = translate
    return (a, b, cx + tx - a * cx - b * cy, c, d, cy + ty - c * cx - d * cy), image_size


def affine(
    image: Image.Image,
    *,
    angle: float,
    translate: list[float],
    scale: float,
    shear: list[float],
    fill: Any = 0,
    resample: str = "bilinear",
    resampler: str = "pillow",
) -> Image.Image:
    """torchvision's affine about the centre; its `angle` turns clockwise, unlike `rotate`."""
    matrix, size = _affine_geometry(
        image.size, angle=angle, translate=translate, scale=scale, shear=shear
    )
    return warp(image, matrix, size, resample, fill, resampler)


def _sample_affine(
    rng: np.random.Generator,
    image_size: Size,
    *,
    degrees: Any,
    translate: list[float],
    scale: Any,
    shear: Any,
    shear_y: Any,
    fill: Any,
    resample: str,
) -> dict[str, Any]:
    # torchvision's RandomAffine.get_params: translations are whole pixels.
    angle = uniform(rng, degrees)
    max_dx, max_dy = translate[0] * image_size[0], translate[1] * image_size[1]
    tx = round(uniform(rng, [-max_dx, max_dx]))
    ty = round(uniform(rng, [-max_dy, max_dy]))
    return {
        "angle": angle,
        "translate": [tx, ty],
        "scale": uniform(rng, scale),
        "shear": [uniform(rng, shear), uniform(rng, shear_y)],
        "fill": fill,
        "resample": resample,
    }


# --- perspective --------------------------------------------------------------


def _perspective_coeffs(start: list[list[int]], end: list[list[int]]) -> list[float] | None:
    """PIL's coefficients mapping `end` (output) points to `start` (input) points, or None."""
    # Exact rationals instead of torchvision's float32 least squares: identity corners give the
    # identity exactly, and the coefficients don't depend on the machine's LAPACK.
    m: list[list[Fraction]] = []
    for (x, y), (u, v) in zip(end, start):
        m.append([Fraction(e) for e in (x, y, 1, 0, 0, 0, -u * x, -u * y, u)])
        m.append([Fraction(e) for e in (0, 0, 0, x, y, 1, -v * x, -v * y, v)])
    for col in range(8):
        pivot = next((r for r in range(col, 8) if m[r][col] != 0), None)
        if pivot is None:
            return None
        m[col], m[pivot] = m[pivot], m[col]
        m[col] = [e / m[col][col] for e in m[col]]
        for r in range(8):
            if r != col and m[r][col] != 0:
                f = m[r][col]
                m[r] = [e - f * p for e, p in zip(m[r], m[col])]
    return [float(row[8]) for row in m]


def _image_corners(size: Size) -> list[list[int]]:
    w, h = size
    return [[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]]


def perspective(
    image: Image.Image, *, corners: list[list[int]], fill: Any = 0, resample: str = "bilinear"
) -> Image.Image:
    """Warp so that the corner pixels (TL, TR, BR, BL) land on `corners`, as torchvision's."""
    coeffs = _perspective_coeffs(_image_corners(image.size), corners)
    if coeffs is None:  # a 1-pixel-wide or -high image has no perspective to change
        return image.copy()
    return image.transform(
        image.size,
        Image.Transform.PERSPECTIVE,
        coeffs,
        resample=RESAMPLE[resample],
        fillcolor=fill_for(image.mode, fill),
    )


def _sample_perspective(
    rng: np.random.Generator, image_size: Size, *, distortion_scale: Any, fill: Any, resample: str
) -> dict[str, Any]:
    # torchvision's RandomPerspective.get_params, with inclusive integer ranges.
    w, h = image_size
    distortion = uniform(rng, distortion_scale)
    dw, dh = int(distortion * (w // 2)), int(distortion * (h // 2))
    near_x, far_x = [0, dw], [w - dw - 1, w - 1]
    near_y, far_y = [0, dh], [h - dh - 1, h - 1]
    corners = [
        [integer(rng, near_x), integer(rng, near_y)],
        [integer(rng, far_x), integer(rng, near_y)],
        [integer(rng, far_x), integer(rng, far_y)],
        [integer(rng, near_x), integer(rng, far_y)],
    ]
    return {"corners": corners, "fill": fill, "resample": resample}


# --- elastic ------------------------------------------------------------------


def _gaussian_smooth(field: np.ndarray, sigma: float) -> np.ndarray:
    """Blur a 2-D field with torchvision's kernel (8 sigma + 1 taps, odd) and reflect padding."""
    if sigma <= 0:
        return field
    size = int(8 * sigma + 1) | 1
    half = size // 2
    taps = np.exp(-0.5 * (np.linspace(-half, half, size) / sigma) ** 2)
    taps /= taps.sum()
    for axis in (0, 1):
        n = field.shape[axis]
        widths = [(0, 0), (0, 0)]
        widths[axis] = (half, half)
        padded = np.pad(field, widths, mode="reflect")
        length = padded.shape[axis]
        # By FFT, whose cost doesn't grow with sigma; past the first size - 1 samples the
        # circular convolution equals the linear one.
        kernel = np.fft.rfft(taps, n=length).reshape((-1, 1) if axis == 0 else (1, -1))
        full = np.fft.irfft(np.fft.rfft(padded, axis=axis) * kernel, n=length, axis=axis)
        field = full[size - 1 : size - 1 + n] if axis == 0 else full[:, size - 1 : size - 1 + n]
    return field


def _remap(
    image: Image.Image, xs: np.ndarray, ys: np.ndarray, fill: Any, resample: str
) -> Image.Image:
    """Sample `image` at pixel-centre coordinates (`xs`, `ys`); outside it is `fill`."""
    h, w = xs.shape
    arr = np.asarray(image).reshape(h, w, -1)
    bands = arr.shape[2]
    # A one-pixel ring of fill: samples beyond it are clamped onto it. float32 as torch's
    # grid_sample, which also halves the memory of large images.
    padded = np.empty((h + 2, w + 2, bands), dtype=np.float32)
    padded[:] = np.asarray(fill_for(image.mode, fill), dtype=np.float32).reshape(-1)
    padded[1:-1, 1:-1] = arr
    flat = padded.reshape(-1, bands)
    stride = w + 2
    if resample == "nearest":
        xi = np.clip(np.rint(xs) + 1, 0, w + 1).astype(np.intp)
        yi = np.clip(np.rint(ys) + 1, 0, h + 1).astype(np.intp)
        out = flat[yi * stride + xi]
    else:
        x = np.clip(xs + 1, 0, w + 1)
        y = np.clip(ys + 1, 0, h + 1)
        x0, y0 = np.minimum(np.floor(x), w), np.minimum(np.floor(y), h)
        fx = (x - x0).astype(np.float32)[..., None]
        fy = (y - y0).astype(np.float32)[..., None]
        i = y0.astype(np.intp) * stride + x0.astype(np.intp)
        top = flat[i] + (flat[i + 1] - flat[i]) * fx
        bottom = flat[i + stride] + (flat[i + stride + 1] - flat[i + stride]) * fx
        out = top + (bottom - top) * fy
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return Image.fromarray(out[..., 0] if bands == 1 else out)


def elastic(
    image: Image.Image,
    *,
    alpha: float,
    sigma: float,
    seed: int,
    fill: Any = 0,
    resample: str = "bilinear",
) -> Image.Image:
    """torchvision's elastic warp with a field from `seed`, but not stretched when w != h."""
    # torchvision shifts by up to alpha / 2 pixels times w/h in x and h/w in y; we keep alpha / 2
    # on both axes, which is the same on square images.
    w, h = image.size
    noise = np.random.default_rng(seed)
    dx = _gaussian_smooth(noise.random((h, w)) * 2 - 1, sigma) * (alpha / 2)
    dy = _gaussian_smooth(noise.random((h, w)) * 2 - 1, sigma) * (alpha / 2)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    return _remap(image, xs + dx, ys + dy, fill, resample)


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
        "fill": FILL,
        "resample": _RESAMPLE,
    },
    sample=_sample_rotate,
    geometry=_rotate_geometry,
    uses_resampler=True,
)
register(
    "scale",
    family="geometric",
    apply=scale,
    params={
        "factor": Num([0.8, 1.2], "zoom factor", lo=0.01, hi=16),
        "keep_canvas": Bool(False, "pad or crop back to the original size"),
        "fill": FILL,
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
        "size": Pair(
            None,
            "[w, h] in pixels (instead of fraction); a side past the image is cut to it",
            optional=True,
        ),
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
register(
    "pad",
    family="geometric",
    apply=pad,
    params={
        "padding": Sides(8, "pixels added per side"),
        "fill": FILL,
        "mode": Enum("constant", "what the border holds", options=("constant", "edge", "reflect")),
    },
    sample=lambda rng, image_size, *, padding, fill, mode: {
        "padding": [padding] * 4 if isinstance(padding, int) else list(padding),
        "fill": fill,
        "mode": mode,
    },
    out_size=_pad_size,
)
register(
    "affine",
    family="geometric",
    apply=affine,
    params={
        "degrees": Num([-10, 10], "rotation in degrees, clockwise", lo=-360, hi=360),
        "translate": Fractions([0.1, 0.1], "largest shift [x, y] as a fraction of the size"),
        "scale": Num([0.9, 1.1], "zoom factor", lo=0.01, hi=16),
        "shear": Num(0, "x shear in degrees", lo=-89, hi=89),
        "shear_y": Num(0, "y shear in degrees", lo=-89, hi=89),
        "fill": FILL,
        "resample": _RESAMPLE,
    },
    sample=_sample_affine,
    geometry=_affine_geometry,
    uses_resampler=True,
)
register(
    "perspective",
    family="geometric",
    apply=perspective,
    params={
        "distortion_scale": Num(0.5, "how far corners may move (0-1)", lo=0, hi=1),
        "fill": FILL,
        "resample": _RESAMPLE,
    },
    sample=_sample_perspective,
)
_ELASTIC = {
    "alpha": Num(50.0, "displacement strength", lo=0, hi=10_000),
    "sigma": Num(5.0, "smoothness of the displacement field", lo=0, hi=50),
    "fill": FILL,
    "resample": Enum("bilinear", "interpolation filter", options=("nearest", "bilinear")),
}
register(
    "elastic",
    family="geometric",
    apply=elastic,
    params=_ELASTIC,
    sample=seeded_sampler(_ELASTIC),
)
