"""Does augmentation help? Train one classifier on scikit-learn's digits with and without augctl.

The data is scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes, no
download), each upscaled to a 32x32 grayscale image (values 0-16 mapped to 0-255, bilinear
resampling) so that rotations and zooms act on more than a handful of pixels. For every
training size and seed, a stratified training subset is written as a class-per-folder tree
and expanded with `augctl.expand` at each N; the same classifier (an RBF support-vector
machine on the 1,024 pixels, fixed hyper-parameters) is then trained on

* ``originals``: the training images alone;
* ``duplicated``: the training images repeated N+1 times, a control with as many samples as
  the augmented set but no new information;
* ``augmented``: the training images plus their N augmented variants, one row per recipe;

and scored on every image left out of training: as they are (``clean``) and after a random
rotation of up to 15 degrees and a shift of up to 2 pixels made here with Pillow, from a
fixed seed and independently of augctl (``perturbed``). The table gives the mean and sample
standard deviation of the accuracy over the seeds. Seed k draws the k-th training subset and
is passed to augctl as the recipe seed, so each repetition sees different variants.

    python benchmarks/accuracy.py [--sizes 50 100 200] [--seeds 3] [--variants 5 10]
                                  [--recipe configs/digits.yaml ...] [--workers 2] [--smoke]

Needs the ``bench`` extra (scikit-learn). Outputs of recipes that write colour or another
size are read back as 32x32 grayscale, the classifier's input.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

import augctl

if TYPE_CHECKING:
    from sklearn.svm import SVC

# scikit-learn is imported where it is used: augctl's workers re-import this
# script as their main module, and importing it there would cost a second per worker.

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RECIPE = "configs/digits.yaml"
SIDE = 32
PERTURB_SEED = 20_240_601
MAX_DEGREES = 15.0
MAX_SHIFT = 2
SMOKE_TEST_IMAGES = 200


@dataclass(frozen=True)
class Digits:
    """The digits at 32x32, each also in one fixed perturbed version, with their labels."""

    images: np.ndarray  # (n, SIDE, SIDE) uint8
    perturbed: np.ndarray  # (n, SIDE, SIDE) uint8
    labels: np.ndarray  # (n,) int


@dataclass(frozen=True)
class Trial:
    """One classifier trained on one training set and scored on both test sets."""

    size: int
    seed: int
    condition: str
    recipe: str  # "" unless condition is "augmented"
    variants: int  # 0 for "originals"
    train_images: int
    clean: float
    perturbed: float


def load_digits_32() -> Digits:
    """scikit-learn's digits upscaled to SIDE x SIDE, plus their perturbed test versions."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = np.stack([_upscale(d) for d in data.images])
    return Digits(images=images, perturbed=perturb(images, PERTURB_SEED), labels=data.target)


def _upscale(digit: np.ndarray) -> np.ndarray:
    # Bilinear keeps the strokes smooth without the ringing of bicubic on an 8x8 source.
    grey = Image.fromarray(np.round(digit * 255 / 16).astype(np.uint8), "L")
    return np.asarray(grey.resize((SIDE, SIDE), Image.Resampling.BILINEAR))


def perturb(images: np.ndarray, seed: int) -> np.ndarray:
    """Each image rotated by up to MAX_DEGREES and shifted by up to MAX_SHIFT pixels."""
    rng = np.random.default_rng(seed)
    out = np.empty_like(images)
    for i, image in enumerate(images):
        angle = float(rng.uniform(-MAX_DEGREES, MAX_DEGREES))
        dx, dy = (int(v) for v in rng.integers(-MAX_SHIFT, MAX_SHIFT + 1, size=2))
        moved = Image.fromarray(image, "L").rotate(
            angle, Image.Resampling.BILINEAR, translate=(dx, dy), fillcolor=0
        )
        out[i] = np.asarray(moved)
    return out


def features(images: np.ndarray) -> np.ndarray:
    """Pixels in [0, 1], one row per image."""
    return images.reshape(len(images), -1).astype(np.float32) / 255


