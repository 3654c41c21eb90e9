"""Blocks without properties whose gradients have rows: metatensor-operations 0.5.0
fails in ``abs``, ``multiply``, ``divide``, ``pow`` and ``lstsq`` (numpy cannot
``reshape`` their empty values with ``-1``); metatensor-dask gives the empty blocks,
with the metadata of the input, in any chunking of the rows. Reducing every property
name of such a block next to others keeps the ``_`` name in every block (metatensor
gives it properties without names, which its map refuses)."""

import dask.array as da
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.testing import raise_if_dask_computes


def _labels(names, rows):
    return metatensor.Labels(names, np.array(rows, dtype=np.int32).reshape(-1, len(names)))


def _without_properties():
    """A map of one block of 5 samples and no properties, with a positions gradient
    of 4 rows."""
    properties = _labels(["n"], [])
    block = metatensor.TensorBlock(
        np.zeros((5, 3, 0)),
        _labels(["atom"], [[i] for i in range(5)]),
        [_labels(["o3_mu"], [[-1], [0], [1]])],
        properties,
    )
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            np.zeros((4, 3, 3, 0)),
            _labels(["sample", "atom"], [[0, 0], [2, 1], [2, 4], [4, 3]]),
            [_labels(["xyz"], [[0], [1], [2]]), *block.components],
            properties,
        ),
    )
    return metatensor.TensorMap(_labels(["key"], [[0]]), [block])


def _chunked(theirs):
    ours = mtd.from_metatensor(theirs)
    block = ours.block(0)
    gradient = block.gradient("positions")
    chunked = mtd.TensorBlock(
        da.asarray(block.values).rechunk({0: (2, 0, 3)}),
        block.samples,
        block.components,
        block.properties,
    )
    chunked.add_gradient(
        "positions",
        mtd.TensorBlock(
            da.asarray(gradient.values).rechunk({0: (1, 3)}),
            gradient.samples,
            gradient.components,
            gradient.properties,
        ),
    )
    return mtd.TensorMap(ours.keys, [chunked])


OPERATIONS = {
    "abs": lambda m, t: m.abs(t),
    "multiply": lambda m, t: m.multiply(t, t),
    "divide": lambda m, t: m.divide(t, t),
    "pow": lambda m, t: m.pow(t, 2),
}


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_element_wise_operations_give_the_empty_blocks(name):
    theirs = _without_properties()
    with pytest.raises(ValueError, match="cannot reshape array of size 0"):
        OPERATIONS[name](metatensor, theirs)
    with raise_if_dask_computes():
        result = OPERATIONS[name](mtd, _chunked(theirs))
    converted = mtd.to_metatensor(result)
    assert metatensor.equal_metadata(converted, theirs)
    assert converted.block(0).values.shape == (5, 3, 0)
    assert converted.block(0).gradient("positions").values.shape == (4, 3, 3, 0)


def test_lstsq_gives_weights_of_no_rows():
    theirs = _without_properties()
    with pytest.raises(ValueError, match="cannot reshape array of size 0"):
        metatensor.lstsq(theirs, theirs, rcond=1e-10)
    with raise_if_dask_computes():
        result = mtd.lstsq(_chunked(theirs), _chunked(theirs), rcond=1e-10)
    block = mtd.to_metatensor(result).block(0)
    assert block.values.shape == (0, 0)
    assert block.samples == theirs.block(0).properties
    assert block.properties == theirs.block(0).properties


def test_reducing_every_property_keeps_the_underscore_name():
    theirs = _without_properties()
    other = metatensor.TensorBlock(
        np.ones((2, 3, 2)),
        _labels(["atom"], [[0], [1]]),
        theirs.block(0).components,
        _labels(["n"], [[0], [1]]),
    )
    empty = metatensor.remove_gradients_block(theirs.block(0).copy())
    both = metatensor.TensorMap(_labels(["key"], [[0], [1]]), [empty, other])
    with pytest.raises(metatensor.MetatensorError, match="same property dimensions"):
        metatensor.sum_over_properties(both, "n")
    with raise_if_dask_computes():
        result = mtd.sum_over_properties(mtd.from_metatensor(both), "n")
    converted = mtd.to_metatensor(result)
    assert [block.properties.names for block in converted.blocks()] == [["_"], ["_"]]
    assert len(converted.block(0).properties) == 0
    np.testing.assert_array_equal(converted.block(1).values, np.full((2, 3, 1), 2.0))
