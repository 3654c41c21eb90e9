"""Operations on maps of many tiny blocks run without the cyclic garbage collector.

Its passes walk every object alive: on maps of 10,000 blocks and more, they cost more
than the operation and grow faster than the blocks. With a collector that would run
every 100 allocations, an operation on 20 or 200 blocks, built and computed, must
trigger about as few collections (only between the paused parts), not one more per
few blocks.
"""

import gc

import dask
import numpy as np
import pytest
from test_tiny_blocks import tiny

import metatensor_dask as mtd

OPERATIONS = {
    "multiply": lambda t: mtd.multiply(t, t),
    "add": lambda t: mtd.add(t, t),
    "sum_over_samples": lambda t: mtd.sum_over_samples(t, "s"),
    "mean_over_properties": lambda t: mtd.mean_over_properties(t, "p"),
    "slice": lambda t: mtd.slice(t, "samples", mtd.Labels(["s"], np.array([[0], [2]]))),
    "join": lambda t: mtd.join([t, t], "samples", add_dimension="tensor"),
    "keys_to_samples": lambda t: t.keys_to_samples("k"),
    "keys_to_properties": lambda t: t.keys_to_properties("k"),
    "equal": lambda t: mtd.equal(t, t),
    "allclose": lambda t: mtd.allclose(t, t),
}


def collections(function, tensor) -> int:
    """The collections that building and computing ``function(tensor)`` trigger."""
    count = [0]

    def counted(phase, info):
        count[0] += phase == "start"

    gc.collect()
    threshold = gc.get_threshold()
    gc.set_threshold(100, 10, 10)
    gc.callbacks.append(counted)
    try:
        result = function(tensor)
        if dask.is_dask_collection(result):
            dask.compute(result)
    finally:
        gc.callbacks.remove(counted)
        gc.set_threshold(*threshold)
    return count[0]


COMPARISONS = ["equal", "allclose"]


@pytest.fixture(scope="module")
def maps() -> tuple[mtd.TensorMap, mtd.TensorMap]:
    """A map of 20 tiny blocks and one of 200, shared by the tests (which only read
    them)."""
    small, large = (mtd.from_metatensor(tiny(n)) for n in (20, 200))
    return small, large


@pytest.mark.parametrize("name", [n for n in OPERATIONS if n not in COMPARISONS])
def test_collections_do_not_grow_with_the_blocks(name, maps):
    """The comparisons are checked by the stricter test below."""
    function = OPERATIONS[name]
    small, large = maps
    collections(function, small)  # imports and caches of the first call
    assert collections(function, large) <= collections(function, small) + 8
    assert gc.isenabled()


@pytest.mark.parametrize("name", COMPARISONS)
def test_comparisons_trigger_no_collection_per_block(name, maps):
    """Comparing maps is paused from the keys to the answer: 200 blocks trigger no
    more collections than 20 (they triggered one per 100 blocks)."""
    function = OPERATIONS[name]
    small, large = maps
    collections(function, small)
    assert collections(function, large) <= collections(function, small)
    assert gc.isenabled()
