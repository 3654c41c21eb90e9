"""keys_to_properties keeps every chunk of the result within the inputs' largest: the
blocks merged side by side made rows as wide as all of them, in as many rows per chunk
as before (six featomic blocks gave chunks eight times as large, on which workers with
a memory limit were killed at 95% of it, on every retry)."""

import dask.array as da
import numpy as np

import metatensor_dask as mtd
from metatensor_dask.datasets import featomic_like
from metatensor_dask.testing import assert_equal_to_metatensor


def _largest_chunk(tensor: mtd.TensorMap) -> int:
    """Bytes of the largest chunk of the values and gradients of ``tensor``."""
    largest = 0
    for block in tensor.blocks():
        for array in [block.values, *(g.values for _, g in block.gradients())]:
            array = da.asarray(array)
            row_bytes = array.dtype.itemsize * int(np.prod(array.shape[1:]))
            largest = max(largest, max(array.chunks[0]) * row_bytes)
    return largest


def test_keys_to_properties_keeps_chunks_of_the_inputs_size():
    ours = featomic_like(8, 8, types=(1, 6), neighbors=(3, 6), chunks=8)
    moved = mtd.keys_to_properties(ours, ["neighbor_1_type", "neighbor_2_type"])
    assert _largest_chunk(moved) <= _largest_chunk(ours)
    theirs = mtd.to_metatensor(ours).keys_to_properties(["neighbor_1_type", "neighbor_2_type"])
    assert_equal_to_metatensor(moved, theirs)