def make_classifier() -> SVC:
    """The one classifier every condition trains; gamma is about 'scale' on the originals."""
    from sklearn.svm import SVC

    return SVC(kernel="rbf", C=10.0, gamma=0.01)


def write_tree(root: Path, images: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> None:
    """Write root/<digit>/<id>.png for each image."""
    for image, label, i in zip(images, labels, ids):
        folder = root / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, "L").save(folder / f"{int(i):04d}.png")


def read_variants(out_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The augmented images augctl wrote (variant >= 1) and their labels, via manifest.csv."""
    with open(out_dir / "manifest.csv", newline="", encoding="utf-8") as f:
        # Variant 0 (a recipe with include_originals) is an original, already in the set.
        rows = [r for r in csv.DictReader(f) if int(r["variant"]) >= 1]
    images, labels = [], []
    for row in rows:
        with Image.open(out_dir / row["output_path"]) as im:
            grey = im.convert("L")
        if grey.size != (SIDE, SIDE):
            grey = grey.resize((SIDE, SIDE), Image.Resampling.BILINEAR)
        images.append(np.asarray(grey))
        labels.append(int(row["class"]))
    return np.array(images, dtype=np.uint8).reshape(-1, SIDE, SIDE), np.asarray(labels)


def split(
    labels: np.ndarray, size: int, seed: int, max_test: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified indices of `size` training images and of the (optionally capped) rest."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    train, test = train_test_split(index, train_size=size, stratify=labels, random_state=seed)
    if max_test is not None and max_test < len(test):
        test, _ = train_test_split(
            test, train_size=max_test, stratify=labels[test], random_state=seed
        )
    return np.sort(train), np.sort(test)


def run(
    digits: Digits,
    *,
    sizes: Sequence[int],
    seeds: int,
    variants: Sequence[int],
    recipes: Mapping[str, Path],
    workers: int,
    workdir: Path,
    max_test: int | None = None,
    log: Callable[[str], None] | None = None,
) -> list[Trial]:
    """Every trial of the benchmark (`recipes`: table label -> recipe file).

    The training trees and augctl's outputs are left under `workdir`.
    """
    trials = []
    for size in sizes:
        for seed in range(seeds):
            trials += run_split(digits, size, seed, variants, recipes, workers, workdir, max_test)
            if log:
                log(f"size {size}, seed {seed}: done")
    return trials


def run_split(
    digits: Digits,
    size: int,
    seed: int,
    variants: Sequence[int],
    recipes: Mapping[str, Path],
    workers: int,
    workdir: Path,
    max_test: int | None,
) -> list[Trial]:
    """The trials on one training subset: originals, then per N the control and each recipe."""
    train, test = split(digits.labels, size, seed, max_test)
    x_train, y_train = digits.images[train], digits.labels[train]
    y_test = digits.labels[test]
    x_clean, x_pert = features(digits.images[test]), features(digits.perturbed[test])

    def score(images: np.ndarray, labels: np.ndarray, condition: str, recipe: str, n: int) -> Trial:
        model = make_classifier().fit(features(images), labels)
        clean, pert = model.score(x_clean, y_test), model.score(x_pert, y_test)
        return Trial(size, seed, condition, recipe, n, len(labels), float(clean), float(pert))

    base = workdir / f"size{size}-seed{seed}"
    write_tree(base / "train", x_train, y_train, train)
    trials = [score(x_train, y_train, "originals", "", 0)]
    for n in variants:
        copies = (np.tile(x_train, (n + 1, 1, 1)), np.tile(y_train, n + 1))
        trials.append(score(*copies, "duplicated", "", n))
        for r, (label, recipe) in enumerate(recipes.items()):
            out = base / f"aug{r}-{recipe.stem}-n{n}"
            # seed: each repetition gets its own variants; overwrite: a reused --workdir may
            # hold a run of an edited recipe.
            summary = augctl.expand(
                base / "train", out, recipe, workers=workers, variants=n, seed=seed, overwrite=True
            )
            if summary.skipped:
                raise RuntimeError(f"{label}: augctl skipped {summary.skipped} sources, see {out}")
            x_aug, y_aug = read_variants(out)
            if len(y_aug) != n * size:
                raise RuntimeError(
                    f"{label}: expected {n * size} variants in {out}, read {len(y_aug)}"
                )
            augmented = (np.concatenate([x_train, x_aug]), np.concatenate([y_train, y_aug]))
            trials.append(score(*augmented, "augmented", label, n))
    return trials


def summarize(trials: Sequence[Trial]) -> list[dict[str, str]]:
    """One table row per size x condition x recipe x N: mean ± std over the seeds."""
    groups: dict[tuple, list[Trial]] = {}
    for t in trials:
        groups.setdefault((t.size, t.condition, t.recipe, t.variants), []).append(t)
    rows = []
    for (size, condition, recipe, n), group in groups.items():
        rows.append(
            {
                "train size": str(size),
                "condition": condition,
                "recipe": recipe or "-",
                "N": str(n) if n else "-",
                "train images": str(group[0].train_images),
                "clean": _mean_std([t.clean for t in group]),
                "perturbed": _mean_std([t.perturbed for t in group]),
            }
        )
    return rows


def _mean_std(values: list[float]) -> str:
    """'mean ± sample standard deviation' (0 for a single value)."""
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{np.mean(values):.3f} ± {std:.3f}"


def format_table(rows: Sequence[dict[str, str]]) -> str:
    """A Markdown table, readable in a terminal and pasteable into the README."""
    head = list(rows[0])
    widths = [max(len(h), *(len(r[h]) for r in rows)) for h in head]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += ["| " + " | ".join(r[h].ljust(w) for h, w in zip(head, widths)) + " |" for r in rows]
    return "\n".join(lines)


def resolve_recipe(arg: str) -> Path:
    """The recipe file as given, else relative to the repository (so defaults work anywhere)."""
    path = Path(arg)
    in_repo = REPO_ROOT / path
    return in_repo if not path.exists() and not path.is_absolute() and in_repo.exists() else path


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line; see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200])
    p.add_argument("--seeds", type=int, default=3, help="repetitions (seeds 0..K-1)")
    p.add_argument("--variants", type=int, nargs="+", default=[5, 10], help="values of N")
    p.add_argument(
        "--recipe", action="append", help=f"repeatable; default {DEFAULT_RECIPE} (from the repo)"
    )
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--workdir", type=Path, help="keep the trees and outputs here (default: temp)")
    p.add_argument(
        "--smoke",
        action="store_true",
        help=f"a few seconds: 20 training images, 1 seed, N=2, {SMOKE_TEST_IMAGES} test images",
    )
    args = p.parse_args(argv)
    if args.smoke:
        args.sizes, args.seeds, args.variants = [20], 1, [2]
    if args.seeds < 1 or min(args.sizes) < 10 or min(args.variants) < 1:
        p.error("need --seeds >= 1, every --sizes >= 10 (one image per class), --variants >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its table on stdout (progress on stderr)."""
    args = parse_args(argv)
    recipes = {r: resolve_recipe(r) for r in args.recipe or [DEFAULT_RECIPE]}

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = time.monotonic()
    digits = load_digits_32()
    with tempfile.TemporaryDirectory(prefix="augctl-accuracy-") as tmp:
        try:
            trials = run(
                digits,
                sizes=args.sizes,
                seeds=args.seeds,
                variants=args.variants,
                recipes=recipes,
                workers=args.workers,
                workdir=args.workdir or Path(tmp),
                max_test=SMOKE_TEST_IMAGES if args.smoke else None,
                log=log,
            )
        except augctl.AugctlError as exc:
            log(f"accuracy.py: error: {exc}")
            return 2
    print(format_table(summarize(trials)))
    log(f"{len(trials)} trainings in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
