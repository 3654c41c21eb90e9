"""``sort`` and ``sort_block`` of blocks whose components or properties are in chunks
of zero entries (more chunks than entries, as slicing a dask array leaves them) equal
metatensor's results, gradients included, and are built without computing."""

import dask.array as da
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes


def _labels(names, rows):
    return metatensor.Labels(names, np.array(rows, dtype=np.int32).reshape(-1, len(names)))


def _unsorted_block(dtype):
    """A metatensor block of 5 samples, a component and properties in decreasing
    order, and a positions gradient with rows in any order."""
    rng = np.random.default_rng(7)
    samples = _labels(["system", "atom"], [[1, 0], [0, 1], [0, 0], [2, 1], [1, 1]])
    components = [_labels(["o3_mu"], [[1], [-1], [0]])]
    properties = _labels(["n"], [[3], [1], [2], [0]])
    block = metatensor.TensorBlock(
        rng.uniform(-1, 1, (5, 3, 4)).astype(dtype), samples, components, properties
    )
    rows = [[4, 1, 0], [0, 1, 2], [2, 0, 1], [0, 1, 0], [3, 2, 2], [1, 0, 1]]
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            rng.uniform(-1, 1, (6, 3, 3, 4)).astype(dtype),
            _labels(["sample", "system", "atom"], rows),
            [_labels(["xyz"], [[0], [1], [2]]), *components],
            properties,
        ),
    )
    return block


def _rechunked(array, chunks):
    return da.from_array(np.asarray(array), chunks=-1).rechunk(chunks)


def _chunked_like(block, values_chunks, gradient_chunks):
    """The metatensor-dask copy of ``block`` in the given chunks."""
    ours = mtd.TensorBlock(
        _rechunked(block.values, values_chunks),
        mtd.from_metatensor(block.samples),
        [mtd.from_metatensor(c) for c in block.components],
        mtd.from_metatensor(block.properties),
    )
    gradient = block.gradient("positions")
    ours.add_gradient(
        "positions",
        mtd.TensorBlock(
            _rechunked(gradient.values, gradient_chunks),
            mtd.from_metatensor(gradient.samples),
            [mtd.from_metatensor(c) for c in gradient.components],
            mtd.from_metatensor(gradient.properties),
        ),
    )
    return ours


CHUNKINGS = [
    # properties in chunks of zero entries
    (((2, 3), (3,), (1, 0, 2, 0, 1)), ((6,), (3,), (3,), (0, 2, 0, 2))),
    # components in chunks of zero entries, and rows too
    (((2, 0, 3), (0, 1, 0, 2), (4,)), ((3, 0, 3), (1, 0, 2), (0, 3, 0), (4,))),
    # every axis in single entries, with empty chunks between them
    (((1, 0, 1, 1, 1, 1), (1, 1, 0, 1), (1, 0, 1, 1, 0, 1)), ((1,) * 6, (1, 2), (3,), (4,))),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("values_chunks, gradient_chunks", CHUNKINGS)
def test_sort_block_with_empty_chunks_is_metatensors(
    values_chunks, gradient_chunks, descending, dtype
):
    theirs = _unsorted_block(dtype)
    ours = _chunked_like(theirs, values_chunks, gradient_chunks)
    with raise_if_dask_computes():
        result = mtd.sort_block(ours, descending=descending)
    assert_equal_to_metatensor(result, metatensor.sort_block(theirs, descending=descending))


@pytest.mark.parametrize("axes", ["all", "properties", ["components", "samples"]])
@pytest.mark.parametrize("values_chunks, gradient_chunks", CHUNKINGS)
def test_sort_of_a_map_with_empty_chunks_is_metatensors(values_chunks, gradient_chunks, axes):
    theirs = _unsorted_block(np.float64)
    keys = _labels(["key"], [[0]])
    ours = mtd.TensorMap(
        mtd.from_metatensor(keys), [_chunked_like(theirs, values_chunks, gradient_chunks)]
    )
    with raise_if_dask_computes():
        result = mtd.sort(ours, axes=axes)
    expected = metatensor.sort(metatensor.TensorMap(keys, [theirs]), axes=axes)
    assert_equal_to_metatensor(result, expected)
