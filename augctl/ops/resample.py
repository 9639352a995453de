"""Resampling through an affine matrix: the one resampler of geometric ops, fused or not."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
from collections.abc import Iterator
from typing import Any

from PIL import Image

from .base import RESAMPLE, Matrix, Size, fill_for

_EPS = 1e-9
_TOL = 1e-6
# Where 2x2 supersampling becomes closer to an area-averaged reference than a bilinear tap
# (measured on sample_data and the benchmark photos, rotations at 0.3-1.3x: the two cross
# between 0.5x and 0.4x; tests/test_perf.py checks both sides).
SUPERSAMPLE_BELOW = 0.45
# Who runs the interpolating kernels: Pillow (the default) or OpenCV (the `opencv` extra,
# the recipe's `resampler`). Crops, flips and right-angle turns are exact either way.
RESAMPLERS = ("pillow", "opencv")
_PREMULTIPLIED = {"LA": "La", "RGBA": "RGBa"}
_8_BIT_MODES = ("L", "LA", "RGB", "RGBA")


def max_stretch(matrix: Matrix) -> float:
    """The largest factor by which the matrix stretches any direction (its top singular value)."""
    a, b, _, d, e, _ = matrix
    p, q = a * a + b * b + d * d + e * e, a * e - b * d
    return math.sqrt((p + math.sqrt(max(p * p - 4 * q * q, 0.0))) / 2)


def min_stretch(matrix: Matrix) -> float:
    """The smallest factor by which the matrix stretches any direction."""
    top = max_stretch(matrix)
    return abs(matrix[0] * matrix[4] - matrix[1] * matrix[3]) / top if top else 0.0


def warp(
    image: Image.Image,
    matrix: Matrix,
    size: Size,
    resample: str,
    fill: Any,
    resampler: str = "pillow",
) -> Image.Image:
    """Resample `image` through a forward affine matrix onto a canvas of `size`.

    Axis-aligned matrices (scales, crops, flips, right-angle turns) inside the image use an
    exact crop or (with Pillow) its antialiased resize, then an exact transpose; anything
    else is one affine transform (see `_affine`).
    """
    a, b, c, d, e, f = matrix
    swap = abs(a) < _EPS and abs(e) < _EPS
    if swap:  # output axes swapped: resample to the transposed size, then transpose
        a, b, c, d, e, f = d, e, f, a, b, c
        out = _axis_aligned(image, (a, e, c, f), (size[1], size[0]), resample, resampler)
        if out is not None:
            return out.transpose(Image.Transpose.TRANSPOSE)
    elif abs(b) < _EPS and abs(d) < _EPS:
        out = _axis_aligned(image, (a, e, c, f), size, resample, resampler)
        if out is not None:
            return out
    return _affine(image, matrix, size, resample, fill, resampler)


def _axis_aligned(
    image: Image.Image,
    scale_shift: tuple[float, float, float, float],
    size: Size,
    resample: str,
    resampler: str,
) -> Image.Image | None:
    """X = sx*x + cx, Y = sy*y + cy onto `size` as crop/resize plus flips; None if it
    reaches outside the image, or needs a resize that isn't Pillow's to make."""
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
    elif resampler != "pillow" and resample == "bilinear":
        return None  # OpenCV's resize has no antialiased bilinear: the affine rule applies
    else:
        # reducing_gap: shrinks of 3x or more start with a whole-factor box reduction.
        out = image.resize(size, RESAMPLE[resample], box=box, reducing_gap=3.0)
    if sx < 0:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if sy < 0:
        out = out.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    return out


def _affine(
    image: Image.Image, matrix: Matrix, size: Size, resample: str, fill: Any, resampler: str
) -> Image.Image:
    """One affine resample. An axis shrunk below 0.3x is first reduced by a whole factor
    (box filter) to 0.3-0.6x. Then a bilinear resample that shrinks an axis to
    SUPERSAMPLE_BELOW or less is done as 2x2 supersampling: nearest samples on a canvas twice
    the size, averaged in 2x2 blocks; above it, one bilinear tap per pixel is the closer of
    the two to an area-averaged reference (README "Performance"). Supersampling also costs
    half as much: Pillow's bilinear affine has no fast path."""
    # How much each input axis shrinks, so that a squeeze along one axis is filtered along
    # that axis, not along the geometric mean of both.
    shrink_x = math.hypot(matrix[0], matrix[3])
    shrink_y = math.hypot(matrix[1], matrix[4])
    kx, ky = (_reduction(shrink, resample) for shrink in (shrink_x, shrink_y))
    if kx > 1 or ky > 1:
        image = image.reduce((kx, ky))
        matrix = compose(matrix, (float(kx), 0.0, 0.0, 0.0, float(ky), 0.0))
    supersample = resample == "bilinear" and min(shrink_x * kx, shrink_y * ky) <= (
        SUPERSAMPLE_BELOW + _TOL
    )
    colour = fill_for(image.mode, fill)
    if supersample:
        matrix = compose((2.0, 0.0, 0.0, 0.0, 2.0, 0.0), matrix)
        big = (size[0] * 2, size[1] * 2)
        return _transform(image, big, invert(matrix), "nearest", colour, resampler).reduce(2)
    return _transform(image, size, invert(matrix), resample, colour, resampler)


