"""Photometric ops: colour and tone changes that keep the geometry."""

from __future__ import annotations

from PIL import Image, ImageEnhance

from .base import Num, bands_without_alpha, register

_FACTOR = Num([0.8, 1.2], "1 keeps the image; 0 gives the degenerate image", lo=0, hi=10)


def brightness(image: Image.Image, *, factor: float) -> Image.Image:
    """Scale every colour value by `factor` (0 is black), as PIL's and torchvision's."""
    return bands_without_alpha(image, lambda im: ImageEnhance.Brightness(im).enhance(factor))


def contrast(image: Image.Image, *, factor: float) -> Image.Image:
    """Blend with the image's mean grey by `factor` (PIL semantics: the mean is rounded)."""
    return bands_without_alpha(image, lambda im: ImageEnhance.Contrast(im).enhance(factor))


def saturation(image: Image.Image, *, factor: float) -> Image.Image:
    """Blend with the grayscale image by `factor` (0 is grey); grayscale input is unchanged."""
    if image.mode in ("L", "LA"):
        return image.copy()
    return bands_without_alpha(image, lambda im: ImageEnhance.Color(im).enhance(factor))


register("brightness", family="photometric", apply=brightness, params={"factor": _FACTOR})
register("contrast", family="photometric", apply=contrast, params={"factor": _FACTOR})
register("saturation", family="photometric", apply=saturation, params={"factor": _FACTOR})
