"""Known-answer tests: every registered op against a reference computed another way."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFilter

from augctl.ops import REGISTRY
from augctl.ops.base import RESAMPLE, Partners

KNOWN: dict[str, Callable[[], None]] = {}


def known(name: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
    """Enter a test in the known-answer table under the op it checks."""

    def add(fn: Callable[[], None]) -> Callable[[], None]:
        assert name not in KNOWN, f"two known-answer tests for {name!r}"
        KNOWN[name] = fn
        return fn

    return add


def noise_rgb(w: int = 32, h: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def rgb(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(arr)


def px(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(np.int64)


def apply(name: str, image: Image.Image, **params: Any) -> Image.Image:
    return REGISTRY[name].apply(image, **params)


def sample(name: str, image_size: tuple[int, int], seed: int = 0, **config: Any) -> dict[str, Any]:
    """Params drawn by the op's sampler from its defaults overridden by `config`."""
    op = REGISTRY[name]
    cfg = op.defaults()
    cfg.update({k: op.params[k].normalize(v) if k in op.params else v for k, v in config.items()})
    return op.sample(np.random.default_rng(seed), image_size, **cfg)


def replay(image: Image.Image, ops: list[dict[str, Any]]) -> Image.Image:
    """Run recorded ops one by one, straight from the registry."""
    for entry in json.loads(json.dumps(ops)):
        image = REGISTRY[entry.pop("op")].apply(image, **entry)
    return image


# --- geometric ----------------------------------------------------------------


@known("hflip")
def _hflip() -> None:
    a = noise_rgb()
    out = apply("hflip", rgb(a))
    assert np.array_equal(px(out), a[:, ::-1])
    assert np.array_equal(px(apply("hflip", out)), a)


@known("vflip")
def _vflip() -> None:
    a = noise_rgb()
    out = apply("vflip", rgb(a))
    assert np.array_equal(px(out), a[::-1])
    assert np.array_equal(px(apply("vflip", out)), a)


@known("rotate90")
def _rotate90() -> None:
    a = noise_rgb()
    for angle, k in ((90, 1), (180, 2), (270, 3)):
        assert np.array_equal(px(apply("rotate90", rgb(a), angle=angle)), np.rot90(a, k))
    image = rgb(a)
    for _ in range(4):
        image = apply("rotate90", image, angle=90)
    assert np.array_equal(px(image), a)


@known("rotate")
def _rotate() -> None:
    a = noise_rgb(20, 20)
    out = apply("rotate", rgb(a), angle=90.0, expand=False, fill=0, resample="nearest")
    assert np.array_equal(px(out), np.rot90(a))  # counter-clockwise
    wide = noise_rgb(30, 10)
    out = apply("rotate", rgb(wide), angle=90.0, expand=True, fill=0, resample="nearest")
    assert out.size == (10, 30) and np.array_equal(px(out), np.rot90(wide))
    # Any angle, any filter: PIL's own rotate, pixel for pixel (one image canvas, no shrink).
    for angle, expand, name in ((7.3, False, "bilinear"), (-33.0, True, "bicubic")):
        out = apply("rotate", rgb(wide), angle=angle, expand=expand, fill=0, resample=name)
        pil = rgb(wide).rotate(angle, resample=RESAMPLE[name], expand=expand, fillcolor=(0, 0, 0))
        assert np.array_equal(px(out), px(pil))


@known("scale")
def _scale() -> None:
    a = noise_rgb(8, 6)
    out = apply("scale", rgb(a), factor=2.0, keep_canvas=False, fill=0, resample="nearest")
    assert np.array_equal(px(out), a.repeat(2, axis=0).repeat(2, axis=1))
    out = apply("scale", rgb(a), factor=0.5, keep_canvas=True, fill=9, resample="nearest")
    expected = np.full_like(a, 9)
    expected[1:4, 2:6] = a[1::2, 1::2]  # PIL's nearest takes the pixel right of centre
    assert out.size == (8, 6) and np.array_equal(px(out), expected)


@known("resize")
def _resize() -> None:
    a = noise_rgb(8, 6)
    out = apply("resize", rgb(a), size=[16, 12], fit="stretch", resample="nearest")
    assert np.array_equal(px(out), a.repeat(2, axis=0).repeat(2, axis=1))
    assert apply("resize", rgb(a), size=[4, 4], fit="contain").size == (4, 3)
    assert apply("resize", rgb(a), size=[4, 4], fit="cover").size == (5, 4)


