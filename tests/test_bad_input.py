"""Every row of SPEC §6: a generated torture tree runs to the end, bad files are reported."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import output_files, photo, read_manifest
from PIL import Image

from augctl.cli import main

N = 2
# No pipeline: outputs are the decoded sources, so pixel checks can be exact.
PLAIN = "version: 1\nvariants: {n}\ninput: {{max_pixels: 1000000}}\noutput: {{format: {fmt}}}\n"


def _jpeg(image: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def _save(path: Path, image: Image.Image, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kw)


def build_torture_tree(root: Path) -> dict[str, str]:
    """Write one file per bad-input case; returns the expected errors (path -> reason part)."""
    good = root / "good"
    _save(good / "plain.jpg", photo(1))
    # EXIF orientation 6: stored landscape, displayed rotated 90° clockwise (portrait).
    exif = Image.Exif()
    exif[0x0112] = 6
    _save(good / "exif_rotated.jpg", photo(2, (80, 40)), exif=exif.tobytes())
    _save(good / "gray_1bit.png", photo(3).convert("1"))
    _save(good / "gray_L.png", photo(4, mode="L"))
    # Palette image whose transparent entry hides a magenta colour.
    pal = Image.new("P", (40, 30), 1)
    pal.putpalette([255, 0, 255, 0, 128, 255] + [0] * 762)
    pal.paste(0, (0, 0, 20, 30))
    _save(good / "palette_transparent.png", pal, transparency=0)
    la = Image.merge("LA", [photo(5, mode="L"), Image.new("L", (64, 48), 128)])
    _save(good / "gray_alpha.png", la)
    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[..., :3] = (255, 0, 255)  # hidden colour under alpha 0 on the left half
    rgba[:, 20:] = (10, 200, 30, 255)
    _save(good / "rgba_hidden.png", Image.fromarray(rgba, "RGBA"))
    _save(good / "cmyk.jpg", photo(6).convert("CMYK"))
    gradient16 = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (16, 1))
    _save(good / "sixteen_bit.png", Image.fromarray(gradient16))
    _save(good / "int32.tif", Image.fromarray(gradient16.astype(np.int32)))
    _save(good / "float.tif", Image.fromarray(gradient16.astype(np.float32) / 65535))
    frames = [Image.new("RGB", (20, 20), c) for c in ((200, 0, 0), (0, 0, 200))]
    frames[0].save(good / "animated.gif", save_all=True, append_images=frames[1:])
    frames[0].save(good / "multipage.tif", save_all=True, append_images=frames[1:])
    _save(good / "UPPER.JPG", photo(7))
    for name in (
        "café ☕.jpg",
        "space name.jpg",
        'it\'s "quoted".jpg',
        "-leading-dash.jpg",
        "a,comma.jpg",
    ):
        _save(good / name, photo(8))
    _save(good / "nested" / "deeper" / "n.jpg", photo(9))
    (good / "link.jpg").symlink_to(good / "plain.jpg")
    (good / "loop").symlink_to(good)  # a directory loop

    bad = root / "bad"
    bad.mkdir()
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "text.png").write_text("this is not an image\n")
    (bad / "html.jpg").write_text("<html><body>404 Not Found</body></html>")
    (bad / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8)
    data = _jpeg(photo(10, (200, 150)))
    (bad / "truncated.jpg").write_bytes(data[: len(data) // 2])
    _save(bad / "huge.png", Image.new("L", (1100, 1000)))  # over max_pixels (1,000,000)
    (bad / "broken_link.jpg").symlink_to(bad / "does-not-exist.jpg")

    # Junk that is ignored silently, and things that only warrant a warning.
    (good / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (good / "._plain.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (good / "Thumbs.db").write_bytes(b"junk")
    _save(good / ".ipynb_checkpoints" / "plain-checkpoint.jpg", photo(1))
    _save(root / "stray.jpg", photo(11))
    (root / "README.md").write_text("a dataset")
    (root / "empty_class").mkdir()
    return {
        "bad/empty.jpg": "empty file",
        "bad/text.png": "not an image",
        "bad/html.jpg": "not an image",
        "bad/corrupt.jpg": "corrupt or truncated",
        "bad/truncated.jpg": "corrupt or truncated",
        "bad/huge.png": "more than input.max_pixels",
        "bad/broken_link.jpg": "broken symbolic link",
    }


@pytest.fixture(scope="module")
def torture(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("torture") / "in"
    return root, build_torture_tree(root)


def run(src: Path, out: Path, fmt: str = "png", *args: str):
    recipe = out.parent / f"{out.name}.yaml"
    recipe.write_text(PLAIN.format(n=N, fmt=fmt))
    return CliRunner().invoke(main, ["expand", "-r", str(recipe), str(src), str(out), "-j2", *args])


@pytest.fixture(scope="module")
def png_run(torture, tmp_path_factory):
    src, expected = torture
    out = tmp_path_factory.mktemp("png") / "out"
    result = run(src, out, "png", "--json")
    return src, expected, out, result


def pixels(out: Path, rows, source: str) -> np.ndarray:
    row = next(r for r in rows if r["source_path"] == source)
    with Image.open(out / row["output_path"]) as im:
        return np.asarray(im)


def test_run_finishes_and_reports_every_bad_file(png_run) -> None:
    src, expected, out, result = png_run
    assert result.exit_code == 0, result.output
    errors = {r["source_path"]: r for r in read_manifest(out, "errors.csv")}
    assert set(errors) == set(expected)
    for path, reason in expected.items():
        assert reason in errors[path]["reason"], errors[path]
        assert errors[path]["class"] == "bad"
    summary = json.loads(result.stdout)
    assert summary["skipped"] == len(expected)


def test_every_valid_image_gets_n_readable_outputs(png_run) -> None:
    src, expected, out, result = png_run
    rows = read_manifest(out)
    sources = {r["source_path"] for r in rows}
    assert len(sources) == 21
    assert "good/link.jpg" in sources and "good/nested/deeper/n.jpg" in sources
    assert not any(s.startswith("good/loop/") or "checkpoint" in s or "/._" in s for s in sources)
    assert len(rows) == N * len(sources) == len(output_files(out))
    for row in rows:
        with Image.open(out / row["output_path"]) as im:
            im.load()
    assert {r["output_path"] for r in rows} >= {
        "good/café ☕_jpg_aug001.png",
        'good/it\'s "quoted"_jpg_aug002.png',
        "good/-leading-dash_jpg_aug001.png",
        "good/a,comma_jpg_aug001.png",
        "good/UPPER_JPG_aug001.png",
    }


def test_warnings_for_root_files_empty_classes_and_loops(png_run) -> None:
    _, _, _, result = png_run
    assert (
        "1 image(s) at the input root are in no class folder and are skipped (e.g. stray.jpg)"
        in result.stderr
    )
    assert "class folder 'empty_class' has no images; nothing written for it" in result.stderr
    assert "folder good/loop links back to a folder above it; not followed" in result.stderr
    assert "README" not in result.stderr and "Thumbs" not in result.stderr
    assert "Traceback" not in result.output


def test_exif_orientation_is_applied(png_run) -> None:
    src, _, out, _ = png_run
    got = pixels(out, read_manifest(out), "good/exif_rotated.jpg")
    with Image.open(src / "good" / "exif_rotated.jpg") as im:
        assert im.size == (80, 40)
        want = np.asarray(im.convert("RGB").transpose(Image.Transpose.ROTATE_270))
    assert got.shape == (80, 40, 3)
    assert np.array_equal(got, want)


def test_modes_are_converted_sensibly(png_run) -> None:
    src, _, out, _ = png_run
    rows = read_manifest(out)
    assert pixels(out, rows, "good/gray_L.png").ndim == 2  # grayscale stays grayscale
    assert set(np.unique(pixels(out, rows, "good/gray_1bit.png"))) <= {0, 255}
    for name in ("good/sixteen_bit.png", "good/int32.tif", "good/float.tif"):
        px = pixels(out, rows, name)
        assert px.ndim == 2, name
        # A full-range 16-bit gradient becomes a full-range 8-bit one: rescaled, not clipped.
        assert px[0, 0] == 0 and px[0, -1] == 255 and 120 <= px[0, 32] <= 135, (name, px[0])
    rgb = pixels(out, rows, "good/cmyk.jpg")
    assert rgb.ndim == 3 and rgb.shape[2] == 3
    assert pixels(out, rows, "good/animated.gif")[10, 10].tolist() == [200, 0, 0]  # first frame
    assert pixels(out, rows, "good/multipage.tif")[10, 10].tolist() == [200, 0, 0]


def test_transparency_kept_in_png_and_flattened_in_jpeg(png_run, tmp_path: Path) -> None:
    src, _, out, _ = png_run
    rows = read_manifest(out)
    px = pixels(out, rows, "good/palette_transparent.png")
    assert px.shape[2] == 4 and px[5, 5, 3] == 0 and px[5, 30].tolist() == [0, 128, 255, 255]
    assert pixels(out, rows, "good/gray_alpha.png").shape[2] == 2  # LA stays LA
    jpeg_out = tmp_path / "jpeg"
    assert run(src, jpeg_out, "jpeg").exit_code == 0
    jrows = read_manifest(jpeg_out)
    for name in ("good/palette_transparent.png", "good/rgba_hidden.png"):
        px = pixels(jpeg_out, jrows, name).astype(int)
        # The transparent half is the white background, never the hidden magenta.
        assert px.shape[2] == 3 and (px[5:25, 2:15] >= 245).all(), name
    assert pixels(jpeg_out, jrows, "good/gray_alpha.png").ndim == 2


def test_on_error_fail_stops_with_exit_1(torture, tmp_path: Path) -> None:
    src, _ = torture
    result = run(src, tmp_path / "out", "png", "--on-error", "fail")
    assert result.exit_code == 1
    assert result.stderr.startswith("augctl: error: bad/broken_link.jpg: broken symbolic link")
    assert "Traceback" not in result.output


def test_strict_exits_1_after_finishing(torture, tmp_path: Path) -> None:
    src, expected = torture
    result = run(src, tmp_path / "out", "png", "--strict")
    assert result.exit_code == 1
    assert len(read_manifest(tmp_path / "out")) == N * 21  # everything usable was still done
    assert f"{len(expected)} source(s) skipped" in result.stderr


def test_exotic_names_work(tmp_path: Path) -> None:
    src = tmp_path / "in" / "cls with space"
    names = ["new\nline.jpg", "tab\tname.jpg", "😀.jpg", "Ünïcödé.png", "-n 5.jpg"]
    for i, name in enumerate(names):
        _save(src / name, photo(i))
    out = tmp_path / "out"
    result = run(tmp_path / "in", out, "jpeg")
    assert result.exit_code == 0, result.output
    rows = read_manifest(out)
    assert sorted({r["source_path"] for r in rows}) == sorted(f"cls with space/{n}" for n in names)
    assert all(os.path.isfile(out / r["output_path"]) for r in rows)


# The transpose that makes a picture stored with each EXIF orientation upright (EXIF 2.3).
UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@pytest.mark.parametrize("fmt", ["TIFF", "PNG", "WEBP", "JPEG"])
def test_every_exif_orientation_comes_out_upright_in_every_format(tmp_path: Path, fmt: str) -> None:
    # Some Pillow versions turn TIFFs upright themselves: augctl must not turn them twice.
    stored = photo(7, (36, 20))
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        extra = {"quality": 100, "subsampling": 0} if fmt == "JPEG" else {}
        extra |= {"lossless": True} if fmt == "WEBP" else {}
        _save(
            tmp_path / "in" / "a" / f"o{orientation}.{fmt.lower()}",
            stored,
            format=fmt,
            exif=exif.tobytes(),
            **extra,
        )
    recipe = tmp_path / "r.yaml"
    recipe.write_text("version: 1\nvariants: 0\ninclude_originals: true\noutput: {format: png}\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["expand", "-r", str(recipe), str(tmp_path / "in"), str(out)])
    assert result.exit_code == 0, result.output
    rows = read_manifest(out)
    for orientation in range(1, 9):
        want = stored if orientation == 1 else stored.transpose(UPRIGHT[orientation])
        got = pixels(out, rows, f"a/o{orientation}.{fmt.lower()}")
        assert got.shape[:2] == (want.height, want.width), orientation
        diff = np.abs(got.astype(int) - np.asarray(want, int))
        assert diff.mean() < 3, (orientation, diff.mean())


def test_what_pillow_keeps_beside_the_pixels_never_reaches_an_output(tmp_path: Path) -> None:
    # A LAB TIFF converts to RGB with a freshly made sRGB profile (dated now): outputs would
    # differ from run to run. A group4 TIFF's compression can't encode 8-bit pixels.
    src = tmp_path / "in" / "a"
    src.mkdir(parents=True)
    Image.new("LAB", (40, 30), (60, 20, -20)).save(src / "lab.tif")
    photo(3, (40, 30)).convert("1").save(src / "scan.tif", compression="group4")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "version: 1\nvariants: 1\ninclude_originals: true\noutput: {format: same}\n"
        "pipeline:\n  - hflip: {}\n"
    )
    outputs = []
    for run in ("one", "two"):
        args = ["expand", "-r", str(recipe), str(tmp_path / "in"), str(tmp_path / run)]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        assert read_manifest(tmp_path / run, "errors.csv") == []
        outputs.append(output_files(tmp_path / run))
    assert outputs[0] == outputs[1] and len(outputs[0]) == 4
    for name, data in outputs[0].items():
        assert "icc_profile" not in Image.open(io.BytesIO(data)).info, name


def test_float_image_with_nan_and_inf_keeps_its_finite_scale(tmp_path: Path) -> None:
    values = np.linspace(0, 1, 40 * 30, dtype=np.float32).reshape(30, 40)
    values[0, 0], values[0, 1], values[0, 2] = np.nan, np.inf, -np.inf
    (tmp_path / "in" / "a").mkdir(parents=True)
    Image.fromarray(values, "F").save(tmp_path / "in" / "a" / "f.tif")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("version: 1\nvariants: 0\ninclude_originals: true\noutput: {format: png}\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["expand", "-r", str(recipe), str(tmp_path / "in"), str(out)])
    assert result.exit_code == 0, result.output
    got = pixels(out, read_manifest(out), "a/f.tif").astype(int)
    want = np.rint(np.nan_to_num(values, nan=0, posinf=1, neginf=0) * 255)
    assert np.array_equal(got, want)


def test_a_colour_key_is_transparency(tmp_path: Path) -> None:
    """An RGB or L PNG whose tRNS chunk names one colour as transparent: that colour is
    transparent, as with a palette (it was read as opaque: JPEG outputs showed the hidden
    colour instead of the background, PNG outputs lost the transparency)."""
    src = tmp_path / "in" / "c"
    src.mkdir(parents=True)
    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[:, :10] = (255, 0, 0)
    rgb[:, 10:] = (0, 0, 255)
    Image.fromarray(rgb).save(src / "rgb.png", transparency=(255, 0, 0))
    grey = np.where(np.arange(20) < 10, 7, 200).astype(np.uint8)[None, :].repeat(20, 0)
    Image.fromarray(grey, "L").save(src / "grey.png", transparency=7)
    for fmt in ("jpeg", "png"):
        recipe = tmp_path / f"{fmt}.yaml"
        recipe.write_text(
            f"version: 1\nvariants: 1\noutput: {{format: {fmt}, background: [0, 255, 0]}}\n"
            "pipeline:\n  - hflip: {p: 0}\n"
        )
        out = tmp_path / fmt
        result = CliRunner().invoke(
            main, ["expand", "-r", str(recipe), str(tmp_path / "in"), str(out), "-q"]
        )
        assert result.exit_code == 0, result.output
        rows = {r["source_path"]: r for r in read_manifest(out)}
        for name in ("c/rgb.png", "c/grey.png"):
            with Image.open(out / rows[name]["output_path"]) as im:
                left, right = (
                    im.convert("RGBA").getpixel((2, 10)),
                    im.convert("RGBA").getpixel((17, 10)),
                )
            if fmt == "png":
                assert left[3] == 0 and right[3] == 255, (name, left, right)
            else:  # flattened onto the green background (its grey, 150, for an L image)
                green = (0, 255, 0) if name == "c/rgb.png" else (150, 150, 150)
                assert max(abs(a - b) for a, b in zip(left[:3], green)) <= 4, (name, left)


def test_a_16_bit_colour_key_is_not_matched_against_8_bit_pixels(tmp_path: Path) -> None:
    """Pillow reads a 16-bit RGB PNG as 8 bits a sample but keeps its tRNS key in 16 bits:
    matched as it is, the key for near-black (0x00FF) cleared the white pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        return struct.pack(">I", len(body)) + kind + body + crc

    pixels = np.zeros((4, 4, 3), np.uint16)
    pixels[:, :2], pixels[:, 2:] = 0x00FF, 0xFFFF
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 16, 2, 0, 0, 0))
        + chunk(b"tRNS", struct.pack(">HHH", 0x00FF, 0x00FF, 0x00FF))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    src = tmp_path / "in" / "c"
    src.mkdir(parents=True)
    (src / "key16.png").write_bytes(png)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "version: 1\nvariants: 1\noutput: {format: png}\npipeline:\n  - hflip: {p: 0}\n"
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["expand", "-r", str(recipe), str(tmp_path / "in"), str(out), "-q"]
    )
    assert result.exit_code == 0, result.output
    (row,) = read_manifest(out)
    with Image.open(out / row["output_path"]) as im:
        rgba = im.convert("RGBA")
        assert rgba.getpixel((3, 0)) == (255, 255, 255, 255), rgba.getpixel((3, 0))
