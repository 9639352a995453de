"""The recipe's `resampler`: OpenCV's kernels in Pillow's geometry, chosen by the recipe."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import SAMPLE_DATA, output_files, read_manifest
from PIL import Image

from augctl import pipeline
from augctl.cli import main
from augctl.errors import RecipeError
from augctl.execute import rng_for
from augctl.ops import resample
from augctl.recipe import parse_recipe

RECIPE = """\
version: 1
seed: 5
variants: 3
resampler: opencv
pipeline:
  - rotate: {degrees: [-20, 20], p: 0.8}
  - hflip: {p: 0.5}
  - random_resized_crop: {size: [96, 80], scale: [0.5, 1.0]}
  - brightness: {factor: [0.8, 1.2]}
  - contrast: {factor: [0.8, 1.2]}
"""

# (angle in degrees, scale): rotated and axis-aligned, shrinking and enlarging.
CASES = [
    (10, 0.55),
    (0, 0.62),
    (30, 1.3),
    (0, 1.7),
    (25, 0.25),  # reduced by 2 first, then 0.5x; the corners fall off the image
]


def _photo(mode: str) -> Image.Image:
    image = Image.open(sorted(SAMPLE_DATA.glob("*/*.jpg"))[0]).convert("RGB")
    if mode not in ("LA", "RGBA"):
        return image.convert(mode)
    out = image.convert(mode)
    alpha = np.linspace(40, 255, out.width).astype(np.uint8)
    out.putalpha(Image.fromarray(np.broadcast_to(alpha, (out.height, out.width)).copy()))
    return out


def _matrix(size: tuple[int, int], angle: float, scale: float) -> tuple[float, ...]:
    """Rotate by `angle` and scale by `scale` about the image centre, onto a 96x80 canvas."""
    t = math.radians(angle)
    a, b = scale * math.cos(t), scale * math.sin(t)
    cx, cy = size[0] / 2, size[1] / 2
    return (a, -b, 48 - a * cx + b * cy, b, a, 40 - b * cx - a * cy)


FILL = (10, 200, 30)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
@pytest.mark.parametrize(("angle", "scale"), CASES)
def test_opencv_samples_where_pillow_does(mode: str, angle: float, scale: float) -> None:
    """Same geometry, same rule (a scaled crop too follows the affine rule with OpenCV, which
    has no antialiased bilinear resize), the same clamped edge and fill: the two differ only
    by rounding; a half-pixel slip in the matrix conversion would differ by tens of levels."""
    image = _photo(mode)
    matrix = _matrix(image.size, angle, scale)
    pil = resample._affine(image, matrix, (96, 80), "bilinear", FILL, "pillow")
    cv = resample.warp(image, matrix, (96, 80), "bilinear", FILL, "opencv")
    assert cv.mode == pil.mode == mode and cv.size == pil.size == (96, 80)
    a, b = np.asarray(pil, np.int16), np.asarray(cv, np.int16)
    # Un-premultiplying rounds faint pixels' colour coarser.
    opaque = a[..., -1] > 128 if mode in ("LA", "RGBA") else np.ones(a.shape[:2], bool)
    diff = np.abs(a - b)[opaque]
    assert opaque.sum() > 3000
    assert diff.mean() < 0.8 and diff.max() <= (6 if mode in ("LA", "RGBA") else 1), (
        diff.mean(),
        diff.max(),
    )
    # The image is really OpenCV's: Pillow's own bytes would be equal.
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("mode", ["LA", "RGBA"])
def test_opencv_matches_pillow_on_opaque_images_with_alpha(mode: str) -> None:
    """Opaque pixels of an image with alpha are within one level, as without alpha (OpenCV's
    2-band warp rounds 3-5 levels off: LA is warped as 4 bands)."""
    image = Image.open(sorted(SAMPLE_DATA.glob("*/*.jpg"))[0]).convert(mode)
    for angle, scale in CASES:
        matrix = _matrix(image.size, angle, scale)
        pil = resample._affine(image, matrix, (96, 80), "bilinear", FILL, "pillow")
        cv = resample.warp(image, matrix, (96, 80), "bilinear", FILL, "opencv")
        diff = np.abs(np.asarray(pil, np.int16) - np.asarray(cv, np.int16))
        assert diff.max() <= 1, (angle, scale, diff.max())


def test_opencv_fills_large_outputs_in_bands_and_keeps_no_large_canvas(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rotated full-size photo: the fill mask and canvas are made in bands of rows, so a
    worker's memory doesn't grow with output sizes (a kept full-size canvas per size did)."""
    image = Image.open(sorted(SAMPLE_DATA.glob("*/*.jpg"))[0]).convert("RGB")
    image = image.resize((image.width * 3, image.height * 3))
    size = (image.width + 7, image.height + 5)
    assert size[0] * size[1] > 4 * resample._MASK_PIXELS  # several bands
    t = math.radians(17)
    cx, cy = image.width / 2, image.height / 2
    a, b = math.cos(t), math.sin(t)
    matrix = (a, -b, size[0] / 2 - a * cx + b * cy, b, a, size[1] / 2 - b * cx - a * cy)
    made: list[tuple[int, int]] = []
    real = resample._new_canvas

    def recording(mode: str, canvas_size: tuple[int, int], colour: object) -> object:
        made.append(canvas_size)
        return real(mode, canvas_size, colour)

    monkeypatch.setattr(resample, "_new_canvas", recording)
    resample._cached_canvas.cache_clear()
    pil = resample._affine(image, matrix, size, "bilinear", FILL, "pillow")
    cv = resample.warp(image, matrix, size, "bilinear", FILL, "opencv")
    assert np.abs(np.asarray(pil, np.int16) - np.asarray(cv, np.int16)).max() <= 1
    assert made and all(w == size[0] and w * h <= resample._MASK_PIXELS for w, h in made)


