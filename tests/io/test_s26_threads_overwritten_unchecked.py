"""A map opened from a store of arrays written without checksums, whose store was
then overwritten with other shapes, is refused as read from a store overwritten since
it was opened: its chunks of other sizes are not damage, and writing the store again
(the remedy of damage) is not what the user needs."""

from __future__ import annotations

import dask
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd


def _core(samples: int, seed: int) -> metatensor.TensorMap:
    """Two blocks of ``samples`` samples, with a positions gradient of one row per
    sample."""
    rng = np.random.default_rng(seed)
    blocks = []
    for _ in range(2):
        block = metatensor.TensorBlock(
            rng.normal(size=(samples, 3)),
            metatensor.Labels(["system"], np.arange(samples, dtype=np.int32)[:, None]),
            [],
            metatensor.Labels.range("p", 3),
        )
        rows = np.stack([np.arange(samples), np.zeros(samples)], axis=1).astype(np.int32)
        block.add_gradient(
            "positions",
            metatensor.TensorBlock(
                rng.normal(size=(samples, 3, 3)),
                metatensor.Labels(["sample", "atom"], rows),
                [metatensor.Labels.range("xyz", 3)],
                block.properties,
            ),
        )
        blocks.append(block)
    return metatensor.TensorMap(metatensor.Labels.range("k", 2), blocks)


#: Rows per chunk of the store opened, then of the store written over it: chunk files
#: of other sizes (without checksums, chunks of the same sizes read as other numbers).
_CHUNKS = [(None, None), (2, 3)]


@pytest.mark.parametrize("chunks", _CHUNKS, ids=["tiny-groups", "chunked"])
@pytest.mark.parametrize("loaded", [False, True], ids=["lazy-samples", "loaded-samples"])
def test_a_map_over_a_store_overwritten_with_other_shapes_says_so(tmp_path, chunks, loaded):
    store = tmp_path / "unchecked.zarr"
    with dask.config.set({"metatensor_dask.checksum": False}):
        mtd.from_metatensor(_core(5, 0)).to_zarr(store, chunks=chunks[0])
        opened = mtd.open_zarr(store)
        if loaded:
            for block in opened.blocks():
                assert len(block.samples.values) == 5
        mtd.from_metatensor(_core(7, 1)).to_zarr(store, mode="w", chunks=chunks[1])
    with pytest.raises(mtd.MetatensorDaskError, match="overwritten") as error:
        opened.compute()
    assert not isinstance(error.value, mtd.DamagedStoreError)
    assert mtd.verify(store).problems == []
