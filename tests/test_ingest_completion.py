"""write_batches marks its store complete only when the store's root records every
batch of the run: a root written over by an older commit (a worker thought lost that
ran on) leaves the store incomplete, with the remedy, never with rows lost."""

from __future__ import annotations

import json

import dask
import metatensor
import pytest
from ingest_support import renumbered
from test_ingest_general import sorted_batch

import metatensor_dask as mtd
from metatensor_dask.io.ingest_run import complete
from metatensor_dask.io.zarr_store import describe, open_store
from metatensor_dask.testing import assert_equal_to_metatensor


class _Stopped(Exception):
    pass


def _stopping_at_the_third_batch(items: list[int]) -> metatensor.TensorMap:
    if items[0] == 4:
        raise _Stopped
    return sorted_batch(items)


def test_a_root_that_records_fewer_batches_is_not_marked_complete(tmp_path):
    path = tmp_path / "t.zarr"
    with pytest.raises(mtd.MetatensorDaskError, match="batch 2"):
        mtd.write_batches(_stopping_at_the_third_batch, range(6), path, 2, quiet=True)
    older_root = (path / "zarr.json").read_bytes()
    mtd.write_batches(sorted_batch, range(6), path, 2, resume=True, quiet=True)
    run = json.loads(older_root)["attributes"]["metatensor_dask"]["batches"]
    assert run["committed"] == 2

    (path / "zarr.json").write_bytes(older_root)  # a late commit of batch 1
    store = open_store(path, None, writable=True)
    with pytest.raises(
        mtd.DamagedStoreError,
        match=r"left incomplete: write_batches saw its 3 batches committed, but the store's "
        r"root document records 2 .*resume=True",
    ):
        complete(store, describe(store), run, 3)
    with pytest.raises(mtd.IncompleteStoreError):
        mtd.open_zarr(path)

    mtd.write_batches(sorted_batch, range(6), path, 2, resume=True, quiet=True)
    expected = metatensor.join(
        [renumbered(sorted_batch([start, start + 1]), start) for start in (0, 2, 4)],
        axis="samples",
        different_keys="union",
    )
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), expected)


def test_a_run_whose_lock_is_taken_away_says_the_batch_stored_nothing(tmp_path):
    """The lock deleted while a batch computes (another writer took the store over,
    and gave it up): the batch's commit is refused before it stores anything, and the
    error says so rather than that the store may mix two writes."""
    path = tmp_path / "t.zarr"

    def losing_the_lock(items: list[int]) -> metatensor.TensorMap:
        if items[0] == 2:
            (path / ".lock").unlink()
        return sorted_batch(items)

    with (
        dask.config.set(scheduler="synchronous"),
        pytest.raises(mtd.MetatensorDaskError, match="this write stored nothing more") as error,
    ):
        mtd.write_batches(losing_the_lock, range(6), path, 2, quiet=True)
    assert "mix" not in str(error.value)
