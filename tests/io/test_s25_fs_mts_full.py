"""A ``.mts`` save that runs out of room (a file size limit in a subprocess, standing
for a full disk) raises metatensor's error naming the file, the cause and the remedy,
and leaves the file as it was (or no file); saved again with room, it loads in
metatensor as the tensor."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import metatensor
import pytest
from test_s25_fs_full_disk import LimitedRun, run_limited
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd

pytestmark = pytest.mark.xdist_group("serial")

#: Saves ``make_metatensor(1)`` to ``store``.
SAVE = "mtd.save(store, mtd.from_metatensor(make_metatensor(1)))"

LIMITS = (100, 20_000, 60_000)


@dataclass(frozen=True)
class Saved:
    """A save to ``path`` with files limited: what it raised (the error's type and
    message), and the file's bytes before it (``None``: no file)."""

    path: Path
    said: str
    before: bytes | None


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[tuple[int, bool], Saved]:
    """Each save with files limited to ``limit`` bytes, onto an ``existing`` file or
    none, by ``(limit, existing)``: all run by one new interpreter (one each took a
    second or two more)."""
    root = tmp_path_factory.mktemp("mts-full")
    runs, before = {}, {}
    for limit in LIMITS:
        for existing in (False, True):
            path = root / f"{limit}-{existing}" / "t.mts"
            path.parent.mkdir()
            if existing:
                metatensor.save(str(path), make_metatensor(3, n_samples=(2, 1, 1)))
            before[(limit, existing)] = path.read_bytes() if existing else None
            runs[(limit, existing)] = LimitedRun(path, limit, SAVE)
    results = run_limited({f"{limit}-{existing}": run for (limit, existing), run in runs.items()})
    assert len(results) == len(runs), results
    done = {}
    for (limit, existing), run in runs.items():
        result = results[f"{limit}-{existing}"]
        assert isinstance(result, list), result
        done[(limit, existing)] = Saved(
            run.store, f"{result[0]} {result[2]}", before[(limit, existing)]
        )
    return done


@pytest.mark.parametrize("limit", LIMITS)
@pytest.mark.parametrize("existing", [False, True])
def test_a_save_without_room_leaves_the_file_as_it_was(saved, limit, existing):
    path, said, before = (
        saved[(limit, existing)].path,
        saved[(limit, existing)].said,
        saved[(limit, existing)].before,
    )
    assert said.startswith(f"MetatensorError io error: File too large (os error 27): '{path}'")
    assert "ulimit -f" in said, said
    if existing:
        assert "the file is as it was" in said, said
        assert path.read_bytes() == before
    else:
        assert "no file was written" in said, said
    assert sorted(os.listdir(path.parent)) == (["t.mts"] if existing else [])
    # saved again with room, in this process (a new interpreter took a second or two)
    mtd.save(str(path), mtd.from_metatensor(make_metatensor(1)))
    assert metatensor.equal(metatensor.load(str(path)), make_metatensor(1))
