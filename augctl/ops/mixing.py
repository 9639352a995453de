"""Mixing ops: blend with, or paste from, a second image of the same class.

The partner is drawn by the variant's rng from the source's class and recorded by its
path relative to the input root, so replay loads the same image.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

from .base import DECIMALS, Num, Partners, Size, register

_ALPHA = Num(1.0, "Beta(alpha, alpha) draws the mixing weight lam", lo=0.01, hi=100)


def _partner_image(partners: Partners | None, partner: str, image: Image.Image) -> Image.Image:
    """The partner decoded, in the image's mode and resized to its size."""
    if partners is None:
        raise ValueError("mixing ops need the partner images (pass partners=)")
    other = partners.load(partner)
    if other.mode != image.mode:
        other = other.convert(image.mode)
    if other.size != image.size:
        other = other.resize(image.size, Image.Resampling.BILINEAR)
    return other


def _lam(rng: np.random.Generator, alpha: float) -> float:
    return round(float(rng.beta(alpha, alpha)), DECIMALS)


def mixup(
    image: Image.Image, *, partner: str | None, lam: float, partners: Partners | None = None
) -> Image.Image:
    """lam * image + (1 - lam) * partner (resized to the image), as torchvision's MixUp."""
    if partner is None:
        return image.copy()
    return Image.blend(_partner_image(partners, partner, image), image, lam)


def _sample_mixup(
    rng: np.random.Generator, image_size: Size, *, alpha: float, partners: Partners | None = None
) -> dict[str, Any]:
    partner = partners.draw(rng) if partners is not None else None
    return {"partner": partner, "lam": _lam(rng, alpha) if partner else 1.0}


def cutmix(
    image: Image.Image,
    *,
    partner: str | None,
    box: list[int],
    lam: float,
    partners: Partners | None = None,
) -> Image.Image:
    """Paste the partner's pixels inside `box` [l, t, r, b], as torchvision's CutMix.

    `lam` is the fraction of the image kept, for soft labels read from the manifest.
    """
    out = image.copy()
    left, top, right, bottom = box
    if partner is None or right <= left or bottom <= top:
        return out
    out.paste(_partner_image(partners, partner, image).crop(tuple(box)), (left, top))
    return out


def _sample_cutmix(
    rng: np.random.Generator, image_size: Size, *, alpha: float, partners: Partners | None = None
) -> dict[str, Any]:
    # torchvision's CutMix: a box of area (1 - lam) centred at a uniform point, clipped.
    partner = partners.draw(rng) if partners is not None else None
    if partner is None:
        return {"partner": None, "box": [0, 0, 0, 0], "lam": 1.0}
    w, h = image_size
    lam = _lam(rng, alpha)
    cx, cy = int(rng.integers(w)), int(rng.integers(h))
    half_w, half_h = int(w * math.sqrt(1 - lam)) // 2, int(h * math.sqrt(1 - lam)) // 2
    box = [max(cx - half_w, 0), max(cy - half_h, 0), min(cx + half_w, w), min(cy + half_h, h)]
    kept = 1.0 - (box[2] - box[0]) * (box[3] - box[1]) / (w * h)
    return {"partner": partner, "box": box, "lam": round(kept, DECIMALS)}


register(
    "mixup",
    family="mixing",
    apply=mixup,
    params={"alpha": _ALPHA},
    sample=_sample_mixup,
    uses_partners=True,
)
register(
    "cutmix",
    family="mixing",
    apply=cutmix,
    params={"alpha": _ALPHA},
    sample=_sample_cutmix,
    uses_partners=True,
)