@known("crop")
def _crop() -> None:
    a = noise_rgb()
    out = apply("crop", rgb(a), left=3, top=5, width=10, height=7)
    assert np.array_equal(px(out), a[5:12, 3:13])
    params = sample("crop", (32, 24), fraction=0.5, position="center")
    assert params == {"left": 8, "top": 6, "width": 16, "height": 12}


@known("random_resized_crop")
def _random_resized_crop() -> None:
    a = noise_rgb()
    box = {"left": 4, "top": 2, "width": 12, "height": 10}
    same = apply("random_resized_crop", rgb(a), **box, size=[12, 10], resample="bilinear")
    assert np.array_equal(px(same), a[2:12, 4:16])
    double = apply("random_resized_crop", rgb(a), **box, size=[24, 20], resample="nearest")
    assert np.array_equal(px(double), a[2:12, 4:16].repeat(2, axis=0).repeat(2, axis=1))


@known("pad")
def _pad() -> None:
    a = noise_rgb(5, 4)
    out = apply("pad", rgb(a), padding=[1, 2, 3, 4], fill=[10, 20, 30], mode="constant")
    assert out.size == (5 + 1 + 3, 4 + 2 + 4)
    o = px(out)
    assert np.array_equal(o[2:6, 1:6], a)
    border = np.ones(o.shape[:2], bool)
    border[2:6, 1:6] = False
    assert (o[border] == [10, 20, 30]).all()
    row = Image.fromarray(np.array([[1, 2, 3, 4]], dtype=np.uint8))
    edge = apply("pad", row, padding=[2, 0, 2, 0], fill=0, mode="edge")
    assert px(edge).tolist() == [[1, 1, 1, 2, 3, 4, 4, 4]]
    reflect = apply("pad", row, padding=[2, 0, 2, 0], fill=0, mode="reflect")
    assert px(reflect).tolist() == [[3, 2, 1, 2, 3, 4, 3, 2]]
    assert sample("pad", (5, 4), padding=3)["padding"] == [3, 3, 3, 3]


@known("affine")
def _affine() -> None:
    a = noise_rgb(20, 20)
    still = {"angle": 0.0, "translate": [0, 0], "scale": 1.0, "shear": [0.0, 0.0]}
    assert np.array_equal(px(apply("affine", rgb(a), **still)), a)
    # torchvision's affine turns clockwise, unlike rotate.
    turned = apply("affine", rgb(a), **{**still, "angle": 90.0}, resample="nearest")
    assert np.array_equal(px(turned), np.rot90(a, -1))
    moved = apply("affine", rgb(a), **{**still, "translate": [3, -2]}, fill=7)
    expected = np.full_like(a, 7)
    expected[:-2, 3:] = a[2:, :-3]
    assert np.array_equal(px(moved), expected)
    # A shear of s degrees maps (x, y) to (x - tan(s) * (y - h/2), y): the centre row stays.
    tall = noise_rgb(20, 21)
    shear = {**still, "shear": [45.0, 0.0]}
    sheared = px(apply("affine", rgb(tall), **shear, resample="nearest"))
    assert np.array_equal(sheared[10], tall[10])
    assert np.array_equal(sheared[12, :-2], tall[12, 2:])
    assert np.array_equal(sheared[7, 3:], tall[7, :-3])
    params = sample("affine", (100, 50), degrees=0, translate=[0.1, 0.2], scale=1)
    assert abs(params["translate"][0]) <= 10 and abs(params["translate"][1]) <= 10
    assert all(isinstance(t, int) for t in params["translate"])


@known("perspective")
def _perspective() -> None:
    a = noise_rgb()
    w, h = 32, 24
    corners = [[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]]
    assert np.array_equal(px(apply("perspective", rgb(a), corners=corners)), a)
    shifted = [[x + 2, y] for x, y in corners]
    out = apply("perspective", rgb(a), corners=shifted, fill=5, resample="nearest")
    expected = np.full_like(a, 5)
    expected[:, 2:] = a[:, :-2]
    assert np.array_equal(px(out), expected)
    # torchvision's ranges: corners move inwards by at most distortion * half the side.
    for seed in range(20):
        tl, tr, br, bl = sample("perspective", (w, h), seed=seed, distortion_scale=0.5)["corners"]
        xs, ys = [c[0] for c in (tl, tr, br, bl)], [c[1] for c in (tl, tr, br, bl)]
        assert 0 <= min(xs[0], xs[3]) and max(xs[0], xs[3]) <= 8
        assert 23 <= min(xs[1], xs[2]) and max(xs[1], xs[2]) <= 31
        assert 0 <= min(ys[0], ys[1]) and max(ys[0], ys[1]) <= 6
        assert 17 <= min(ys[2], ys[3]) and max(ys[2], ys[3]) <= 23