@pytest.mark.parametrize("size", [(1, 1), (2, 1), (3, 5)])
def test_opencv_keeps_pillows_edges_on_tiny_images(size: tuple[int, int]) -> None:
    """An image enlarged many times is mostly edge: taps clamp at it, as Pillow's do, so the
    picture doesn't fade into the fill colour; centres off the image get the fill."""
    image = Image.fromarray(
        np.random.default_rng(1).integers(0, 256, (size[1], size[0], 3), np.uint8)
    )
    for matrix in ((9.0, 0.4, 0.0, -0.3, 7.5, 1.0), (10.0, 0.0, 0.0, 0.0, 10.0, 0.0)):
        pil = resample._affine(image, matrix, (24, 20), "bilinear", FILL, "pillow")
        cv = resample.warp(image, matrix, (24, 20), "bilinear", FILL, "opencv")
        assert np.abs(np.asarray(pil, np.int16) - np.asarray(cv, np.int16)).max() <= 1


def test_opencv_leaves_exact_moves_exact() -> None:
    """Crops, flips, nearest and bicubic sampling are Pillow's own pixels, whichever
    resampler (OpenCV's bicubic is another kernel)."""
    image = _photo("RGB")
    for matrix, filt in (
        ((-1.0, 0.0, 150.0, 0.0, 1.0, -7.0), "bilinear"),  # a flipped whole-pixel crop
        (_matrix(image.size, 17, 0.7), "nearest"),
        (_matrix(image.size, 12, 0.8), "bicubic"),
    ):
        pil = resample.warp(image, matrix, (96, 80), filt, 0, "pillow")
        cv = resample.warp(image, matrix, (96, 80), filt, 0, "opencv")
        assert pil.tobytes() == cv.tobytes()


