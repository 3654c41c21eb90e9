"""Joining along properties keeps every chunk of the result within the inputs' largest
chunk: n inputs side by side made chunks n times as large, which workers with a memory
limit could not hold (a worker killed at 95% of its limit, again on every retry)."""

import dask.array as da
import metatensor
import numpy as np
import pytest
from chunked_maps import chunked, reference
from oracle2 import assert_co_partitioned

import metatensor_dask as mtd
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


@pytest.mark.parametrize("same_gradient_rows", [True, False])
def test_join_along_properties_keeps_chunks_of_the_inputs_size(same_gradient_rows):
    # the same samples everywhere; gradient rows the same (co-partitioned result) or
    # drawn per input (their union, zeros where an input has none)
    theirs = [reference(seed=0 if same_gradient_rows else i) for i in range(3)]
    ours = [chunked(tensor, seed=i) for i, tensor in enumerate(theirs)]
    joined = mtd.join(ours, "properties", add_dimension="tensor")
    assert _largest_chunk(joined) <= max(_largest_chunk(t) for t in ours)
    if same_gradient_rows:
        assert_co_partitioned(joined)
    expected = metatensor.join(theirs, "properties", add_dimension="tensor")
    assert_equal_to_metatensor(joined, expected)
