"""Augmentation policies (RandAugment, TrivialAugment, AutoAugment) over the registered ops.

Each records the ops it chose, with complete params, as `{"ops": [{"op": name, ...}]}`,
and `apply` replays them with the registered kernels. torchvision's op names map to ours:
ShearX/ShearY/TranslateX/TranslateY -> `affine`, Rotate -> `rotate`, Color -> `saturation`,
Brightness/Contrast/Sharpness/Posterize/Solarize/AutoContrast/Equalize/Invert -> the op of
that name; Identity records nothing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

from .base import DECIMALS, FILL, REGISTRY, RESAMPLE, Enum, Num, Size, integer, register

Applied = list[dict[str, Any]]

_RESAMPLE = Enum("nearest", "interpolation filter (torchvision's default)", options=tuple(RESAMPLE))
_BINS = Num(31, "number of magnitude steps", lo=2, hi=101, integer=True)


def run_ops(image: Image.Image, *, ops: Applied, resampler: str = "pillow") -> Image.Image:
    """Apply the recorded ops in order, each with its registered kernel."""
    out = image.copy()
    for entry in ops:
        params = dict(entry)
        op = REGISTRY[params.pop("op")]
        if op.uses_resampler:
            params["resampler"] = resampler
        out = op.apply(out, **params)
    return out


def _linspace(lo: float, hi: float, bins: int) -> list[float]:
    return [float(v) for v in np.linspace(lo, hi, bins)]


def _posterize_bits(bins: int, spread: int) -> list[int]:
    # torchvision: 8 - round(i / ((bins - 1) / spread)), rounding half to even.
    return [8 - int(np.round(i / ((bins - 1) / spread))) for i in range(bins)]


def _space(bins: int, size: Size, *, wide: bool) -> dict[str, tuple[list[float] | None, bool]]:
    """torchvision's augmentation space: op -> (magnitudes or None, signed)."""
    w, h = size
    strength = 0.99 if wide else 0.9
    return {
        "Identity": (None, False),
        "ShearX": (_linspace(0.0, 0.99 if wide else 0.3, bins), True),
        "ShearY": (_linspace(0.0, 0.99 if wide else 0.3, bins), True),
        "TranslateX": (_linspace(0.0, 32.0 if wide else 150.0 / 331.0 * w, bins), True),
        "TranslateY": (_linspace(0.0, 32.0 if wide else 150.0 / 331.0 * h, bins), True),
        "Rotate": (_linspace(0.0, 135.0 if wide else 30.0, bins), True),
        "Brightness": (_linspace(0.0, strength, bins), True),
        "Color": (_linspace(0.0, strength, bins), True),
        "Contrast": (_linspace(0.0, strength, bins), True),
        "Sharpness": (_linspace(0.0, strength, bins), True),
        "Posterize": ([float(b) for b in _posterize_bits(bins, 6 if wide else 4)], False),
        "Solarize": (_linspace(255.0, 0.0, bins), False),
        "AutoContrast": (None, False),
        "Equalize": (None, False),
    }


_FACTOR_OPS = {
    "Brightness": "brightness",
    "Color": "saturation",
    "Contrast": "contrast",
    "Sharpness": "sharpness",
}


def _affine(translate: list[float], shear: list[float], fill: Any, resample: str) -> dict[str, Any]:
    return {
        "op": "affine",
        "angle": 0.0,
        "translate": translate,
        "scale": 1.0,
        "shear": shear,
        "fill": fill,
        "resample": resample,
    }


def _entry(name: str, m: float, size: Size, fill: Any, resample: str) -> dict[str, Any] | None:
    """Our op and params for torchvision's `_apply_op(name, magnitude=m)`."""
    w, h = size
    if name in ("ShearX", "ShearY"):
        # torchvision shears by atan(m) about the top-left corner; ours shears about the
        # centre, so the shift moves the fixed point back to the corner.
        deg = round(math.degrees(math.atan(m)), DECIMALS)
        shift = round(-math.tan(math.radians(deg)) * (h if name == "ShearX" else w) / 2, DECIMALS)
        if name == "ShearX":
            return _affine([shift, 0.0], [deg, 0.0], fill, resample)
        return _affine([0.0, shift], [0.0, deg], fill, resample)
    if name == "TranslateX":
        return _affine([int(m), 0], [0.0, 0.0], fill, resample)
    if name == "TranslateY":
        return _affine([0, int(m)], [0.0, 0.0], fill, resample)
    if name == "Rotate":
        return {"op": "rotate", "angle": m, "expand": False, "fill": fill, "resample": resample}
    if name in _FACTOR_OPS:
        return {"op": _FACTOR_OPS[name], "factor": round(1.0 + m, DECIMALS)}
    if name == "Posterize":
        return {"op": "posterize", "bits": int(m)}
    if name == "Solarize":
        return {"op": "solarize", "threshold": m}
    if name == "Identity":
        return None
    return {"op": name.lower()}  # AutoContrast, Equalize, Invert


