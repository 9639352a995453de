"""Build the benchmark corpora from photographs that ship inside scikit-image and scikit-learn.

Two class-per-folder trees, offline and deterministic (for a given Pillow and numpy build)::

    python benchmarks/make_corpus.py [OUT]      # default: bench-data/ (git-ignored)

* ``OUT/imagenet``: 400 JPEGs (q90) in 10 classes, 400-640 px on the long side, each a
  seeded crop, scale and flip of one of the photos below (ImageNet-like sizes).
* ``OUT/large``: 40 JPEGs (q90) near 3000x2000, upscaled with LANCZOS from a seeded crop,
  with a little seeded grain so they compress like camera photos; one in four is stored
  landscape with EXIF orientation 6 (upright it is portrait), as phones write them.

``--quick`` makes a tiny version of both from scikit-learn's two photos (a smoke test of
the benchmark, not for timing).
The photos are located with ``importlib.resources``; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import io
import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "bench-data"
QUALITY = 90
ORIENTATION = 0x0112  # EXIF tag


@dataclass(frozen=True)
class Photo:
    """One bundled photograph: the package that ships it and its path inside the package."""

    package: str
    relpath: str


# One class per photo (the motorcycle class draws from both stereo views).
CLASSES: dict[str, tuple[Photo, ...]] = {
    "astronaut": (Photo("skimage", "data/astronaut.png"),),
    "cat": (Photo("skimage", "data/chelsea.png"),),
    "coffee": (Photo("skimage", "data/coffee.png"),),
    "galaxy": (Photo("skimage", "data/hubble_deep_field.jpg"),),
    "tissue": (Photo("skimage", "data/ihc.png"),),
    "motorcycle": (
        Photo("skimage", "data/motorcycle_left.png"),
        Photo("skimage", "data/motorcycle_right.png"),
    ),
    "retina": (Photo("skimage", "data/retina.jpg"),),
    "rocket": (Photo("skimage", "data/rocket.jpg"),),
    "pagoda": (Photo("sklearn", "datasets/images/china.jpg"),),
    "flower": (Photo("sklearn", "datasets/images/flower.jpg"),),
}


@dataclass(frozen=True)
class Spec:
    """How many images of what size one corpus gets."""

    per_class: int
    long_side: tuple[int, int]  # inclusive range of the long side in pixels
    aspect: tuple[float, float]  # range of long/short
    grain: float  # standard deviation of the added noise, in 8-bit levels
    exif_every: int  # every n-th image is stored rotated with EXIF orientation 6 (0: never)
    seed: int  # keeps the two corpora's draws apart


FULL = {
    "imagenet": Spec(40, (400, 640), (1.0, 1.6), 0.0, 0, seed=1),
    "large": Spec(4, (2900, 3100), (1.45, 1.55), 4.0, 4, seed=2),
}
QUICK = {
    "imagenet": Spec(3, (400, 640), (1.0, 1.6), 0.0, 0, seed=1),
    "large": Spec(3, (900, 1000), (1.45, 1.55), 4.0, 2, seed=2),
}
# The quick corpus uses scikit-learn's photos only: the test extra has scikit-learn, so the
# benchmark's smoke test runs wherever the tests do.
QUICK_PACKAGES = ("sklearn",)


def photo_path(photo: Photo) -> Path:
    """The on-disk path of a bundled photo."""
    path = Path(str(files(photo.package).joinpath(photo.relpath)))
    if not path.is_file():
        raise FileNotFoundError(f"{photo.package} does not ship {photo.relpath}")
    return path


def make_image(
    base: Image.Image, spec: Spec, rng: np.random.Generator, portrait: bool | None
) -> Image.Image:
    """A seeded crop of `base`, scaled to the spec's size, maybe flipped, with grain.

    `portrait` None follows the crop's shape.
    """
    w, h = base.size
    frac = 0.55 + 0.45 * rng.random()
    cw, ch = max(16, round(w * frac)), max(16, round(h * frac))
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    tile = base.crop((left, top, left + cw, top + ch))
    long_side = int(rng.integers(spec.long_side[0], spec.long_side[1] + 1))
    aspect = spec.aspect[0] + (spec.aspect[1] - spec.aspect[0]) * rng.random()
    short = round(long_side / aspect)
    if portrait is None:
        portrait = ch > cw
    size = (short, long_side) if portrait else (long_side, short)
    out = tile.resize(size, Image.Resampling.LANCZOS)
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    gain = 0.9 + 0.2 * rng.random()
    out = out.point([min(255, round(v * gain)) for v in range(256)] * 3)
    if spec.grain:
        arr = np.asarray(out, dtype=np.int16)
        noise = rng.normal(0.0, spec.grain, arr.shape).astype(np.int16)
        out = Image.fromarray(np.clip(arr + noise, 0, 255).astype(np.uint8), "RGB")
    return out


def save_jpeg(image: Image.Image, dest: Path, exif_rotated: bool) -> None:
    """Save as JPEG q90; with `exif_rotated`, stored turned and tagged with orientation 6."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    if exif_rotated:
        exif = Image.Exif()
        exif[ORIENTATION] = 6  # the viewer turns it 90 degrees clockwise to show it upright
        image.transpose(Image.Transpose.ROTATE_90).save(
            buf, format="JPEG", quality=QUALITY, exif=exif.tobytes()
        )
    else:
        image.save(buf, format="JPEG", quality=QUALITY)
    dest.write_bytes(buf.getvalue())


def build(out_dir: Path, name: str, spec: Spec, packages: tuple[str, ...] = ()) -> list[str]:
    """Write one corpus under `out_dir/name` (only photos from `packages`, if given)."""
    written = []
    for c, (cls, photos) in enumerate(CLASSES.items()):
        if packages and any(p.package not in packages for p in photos):
            continue
        bases = [Image.open(photo_path(p)).convert("RGB") for p in photos]
        for i in range(spec.per_class):
            rng = np.random.default_rng([spec.seed, c, i])
            rotated = bool(spec.exif_every) and i % spec.exif_every == spec.exif_every - 1
            # Large photos are stored landscape, as cameras store them; EXIF turns some upright.
            portrait = rotated if spec.exif_every else None
            image = make_image(bases[i % len(bases)], spec, rng, portrait)
            rel = f"{cls}/{cls}_{i:03d}.jpg"
            save_jpeg(image, out_dir / name / rel, rotated)
            written.append(rel)
    return written


def main(argv: list[str] | None = None) -> int:
    """Build both corpora into the output directory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", nargs="?", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--quick", action="store_true", help="a tiny corpus for smoke tests")
    args = parser.parse_args(argv)
    specs, packages = (QUICK, QUICK_PACKAGES) if args.quick else (FULL, ())
    made = {name: len(build(args.output_dir, name, spec, packages)) for name, spec in specs.items()}
    (args.output_dir / "corpus.json").write_text(
        json.dumps({"quick": args.quick, "images": made}, indent=2) + "\n"
    )
    for name, count in made.items():
        print(f"{args.output_dir / name}: {count} images")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
