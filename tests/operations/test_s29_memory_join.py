"""Joining along properties keeps every chunk of the result within the inputs' largest
chunk: n inputs side by side made chunks n times as large, which workers with a memory
limit could not hold (a worker killed at 95% of its limit, again on every retry)."""

import metatensor
import pytest
from chunked_maps import chunked, reference
from oracle2 import assert_co_partitioned, chunks_at_the_configured_size, largest_chunk_bytes

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


@pytest.mark.parametrize("same_gradient_rows", [True, False])
def test_join_along_properties_keeps_chunks_of_the_inputs_size(same_gradient_rows):
    # the same samples everywhere; gradient rows the same (co-partitioned result) or
    # drawn per input (their union, zeros where an input has none)
    theirs = [reference(seed=0 if same_gradient_rows else i) for i in range(3)]
    ours = [chunked(tensor, seed=i) for i, tensor in enumerate(theirs)]
    with chunks_at_the_configured_size():
        joined = mtd.join(ours, "properties", add_dimension="tensor")
    assert largest_chunk_bytes(joined) <= max(largest_chunk_bytes(t) for t in ours)
    if same_gradient_rows:
        assert_co_partitioned(joined)
    expected = metatensor.join(theirs, "properties", add_dimension="tensor")
    assert_equal_to_metatensor(joined, expected)
