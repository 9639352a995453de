"""The fast paths keep outputs exact and replayable: draft decoding, fusion, lazy start-up."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import REPO, SAMPLE_DATA, photo, read_manifest
from PIL import Image

from augctl import images, pipeline
from augctl.cli import main
from augctl.execute import rng_for
from augctl.ops import REGISTRY
from augctl.ops import resample as resample_module
from augctl.ops.base import map_bands
from augctl.recipe import load_recipe, parse_recipe

DRAFT_RECIPE = """\
version: 1
seed: 3
variants: 4
include_originals: true
pipeline:
  - rotate: {degrees: [-20, 20], p: 0.5}
  - hflip: {p: 0.5}
  - brightness: {factor: [0.6, 1.0]}
  - random_resized_crop: {size: [48, 40], scale: [0.5, 1.0]}
  - contrast: {factor: [0.8, 1.2]}
"""


def jpeg(path: Path, image: Image.Image, orientation: int = 1) -> Path:
    """Save a JPEG, stored so that EXIF `orientation` turns it back into `image`."""
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    inverse = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_90,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_270,
    }
    stored = image.transpose(inverse[orientation]) if orientation != 1 else image
    path.parent.mkdir(parents=True, exist_ok=True)
    stored.save(path, format="JPEG", quality=95, exif=exif.tobytes())
    return path


def test_draft_decoded_outputs_replay_byte_identical(tmp_path: Path) -> None:
    src = tmp_path / "in"
    for o in range(1, 9):  # odd sizes, so the reduced image's blocks overhang the full one
        jpeg(src / "a" / f"o{o}.jpg", photo(o, (403, 301)), o)
    jpeg(src / "b" / "big.jpg", photo(20, (1203, 901)), 6)
    jpeg(src / "b" / "small.jpg", photo(21, (60, 50)))
    photo(22, (403, 301)).save(src / "b" / "png.png")
    (src / "c").mkdir()
    photo(23, (403, 301)).save(src / "c" / "progressive.jpg", progressive=True)
    photo(24, (403, 301), "L").save(src / "c" / "gray.jpg")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(DRAFT_RECIPE)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["expand", "-r", str(recipe), str(src), str(out), "-q"])
    assert result.exit_code == 0, result.output
    scales: dict[str, set] = {}
    origins = set()
    for row in read_manifest(out):
        ops = json.loads(row["ops"])
        first = ops[0] if ops else {"op": "original"}
        if first["op"] == "decode":
            origins.add(tuple(first.get("origin", (0, 0))))
        key = row["source_path"] if row["variant"] != "0" else "originals"
        scales.setdefault(key, set()).add(first.get("scale", 1))
    # Originals need every pixel: their source is decoded a second time, at full size.
    assert scales.pop("originals") == {1}
    assert scales.pop("b/big.jpg") == {8}
    assert scales.pop("b/small.jpg") == scales.pop("b/png.png") == {1}
    assert set(map(frozenset, scales.values())) == {frozenset({4})}  # incl. progressive, gray
    assert len(origins) > 2  # EXIF flips shift the reduced image's origin
    result = CliRunner().invoke(main, ["verify", str(out), "--deep"])
    assert result.exit_code == 0, result.output
    assert result.stderr.endswith("65 re-created: OK\n")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_draft_decode_sees_the_same_picture(tmp_path: Path, orientation: int) -> None:
    # The reduced decode, mapped by the recorded scale and origin, must show the same part
    # of the picture as the full decode: a misplaced origin shows up as a large difference.
    upright = photo(orientation, (403, 301)).resize((403, 301), Image.Resampling.BOX)
    data = jpeg(tmp_path / "x.jpg", upright, orientation).read_bytes()
    header = images.read_header(data, max_pixels=10**8)
    assert header.size == (403, 301)
    ops = [
        {"op": "rotate", "angle": 7.0, "expand": False, "fill": 0, "resample": "bilinear"},
        {"op": "crop", "left": 40, "top": 30, "width": 320, "height": 240},
        {"op": "resize", "size": [80, 60], "fit": "stretch", "resample": "bilinear"},
    ]
    scale = pipeline.draft_scale(ops, header.size)
    assert scale == 4
    full = pipeline.run(images.decode(data, max_pixels=10**8, keep_alpha=False), ops)
    entry = pipeline.decode_entry(scale, header.size, images.draft_origin(header, scale))
    reduced = images.decode(data, max_pixels=10**8, keep_alpha=False, scale=scale)
    drafted = pipeline.run(reduced, [entry, *ops])
    diff = np.abs(np.asarray(full, np.int16) - np.asarray(drafted, np.int16))
    assert drafted.size == full.size and diff.mean() < 4, diff.mean()


def test_decode_scale_never_magnifies() -> None:
    # Whatever the ops, the transform from the reduced image to the output never enlarges,
    # and the next coarser scale would have (so no pixels are thrown away needlessly).
    recipe = parse_recipe(
        """\
