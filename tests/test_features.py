"""What users of a dataset expander expect: balancing, originals, output control, guards,
init/validate, --files-from and AUGCTL_* environment variables."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import make_tree, output_files, photo, read_manifest, sha256
from PIL import Image, ImageCms, JpegImagePlugin, TiffImagePlugin

from augctl.cli import main

BASE = "version: 1\nseed: 11\n{extra}\npipeline:\n  - rotate: {{degrees: [-10, 10]}}\n  - hflip: {{p: 0.5}}\n"


def recipe(tmp_path: Path, extra: str = "variants: 2", name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(BASE.format(extra=extra))
    return path


def invoke(*args, env: dict | None = None, input: str | bytes | None = None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env, input=input)


# --- balancing -------------------------------------------------------------------------


@pytest.fixture
def uneven(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "in", {"few": 1, "some": 3, "many": 8})


def test_balance_gives_exact_even_counts(uneven: Path, tmp_path: Path) -> None:
    r = recipe(tmp_path, "balance: {target_per_class: 7}")
    result = invoke("expand", "-r", r, uneven, tmp_path / "out", "-q", "--json")
    assert result.exit_code == 0, result.output
    rows = read_manifest(tmp_path / "out")
    # Every class ends with exactly the target; "many" has more sources than that,
    # so one of its sources gets no variant.
    assert Counter(r["class"] for r in rows) == {"few": 7, "some": 7, "many": 7}
    per_source = Counter(r["source_path"] for r in rows)
    some = [per_source[f"some/img_{i}.jpg"] for i in range(3)]
    many = [per_source[f"many/img_{i}.jpg"] for i in range(8)]
    assert sorted(some) == [2, 2, 3] and per_source["few/img_0.jpg"] == 7
    assert sorted(many) == [0] + [1] * 7
    summary = json.loads(result.stdout)
    assert summary["sources_per_class"] == {"few": 1, "many": 8, "some": 3}
    assert summary["per_class"] == {"few": 7, "many": 7, "some": 7}
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["summary"]["per_class"] == summary["per_class"]
    # -n with balance: the option is refused, not the recipe file (blamed for a while).
    for n in ("3", "5"):
        refused = invoke("expand", "-r", r, uneven, tmp_path / "n", "-n", n)
        assert refused.exit_code == 2
        assert "--variants can't be combined with a recipe that sets 'balance'" in refused.stderr


def test_balance_counts_originals_when_asked(uneven: Path, tmp_path: Path) -> None:
    r = recipe(tmp_path, "balance: {target_per_class: 5}\ninclude_originals: true")
    assert invoke("expand", "-r", r, uneven, tmp_path / "out", "-q").exit_code == 0
    rows = read_manifest(tmp_path / "out")
    # Originals count toward the target; a class already above it gets no variants.
    assert Counter(r["class"] for r in rows) == {"few": 5, "some": 5, "many": 8}
    assert Counter(r["variant"] == "0" for r in rows)[True] == 12


def test_balance_is_deterministic_across_workers(uneven: Path, tmp_path: Path) -> None:
    r = recipe(tmp_path, "balance: {target_per_class: 10}")
    for j in ("1", "2"):
        assert invoke("expand", "-r", r, uneven, tmp_path / j, "-q", "-j", j).exit_code == 0
    assert output_files(tmp_path / "1") == output_files(tmp_path / "2")


# --- originals and output control ----------------------------------------------------------


def test_originals_are_variant_0_and_copied_byte_for_byte(tmp_path: Path) -> None:
    src = tmp_path / "in"
    make_tree(src, {"a": 2})
    photo(3).save(src / "a" / "p.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    photo(4, (40, 20)).save(src / "a" / "rotated.jpg", exif=exif.tobytes())
    r = recipe(tmp_path, "variants: 1\noutput: {format: same}")
    out = tmp_path / "out"
    assert invoke("expand", "-r", r, src, out, "--include-originals", "-q").exit_code == 0
    originals = {r["source_path"]: r for r in read_manifest(out) if r["variant"] == "0"}
    assert set(originals) == {"a/img_0.jpg", "a/img_1.jpg", "a/p.png", "a/rotated.jpg"}
    for name in ("a/img_0.jpg", "a/img_1.jpg", "a/p.png"):
        row = originals[name]
        assert row["ops"] == "[]" and row["output_sha256"] == row["source_sha256"]
        assert (out / row["output_path"]).read_bytes() == (src / name).read_bytes()
    # An EXIF-rotated source is re-encoded upright, never copied (and never rotated twice).
    rotated = originals["a/rotated.jpg"]
    assert rotated["output_sha256"] != rotated["source_sha256"]
    with Image.open(out / rotated["output_path"]) as im:
        assert im.size == (20, 40) and im.getexif().get(0x0112) in (None, 1)


def test_kept_exif_of_a_tiff_is_its_exif_not_its_header(tmp_path: Path) -> None:
    """A TIFF's EXIF is its whole first header: kept as it was, the TIFF writer took the
    source's width, height and strip lengths for the output's (a corrupt file, exit 0), and
    XMP (with its orientation) and Photoshop data rode along. Kept: what EXIF is for."""
    src = tmp_path / "in"
    (src / "a").mkdir(parents=True)
    header = TiffImagePlugin.ImageFileDirectory_v2()
    header[270], header[271] = "A test", "Camera"
    header[700] = b"<x:xmpmeta>tiff:Orientation=6</x:xmpmeta>"
    header[34377] = b"8BIM resources"
    header.tagtype[700], header.tagtype[34377] = 1, 7
    photo(5, (40, 20)).save(src / "a" / "plain.tif", tiffinfo=header)
    header[274] = 6
    photo(6, (40, 20)).save(src / "a" / "turned.tif", tiffinfo=header)
    r = tmp_path / "keep.yaml"
    r.write_text(
        "version: 1\nvariants: 1\ninclude_originals: true\noutput: {format: same, exif: keep}\n"
        "pipeline:\n  - resize: {size: [30, 24]}\n"
    )
    out = tmp_path / "out"
    result = invoke("expand", "-r", r, src, out, "-q")
    assert result.exit_code == 0, result.output
    rows = read_manifest(out)
    assert len(rows) == 4
    for row in rows:
        with Image.open(out / row["output_path"]) as im:
            assert im.size == (int(row["width"]), int(row["height"])), row
            im.load()  # the strips hold what the header says
            if row["output_sha256"] == row["source_sha256"]:
                continue  # an upright original is the source's own bytes, header and all
            tags = im.getexif()
            assert tags.get(270) == "A test" and tags.get(271) == "Camera", dict(tags)
            assert tags.get(274) in (None, 1) and not {700, 34377} & set(tags), dict(tags)
    sizes = {(r["source_path"], r["variant"]): (r["width"], r["height"]) for r in rows}
    assert sum(r["output_sha256"] == r["source_sha256"] for r in rows) == 1  # plain.tif's
    assert sizes[("a/turned.tif", "0")] == ("20", "40")
    assert sizes[("a/plain.tif", "1")] == ("30", "24")


def test_kept_exif_drops_the_sources_own_size(tmp_path: Path) -> None:
    """A camera JPEG's EXIF block records the picture's width and height; an output has
    its own (an image's header says it), so those two go, and the rest stays."""
    src = tmp_path / "in"
    (src / "a").mkdir(parents=True)
    exif = Image.Exif()
    exif[271] = "Camera"
    block = exif.get_ifd(0x8769)
    block[40962], block[40963], block[36867] = 64, 48, "2024:05:06 07:08:09"
    photo(7).save(src / "a" / "cam.jpg", exif=exif.tobytes())
    r = tmp_path / "keep.yaml"
    r.write_text(
        "version: 1\nvariants: 1\noutput: {exif: keep}\npipeline:\n  - resize: {size: 32}\n"
    )
    out = tmp_path / "out"
    assert invoke("expand", "-r", r, src, out, "-q").exit_code == 0
    (row,) = read_manifest(out)
    with Image.open(out / row["output_path"]) as im:
        tags = im.getexif()
        assert tags.get(271) == "Camera"
        assert tags.get_ifd(0x8769) == {36867: "2024:05:06 07:08:09"}


def test_stripped_exif_is_never_copied_along_with_an_original(tmp_path: Path) -> None:
    """exif: strip (the default) and a source whose EXIF has only tags `keep` wouldn't keep:
    the original is still re-encoded without them, not copied byte for byte."""
    src = tmp_path / "in"
    (src / "a").mkdir(parents=True)
    exif = Image.Exif()
    exif[269] = "A document name"
    photo(8).save(src / "a" / "doc.jpg", exif=exif.tobytes())
    r = tmp_path / "r.yaml"
    r.write_text("version: 1\nvariants: 0\ninclude_originals: true\noutput: {format: same}\n")
    out = tmp_path / "out"
    assert invoke("expand", "-r", r, src, out, "-q").exit_code == 0
    (row,) = read_manifest(out)
    assert row["output_sha256"] != row["source_sha256"]
    with Image.open(out / row["output_path"]) as im:
        assert len(im.getexif()) == 0


def test_jpeg_subsampling_png_level_and_webp_lossless(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "in", {"a": 1})
    outputs = {}
    for name, output in (
        ("j444", "{format: jpeg, subsampling: '4:4:4', quality: 95}"),
        ("j420", "{format: jpeg}"),
        ("png0", "{format: png, compress_level: 0}"),
        ("png9", "{format: png, compress_level: 9}"),
        ("webp", "{format: webp, lossless: true}"),
    ):
        r = recipe(
            tmp_path, f"variants: 0\ninclude_originals: true\noutput: {output}", f"{name}.yaml"
        )
        assert invoke("expand", "-r", r, src, tmp_path / name, "-q").exit_code == 0
        outputs[name] = next(iter(output_files(tmp_path / name).values()))
    assert JpegImagePlugin.get_sampling(Image.open(io.BytesIO(outputs["j444"]))) == 0
    assert JpegImagePlugin.get_sampling(Image.open(io.BytesIO(outputs["j420"]))) == 2
    assert len(outputs["png0"]) > len(outputs["png9"])
    with Image.open(src / "a" / "img_0.jpg") as im:
        decoded = im.convert("RGB").tobytes()
    assert Image.open(io.BytesIO(outputs["webp"])).convert("RGB").tobytes() == decoded


def test_icc_kept_by_default_and_strippable(tmp_path: Path) -> None:
    src = tmp_path / "in" / "a"
    src.mkdir(parents=True)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    photo(1).save(src / "x.png", icc_profile=icc)
    for name, extra in (("keep", ""), ("strip", "\n  icc: strip")):
        r = recipe(tmp_path, f"variants: 1\noutput:\n  format: jpeg{extra}", f"{name}.yaml")
        assert invoke("expand", "-r", r, tmp_path / "in", tmp_path / name, "-q").exit_code == 0
    keep, strip = (Image.open(next((tmp_path / n / "a").iterdir())) for n in ("keep", "strip"))
    assert keep.info.get("icc_profile") == icc
    assert "icc_profile" not in strip.info


# --- guards and messages ---------------------------------------------------------------


def test_split_dirs_are_refused(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "data", {"train": 1, "val": 1, "test": 1})
    r = recipe(tmp_path)
    result = invoke("expand", "-r", r, root, tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr == (
        f"augctl: error: input directory {root} looks like a dataset root with split folders "
        f"(train, test, val); point augctl at the training split ({root}/train): augmenting "
        "validation or test data inflates scores. If these really are class names, pass "
        "--allow-split-dirs.\n"
    )
    assert not (tmp_path / "out").exists()
    assert (
        invoke("expand", "-r", r, root, tmp_path / "out", "--allow-split-dirs", "-q").exit_code == 0
    )


def test_recipe_writing_nothing_is_refused(tree: Path, tmp_path: Path) -> None:
    result = invoke("expand", "-r", recipe(tmp_path, "variants: 0"), tree, tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr == (
        "augctl: error: the recipe would write no images: variants is 0 and include_originals is false\n"
    )


def test_input_without_class_folders(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    photo(1).save(flat / "x.jpg")
    result = invoke("expand", "-r", recipe(tmp_path), flat, tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr == (
        f"augctl: error: input directory {flat} has no class folders; expected {flat}/<class>/<image>\n"
    )


def test_init_writes_a_valid_recipe_and_refuses_to_clobber(tmp_path: Path) -> None:
    path = tmp_path / "starter.yaml"
    result = invoke("init", path)
    assert result.exit_code == 0
    assert result.stderr == f"augctl: wrote {path}; check it with: augctl validate {path}\n"
    assert "# " in path.read_text()  # commented
    assert invoke("validate", path).exit_code == 0
    again = invoke("init", path)
    assert again.exit_code == 2
    assert again.stderr == f"augctl: error: {path} already exists; pass --force to overwrite it\n"
    assert invoke("init", path, "--force").exit_code == 0
    assert invoke("init", "-").stdout.startswith("# augctl recipe.")


def test_validate_bad_recipe_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\npipeline:\n  - hflp: {}\n")
    result = invoke("validate", bad)
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"augctl: error: {bad}:3:5: pipeline[0]: unknown op 'hflp'; did you mean 'hflip'?\n"
    )


# --- pipelines and CI ------------------------------------------------------------------


def test_files_from_matches_a_full_run(tree: Path, tmp_path: Path) -> None:
    r = recipe(tmp_path)
    assert invoke("expand", "-r", r, tree, tmp_path / "full", "-q").exit_code == 0
    full = output_files(tmp_path / "full")
    listing = tmp_path / "list.txt"
    listing.write_text(f"{tree}/cat/img_1.jpg\ndog/img_0.jpg\n\ncat/nope.jpg\n")
    out = tmp_path / "some"
    assert invoke("expand", "-r", r, tree, out, "--files-from", listing, "-q").exit_code == 0
    some = output_files(out)
    assert sorted(some) == sorted(k for k in full if k.startswith(("cat/img_1_", "dog/img_0_")))
    assert all(some[k] == full[k] for k in some)
    errors = read_manifest(out, "errors.csv")
    assert [(e["source_path"], e["class"]) for e in errors] == [("cat/nope.jpg", "cat")]
    # NUL-separated on stdin, as from `find -print0`, adds to the same output.
    result = invoke(
        "expand", "-r", r, tree, out, "--files-from", "-", "-0", "-q", input=b"fox/img_1.jpg\0"
    )
    assert result.exit_code == 0
    assert {k for k in output_files(out) if k.startswith("fox/")} == {
        k for k in full if k.startswith("fox/img_1_")
    }


def test_options_from_environment(tree: Path, tmp_path: Path) -> None:
    env = {
        "AUGCTL_RECIPE": str(recipe(tmp_path)),
        "AUGCTL_VARIANTS": "1",
        "AUGCTL_WORKERS": "1",
        "AUGCTL_JSON": "1",
    }
    result = invoke("expand", tree, tmp_path / "out", "-q", env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["written"] == 7


def test_sha_columns_of_copied_originals(tree: Path, tmp_path: Path) -> None:
    r = recipe(tmp_path, "variants: 0\ninclude_originals: true\noutput: {format: same}")
    assert invoke("expand", "-r", r, tree, tmp_path / "out", "-q").exit_code == 0
    for row in read_manifest(tmp_path / "out"):
        assert row["output_sha256"] == sha256((tree / row["source_path"]).read_bytes())
