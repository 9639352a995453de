"""Contract tests run over every registered op, so a new op is covered automatically."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from conftest import photo
from PIL import Image

from augctl import pipeline
from augctl.ops import REGISTRY
from augctl.ops.base import Partners, register

OPS = sorted(REGISTRY)
MODES = ("L", "RGB", "RGBA")
# Mixing ops draw from and load "other images of the class": three generated ones here.
PARTNERS = Partners(
    ("c/0.jpg", "c/1.jpg", "c/2.jpg"), "c/1.jpg", lambda rel: photo(40 + int(rel[2]), (50, 40))
)


def extra(name: str) -> dict:
    return {"partners": PARTNERS} if REGISTRY[name].uses_partners else {}


def sample(name: str, seed: int, size=(61, 47)) -> dict:
    op = REGISTRY[name]
    return op.sample(np.random.default_rng(seed), size, **op.defaults(), **extra(name))


def test_registry_is_not_empty_and_names_are_unique() -> None:
    assert len(OPS) >= 11
    with pytest.raises(ValueError, match="already registered"):
        register("hflip", family="geometric", apply=lambda image: image)


@pytest.mark.parametrize("name", OPS)
def test_same_rng_state_gives_same_params(name: str) -> None:
    np.random.seed(0)  # sampling must not read numpy's global state...
    first = sample(name, 3)
    np.random.seed(1)
    assert sample(name, 3) == first  # ...only the generator it is given


@pytest.mark.parametrize("name", OPS)
def test_params_are_json_native(name: str) -> None:
    for seed in range(5):
        params = sample(name, seed)
        assert json.loads(json.dumps(params)) == params


def configs(name: str) -> list[dict]:
    """The defaults, and the defaults with each boolean switched on (e.g. rotate's expand)."""
    op = REGISTRY[name]
    base = op.defaults()
    flips = [{**base, k: True} for k, v in base.items() if v is False]
    return [base, *flips]


SIZES = ((61, 47), (1, 1), (2, 3), (31, 22))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", OPS)
def test_apply_is_pure_and_replayable(name: str, mode: str) -> None:
    op = REGISTRY[name]
    for size, config, seed in itertools.product(SIZES, configs(name), range(2)):
        image = photo(5, size, mode)
        before = image.tobytes()
        params = op.sample(np.random.default_rng(seed), size, **config, **extra(name))
        out = op.apply(image, **params, **extra(name))
        assert isinstance(out, Image.Image) and out is not image
        assert image.tobytes() == before, "apply mutated its input"
        assert out.mode == mode
        assert out.size == op.size_after(image.size, params)
        again = op.apply(image, **json.loads(json.dumps(params)), **extra(name))
        assert again.tobytes() == out.tobytes()


GEOMETRIC = sorted(n for n, op in REGISTRY.items() if op.geometry is not None)


@pytest.mark.parametrize("name", GEOMETRIC)
def test_fused_geometry_matches_sequential(name: str) -> None:
    # The matrices the runner fuses must describe what apply does: a fused [op, hflip]
    # should agree with applying the two in turn, up to interpolation differences.
    image = Image.linear_gradient("L").resize((120, 90)).convert("RGB")
    params = sample(name, 1, image.size)
    entry = {"op": name, **params}
    fused = pipeline.run(image, [entry, {"op": "hflip"}])
    sequential = REGISTRY["hflip"].apply(REGISTRY[name].apply(image, **params))
    assert fused.size == sequential.size
    diff = np.abs(np.asarray(fused, np.int16) - np.asarray(sequential, np.int16))
    assert np.median(diff) <= 2, f"{name}: median difference {np.median(diff)}"


RESAMPLING = [name for name in OPS if REGISTRY[name].uses_resampler]


def test_the_ops_that_resample_through_warp_take_the_resampler() -> None:
    assert {"rotate", "affine", "randaugment", "trivialaugment", "autoaugment"} <= set(RESAMPLING)


@pytest.mark.parametrize("name", RESAMPLING)
def test_an_op_that_takes_the_resampler_keeps_size_and_mode_with_either(name: str) -> None:
    """Ops declaring `uses_resampler` take `resampler=`; the choice changes no size or mode."""
    op = REGISTRY[name]
    image = photo(7, (61, 47))
    for seed in range(4):
        params = {**sample(name, seed), **extra(name)}
        outs = [op.apply(image, **params, resampler=r) for r in ("pillow", "opencv")]
        assert outs[0].size == outs[1].size and outs[0].mode == outs[1].mode == "RGB"