@known("elastic")
def _elastic() -> None:
    a = noise_rgb()
    out = apply("elastic", rgb(a), alpha=0.0, sigma=5.0, seed=1)
    assert np.array_equal(px(out), a)
    # On a ramp of 4 per pixel in x, an unsmoothed field (uniform in [-1, 1] times alpha / 2
    # = 2 pixels) changes values by up to 8 away from the border; smoothing shrinks the shifts.
    ramp = Image.fromarray(np.tile((np.arange(40) * 4).astype(np.uint8), (40, 1)))
    raw = np.abs(px(apply("elastic", ramp, alpha=4.0, sigma=0.0, seed=7)) - px(ramp))
    assert 7 <= raw[3:-3, 3:-3].max() <= 8
    smooth = px(apply("elastic", ramp, alpha=4.0, sigma=3.0, seed=7))
    assert np.abs(smooth - px(ramp))[3:-3, 3:-3].max() <= 3
    again = px(apply("elastic", ramp, alpha=4.0, sigma=3.0, seed=7))
    other = px(apply("elastic", ramp, alpha=4.0, sigma=3.0, seed=8))
    assert np.array_equal(smooth, again) and not np.array_equal(smooth, other)


# --- photometric --------------------------------------------------------------


@known("brightness")
def _brightness() -> None:
    a = noise_rgb()
    assert not px(apply("brightness", rgb(a), factor=0.0)).any()
    assert np.array_equal(px(apply("brightness", rgb(a), factor=1.0)), a)
    half = px(apply("brightness", rgb(a), factor=0.5))
    assert np.abs(half - a * 0.5).max() <= 1


@known("contrast")
def _contrast() -> None:
    a = noise_rgb()
    mean = int(np.asarray(rgb(a).convert("L")).mean() + 0.5)
    assert (px(apply("contrast", rgb(a), factor=0.0)) == mean).all()
    assert np.array_equal(px(apply("contrast", rgb(a), factor=1.0)), a)


@known("saturation")
def _saturation() -> None:
    a = noise_rgb()
    gray = px(apply("saturation", rgb(a), factor=0.0))
    luma = px(rgb(a)) @ [0.299, 0.587, 0.114]
    assert np.abs(gray - luma[..., None]).max() <= 1
    assert np.array_equal(px(apply("saturation", rgb(a), factor=1.0)), a)


@known("hue")
def _hue() -> None:
    primaries = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [90, 90, 90]]], np.uint8)
    out = px(apply("hue", rgb(primaries), factor=1 / 3))  # a third of the way round
    expected = [[[0, 255, 0], [0, 0, 255], [255, 0, 0], [90, 90, 90]]]
    assert np.abs(out - expected).max() <= 2
    a = noise_rgb()
    assert np.array_equal(px(apply("hue", rgb(a), factor=0.0)), a)


@known("gamma")
def _gamma() -> None:
    a = noise_rgb()
    assert np.array_equal(px(apply("gamma", rgb(a), gamma=1.0, gain=1.0)), a)
    expected = np.floor(255.999 * (a / 255.0) ** 2)
    assert np.array_equal(px(apply("gamma", rgb(a), gamma=2.0, gain=1.0)), expected)


@known("color_jitter")
def _color_jitter() -> None:
    a = noise_rgb()
    still = {"brightness": 1.0, "contrast": 1.0, "saturation": 1.0, "hue": 0.0}
    order = ["hue", "saturation", "contrast", "brightness"]
    assert np.array_equal(px(apply("color_jitter", rgb(a), order=order, **still)), a)
    dark = apply("color_jitter", rgb(a), order=order, **{**still, "brightness": 0.0})
    assert not px(dark).any()
    gray = apply("color_jitter", rgb(a), order=order, **{**still, "saturation": 0.0})
    assert np.array_equal(px(gray), px(apply("saturation", rgb(a), factor=0.0)))
    orders = {tuple(sample("color_jitter", (8, 8), seed=s)["order"]) for s in range(40)}
    assert len(orders) > 1 and all(sorted(o) == sorted(order) for o in orders)