def _expand(tmp_path: Path, recipe: str, workers: int, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(recipe)
    out = tmp_path / name
    args = ["expand", "-r", str(path), str(SAMPLE_DATA), str(out), "-q", "-j", str(workers)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return out


def test_opencv_runs_are_deterministic_recorded_and_replay(tmp_path: Path) -> None:
    one = _expand(tmp_path, RECIPE, 1, "one")
    two = _expand(tmp_path, RECIPE, 2, "two")
    assert output_files(one) == output_files(two)
    info = json.loads((one / "run.json").read_text())
    assert info["recipe"]["resampler"] == "opencv"
    assert info["libraries"]["opencv"] == __import__("cv2").__version__
    pillow = _expand(tmp_path, RECIPE.replace("resampler: opencv\n", ""), 2, "pillow")
    rows = {r["output_path"]: r for r in read_manifest(one)}
    others = {r["output_path"]: r for r in read_manifest(pillow)}
    assert rows.keys() == others.keys()
    # The same ops drawn, other kernels: rotated variants differ, whole-pixel ones don't.
    assert all(rows[k]["ops"] == others[k]["ops"] for k in rows)
    differ = sum(rows[k]["output_sha256"] != others[k]["output_sha256"] for k in rows)
    assert 0 < differ < len(rows)
    assert {r["recipe_sha256"] for r in rows.values()} != {
        r["recipe_sha256"] for r in others.values()
    }
    result = CliRunner().invoke(main, ["verify", str(one), "--deep"])
    assert result.exit_code == 0, result.output
    assert result.stderr.endswith(f"{len(rows)} re-created: OK\n")


def test_the_default_resampler_leaves_a_recipe_as_it_was() -> None:
    """No `resampler` key in the normalized form: recipes from before it keep their sha256."""
    plain = parse_recipe(RECIPE.replace("resampler: opencv\n", ""))
    assert plain.resampler == "pillow" and "resampler" not in plain.to_dict()
    explicit = parse_recipe(RECIPE.replace("opencv", "pillow"))
    assert explicit.sha256 == plain.sha256
    cv = parse_recipe(RECIPE)
    assert cv.sha256 != plain.sha256 and parse_recipe(cv.to_yaml()) == cv


def test_an_unknown_resampler_is_refused_with_a_suggestion() -> None:
    with pytest.raises(RecipeError) as info:
        parse_recipe(RECIPE.replace("opencv", "open-cv"), "r.yaml")
    assert "r.yaml:4" in str(info.value) and "did you mean 'opencv'" in str(info.value)


def test_opencv_missing_is_a_recipe_error_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "cv2" else real(name, *a)
    )
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE)
    args = ["expand", "-r", str(path), str(SAMPLE_DATA), str(tmp_path / "out"), "-q"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "r.yaml:4" in result.stderr and "pip install 'augctl[opencv]'" in result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_reused_pixels_are_the_sources_alone() -> None:
    """Inside `pixels_reused(source)` the source's pixels are copied out once per mode and
    reused; other images (a variant's intermediate ones) are neither reused nor kept."""
    source = _photo("RGBA")
    other = source.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    matrix = _matrix(source.size, 10, 0.55)

    def warped(image: Image.Image) -> bytes:
        return resample.warp(image, matrix, (96, 80), "bilinear", 0, "opencv").tobytes()

    alone = [warped(source), warped(other), warped(source.convert("LA"))]
    with resample.pixels_reused(source):
        reused = [warped(source), warped(other), warped(source.convert("LA")), warped(source)]
        for _ in range(20):
            warped(source.rotate(1))
        image, by_mode = resample._REUSED.get() or (None, {})
        assert image is source and list(by_mode) == ["RGBa"]
    assert reused == [*alone, alone[0]]
    assert len(set(alone)) == 3 and resample._REUSED.get() is None


def test_verifying_an_opencv_run_without_opencv_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _expand(tmp_path, RECIPE, 1, "out")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "cv2" else real(name, *a)
    )
    result = CliRunner().invoke(main, ["verify", str(out), "--deep"])
    assert result.exit_code == 2, result.output
    assert f"{out / 'run.json'} recipe" in result.stderr
    assert "pip install 'augctl[opencv]'" in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize(
    "matrix",
    [
        # A quarter turn keeping a canvas whose width and height differ by an odd number:
        # output centres land exactly on the image's right or bottom edge.
        (0.0, 1.0, -28.5, -1.0, 0.0, 388.5),
        (1.0, 0.0, -0.5, 0.0, 1.0, 0.0),  # half a pixel to the left
        (1.0, 0.0, 0.0, 0.0, 1.0, -0.5),  # half a pixel up
    ],
)
def test_opencv_fills_where_centres_land_exactly_on_the_edge(matrix: tuple[float, ...]) -> None:
    image = _photo("RGB")  # 360x417
    size = image.size
    pil = resample._affine(image, matrix, size, "bilinear", FILL, "pillow")
    cv = resample.warp(image, matrix, size, "bilinear", FILL, "opencv")
    a, b = np.asarray(pil, np.int16), np.asarray(cv, np.int16)
    filled = np.all(a == FILL, axis=-1)
    assert filled.sum() >= min(size)  # at least a row or column of fill
    assert np.abs(a - b).max() <= 1


