"""An append of a map that metatensor loaded from a file (several gradients, int
values, a sharded store), killed (SIGKILL) at random moments in another process: the
store reads as before or as after it, and ``resume=True`` in this process, with the
map loaded here again, finishes it (or finds it done). Metatensor gives the gradients
of a map it loads in an order that changes from one process to the next: the resume
must know the tensor all the same."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import cut_writers
import dask
import metatensor
import numpy as np
import pytest
from forked_process import Forked, forked
from ingest_support import renumbered
from kill_support import KILLS, SEED, killed_after
from test_s24_append_random import _batch, _layout

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

pytestmark = pytest.mark.xdist_group("serial")

SETTINGS = {"metatensor_dask.shard-chunks": 2, "metatensor_dask.compressor": "zstd"}


def _maps() -> tuple[metatensor.TensorMap, metatensor.TensorMap]:
    """Two batches of one layout with three gradients and int32 values; the second
    numbers its systems from 10 (``"next"`` never makes them repeat a stored one)."""
    rng = np.random.default_rng(7)
    layout = _layout(rng)
    layout.samples, layout.dtype = ["atom", "system"], np.int32
    layout.gradients = {
        "positions": ([], ["system", "atom"]),
        "strain": (layout.gradients.get("strain", ([], []))[0], []),
        "cell": ([], []),
    }
    first = _batch(layout, rng, 0.0)
    second = renumbered(_batch(layout, rng, 0.0), 10)
    assert len(first) and len(second)
    return first, second


def _largest_system(tensor: metatensor.TensorMap) -> int:
    found = [int(max(block.samples.column("system"), default=-1)) for block in tensor]
    return max(found, default=-1)


def _rows(tensor) -> int:
    """The samples of every block of ``tensor``."""
    return sum(len(block.samples) for block in tensor.blocks())


def _appending(store: Path, source: Path) -> Forked:
    """The append of ``source`` to ``store`` in another process (forked from a server
    that imported everything once, and never loaded a map), once it is ready."""
    return forked(cut_writers.append_loaded, str(store), str(source), SETTINGS)


def test_an_append_killed_at_random_moments_resumes_in_another_process(tmp_path):
    first, second = _maps()
    source = tmp_path / "second.mts"
    metatensor.save(str(source), second)
    before = tmp_path / "before.zarr"
    with dask.config.set(SETTINGS):
        mtd.from_metatensor(first).to_zarr(before, chunks=3)
    after = metatensor.join(
        [first, renumbered(second, _largest_system(first) + 1)],
        axis="samples",
        different_keys="union",
    )
    delays = random.Random(SEED)
    for kill in range(KILLS + 1):
        store = tmp_path / f"killed-{kill}.zarr"
        shutil.copytree(before, store)
        output = killed_after(_appending(store, source), delays.uniform(0.0, 2.0))
        stored = mtd.open_zarr(store).compute()
        as_before = _rows(stored) == _rows(first)
        assert_equal_to_metatensor(stored, first if as_before else after)
        with dask.config.set(SETTINGS):
            mtd.from_metatensor(metatensor.load(str(source))).to_zarr(
                store, append_dim="samples", renumber={"system": "next"}, chunks=2, resume=True
            )
        assert_equal_to_metatensor(mtd.open_zarr(store).compute(), after), output
        report = mtd.verify(store)
        assert report.ok, report.problems