@known("grayscale")
def _grayscale() -> None:
    a = noise_rgb()
    out = apply("grayscale", rgb(a))
    assert out.mode == "RGB"
    o = px(out)
    assert (o[..., 0] == o[..., 1]).all() and (o[..., 1] == o[..., 2]).all()
    luma = px(rgb(a)) @ [0.299, 0.587, 0.114]
    assert np.abs(o[..., 0] - luma).max() <= 1


@known("equalize")
def _equalize() -> None:
    two = np.full((32, 32), 10, np.uint8)
    two[16:] = 20
    assert np.unique(px(apply("equalize", Image.fromarray(two)))).tolist() == [0, 255]
    every = np.random.default_rng(0).permutation(np.arange(256, dtype=np.uint8)).reshape(16, 16)
    assert np.array_equal(px(apply("equalize", Image.fromarray(every))), every)


@known("autocontrast")
def _autocontrast() -> None:
    a = (noise_rgb() // 2.55 + 50).astype(np.uint8)  # values within [50, 150]
    a[0, 0], a[0, 1] = 50, 150
    out = px(apply("autocontrast", rgb(a)))
    assert out.min() == 0 and out.max() == 255
    assert np.abs(out - (a.astype(float) - 50) * 2.55).max() <= 1


@known("posterize")
def _posterize() -> None:
    a = noise_rgb()
    assert np.array_equal(px(apply("posterize", rgb(a), bits=8)), a)
    assert np.array_equal(px(apply("posterize", rgb(a), bits=2)), a & 0b11000000)


@known("solarize")
def _solarize() -> None:
    a = noise_rgb()
    assert np.array_equal(px(apply("solarize", rgb(a), threshold=256)), a)
    expected = np.where(a >= 100, 255 - a.astype(int), a)
    assert np.array_equal(px(apply("solarize", rgb(a), threshold=100)), expected)


@known("invert")
def _invert() -> None:
    a = noise_rgb()
    out = apply("invert", rgb(a))
    assert np.array_equal(px(out), 255 - a.astype(int))
    assert np.array_equal(px(apply("invert", out)), a)


@known("sharpness")
def _sharpness() -> None:
    a = noise_rgb()
    assert np.array_equal(px(apply("sharpness", rgb(a), factor=1.0)), a)
    # factor 0 is PIL's SMOOTH kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 inside the border.
    f = a.astype(float)
    smooth = sum(f[1 + dy : 23 + dy, 1 + dx : 31 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    smooth = (smooth + 4 * f[1:-1, 1:-1]) / 13
    out = px(apply("sharpness", rgb(a), factor=0.0))
    assert np.abs(out[1:-1, 1:-1] - smooth).max() <= 1
    assert np.array_equal(out[0], a[0]) and np.array_equal(out[:, 0], a[:, 0])


@known("gaussian_blur")
def _gaussian_blur() -> None:
    a = noise_rgb()
    expected = rgb(a).filter(ImageFilter.GaussianBlur(radius=1.5))
    assert np.array_equal(px(apply("gaussian_blur", rgb(a), sigma=1.5)), px(expected))
    flat = np.full((20, 20, 3), 77, np.uint8)
    assert (px(apply("gaussian_blur", rgb(flat), sigma=3.0)) == 77).all()


@known("gaussian_noise")
def _gaussian_noise() -> None:
    gray = np.full((100, 100, 3), 128, np.uint8)
    assert np.array_equal(px(apply("gaussian_noise", rgb(gray), std=0.0, seed=3)), gray)
    diff = px(apply("gaussian_noise", rgb(gray), std=10.0, seed=3)) - 128
    assert abs(diff.mean()) < 0.5 and 9.5 < diff.std() < 10.5
    # The recorded seed alone fixes the noise: numpy's normal draws, rounded and clipped.
    a = noise_rgb()
    expected = np.clip(np.rint(a + np.random.default_rng(5).normal(0, 20.0, a.shape)), 0, 255)
    assert np.array_equal(px(apply("gaussian_noise", rgb(a), std=20.0, seed=5)), expected)
    params = sample("gaussian_noise", (100, 100), seed=1, std=10)
    assert params["std"] == 10.0 and isinstance(params["seed"], int)


@known("salt_pepper")
def _salt_pepper() -> None:
    gray = np.full((100, 100, 3), 128, np.uint8)
    assert np.array_equal(
        px(apply("salt_pepper", rgb(gray), amount=0.0, salt_vs_pepper=0.5, seed=1)), gray
    )
    white = px(apply("salt_pepper", rgb(gray), amount=1.0, salt_vs_pepper=1.0, seed=1))
    assert (white == 255).all()
    out = px(apply("salt_pepper", rgb(gray), amount=0.2, salt_vs_pepper=0.5, seed=1))
    changed = (out != 128).any(axis=-1)
    assert 0.17 < changed.mean() < 0.23
    assert set(np.unique(out[changed])) <= {0, 255}
    assert (out[changed].min(axis=-1) == out[changed].max(axis=-1)).all()  # whole pixels
    u = np.random.default_rng(1).random((100, 100))  # the recorded seed fixes the pixels
    assert np.array_equal(changed, u < 0.2) and ((out[..., 0] == 255) == (u < 0.1)).all()


@known("jpeg_quality")
def _jpeg_quality() -> None:
    a = noise_rgb()
    buf = io.BytesIO()
    rgb(a).save(buf, format="JPEG", quality=35)
    expected = px(Image.open(io.BytesIO(buf.getvalue())))
    assert np.array_equal(px(apply("jpeg_quality", rgb(a), quality=35)), expected)


# --- erasing ------------------------------------------------------------------


@known("cutout")
def _cutout() -> None:
    a = noise_rgb()
    boxes = [[2, 3, 10, 8], [20, 0, 32, 4]]
    expected = a.copy()
    expected[3:8, 2:10] = [1, 2, 3]
    expected[0:4, 20:32] = [1, 2, 3]
    assert np.array_equal(px(apply("cutout", rgb(a), boxes=boxes, fill=[1, 2, 3])), expected)
    params = sample("cutout", (32, 24), holes=3, size=[8, 6])
    assert len(params["boxes"]) == 3
    assert all(0 < r - le <= 8 and 0 < b - t <= 6 for le, t, r, b in params["boxes"])


@known("random_erasing")
def _random_erasing() -> None:
    a = noise_rgb()
    expected = a.copy()
    expected[4:9, 5:15] = 200
    out = apply("random_erasing", rgb(a), boxes=[[5, 4, 15, 9]], value=200)
    assert np.array_equal(px(out), expected)
    for seed in range(20):
        params = sample("random_erasing", (32, 24), seed=seed, scale=[0.1, 0.2])
        for le, t, r, b in params["boxes"]:
            assert 0.1 * 768 - 20 <= (r - le) * (b - t) <= 0.2 * 768 + 20
    noisy = sample("random_erasing", (32, 24), seed=2, value="random")
    (le, t, r, b) = noisy["boxes"][0]
    out = px(apply("random_erasing", rgb(a), **noisy))
    mask = np.zeros((24, 32), bool)
    mask[t:b, le:r] = True
    assert np.array_equal(out[~mask], a[~mask]) and not np.array_equal(out[mask], a[mask])


# --- mixing -------------------------------------------------------------------

PARTNER = noise_rgb(seed=9)
PARTNERS = Partners(("c/a.jpg", "c/b.jpg"), "c/a.jpg", lambda rel: rgb(PARTNER))


@known("mixup")
def _mixup() -> None:
    a = noise_rgb()
    first = apply("mixup", rgb(a), partner="c/b.jpg", lam=1.0, partners=PARTNERS)
    assert np.array_equal(px(first), a)  # lam = 1 is the first image
    half = px(apply("mixup", rgb(a), partner="c/b.jpg", lam=0.5, partners=PARTNERS)).astype(int)
    assert np.abs(half - (a.astype(int) + PARTNER.astype(int)) / 2).max() <= 1
    params = sample("mixup", (32, 24), partners=PARTNERS)
    assert params["partner"] == "c/b.jpg" and 0 <= params["lam"] <= 1  # never the source itself
    alone = Partners(("c/a.jpg",), "c/a.jpg", lambda rel: rgb(PARTNER))
    assert sample("mixup", (32, 24), partners=alone) == {"partner": None, "lam": 1.0}


@known("cutmix")
def _cutmix() -> None:
    a = noise_rgb()
    expected = a.copy()
    expected[2:10, 4:20] = PARTNER[2:10, 4:20]
    out = apply("cutmix", rgb(a), partner="c/b.jpg", box=[4, 2, 20, 10], lam=0.8, partners=PARTNERS)
    assert np.array_equal(px(out), expected)
    whole = apply(
        "cutmix", rgb(a), partner="c/b.jpg", box=[0, 0, 32, 24], lam=0.0, partners=PARTNERS
    )
    assert np.array_equal(px(whole), PARTNER)
    for seed in range(10):
        p = sample("cutmix", (32, 24), seed=seed, partners=PARTNERS)
        le, t, r, b = p["box"]
        assert 0 <= le <= r <= 32 and 0 <= t <= b <= 24
        assert abs(p["lam"] - (1 - (r - le) * (b - t) / 768)) < 1e-3


# --- policies -----------------------------------------------------------------


def _check_policy(name: str, expected_ops: set[str], **config: Any) -> None:
    """Recorded ops replay to the same pixels, and every op of the policy gets drawn."""
    a = noise_rgb()
    seen: set[str] = set()
    for seed in range(400):
        params = sample(name, (32, 24), seed=seed, **config)
        seen |= {entry["op"] for entry in params["ops"]}
        if seed < 20:
            out = apply(name, rgb(a), **json.loads(json.dumps(params)))
            assert np.array_equal(px(out), px(replay(rgb(a), params["ops"])))
    assert seen == expected_ops


_AUGMENT_OPS = {
    "affine",
    "rotate",
    "brightness",
    "saturation",
    "contrast",
    "sharpness",
    "posterize",
    "solarize",
    "autocontrast",
    "equalize",
}


@known("randaugment")
def _randaugment() -> None:
    _check_policy("randaugment", _AUGMENT_OPS)
    a = noise_rgb()
    assert sample("randaugment", (32, 24), num_ops=0) == {"ops": []}
    # Bin 0 of the default 31: no shear, shift, rotation or factor change; Solarize at 255.
    for seed in range(30):
        for entry in sample("randaugment", (32, 24), seed=seed, magnitude=0)["ops"]:
            assert entry.get("factor", 1.0) == 1.0 and entry.get("bits", 8) == 8
            assert entry.get("angle", 0.0) == 0.0 and entry.get("threshold", 255.0) == 255.0
    ops = [
        {"op": "posterize", "bits": 4},
        {"op": "affine", "angle": 0.0, "translate": [3, 0], "scale": 1.0, "shear": [0.0, 0.0]},
    ]
    out = px(apply("randaugment", rgb(a), ops=ops))
    assert np.array_equal(out[:, 3:], a[:, :-3] & 0xF0) and not out[:, :3].any()


@known("trivialaugment")
def _trivialaugment() -> None:
    _check_policy("trivialaugment", _AUGMENT_OPS)
    for seed in range(30):
        assert len(sample("trivialaugment", (32, 24), seed=seed)["ops"]) <= 1


@known("autoaugment")
def _autoaugment() -> None:
    _check_policy(
        "autoaugment",
        {"affine", "rotate", "saturation", "contrast", "sharpness", "posterize"}
        | {"solarize", "autocontrast", "equalize", "invert"},
    )
    # Its ShearX is torchvision's: about the top-left corner, x_in = x + m * y (m = 0.3 at bin 5).
    a = noise_rgb()
    for seed in range(400):
        shears = [e for e in sample("autoaugment", (32, 24), seed=seed)["ops"] if "shear" in e]
        if shears:
            break
    entry = dict(shears[0])
    m = 0.3 * 5 / 9 * (1 if entry["shear"][0] > 0 else -1)
    entry["resample"] = "nearest"
    expected = rgb(a).transform((32, 24), Image.Transform.AFFINE, (1, m, 0, 0, 1, 0))
    assert np.array_equal(px(replay(rgb(a), [entry])), px(expected))


# --- the table ------------------------------------------------------------------
# Down here so that the parametrization sees every entry above.


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_known_answer(name: str) -> None:
    KNOWN[name]()


def test_every_registered_op_has_a_known_answer() -> None:
    missing = sorted(set(REGISTRY) - set(KNOWN))
    assert not missing, f"ops without a known-answer test in KNOWN (add one): {missing}"
    stale = sorted(set(KNOWN) - set(REGISTRY))
    assert not stale, f"known-answer tests for ops that are not registered: {stale}"
