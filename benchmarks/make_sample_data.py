"""Build the small class-per-folder sample dataset in ``sample_data/`` from bundled photos.

Every image is a fixed crop of a photograph that ships inside scikit-image or scikit-learn,
so the dataset can be rebuilt offline and byte-for-byte (for a given Pillow build) with::

    python benchmarks/make_sample_data.py [OUTPUT_DIR]

The script also writes ``SOURCES.md`` (file list, crop boxes, original source and licence).
"""

from __future__ import annotations

import argparse
import hashlib
from dataclasses import dataclass
from importlib.metadata import version
from importlib.resources import files
from pathlib import Path

from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "sample_data"
JPEG_QUALITY = 85

Box = tuple[int, int, int, int]  # (left, upper, right, lower) in source pixels, as Pillow crops


@dataclass(frozen=True)
class Source:
    """A photograph bundled in an installed Python package, with its stated provenance."""

    package: str  # import name, used only to locate the installed data folder
    distribution: str  # PyPI name, used to report the installed version
    relpath: str  # path of the image inside the package
    description: str
    origin: str  # original source, as stated by the package
    licence: str  # licence, as stated by the package
    stated_in: str  # where in the package the provenance text comes from


SOURCES: dict[str, Source] = {
    "chelsea": Source(
        package="skimage",
        distribution="scikit-image",
        relpath="data/chelsea.png",
        description="Chelsea the cat (451x300)",
        origin="Photograph by Stefan van der Walt",
        licence="No copyright restrictions. CC0 by the photographer (Stefan van der Walt).",
        stated_in="docstring of skimage.data.chelsea (skimage/data/_fetchers.py)",
    ),
    "coffee": Source(
        package="skimage",
        distribution="scikit-image",
        relpath="data/coffee.png",
        description="Coffee cup on a saucer (600x400)",
        origin="Photograph by Rachel Michetti, courtesy of Pikolo Espresso Bar",
        licence="No copyright restrictions. CC0 by the photographer (Rachel Michetti).",
        stated_in="docstring of skimage.data.coffee (skimage/data/_fetchers.py)",
    ),
    "flower": Source(
        package="sklearn",
        distribution="scikit-learn",
        relpath="datasets/images/flower.jpg",
        description="Orange dahlia (640x427)",
        origin=(
            "Flickr, https://www.flickr.com/photos/vultilion/6056698931/ "
            "(retrieved 21 August 2011 by Robert Layton); the README's attribution line "
            'reads "Some rights reserved by danielbuechele" but links to '
            "https://www.flickr.com/photos/vultilion/"
        ),
        licence="Creative Commons Attribution 2.0 (https://creativecommons.org/licenses/by/2.0/)",
        stated_in="sklearn/datasets/images/README.txt",
    ),
    "china": Source(
        package="sklearn",
        distribution="scikit-learn",
        relpath="datasets/images/china.jpg",
        description="Multi-tiered pagoda above a lake (640x427)",
        origin=(
            "Flickr, https://www.flickr.com/photos/danielbuechele/6061409035/ "
            '(retrieved 21 August 2011 by Robert Layton); attribution "Some rights '
            'reserved by danielbuechele"'
        ),
        licence="Creative Commons Attribution 2.0 (https://creativecommons.org/licenses/by/2.0/)",
        stated_in="sklearn/datasets/images/README.txt",
    ),
}


@dataclass(frozen=True)
class Crop:
    """One output file: a fixed crop of one source image."""

    out: str  # path relative to the output dir: <class>/<name>.<jpg|png>
    source: str  # key into SOURCES
    box: Box


# The whole dataset. Boxes are fixed by hand (no randomness); mixed sizes and aspect ratios.
CROPS: tuple[Crop, ...] = (
    Crop("cat/cat_01.jpg", "chelsea", (20, 0, 420, 300)),  # 400x300 whole face
    Crop("cat/cat_02.jpg", "chelsea", (100, 20, 340, 300)),  # 240x280 eyes and nose
    Crop("cat/cat_03.jpg", "chelsea", (110, 50, 370, 240)),  # 260x190 eyes close-up
    Crop("cat/cat_04.jpg", "chelsea", (0, 0, 300, 300)),  # 300x300 left side of face
    Crop("cat/cat_05.jpg", "chelsea", (160, 30, 451, 300)),  # 291x270 right side of face
    Crop("coffee/cup_01.jpg", "coffee", (70, 0, 490, 400)),  # 420x400 cup and saucer
    Crop("coffee/cup_02.jpg", "coffee", (160, 10, 420, 330)),  # 260x320 cup and spoon
    Crop("coffee/cup_03.jpg", "coffee", (150, 40, 430, 250)),  # 280x210 crema from above
    Crop("coffee/cup_04.jpg", "coffee", (0, 80, 400, 400)),  # 400x320 saucer, left half
    Crop("coffee/cup_05.png", "coffee", (180, 20, 420, 260)),  # 240x240 PNG, cup rim
    Crop("flower/flower_01.jpg", "flower", (100, 40, 520, 420)),  # 420x380 whole bloom
    Crop("flower/flower_02.jpg", "flower", (160, 70, 460, 427)),  # 300x357 bloom and bud
    Crop("flower/flower_03.jpg", "flower", (190, 100, 430, 340)),  # 240x240 petals close-up
    Crop("flower/flower_04.jpg", "flower", (40, 60, 440, 360)),  # 400x300 bloom, off-centre
    Crop("flower/flower_05.jpg", "flower", (250, 50, 530, 420)),  # 280x370 bloom, off-centre
    Crop("building/building_01.jpg", "china", (40, 10, 400, 427)),  # 360x417 whole pagoda
    Crop("building/building_02.jpg", "china", (0, 0, 420, 300)),  # 420x300 pagoda top, lake
    Crop("building/building_03.jpg", "china", (80, 20, 340, 280)),  # 260x260 upper tiers
    Crop("building/building_04.jpg", "china", (60, 140, 420, 400)),  # 360x260 lower tiers
    Crop("building/building_05.jpg", "china", (90, 100, 330, 427)),  # 240x327 tiers, portrait
)


