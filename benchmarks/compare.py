"""augctl against albumentations (OpenCV) and Augmentor on the benchmark corpora.

Not part of the test suite, and never a dependency: run it in a separate environment::

    python -m venv /tmp/vbench && /tmp/vbench/bin/pip install albumentations \\
        opencv-python-headless Augmentor click pyyaml tqdm scikit-image scikit-learn
    /tmp/vbench/bin/python benchmarks/compare.py [--corpus bench-data] [--workers 1]

Each library runs the benchmark recipe's closest equivalent (rotate ±15° p=0.8, hflip
p=0.5, a random crop of 60-100% of the area resized to 224x224, brightness and contrast
0.8-1.2) in the same pool as the floor and augctl (``bench.py``): one task per source,
decoded once, 5 variants encoded as JPEG q90 and written. Medians of ``--repeats`` runs,
interleaved as in ``bench.py`` (ratios: the median of each repeat's own ratio, and range).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import bench

VARIANTS_WRITTEN = "{dest}_{kind}{k:03d}.jpg"
_CACHE: dict[str, Any] = {}  # per worker: the library's pipeline, built once


def _albumentations_task(src: str, dest_stem: str, n: int) -> int:
    import albumentations as A
    import cv2

    if "albumentations" not in _CACHE:
        _CACHE["albumentations"] = A.Compose(
            [
                A.Rotate(limit=15, border_mode=cv2.BORDER_CONSTANT, p=0.8),
                A.HorizontalFlip(p=0.5),
                A.RandomResizedCrop(size=(224, 224), scale=(0.6, 1.0)),
                A.ColorJitter(
                    brightness=(0.8, 1.2), contrast=(0.8, 1.2), saturation=(1, 1), hue=(0, 0), p=1.0
                ),
            ]
        )
    transform = _CACHE["albumentations"]
    image = cv2.imread(src, cv2.IMREAD_COLOR)  # applies EXIF orientation, as augctl does
    for k in range(1, n + 1):
        out = transform(image=image)["image"]
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, bench.QUALITY])
        with open(VARIANTS_WRITTEN.format(dest=dest_stem, kind="albu", k=k), "wb") as f:
            f.write(buf.tobytes())
    return n


def _augmentor_task(src: str, dest_stem: str, n: int) -> int:
    import io

    import Augmentor
    from PIL import Image, ImageOps

    if "augmentor" not in _CACHE:
        p = Augmentor.Pipeline()
        p.rotate(probability=0.8, max_left_rotation=15, max_right_rotation=15)
        p.flip_left_right(probability=0.5)
        p.crop_random(probability=1, percentage_area=0.6, randomise_percentage_area=True)
        p.resize(probability=1, width=224, height=224)
        p.random_brightness(probability=1, min_factor=0.8, max_factor=1.2)
        p.random_contrast(probability=1, min_factor=0.8, max_factor=1.2)
        _CACHE["augmentor"] = p.torch_transform()
    transform = _CACHE["augmentor"]
    with open(src, "rb") as f:
        image = ImageOps.exif_transpose(Image.open(io.BytesIO(f.read())))
    for k in range(1, n + 1):
        buf = io.BytesIO()
        transform(image).convert("RGB").save(buf, format="JPEG", quality=bench.QUALITY)
        with open(VARIANTS_WRITTEN.format(dest=dest_stem, kind="augm", k=k), "wb") as f:
            f.write(buf.getvalue())
    return n


bench.TASKS.update(albumentations=_albumentations_task, augmentor=_augmentor_task)
bench.PRELOAD.update(albumentations=("albumentations", "cv2"), augmentor=("Augmentor", "PIL.Image"))
KINDS = ("floor", "augctl", "augctl+opencv", "albumentations", "augmentor")


def main(argv: list[str] | None = None) -> int:
    """Time every library on every corpus and print a table of images/s and ratios."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_run":
        kind, corpus, out, workers = argv[1:]
        print(bench.json.dumps(bench._run(kind, corpus, out, int(workers))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=bench.REPO_ROOT / "bench-data")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--only", choices=bench.CORPORA, nargs="+", default=list(bench.CORPORA))
    args = parser.parse_args(argv)
    bench._ensure_corpus(args.corpus, quick=False)
    scratch = args.corpus / "_out"
    print(
        f"| corpus | workers | {' | '.join(f'{k} img/s' for k in KINDS)} "
        f"| {' | '.join(f'{k}/floor' for k in KINDS[1:])} |"
    )
    print("|---|---:|" + "---:|" * (2 * len(KINDS) - 1))
    for name in args.only:
        runs: dict[str, list[float]] = {k: [] for k in KINDS}
        for repeat in range(args.repeats):
            for kind in bench.in_turn(KINDS, repeat):
                r = bench._child(
                    kind,
                    str(args.corpus / name),
                    str(scratch / kind),
                    str(args.workers),
                    script=__file__,
                )
                runs[kind].append(r["images"] / r["seconds"])
        rate = {k: statistics.median(v) for k, v in runs.items()}
        cells = " | ".join(f"{rate[k]:.1f}" for k in KINDS)
        ratios = " | ".join(bench._paired(runs[k], runs["floor"]) for k in KINDS[1:])
        print(f"| {name} | {args.workers} | {cells} | {ratios} |", flush=True)
    bench.shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
