"""One ``.mts`` file loaded with two chunkings: its tiny blocks are not the same ones,
so neither are its groups, even when a group of each load spans the same bytes."""

from __future__ import annotations

import dask
import metatensor
import numpy as np

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def _labels(names: list[str], rows) -> metatensor.Labels:
    return metatensor.Labels(names, np.asarray(rows, dtype=np.int32).reshape(-1, len(names)))


def _block(rows: int, gradient_rows: int, value: float) -> metatensor.TensorBlock:
    """``rows`` samples of 10 properties and ``gradient_rows`` gradient rows a sample."""
    properties = _labels(["p"], np.arange(10))
    block = metatensor.TensorBlock(
        np.full((rows, 10), value), _labels(["s"], np.arange(rows)), [], properties
    )
    samples = [[s, a] for s in range(rows) for a in range(gradient_rows)]
    gradient = metatensor.TensorBlock(
        np.full((len(samples), 3, 10), -value),
        _labels(["sample", "atom"], samples),
        [_labels(["xyz"], [0, 1, 2])],
        properties,
    )
    block.add_gradient("positions", gradient)
    return block


def test_loads_of_other_tiny_blocks_spanning_the_same_bytes_keep_their_own_data(tmp_path):
    """The second block is tiny at 2 rows a chunk, not at 4 KiB a chunk (its gradient
    splits it); the fourth the other way round. Each load had one group spanning the
    same bytes with as many members, and the two groups had one task name: computed
    together, the blocks of one load got the arrays of the other's (of the same shape
    for the third block's values, so without an error)."""
    theirs = metatensor.TensorMap(
        _labels(["k"], [0, 1, 2, 3, 4]),
        [
            _block(1, 1, 0.0),
            _block(2, 9, 1.0),
            _block(2, 0, 2.0),
            _block(3, 0, 3.0),
            _block(1, 1, 4.0),
        ],
    )
    metatensor.save(tmp_path / "theirs.mts", theirs)
    by_rows = mtd.load(tmp_path / "theirs.mts", chunks=2)
    with dask.config.set({"metatensor_dask.chunk-size": "4KiB"}):
        by_size = mtd.load(tmp_path / "theirs.mts")
    assert [block.values.npartitions for block in by_rows.blocks()] == [1, 1, 1, 2, 1]
    assert [block.values.npartitions for block in by_size.blocks()] == [1, 2, 1, 1, 1]
    without = metatensor.remove_gradients(theirs)
    summed = mtd.add(mtd.remove_gradients(by_rows), mtd.remove_gradients(by_size))
    assert_equal_to_metatensor(summed, metatensor.add(without, without))
    assert_equal_to_metatensor(mtd.add(by_rows, by_size), metatensor.add(theirs, theirs))
    assert mtd.equal(by_rows, by_size)