def test_opencv_recipes_keep_pillows_nearest_and_bicubic_resizes() -> None:
    """An axis-aligned scale that OpenCV doesn't run stays Pillow's antialiased resize."""
    image = _photo("RGB")
    for filt, s in (("bicubic", 0.6), ("nearest", 1.7), ("bicubic", 1.3)):
        matrix = (s, 0.0, 0.0, 0.0, s, 0.0)
        size = (int(image.width * s), int(image.height * s))
        pil = resample.warp(image, matrix, size, filt, 0, "pillow")
        cv = resample.warp(image, matrix, size, filt, 0, "opencv")
        assert pil.tobytes() == cv.tobytes(), filt


def test_policies_resample_with_the_recipes_resampler() -> None:
    """RandAugment replays its rotations and shears op by op: with the recipe's kernels."""
    recipe = parse_recipe(
        "version: 1\npipeline:\n  - randaugment: {num_ops: 2, magnitude: 12, resample: bilinear}\n"
    )
    image = _photo("RGB")
    seen = differ = 0
    for seed in range(40):
        applied = pipeline.sample(recipe.pipeline, rng_for(seed), image.size)
        if not {"rotate", "affine"} & {e["op"] for e in applied[0]["ops"]}:
            continue
        pil, cv = (pipeline.run(image, applied, None, r) for r in ("pillow", "opencv"))
        # A table after the turn (posterize, equalize, solarize) may turn a level of
        # rounding into a step: on average the two stay within rounding.
        assert np.abs(np.asarray(pil, np.int16) - np.asarray(cv, np.int16)).mean() < 1
        seen += 1
        differ += pil.tobytes() != cv.tobytes()  # a whole-pixel shift is the same either way
    assert seen >= 5 and differ >= seen // 2, (seen, differ)


def test_a_recipe_made_in_code_refuses_an_unknown_resampler() -> None:
    with pytest.raises(RecipeError, match="unknown resampler 'cv2'"):
        parse_recipe(RECIPE).replace(resampler="cv2")


def test_an_opencv_that_cannot_load_is_a_clear_error_before_out_is_touched(
    tmp_path: Path,
) -> None:
    """Installed but broken (a missing libGL, half of two wheels uninstalled): exit 2 with
    the import's own reason, not workers dying as they start, and no OUT."""
    fake = tmp_path / "site" / "cv2"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise ImportError('libGL.so.1: cannot open shared object file')\n"
    )
    (fake / "version.py").write_text('opencv_version = "5.1.0.95"\n')
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    out = tmp_path / "out"
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path / "site")}
    done = subprocess.run(
        [sys.executable, "-m", "augctl", "expand", "-r", str(recipe), str(SAMPLE_DATA), str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        "augctl: error: the recipe's resampler is opencv, but OpenCV can't be imported "
        "(libGL.so.1: cannot open shared object file); pip install 'augctl[opencv]'\n"
    )
    assert not out.exists()