def _transform(
    image: Image.Image, size: Size, inverse: Matrix, resample: str, colour: Any, resampler: str
) -> Image.Image:
    """One affine resample through an inverse (output -> input) matrix.

    OpenCV does only bilinear, on 8-bit images (every decoded source is one): Pillow's
    nearest affine has a fast path of its own, and OpenCV's bicubic is another kernel
    (a = -0.75, where Pillow's, like torchvision's on PIL images, is a = -0.5).
    """
    if resampler == "pillow" or resample != "bilinear" or image.mode not in _8_BIT_MODES:
        return image.transform(
            size, Image.Transform.AFFINE, inverse, resample=RESAMPLE[resample], fillcolor=colour
        )
    import cv2
    import numpy as np

    # Pillow blends colours weighted by alpha (it resamples premultiplied); so does this.
    mode = _PREMULTIPLIED.get(image.mode)
    a, b, c, d, e, f = inverse
    # Pillow samples output pixel centres (x + 0.5, y + 0.5) in a frame where input pixel i
    # spans [i, i + 1); OpenCV puts pixel centres on whole numbers.
    m = np.array([[a, b, c + (a + b - 1) / 2], [d, e, f + (d + e - 1) / 2]])
    # Pillow clamps taps at the image's edge and fills where a centre maps off the image:
    # OpenCV's replicated border is the first, a mask of where centres land the second.
    out = cv2.warpAffine(
        _pixels(image, mode),
        m,
        size,
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    if mode == "La":  # warped as 4 bands (see `_pixels`)
        out = np.ascontiguousarray(out[..., :2])
    if not _covers(inverse, size, image.size):
        # The fill is opaque (the same premultiplied or not). Bands of rows bound the
        # temporaries (8 bytes a pixel each) on a large output.
        w, h = size
        band = max(1, _MASK_PIXELS // w)
        canvas = _canvas(mode or image.mode, (w, min(h, band)), colour)
        xs = np.arange(w) + 0.5
        for top in range(0, h, band):
            rows = slice(top, min(h, top + band))
            ys = np.arange(rows.start, rows.stop)[:, None] + 0.5
            # Pillow's own test, in its own arithmetic: a centre (x + 0.5, y + 0.5) maps to
            # (a x' + b y') + c, which must lie in [0, w) x [0, h).
            along = np.add(a * xs, b * ys)  # in place from here: temporaries cost more
            along += c
            off = along < 0
            off |= along >= image.width
            along = np.add(d * xs, e * ys, out=along)
            along += f
            off |= along < 0
            off |= along >= image.height
            cv2.copyTo(canvas[: rows.stop - top], off.view(np.uint8), out[rows])
    result = Image.frombuffer(mode or image.mode, size, out, "raw", mode or image.mode, 0, 1)
    return result.convert(image.mode) if mode else result


# Up to this many output pixels per band of the fill mask (1 MB of floats per temporary).
_MASK_PIXELS = 1 << 17
# A band's fill canvas is kept for reuse up to this size (a run has one output size, or a
# few); a larger one (a band of a 1-pixel-high output a million wide) is made per call.
_CACHED_CANVAS_PIXELS = 1 << 20


def _canvas(mode: str, size: Size, colour: Any) -> Any:
    """A read-only numpy image of `size` filled with `colour`."""
    if size[0] * size[1] <= _CACHED_CANVAS_PIXELS:
        return _cached_canvas(mode, size, colour)
    return _new_canvas(mode, size, colour)


@functools.lru_cache(maxsize=8)
def _cached_canvas(mode: str, size: Size, colour: Any) -> Any:
    return _new_canvas(mode, size, colour)


def _new_canvas(mode: str, size: Size, colour: Any) -> Any:
    import numpy as np

    pixels = np.asarray(Image.new(mode, size, colour))
    pixels.flags.writeable = False
    return pixels


def _covers(inverse: Matrix, size: Size, source: Size) -> bool:
    """Whether every output pixel's centre maps inside the source (checked at the corners:
    the centres span a parallelogram)."""
    a, b, c, d, e, f = inverse
    w, h = size
    for x, y in ((0.5, 0.5), (w - 0.5, 0.5), (0.5, h - 0.5), (w - 0.5, h - 0.5)):
        sx, sy = a * x + b * y + c, d * x + e * y + f
        if not (0 <= sx < source[0] and 0 <= sy < source[1]):
            return False
    return True


# The image whose pixels are reused (see `pixels_reused`), and its pixels by mode.
_REUSED: contextvars.ContextVar[tuple[Image.Image, dict[str | None, Any]] | None] = (
    contextvars.ContextVar("augctl_reused_pixels", default=None)
)


@contextlib.contextmanager
def pixels_reused(image: Image.Image) -> Iterator[None]:
    """Within it, OpenCV gets `image`'s pixels copied out once, not once per resample: for a
    caller that doesn't change the image meanwhile (a worker's decoded source, which all its
    variants resample). Other images, a variant's intermediate ones, are not kept."""
    token = _REUSED.set((image, {}))
    try:
        yield
    finally:
        _REUSED.reset(token)


def _pixels(image: Image.Image, mode: str | None) -> Any:
    """The pixels of `image` (converted to `mode`, if given) as a numpy array."""
    import numpy as np

    reused = _REUSED.get()
    by_mode = reused[1] if reused is not None and reused[0] is image else {}
    if mode not in by_mode:
        pixels = np.asarray(image.convert(mode) if mode else image)
        if mode == "La":
            # OpenCV's 2-band bilinear warp rounds coarser (up to 3-5 levels off its own 1-
            # and 4-band results): La goes as 4 bands, L A L A.
            pixels = np.concatenate((pixels, pixels), axis=2)
        by_mode[mode] = pixels
    return by_mode[mode]


def _reduction(shrink: float, resample: str) -> int:
    """Whole box-filter factor to shrink an axis by first: below 0.3x bilinear keeps 0.3-0.6x,
    bicubic keeps [0.5, 1], where it is sharp."""
    if resample == "bilinear" and shrink < 0.3:
        return int(0.6 / shrink)
    if resample == "bicubic" and shrink < 0.5:
        return int(1.0 / shrink)
    return 1


def compose(outer: Matrix, inner: Matrix) -> Matrix:
    """The matrix that applies `inner`, then `outer`."""
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


def invert(m: Matrix) -> Matrix:
    """The inverse of an affine matrix (output -> input, as Pillow's transform wants it)."""
    a, b, c, d, e, f = m
    det = a * e - b * d
    ia, ib, id_, ie = e / det, -b / det, -d / det, a / det
    return (ia, ib, -(ia * c + ib * f), id_, ie, -(id_ * c + ie * f))
