"""The manifest read as a stream and sorted in bounded memory: a run's last step, a resume
and a torn record's repair must not hold a manifest of millions of rows at once."""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

import pytest
from conftest import make_tree, read_manifest

import augctl
from augctl import api, manifest
from augctl.manifest import COLUMNS


def _reference(text: str) -> tuple[list[dict[str, str]], bool]:
    """The rows and torn flag the whole-text parser (before streaming) gave."""
    records = csv.reader(io.StringIO(text), strict=True)
    try:
        header = next(records, None)
    except csv.Error:
        header = None
    if header is None:
        return [], bool(text)
    if tuple(header) != COLUMNS:
        raise augctl.OutputError("not an augctl file")
    rows: list[dict[str, str]] = []
    torn = False
    try:
        for record in records:
            if len(record) != len(COLUMNS):
                torn = True
                break
            rows.append(dict(zip(COLUMNS, record)))
    except csv.Error:
        torn = True
    if not torn and rows and not text.endswith("\n"):
        rows.pop()
        torn = True
    return rows, torn


def _rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [
        {
            c: f"c{i % 3}/x{rng.randrange(n)}.jpg"
            if c == "output_path"
            else f"c{i % 3}"
            if c == "class"
            else f'[{{"op":"rotate","note":"a, \\"b\\"\\n{i}"}}]'
            if c == "ops"
            else f"{c}-{i}"
            for c in COLUMNS
        }
        for i in range(n)
    ]


def test_a_manifest_cut_anywhere_reads_as_the_whole_text_parser_read_it(tmp_path: Path) -> None:
    """At every byte a crash could cut an append at (inside quoted line breaks too), the
    streamed rows and the torn verdict are those of the parser that read the whole text."""
    text = manifest.csv_text(_rows(4), COLUMNS, header=True)
    path = tmp_path / "m.csv"
    header = len(manifest.csv_text([], COLUMNS, header=True))
    for cut in range(len(text) + 1):
        path.write_text(text[:cut], encoding="utf-8", newline="")
        if 0 < cut < header - 2:  # inside the header: not an augctl file, both said
            with pytest.raises(augctl.OutputError):
                _reference(text[:cut])
            with pytest.raises(augctl.OutputError):
                manifest.read_rows(str(path))
            continue
        rows, torn = _reference(text[:cut])
        assert manifest.read_rows(str(path)) == rows, cut
        assert manifest._torn(str(path)) == torn, cut


@pytest.mark.parametrize(("chunk", "fan_in"), [(1, 3), (1, 64), (7, 2), (1000, 64)])
def test_the_final_manifest_is_sorted_and_the_last_row_of_an_output_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, fan_in: int
) -> None:
    """Sorted through runs on disk when it is larger than a chunk (merged `fan_in` files at a
    time: it opened them all at once, past the open-file limit on a huge manifest), in
    memory when not: the same file, and no temporary file left."""
    monkeypatch.setattr(manifest, "SORT_CHUNK_ROWS", chunk)
    monkeypatch.setattr(manifest, "SORT_FAN_IN", fan_in)
    rows = _rows(200, seed=chunk)
    expected = {r["output_path"]: r for r in rows}  # a later row replaces an earlier one
    path = tmp_path / "manifest.csv"
    names: list[str] = []
    spill = manifest._spill
    monkeypatch.setattr(
        manifest,
        "_spill",
        lambda rows, name, spilled: names.append(name) or spill(rows, name, spilled),
    )
    count, per_class = manifest.write_sorted_manifest(str(path), iter(rows))
    # Named for the manifest they become: a killed run's next run, a shard's too, removes them.
    assert all(api._temp_target(Path(n + ".augctl-tmp").name) == "manifest.csv" for n in names)
    assert (not names) == (chunk >= len(rows)) and len(set(names)) == len(names)
    assert manifest.read_rows(str(path)) == [expected[k] for k in sorted(expected)]
    assert count == len(expected)
    assert dict(per_class) == {
        c: sum(r["class"] == c for r in expected.values()) for c in ("c0", "c1", "c2")
    }
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.csv"]


def test_a_run_whose_manifest_is_sorted_on_disk_is_the_same_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's manifest sorted through runs on disk (a chunk of 4 rows) equals one sorted in
    memory, byte for byte."""
    src = make_tree(tmp_path / "in", {"a": 4, "b": 3})
    recipe = "version: 1\nseed: 2\nvariants: 3\npipeline:\n  - hflip: {p: 0.5}\n"
    augctl.expand(src, tmp_path / "memory", augctl.load_recipe(recipe, name="r"), workers=1)
    monkeypatch.setattr(manifest, "SORT_CHUNK_ROWS", 4)
    augctl.expand(src, tmp_path / "disk", augctl.load_recipe(recipe, name="r"), workers=1)
    memory, disk = tmp_path / "memory" / "manifest.csv", tmp_path / "disk" / "manifest.csv"
    assert memory.read_bytes() == disk.read_bytes() and len(read_manifest(tmp_path / "disk")) == 21
    assert not [p for p in (tmp_path / "disk").iterdir() if p.name.endswith(".augctl-tmp")]


def test_a_killed_sorts_files_are_a_shards_own_to_remove() -> None:
    """A sort's temporary files are named after the manifest they become, so the next run of
    the shard that left them removes them (they were no shard's, and stayed)."""
    from augctl import api

    name = "manifest-1-of-4.csv.sort12-4321.augctl-tmp"
    assert api._temp_target(name) == "manifest-1-of-4.csv"
