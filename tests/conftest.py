"""Shared fixtures: small generated datasets and helpers to read outputs back."""

from __future__ import annotations

import csv
import hashlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from augctl import pool

REPO = Path(__file__).resolve().parent.parent
# Whether this platform's pool forks its workers from a fork server (not Windows).
FORKSERVER = pool.pool_context().get_start_method() == "forkserver"
SAMPLE_DATA = REPO / "sample_data"
CONFIGS = REPO / "configs"

SMALL_RECIPE = """\
version: 1
seed: 7
variants: 3
pipeline:
  - rotate: {degrees: [-20, 20], p: 0.8}
  - hflip: {p: 0.5}
  - one_of:
      - brightness: {factor: [0.7, 1.3]}
      - contrast: {factor: [0.7, 1.3]}
  - random_resized_crop: {size: [32, 32], scale: [0.5, 1.0]}
"""


def photo(seed: int, size: tuple[int, int] = (64, 48), mode: str = "RGB") -> Image.Image:
    """A deterministic image with structure (gradients plus noise), not a flat colour."""
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], axis=-1)
    arr = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB").convert(mode)


def make_tree(root: Path, layout: dict[str, int], ext: str = ".jpg", size=(64, 48)) -> Path:
    """Create root/<class>/img_<i><ext> for each class in `layout` (class -> count)."""
    for c, (cls, count) in enumerate(sorted(layout.items())):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            photo(c * 100 + i, size).save(root / cls / f"img_{i}{ext}")
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small dataset: 3 classes, 7 images."""
    return make_tree(tmp_path / "in", {"cat": 3, "dog": 2, "fox": 2})


@pytest.fixture
def recipe_file(tmp_path: Path) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(SMALL_RECIPE)
    return path


def augctl_cmd(*args: object) -> list[str]:
    """The command line that runs augctl in a fresh interpreter (for subprocess tests)."""
    return [sys.executable, "-m", "augctl", *map(str, args)]


def read_manifest(out: Path, name: str = "manifest.csv") -> list[dict[str, str]]:
    with open(out / name, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def output_files(out: Path) -> dict[str, bytes]:
    """Every image written under OUT (relative POSIX path -> bytes), bookkeeping excluded."""
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.parent != out
    }


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def env_with_site(site: Path) -> dict[str, str]:
    """This environment with `site` first on PYTHONPATH: its sitecustomize.py then runs in
    every Python process started with it, the pool's fork server and workers included."""
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, ...); None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:  # gone (ESRCH while reading: gone meanwhile)
        return None


def proc_alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie (Linux /proc)."""
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def proc_cmdline(pid: int) -> bytes:
    """A process's command line, NUL-separated; empty if it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def proc_parent(pid: int) -> int | None:
    stat = _stat(pid)
    return None if stat is None else int(stat[1])


def proc_children(pid: int) -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and proc_parent(int(e)) == pid]


def wait_until(predicate: Callable[[], object], seconds: float) -> bool:
    """Poll `predicate` until it is true or `seconds` pass; its last answer."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


def wait_for_fork_server(proc: Any, with_worker: bool, seconds: float = 60) -> int | None:
    """The pid of `proc`'s fork server once it runs (and has forked a worker, if asked); None
    if `proc` ends or `seconds` pass first. Polled often: a server starts in a fraction of
    a second."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        for child in proc_children(proc.pid):
            if b"forkserver" in proc_cmdline(child) and (not with_worker or proc_children(child)):
                return child
        time.sleep(0.002)
    return None
