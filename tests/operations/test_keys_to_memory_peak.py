"""``keys_to_samples`` and ``keys_to_properties`` of many tiny blocks hold their result
once while computing: the most memory allocated at any time (``tracemalloc``, which
counts numpy's arrays) is the result's bytes plus one batch of pieces being placed and
a little more, whether each output is one grouped call or a few row chunks written into
one buffer. A second copy of an output (row chunks joined into a new array, all pieces
concatenated before being placed) would exceed it."""

import tracemalloc

import dask
import metatensor
import numpy as np
import pytest
from oracle import lazily
from test_tiny_manipulation import many

import metatensor_dask as mtd
from metatensor_dask.operations import _stacking
from metatensor_dask.testing import assert_equal_to_metatensor

BLOCKS = 2400
"""Three merged blocks of 800 pieces: each ``positions`` gradient is 0.9 MB."""

BATCH_BYTES = 16 * 2**10
"""The batches of pieces placed at once, smaller than the outputs."""

SLACK = 256 * 2**10
"""Room for the objects of the computation (task results, the map, index arrays of the
batches), well under the smallest merged ``positions`` gradient."""

MOVES = {
    "samples": (lambda t: mtd.keys_to_samples(t, "k"), lambda t: t.keys_to_samples("k")),
    "properties": (lambda t: mtd.keys_to_properties(t, "k"), lambda t: t.keys_to_properties("k")),
}


@pytest.fixture(scope="module")
def maps() -> tuple[metatensor.TensorMap, mtd.TensorMap]:
    theirs = many(BLOCKS, uniform=True)
    return theirs, mtd.from_metatensor(theirs)


def _nbytes(tensor: mtd.TensorMap) -> int:
    return sum(
        block.values.nbytes + sum(g.values.nbytes for _, g in block.gradients())
        for block in tensor.blocks()
    )


def _peak_while_computing(built: mtd.TensorMap) -> tuple[mtd.TensorMap, int]:
    tracemalloc.start()
    try:
        (computed,) = dask.compute(built, scheduler="sync")
        return computed, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# default chunks: one grouped call per output; 256 KiB: each positions gradient in a
# few row chunks, views of one buffer
@pytest.mark.parametrize("chunk_size", [None, "256KiB"])
@pytest.mark.parametrize("name", list(MOVES))
def test_result_held_once_while_computing(monkeypatch, maps, name, chunk_size):
    theirs, ours = maps
    ours_move, their_move = MOVES[name]
    monkeypatch.setattr(_stacking, "BATCH_BYTES", BATCH_BYTES)
    settings = {} if chunk_size is None else {"metatensor_dask.chunk-size": chunk_size}
    with dask.config.set(settings):
        # a first computation, not measured: first calls fill caches and import modules
        dask.compute(lazily(ours_move, ours), scheduler="sync")
        built = lazily(ours_move, ours)
    gradient = built.block(0).gradient("positions").values
    few = 1 < gradient.numblocks[0] <= _stacking.BUFFER_CHUNKS
    assert few if chunk_size else gradient.numblocks[0] == 1
    computed, peak = _peak_while_computing(built)
    result = _nbytes(computed)
    smallest = min(
        np.prod(block.gradient("positions").values.shape) * 8 for block in computed.blocks()
    )
    assert SLACK < smallest
    assert peak <= result + BATCH_BYTES + SLACK, (peak, result)
    assert_equal_to_metatensor(computed, their_move(theirs))
