"""keys_to_properties keeps every chunk of the result within the inputs' largest: the
blocks merged side by side made rows as wide as all of them, in as many rows per chunk
as before (six featomic blocks gave chunks eight times as large, on which workers with
a memory limit were killed at 95% of it, on every retry)."""

from oracle2 import chunks_at_the_configured_size, largest_chunk_bytes

import metatensor_dask as mtd
from metatensor_dask.datasets import featomic_like
from metatensor_dask.testing import assert_equal_to_metatensor


def test_keys_to_properties_keeps_chunks_of_the_inputs_size():
    ours = featomic_like(8, 8, types=(1, 6), neighbors=(3, 6), chunks=8)
    with chunks_at_the_configured_size():
        moved = mtd.keys_to_properties(ours, ["neighbor_1_type", "neighbor_2_type"])
    assert largest_chunk_bytes(moved) <= largest_chunk_bytes(ours)
    theirs = mtd.to_metatensor(ours).keys_to_properties(["neighbor_1_type", "neighbor_2_type"])
    assert_equal_to_metatensor(moved, theirs)