def _draw(
    rng: np.random.Generator,
    space: dict[str, tuple[list[float] | None, bool]],
    bin_index: int | None,
) -> tuple[str, float]:
    """One op and signed magnitude, drawn as torchvision does (bin_index None: a random bin)."""
    name = list(space)[int(rng.integers(len(space)))]
    mags, signed = space[name]
    m = 0.0
    if mags is not None:
        m = mags[bin_index if bin_index is not None else int(rng.integers(len(mags)))]
    if signed and rng.integers(2):
        m = -m
    return name, round(m, DECIMALS)


def randaugment(image: Image.Image, *, ops: Applied, resampler: str = "pillow") -> Image.Image:
    """RandAugment (torchvision's op list and magnitudes): replay the recorded `ops`."""
    return run_ops(image, ops=ops, resampler=resampler)


def _sample_randaugment(
    rng: np.random.Generator,
    image_size: Size,
    *,
    num_ops: Any,
    magnitude: Any,
    num_magnitude_bins: Any,
    fill: Any,
    resample: str,
) -> dict[str, Any]:
    bins = integer(rng, num_magnitude_bins)
    level = min(integer(rng, magnitude), bins - 1)  # torchvision would raise an IndexError
    space = _space(bins, image_size, wide=False)
    ops: Applied = []
    for _ in range(integer(rng, num_ops)):
        entry = _entry(*_draw(rng, space, level), image_size, fill, resample)
        if entry is not None:
            ops.append(entry)
    return {"ops": ops}


def trivialaugment(image: Image.Image, *, ops: Applied, resampler: str = "pillow") -> Image.Image:
    """TrivialAugmentWide (torchvision's op list and magnitudes): replay the recorded `ops`."""
    return run_ops(image, ops=ops, resampler=resampler)


def _sample_trivialaugment(
    rng: np.random.Generator, image_size: Size, *, num_magnitude_bins: Any, fill: Any, resample: str
) -> dict[str, Any]:
    space = _space(integer(rng, num_magnitude_bins), image_size, wide=True)
    entry = _entry(*_draw(rng, space, None), image_size, fill, resample)
    return {"ops": [] if entry is None else [entry]}


# AutoAugment's ImageNet policy: pairs of (op, probability, magnitude bin of 10).
_IMAGENET: list[tuple[tuple[str, float, int | None], ...]] = [
    (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
    (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
    (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, None)),
    (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
    (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
    (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
    (("Equalize", 0.0, None), ("Equalize", 0.8, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
    (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, None)),
    (("Color", 0.4, 0), ("Equalize", 0.6, None)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
]


def autoaugment(image: Image.Image, *, ops: Applied, resampler: str = "pillow") -> Image.Image:
    """AutoAugment with torchvision's ImageNet policy: replay the recorded `ops`."""
    return run_ops(image, ops=ops, resampler=resampler)


def _sample_autoaugment(
    rng: np.random.Generator, image_size: Size, *, fill: Any, resample: str
) -> dict[str, Any]:
    # torchvision's AutoAugment.get_params: a sub-policy, two probabilities, two signs.
    policy = _IMAGENET[int(rng.integers(len(_IMAGENET)))]
    probs = [float(p) for p in rng.random(2)]
    signs = [int(s) for s in rng.integers(2, size=2)]
    space = _space(10, image_size, wide=False)
    space["Invert"] = (None, False)
    ops: Applied = []
    for (name, p, bin_index), prob, sign in zip(policy, probs, signs):
        if prob > p:
            continue
        mags, signed = space[name]
        m = mags[bin_index] if mags is not None and bin_index is not None else 0.0
        m = -m if signed and sign == 0 else m
        entry = _entry(name, round(m, DECIMALS), image_size, fill, resample)
        if entry is not None:
            ops.append(entry)
    return {"ops": ops}


register(
    "randaugment",
    family="policies",
    apply=randaugment,
    params={
        "num_ops": Num(2, "ops applied in a row", lo=0, hi=20, integer=True),
        "magnitude": Num(
            9, "magnitude bin, 0 .. num_magnitude_bins - 1", lo=0, hi=100, integer=True
        ),
        "num_magnitude_bins": _BINS,
        "fill": FILL,
        "resample": _RESAMPLE,
    },
    sample=_sample_randaugment,
    uses_resampler=True,
)
register(
    "trivialaugment",
    family="policies",
    apply=trivialaugment,
    params={"num_magnitude_bins": _BINS, "fill": FILL, "resample": _RESAMPLE},
    sample=_sample_trivialaugment,
    uses_resampler=True,
)
register(
    "autoaugment",
    family="policies",
    apply=autoaugment,
    params={"fill": FILL, "resample": _RESAMPLE},
    sample=_sample_autoaugment,
    uses_resampler=True,
)
