"""Photometric ops: colour and tone changes that keep the geometry."""

from __future__ import annotations

import io
import operator
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from .base import (
    Num,
    Size,
    bands_without_alpha,
    blend_table,
    map_bands,
    register,
    seeded_sampler,
    uniform,
)

_FACTOR = Num([0.8, 1.2], "1 keeps the image; 0 gives the degenerate image", lo=0, hi=10)
_HUE = Num([-0.1, 0.1], "shift as a fraction of the hue circle", lo=-0.5, hi=0.5)


def _brightness_table(*, factor: float) -> list[int]:
    return blend_table(0, factor)


def brightness(image: Image.Image, *, factor: float) -> Image.Image:
    """Scale every colour value by `factor` (0 is black), as PIL's and torchvision's."""
    # A lookup table made by PIL's own blend, so the bytes equal ImageEnhance.Brightness.
    return map_bands(image, _brightness_table(factor=factor))


def contrast(image: Image.Image, *, factor: float) -> Image.Image:
    """Blend with the image's mean grey by `factor` (PIL semantics: the mean is rounded)."""
    # ImageEnhance.Contrast's mean and blend, as one lookup table: the same bytes, one pass.
    histogram = image.convert("L").histogram()
    mean = int(sum(map(operator.mul, histogram, range(256))) / sum(histogram) + 0.5)
    return map_bands(image, blend_table(mean, factor))


def saturation(image: Image.Image, *, factor: float) -> Image.Image:
    """Blend with the grayscale image by `factor` (0 is grey); grayscale input is unchanged."""
    if image.mode in ("L", "LA"):
        return image.copy()
    return bands_without_alpha(image, lambda im: ImageEnhance.Color(im).enhance(factor))


def _shift_hue(image: Image.Image, factor: float) -> Image.Image:
    h, s, v = image.convert("HSV").split()
    # int() truncates toward zero, as torchvision's np.int32 cast does.
    shifted = (np.asarray(h, dtype=np.int32) + int(factor * 255)) % 256
    return Image.merge("HSV", (Image.fromarray(shifted.astype(np.uint8)), s, v)).convert("RGB")


def hue(image: Image.Image, *, factor: float) -> Image.Image:
    """Turn hue by `factor` of a circle in HSV, as torchvision; 0 skips the lossy round trip."""
    if image.mode in ("L", "LA") or factor == 0:
        return image.copy()
    return bands_without_alpha(image, lambda im: _shift_hue(im, factor))


def _gamma_table(*, gamma: float, gain: float = 1.0) -> list[int]:
    return [min(255, int((255 + 1 - 1e-3) * gain * (i / 255.0) ** gamma)) for i in range(256)]


def gamma(image: Image.Image, *, gamma: float, gain: float = 1.0) -> Image.Image:
    """Map each value v to 255 * gain * (v / 255) ** gamma, as torchvision's adjust_gamma."""
    return map_bands(image, _gamma_table(gamma=gamma, gain=gain))


_JITTER: dict[str, Callable[..., Image.Image]] = {
    "brightness": brightness,
    "contrast": contrast,
    "saturation": saturation,
    "hue": hue,
}


def color_jitter(
    image: Image.Image,
    *,
    order: list[str],
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
) -> Image.Image:
    """torchvision's ColorJitter: brightness, contrast, saturation, hue in the recorded `order`."""
    factors = dict(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue)
    out = image.copy()
    for name in order:
        out = _JITTER[name](out, factor=factors[name])
    return out


def _sample_jitter(rng: np.random.Generator, image_size: Size, **config: Any) -> dict[str, Any]:
    # torchvision's ColorJitter.get_params: the order first, then each factor.
    order = [list(_JITTER)[int(i)] for i in rng.permutation(len(_JITTER))]
    return {"order": order, **{name: uniform(rng, config[name]) for name in _JITTER}}


def grayscale(image: Image.Image) -> Image.Image:
    """Replace colour by PIL's luma, keeping the channel count (torchvision's RandomGrayscale)."""
    if image.mode in ("L", "LA"):
        return image.copy()
    return bands_without_alpha(image, lambda im: Image.merge("RGB", [im.convert("L")] * 3))


def equalize(image: Image.Image) -> Image.Image:
    """Equalize the histogram of each band (PIL's ImageOps.equalize, as torchvision on PIL)."""
    return bands_without_alpha(image, ImageOps.equalize)


def autocontrast(image: Image.Image) -> Image.Image:
    """Stretch each band to the full 0-255 range (PIL's ImageOps.autocontrast)."""
    return bands_without_alpha(image, ImageOps.autocontrast)


def posterize(image: Image.Image, *, bits: int) -> Image.Image:
    """Keep the top `bits` bits of every value (PIL's ImageOps.posterize)."""
    return bands_without_alpha(image, lambda im: ImageOps.posterize(im, bits))


def solarize(image: Image.Image, *, threshold: float) -> Image.Image:
    """Invert every value >= `threshold` (PIL's ImageOps.solarize; 256 changes nothing)."""
    return bands_without_alpha(image, lambda im: ImageOps.solarize(im, threshold))


# The tables ImageOps.posterize, solarize and invert map every band through (for fusion).
def _posterize_table(*, bits: int) -> list[int]:
    mask = ~(2 ** (8 - bits) - 1)
    return [i & mask for i in range(256)]