version: 1
pipeline:
  - brightness: {factor: [0.5, 1.5], p: 0.5}
  - some_of:
      n: [1, 3]
      steps:
        - rotate: {degrees: [-90, 90], expand: true}
        - rotate90: {angles: [90, 270]}
        - scale: {factor: [0.2, 2.0]}
        - crop: {fraction: [0.2, 1.0], position: random}
  - random_resized_crop: {size: [64, 48], scale: [0.05, 1.0]}
"""
    )
    seen = set()
    for seed in range(400):
        size = (int(300 + seed * 7 % 3000), int(200 + seed * 13 % 2000))
        ops = pipeline.sample(recipe.pipeline, rng_for(seed), size)
        scale = pipeline.draft_scale(ops, size)
        seen.add(scale)
        end = pipeline.segment_end(ops, 0, size)
        matrix = pipeline.segment_matrix(ops[:end], size)[0]
        stretch = pipeline.max_stretch(matrix)
        if scale > 1:  # a full decode may be enlarged: the ops ask for it
            assert scale * stretch <= 1 + 1e-9, (ops, scale)
        if scale < 8:
            assert 2 * scale * stretch > 1, (ops, scale)
    assert seen >= {1, 2, 4, 8}


def sequential(image: Image.Image, ops: list[dict]) -> Image.Image:
    for entry in ops:
        params = {k: v for k, v in entry.items() if k != "op"}
        image = REGISTRY[entry["op"]].apply(image, **params)
    return image


def test_table_ops_fuse_exactly() -> None:
    image = photo(3, (61, 47), "RGBA")
    tables = [
        {"op": "brightness", "factor": 1.3},
        {"op": "posterize", "bits": 5},
        {"op": "gamma", "gamma": 0.8, "gain": 1.0},
        {"op": "solarize", "threshold": 200.0},
        {"op": "invert"},
        {"op": "brightness", "factor": 0.7},
    ]
    assert pipeline.segment_end(tables, 0, image.size) == len(tables)  # one table, one pass
    assert pipeline.run(image, tables).tobytes() == sequential(image, tables).tobytes()
    # Smooth tables move past an exact flip: still identical to running them in turn.
    moved = [tables[0], tables[2], {"op": "hflip"}, tables[4], tables[5]]
    assert pipeline.segment_end(moved, 0, image.size) == len(moved)
    assert pipeline.run(image, moved).tobytes() == sequential(image, moved).tobytes()


def test_table_op_stays_before_geometry_it_does_not_commute_with() -> None:
    rotate = {"op": "rotate", "angle": 10.0, "expand": False, "fill": 100, "resample": "bilinear"}
    dim = {"op": "brightness", "factor": 0.5}
    size = (61, 47)
    assert pipeline.segment_end([dim, rotate], 0, size) == 1  # 100 -> 50: may not move past
    assert pipeline.segment_end([dim, {**rotate, "fill": 0}], 0, size) == 2  # 0 stays 0
    steps = {"op": "posterize", "bits": 2}  # interpolating across its steps is not the same
    assert pipeline.segment_end([steps, {**rotate, "fill": 0}], 0, size) == 1
    assert pipeline.segment_end([{**rotate, "fill": 0}, steps], 0, size) == 2  # after: fine
    assert pipeline.segment_end([steps, {"op": "hflip"}], 0, size) == 2  # a flip blends nothing
    nearest = {**rotate, "fill": 0, "resample": "nearest"}
    assert pipeline.segment_end([steps, nearest], 0, size) == 2  # nor does nearest sampling


GEOMETRIC = [
    {"op": "rotate", "angle": 13.0, "expand": False, "fill": 0, "resample": "bilinear"},
    {"op": "rotate", "angle": -7.0, "expand": True, "fill": 0, "resample": "bicubic"},
    {"op": "random_resized_crop", "left": 5, "top": 3, "width": 50, "height": 40}
    | {"size": [23, 17], "resample": "bilinear"},
    {"op": "resize", "size": [90, 70], "fit": "stretch", "resample": "bilinear"},
    {"op": "hflip"},
    {"op": "crop", "left": 3, "top": 4, "width": 40, "height": 30},
]
EXTREME_TABLES = [
    {"op": "brightness", "factor": 1.8},
    {"op": "brightness", "factor": 0.55},
    {"op": "gamma", "gamma": 2.0, "gain": 1.0},
    {"op": "gamma", "gamma": 1.0, "gain": 1.5},
    {"op": "solarize", "threshold": 128.0},
    {"op": "posterize", "bits": 7},
    {"op": "posterize", "bits": 3},
    {"op": "invert"},
]


@pytest.mark.parametrize("geometric", GEOMETRIC, ids=lambda g: g["op"])
def test_a_table_moves_past_geometry_only_where_that_changes_nothing(geometric: dict) -> None:
    # Fused, a table that the recipe puts before a geometric op runs after the resample. That
    # is allowed only where it gives the same pixels up to rounding: mapping interpolated
    # values must equal interpolating mapped ones (a gamma curve or a clip would not).
    image = Image.open(SAMPLE_DATA / "cat" / "cat_01.jpg").convert("RGB").resize((61, 47))
    checker = Image.fromarray((np.indices((47, 61)).sum(axis=0) % 2 * 255).astype(np.uint8))
    rng = np.random.default_rng(0)
    tables = list(EXTREME_TABLES)
    for name in TABLE_OPS:
        op = REGISTRY[name]
        tables += [{"op": name, **op.sample(rng, image.size, **op.defaults())} for _ in range(6)]
    moved = 0
    for table in tables:
        if pipeline.segment_end([table, geometric], 0, image.size) < 2:
            continue
        moved += 1
        for picture in (image, checker.convert("RGB")):
            fused = pipeline.run(picture, [table, geometric])
            one_by_one = pipeline.run(pipeline.run(picture, [table]), [geometric])
            diff = np.abs(np.asarray(fused, np.int16) - np.asarray(one_by_one, np.int16))
            assert diff.max() <= 2, (table, diff.max())
    assert moved >= 1  # invert always may (and dimming, past all but bicubic)


def test_detail_a_downscale_removed_stays_removed() -> None:
    # Shrunk to 32x24 and enlarged again is a low-resolution copy, not the image back.
    image = Image.open(SAMPLE_DATA / "cat" / "cat_01.jpg").convert("RGB").resize((320, 240))
    down_up = [
        {"op": "resize", "size": [32, 24], "fit": "stretch", "resample": "bilinear"},
        {"op": "resize", "size": [320, 240], "fit": "stretch", "resample": "bilinear"},
    ]
    assert pipeline.segment_end(down_up, 0, image.size) == 1
    fused = np.asarray(pipeline.run(image, down_up), np.int16)
    one_by_one = np.asarray(sequential(image, down_up), np.int16)
    assert np.abs(fused - one_by_one).mean() < 1
    assert np.abs(fused - np.asarray(image, np.int16)).mean() > 5
    # Enlarging first and shrinking after loses nothing, nor does turning and shrinking:
    # each is still one resample.
    assert pipeline.segment_end(down_up[::-1], 0, (32, 24)) == 2
    turn = {"op": "rotate", "angle": 9.0, "expand": False, "fill": 0, "resample": "bilinear"}
    assert pipeline.segment_end([turn, down_up[0]], 0, image.size) == 2


TABLE_OPS = sorted(name for name, op in REGISTRY.items() if op.lut is not None)


@pytest.mark.parametrize("name", TABLE_OPS)
def test_table_ops_apply_exactly_their_table(name: str) -> None:
    # What lets the runner compose them: apply is nothing but its table on colour bands.
    op = REGISTRY[name]
    for mode in ("L", "LA", "RGB", "RGBA"):
        image = photo(9, (37, 23), mode)
        for seed in range(4):
            params = op.sample(np.random.default_rng(seed), image.size, **op.defaults())
            expected = op.apply(image, **params).tobytes()
            assert map_bands(image, op.lut(**params)).tobytes() == expected, (mode, params)


def test_every_exact_point_op_declares_its_table() -> None:
    assert {"brightness", "gamma", "invert", "posterize", "solarize"} <= set(TABLE_OPS)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
def test_map_bands_is_image_point_on_colour_bands(mode: str) -> None:
    image = photo(4, (33, 21), mode)
    table = [255 - v for v in range(256)]
    colour = len(mode) - mode.endswith("A")
    expected = image.point(table * colour + list(range(256)) * (len(mode) - colour))
    assert map_bands(image, table).tobytes() == expected.tobytes()


def test_help_imports_no_numpy_pil_or_tqdm() -> None:
    code = (
        "import sys\n"
        "from augctl.cli import main\n"
        "for args in (['--help'], ['expand', '--help'], ['--version']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'PIL', 'tqdm'))\n"
        "print(heavy, file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "[]"


@pytest.mark.parametrize(
    ("resampler", "recipe_arg", "preload"),
    [
        ("pillow", "file", "pillow"),
        ("opencv", "file", "opencv"),
        ("opencv", "/dev/stdin", "pillow"),  # a pipe: never read ahead of the recipe's reading
    ],
)
def test_expand_starts_the_fork_server_before_importing_numpy_or_pillow(
    tree: Path, tmp_path: Path, resampler: str, recipe_arg: str, preload: str
) -> None:
    # The workers' fork server imports numpy and Pillow while the CLI imports them too and
    # plans: it must be started before this process's own heavy imports, or nothing
    # overlaps. Both import numpy with its thread pool limited to one thread (see
    # augctl.pool), and the server preloads OpenCV for a recipe file that names it.
    code = (
        "import os, sys\n"
        "import augctl.pool as pool\n"
        "calls = []\n"
        "real = pool.start_server\n"
        "def spy(*args):\n"
        "    heavy = sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'PIL'})\n"
        "    calls.append((heavy, os.environ.get('OPENBLAS_NUM_THREADS'), *args))\n"
        "    return real(*args)\n"
        "pool.start_server = spy\n"
        "from augctl.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit as exc:\n"
        "    print(calls[0], exc.code, file=sys.stderr)\n"
    )
    text = f"version: 1\nvariants: 2\nresampler: {resampler}\npipeline:\n  - rotate: {{}}\n"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    source = str(recipe) if recipe_arg == "file" else recipe_arg
    args = ["expand", "-q", "-j1", "-r", source, str(tree), str(tmp_path / "out")]
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        input=text,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env=env,
    )
    assert proc.stderr.strip().splitlines()[-1] == f"([], '1', '{preload}') 0", proc.stderr
    rows = read_manifest(tmp_path / "out")
    assert len(rows) == 14
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["recipe"].get("resampler", "pillow") == resampler


def test_benchmark_scripts_run_in_smoke_mode(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")  # in the test extra; --quick needs no scikit-image
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench.py"), "--quick"]
    proc = subprocess.run(
        [*cmd, "--corpus", str(tmp_path / "corpus")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| imagenet | 6 | 1 |" in proc.stdout and "| large | 6 | 2 |" in proc.stdout
    # OpenCV is in the test extra: the opencv column is measured, not skipped.
    assert "augctl+opencv" in proc.stdout and "| - | - | - |" not in proc.stdout
    assert "augctl --help:" in proc.stdout and "walk + plan 2,000 files" in proc.stdout
    assert "s importing augctl.execute" in proc.stdout
    steady = re.search(r"large, 2 worker\(s\): floor [\d.]+ s, ([\d.]+) img/s; augctl", proc.stdout)
    assert steady and float(steady[1]) > 0, proc.stdout


@pytest.mark.parametrize(
    "ops",
    [
        # A crop, then a rotation whose expanded canvas reaches past it: the cut-off stays cut.
        [
            {"op": "crop", "left": 100, "top": 75, "width": 200, "height": 150},
            {"op": "rotate", "angle": 30.0, "expand": True, "fill": 0, "resample": "bilinear"},
        ],
        # A zoom that crops to the canvas, then a rotation: black corners as op by op.
        [
            {"op": "scale", "factor": 1.3, "keep_canvas": True, "fill": 0, "resample": "bilinear"},
            {"op": "rotate", "angle": 15.0, "expand": False, "fill": 0, "resample": "bilinear"},
        ],
        [
            {"op": "rotate", "angle": 45.0, "expand": False, "fill": 0, "resample": "bilinear"},
            {"op": "rotate", "angle": -45.0, "expand": False, "fill": 0, "resample": "bilinear"},
        ],
        # pad changes the size outside any segment; the next segment must see the new size.
        [
            {"op": "pad", "padding": [10, 10, 10, 10], "fill": 0, "mode": "constant"},
            {"op": "hflip"},
        ],
        # A flip or a quarter turn cuts nothing off: the rotation after it fuses with it.
        [
            {"op": "hflip"},
            {"op": "rotate", "angle": 20.0, "expand": False, "fill": 0, "resample": "bilinear"},
        ],
        [
            {"op": "rotate90", "angle": 90},
            {"op": "rotate", "angle": -12.0, "expand": False, "fill": 0, "resample": "bicubic"},
        ],
    ],
    ids=[
        "crop-rotate-expand",
        "zoom-rotate",
        "rotate-unrotate",
        "pad-hflip",
        "hflip-rotate",
        "rot90-rotate",
    ],
)
def test_fusion_keeps_what_earlier_ops_cut_off(ops: list[dict]) -> None:
    image = Image.open(SAMPLE_DATA / "cat" / "cat_01.jpg").convert("RGB")
    fused = np.asarray(pipeline.run(image, ops), np.int16)
    one_by_one = np.asarray(sequential(image, ops), np.int16)
    assert fused.shape == one_by_one.shape
    assert np.abs(fused - one_by_one).mean() < 0.5
    black = lambda a: int((a.sum(axis=2) == 0).sum())  # noqa: E731
    assert abs(black(fused) - black(one_by_one)) <= 0.01 * black(one_by_one) + 50


def test_tiny_jpegs_are_never_drafted_to_nothing(tmp_path: Path) -> None:
    # A 600x7 banner shrunk 10x once asked for a 1/8 decode: 7 // 8 == 0 rows.
    src = tmp_path / "in" / "k"
    src.mkdir(parents=True)
    for name, size in (("banner.jpg", (600, 7)), ("dot.jpg", (1, 1)), ("tall.jpg", (3, 200))):
        photo(1, size).save(src / name, quality=90)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "version: 1\nvariants: 2\npipeline:\n  - affine: {degrees: 0, translate: 0, scale: 0.1}\n"
    )
    out = tmp_path / "out"
    assert (
        CliRunner()
        .invoke(main, ["expand", "-r", str(recipe), str(tmp_path / "in"), str(out), "-q"])
        .exit_code
        == 0
    )
    assert read_manifest(out, "errors.csv") == []
    assert CliRunner().invoke(main, ["verify", str(out), "--deep"]).exit_code == 0


def _rotation(size: tuple[int, int], out: tuple[int, int], scale: float) -> tuple[float, ...]:
    """Forward matrix: turn 11 degrees and scale about the image centre, centred in `out`."""
    rad = math.radians(11)
    c, s = math.cos(rad) * scale, math.sin(rad) * scale
    cx, cy, ox, oy = size[0] / 2, size[1] / 2, out[0] / 2, out[1] / 2
    return (c, s, ox - c * cx - s * cy, -s, c, oy + s * cx - c * cy)


def _psnr_to_area_average(image: Image.Image, matrix: tuple[float, ...], out: Image.Image) -> float:
    """PSNR of `out` against the area average of a bicubic 8x8 supersampling of `image`."""
    k = 8
    w, h = out.size
    fine = image.transform(
        (w * k, h * k),
        Image.Transform.AFFINE,
        resample_module.invert(tuple(v * k for v in matrix)),
        resample=Image.Resampling.BICUBIC,
    )
    reference = np.asarray(fine, np.float64).reshape(h, k, w, k, 3).mean(axis=(1, 3))
    mse = np.mean((np.asarray(out, np.float64) - reference) ** 2)
    return 10 * math.log10(255**2 / mse)


@pytest.mark.parametrize("scale", [1.0, 0.7, 0.55, 0.4, 0.33])
def test_affine_resample_is_the_closer_of_bilinear_and_supersampling(scale: float) -> None:
    """warp picks, at each scale, whichever of a bilinear tap and 2x2 supersampling is
    closer to an area-averaged reference (the README's claim about SUPERSAMPLE_BELOW)."""
    images_ = [Image.open(p).convert("RGB") for p in sorted(SAMPLE_DATA.glob("*/*.jpg"))[::5]]
    gains = []
    for image in images_:
        size = (int(image.width * scale * 0.6), int(image.height * scale * 0.6))
        matrix = _rotation(image.size, size, scale)
        chosen = resample_module.warp(image, matrix, size, "bilinear", 0)
        tap = image.transform(
            size,
            Image.Transform.AFFINE,
            resample_module.invert(matrix),
            resample=Image.Resampling.BILINEAR,
        )
        double = tuple(v * 2 for v in matrix)
        supersampled = image.transform(
            (size[0] * 2, size[1] * 2), Image.Transform.AFFINE, resample_module.invert(double)
        ).reduce(2)
        other = supersampled if scale > resample_module.SUPERSAMPLE_BELOW else tap
        gains.append(
            _psnr_to_area_average(image, matrix, chosen)
            - _psnr_to_area_average(image, matrix, other)
        )
    assert min(gains) > -0.5 and sum(gains) / len(gains) > 0.3, gains


def test_thin_jpegs_are_not_draft_decoded_to_a_few_pixels(tmp_path: Path) -> None:
    # A reduced image's last block reaches up to scale - 1 pixels past the picture: one
    # output pixel, which is most of a 4-pixel-wide output. Thin sources decode in full.
    jpeg(tmp_path / "in" / "k" / "thin.jpg", photo(5, (40, 1003)), 6)
    jpeg(tmp_path / "in" / "k" / "wide.jpg", photo(6, (1001, 667)))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "version: 1\nvariants: 2\npipeline:\n"
        "  - rotate: {degrees: [5, 10], expand: true}\n  - scale: {factor: 0.1}\n"
    )
    out = tmp_path / "out"
    args = ["expand", "-r", str(recipe), str(tmp_path / "in"), str(out), "-q"]
    assert CliRunner().invoke(main, args).exit_code == 0
    scales = {
        row["source_path"]: json.loads(row["ops"])[0].get("scale", 1) for row in read_manifest(out)
    }
    assert scales == {"k/thin.jpg": 1, "k/wide.jpg": 8}
    assert CliRunner().invoke(main, ["verify", str(out), "--deep"]).exit_code == 0