def source_path(src: Source) -> Path:
    """Return the on-disk path of a bundled source image."""
    path = Path(str(files(src.package).joinpath(src.relpath)))
    if not path.is_file():
        raise FileNotFoundError(f"{src.distribution} does not ship {src.relpath}: {path}")
    return path


def sha256_file(path: Path) -> str:
    """Return the hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_crop(crop: Crop, out_dir: Path) -> Path:
    """Crop one source image and save it (no metadata) under ``out_dir``."""
    src_path = source_path(SOURCES[crop.source])
    with Image.open(src_path) as im:
        left, upper, right, lower = crop.box
        if left < 0 or upper < 0 or right > im.width or lower > im.height:
            raise ValueError(f"{crop.out}: box {crop.box} outside {im.width}x{im.height} source")
        tile = im.convert("RGB").crop(crop.box)
    dest = out_dir / crop.out
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.suffix == ".png":
        tile.save(dest, format="PNG", optimize=True)
    else:
        tile.save(dest, format="JPEG", quality=JPEG_QUALITY)
    return dest


def sources_markdown(out_dir: Path) -> str:
    """Render SOURCES.md for the generated files in ``out_dir``."""
    lines = [
        "# sample_data sources",
        "",
        "Small class-per-folder dataset of real photographs for trying out and benchmarking",
        "`augctl`. Every file is a plain crop (no resizing) of a photograph bundled inside an",
        "installed Python package, saved with Pillow (JPEG quality 85, or PNG), metadata stripped",
        "(the sources' embedded ICC profiles are all sRGB). Byte sizes below are for the Pillow",
        "build that generated them; other Pillow/libjpeg versions may encode slightly differently.",
        "",
        "Regenerate (offline, deterministic) from the repository root with:",
        "",
        "```",
        "python benchmarks/make_sample_data.py",
        "```",
        "",
        "It needs Pillow, scikit-image and scikit-learn installed (`pip install -e '.[bench]'`);",
        "the two packages are only used to locate their bundled image files.",
        "",
        "## Files",
        "",
        "Crop box is `(left, upper, right, lower)` in source-image pixels.",
        "",
        "| File | Size (px) | Bytes | Source image | Crop box |",
        "| --- | --- | --- | --- | --- |",
    ]
    for crop in CROPS:
        src = SOURCES[crop.source]
        left, upper, right, lower = crop.box
        nbytes = (out_dir / crop.out).stat().st_size
        lines.append(
            f"| `{crop.out}` | {right - left}x{lower - upper} | {nbytes} "
            f"| `{src.package}/{src.relpath}` | `{crop.box}` |"
        )
    lines += ["", "## Source images", ""]
    for key, src in SOURCES.items():
        path = source_path(src)
        lines += [
            f"### `{src.package}/{src.relpath}` ({key})",
            "",
            f"- Content: {src.description}",
            f"- Bundled in: {src.distribution} {version(src.distribution)}"
            f" (sha256 `{sha256_file(path)}`)",
            f"- Original source: {src.origin}",
            f"- Licence: {src.licence}",
            f"- Stated in: {src.stated_in}",
            "",
        ]
    lines += [
        "The two scikit-learn photographs are CC BY 2.0: keep the attribution above when",
        "redistributing the crops. The scikit-image photographs are CC0.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Generate all crops and SOURCES.md into the output directory."""
    parser = argparse.ArgumentParser(
        description="Build sample_data/ from photos bundled in scikit-image and scikit-learn."
    )
    parser.add_argument(
        "output_dir",
        nargs="?",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"where to write the dataset (default: {DEFAULT_OUTPUT})",
    )
    args = parser.parse_args(argv)
    out_dir: Path = args.output_dir
    for crop in CROPS:
        print(make_crop(crop, out_dir))
    (out_dir / "SOURCES.md").write_text(sources_markdown(out_dir), encoding="utf-8")
    print(out_dir / "SOURCES.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
