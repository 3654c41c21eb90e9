"""``shard-chunks`` beyond what a shard index can hold in memory (16 bytes per chunk of
the shard, allocated whole) is refused before anything is written; the largest value
allowed writes a store that reads back as metatensor wrote it."""

from __future__ import annotations

import dask
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd


def _tensor() -> metatensor.TensorMap:
    values = np.random.default_rng(5).standard_normal((7, 3))
    block = metatensor.TensorBlock(
        values, metatensor.Labels.range("s", 7), [], metatensor.Labels.range("p", 3)
    )
    return metatensor.TensorMap(metatensor.Labels.range("k", 1), [block])


@pytest.mark.parametrize("shards", [2**16 + 1, 10**11])
def test_too_many_chunks_per_shard_are_refused_first(tmp_path, shards):
    with (
        dask.config.set({"metatensor_dask.shard-chunks": shards}),
        pytest.raises(
            mtd.MetatensorDaskError, match=rf"metatensor_dask.shard-chunks={shards}: .*65536"
        ),
    ):
        mtd.to_zarr(mtd.from_metatensor(_tensor()), tmp_path / "t.zarr")
    assert not (tmp_path / "t.zarr").exists()


def test_the_most_chunks_per_shard_write_a_store(tmp_path):
    with dask.config.set({"metatensor_dask.shard-chunks": 2**16}):
        mtd.to_zarr(mtd.from_metatensor(_tensor()), tmp_path / "t.zarr")
    assert mtd.verify(tmp_path / "t.zarr").ok
    assert metatensor.equal(mtd.to_metatensor(mtd.open_zarr(tmp_path / "t.zarr")), _tensor())