def test_a_flip_before_a_rotation_keeps_the_draft_decode() -> None:
    """A flip or quarter turn of the whole image, then a rotation, is one resample: the flip
    split the segment (the rotation reads past the flip's canvas, which is the image's), so
    configs/photo_224.yaml and the starter recipe decoded every large JPEG in full."""
    flip_then_rotate = [
        {"op": "hflip"},
        {"op": "rotate", "angle": 7.0, "expand": False, "fill": 0, "resample": "bicubic"},
    ]
    assert pipeline.segment_end(flip_then_rotate, 0, (4000, 3000)) == 2
    recipe = load_recipe(REPO / "configs" / "photo_224.yaml")
    scales = [
        pipeline.draft_scale(
            pipeline.sample(recipe.pipeline, rng_for(seed), (4000, 3000)), (4000, 3000)
        )
        for seed in range(100)
    ]
    assert min(scales) > 1, scales


def _affine(angle: float, translate: list[float], shear: list[float], resample: str) -> dict:
    return {
        "op": "affine",
        "angle": angle,
        "translate": translate,
        "scale": 1.0,
        "shear": shear,
        "fill": 0,
        "resample": resample,
    }


@pytest.mark.parametrize("size", [(50, 33), (33, 50)])
@pytest.mark.parametrize(
    "ops",
    [
        # Right-angle ops after a flip put samples exactly on the image's edge, where Pillow's
        # half-open test is not symmetric under the flip: these stay two resamples.
        [{"op": "vflip"}, _affine(90.0, [1.0, 0.0], [0.0, 0.0], "bilinear")],
        [
            {"op": "hflip"},
            {"op": "rotate", "angle": 90.0, "expand": False, "fill": 0, "resample": "bicubic"},
            {"op": "hflip"},
        ],
        # A shear along one axis, or a nearest pick, lines samples up on pixel edges too.
        *(
            [{"op": "hflip"}, _affine(0.0, [0.0, 0.0], [26.565051177077986, 0.0], resample)]
            for resample in ("nearest", "bilinear")
        ),
        [
            {"op": "vflip"},
            {"op": "rotate", "angle": 17.0, "expand": False, "fill": 0, "resample": "nearest"},
        ],
    ],
)
def test_a_flip_fuses_only_with_an_interpolating_turn_by_no_right_angle(
    ops: list[dict], size: tuple[int, int]
) -> None:
    """Fused, a whole edge column came out black, rows differed by up to 164 levels, or (a
    shear after a flip) 882 pixels by up to 253."""
    image = photo(3, size)
    fused = np.asarray(pipeline.run(image, ops), np.int16)
    one_by_one = np.asarray(sequential(image, ops), np.int16)
    assert fused.shape == one_by_one.shape
    assert np.abs(fused - one_by_one).max() <= 2