def _solarize_table(*, threshold: float) -> list[int]:
    return [i if i < threshold else 255 - i for i in range(256)]


def _invert_table() -> list[int]:
    return list(range(255, -1, -1))


def invert(image: Image.Image) -> Image.Image:
    """Replace every value v by 255 - v."""
    return bands_without_alpha(image, ImageOps.invert)


def sharpness(image: Image.Image, *, factor: float) -> Image.Image:
    """Blend with PIL's smoothed image by `factor` (0 blurs, 2 sharpens), as torchvision."""
    return bands_without_alpha(image, lambda im: ImageEnhance.Sharpness(im).enhance(factor))


def gaussian_blur(image: Image.Image, *, sigma: float) -> Image.Image:
    """PIL's GaussianBlur(radius=sigma): box-filter passes, no kernel size as in torchvision."""
    return bands_without_alpha(image, lambda im: im.filter(ImageFilter.GaussianBlur(sigma)))


def _from_array(values: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))


def gaussian_noise(image: Image.Image, *, std: float, seed: int) -> Image.Image:
    """Add zero-mean Gaussian noise of `std` (0-255 units) from `seed`, independently per band."""

    def noisy(im: Image.Image) -> Image.Image:
        arr = np.asarray(im, dtype=np.float64)
        return _from_array(arr + np.random.default_rng(seed).normal(0.0, std, arr.shape))

    return bands_without_alpha(image, noisy)


def salt_pepper(
    image: Image.Image, *, amount: float, salt_vs_pepper: float = 0.5, seed: int
) -> Image.Image:
    """Turn a fraction `amount` of pixels (from `seed`) white or black, all bands at once."""

    def speckled(im: Image.Image) -> Image.Image:
        arr = np.array(im)
        u = np.random.default_rng(seed).random(arr.shape[:2])
        salt = amount * salt_vs_pepper
        arr[u < salt] = 255
        arr[(u >= salt) & (u < amount)] = 0
        return Image.fromarray(arr)

    return bands_without_alpha(image, speckled)


def _reencode(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as decoded:
        return decoded.convert(image.mode)


def jpeg_quality(image: Image.Image, *, quality: int) -> Image.Image:
    """Encode as JPEG at `quality` (Pillow's defaults otherwise) and decode again, in memory."""
    return bands_without_alpha(image, lambda im: _reencode(im, quality))


register(
    "brightness",
    family="photometric",
    apply=brightness,
    params={"factor": _FACTOR},
    lut=_brightness_table,
)
register("contrast", family="photometric", apply=contrast, params={"factor": _FACTOR})
register("saturation", family="photometric", apply=saturation, params={"factor": _FACTOR})
register("hue", family="photometric", apply=hue, params={"factor": _HUE})
register(
    "gamma",
    family="photometric",
    apply=gamma,
    params={
        "gamma": Num([0.8, 1.25], "exponent: < 1 brightens, > 1 darkens", lo=0, hi=10),
        "gain": Num(1.0, "multiplier applied after the power", lo=0, hi=10),
    },
    lut=_gamma_table,
)
_JITTER_FACTOR = Num([0.6, 1.4], "factor; 1 keeps the image", lo=0, hi=10)
register(
    "color_jitter",
    family="photometric",
    apply=color_jitter,
    params={
        "brightness": _JITTER_FACTOR,
        "contrast": _JITTER_FACTOR,
        "saturation": _JITTER_FACTOR,
        "hue": _HUE,
    },
    sample=_sample_jitter,
)
register("grayscale", family="photometric", apply=grayscale)
register("equalize", family="photometric", apply=equalize)
register("autocontrast", family="photometric", apply=autocontrast)
register(
    "posterize",
    family="photometric",
    apply=posterize,
    params={"bits": Num([4, 8], "bits kept per value", lo=1, hi=8, integer=True)},
    lut=_posterize_table,
)
register(
    "solarize",
    family="photometric",
    apply=solarize,
    params={"threshold": Num(128, "values at or above it are inverted", lo=0, hi=256)},
    lut=_solarize_table,
)
register("invert", family="photometric", apply=invert, lut=_invert_table)
register(
    "sharpness",
    family="photometric",
    apply=sharpness,
    params={"factor": Num([0.5, 2.0], "1 keeps the image; 0 blurs", lo=0, hi=10)},
)
register(
    "gaussian_blur",
    family="photometric",
    apply=gaussian_blur,
    params={"sigma": Num([0.1, 2.0], "standard deviation in pixels", lo=0, hi=100)},
)
_NOISE = {"std": Num([5.0, 15.0], "standard deviation in 0-255 units", lo=0, hi=255)}
register(
    "gaussian_noise",
    family="photometric",
    apply=gaussian_noise,
    params=_NOISE,
    sample=seeded_sampler(_NOISE),
)
_SALT_PEPPER = {
    "amount": Num([0.01, 0.05], "fraction of pixels replaced", lo=0, hi=1),
    "salt_vs_pepper": Num(0.5, "fraction of those that turn white", lo=0, hi=1),
}
register(
    "salt_pepper",
    family="photometric",
    apply=salt_pepper,
    params=_SALT_PEPPER,
    sample=seeded_sampler(_SALT_PEPPER),
)
register(
    "jpeg_quality",
    family="photometric",
    apply=jpeg_quality,
    params={"quality": Num([30, 90], "JPEG quality", lo=1, hi=100, integer=True)},
)
