"""Stores sharded with one chunk per shard (``shard-chunks: 1``) are readable: their chunk
table listed the crc32c ending each shard file (that of its index) instead of the one
ending its inner chunk, so that every read and ``verify`` took each chunk for one put
back from elsewhere (``DamagedStoreError``), for writes, appends and ``write_batches``."""

from __future__ import annotations

import dask
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def tensor(first: int, rows: int) -> metatensor.TensorMap:
    block = metatensor.TensorBlock(
        np.arange(2.0 * rows).reshape(rows, 2) + first,
        metatensor.Labels(["system"], np.arange(first, first + rows, dtype=np.int32)[:, None]),
        [],
        metatensor.Labels.range("p", 2),
    )
    return metatensor.TensorMap(metatensor.Labels.single(), [block])


@pytest.mark.parametrize("compressor", [None, "zstd"])
@pytest.mark.parametrize("how", ["write", "append", "write_batches"])
def test_one_chunk_per_shard_reads_back(tmp_path, how, compressor):
    path = tmp_path / "sharded.zarr"
    settings = {"metatensor_dask.shard-chunks": 1, "metatensor_dask.compressor": compressor}
    with dask.config.set(settings):
        if how == "write":
            mtd.from_metatensor(tensor(0, 5)).to_zarr(path, chunks=2)
            expected = tensor(0, 5)
        elif how == "append":
            mtd.from_metatensor(tensor(0, 3)).to_zarr(path, append_dim="samples", chunks=2)
            mtd.from_metatensor(tensor(3, 4)).to_zarr(path, append_dim="samples")
            expected = metatensor.join([tensor(0, 3), tensor(3, 4)], axis="samples")
        else:
            mtd.write_batches(
                lambda items: tensor(items[0], 1), range(5), path, renumber=None, chunks=2
            )
            expected = metatensor.join([tensor(item, 1) for item in range(5)], axis="samples")
    verification = mtd.verify(path)
    assert verification.ok, verification
    assert_equal_to_metatensor(mtd.open_zarr(path), expected)
