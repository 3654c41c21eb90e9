"""The chunk-local machinery: co-partitioned gradients, lazy labels, strategies."""

import dask.array as da
import numpy as np
import pytest
from hypothesis import find, given
from oracle import as_metatensor, tutorial

import metatensor_dask as mtd
from metatensor_dask._partition import row_pointer
from metatensor_dask.testing import assert_equal_to_metatensor, strategies


def _unreadable(names, count):
    def load():
        raise AssertionError("sample labels were read")

    return mtd.Labels.lazy(names, count, load)


def test_gradient_ops_never_read_sample_labels():
    theirs, ours = tutorial()
    source = ours.block(1)
    gradient = source.gradient("positions")
    pointer = row_pointer(gradient.samples.column("sample"), len(source))
    lazy_gradient = mtd.TensorBlock._trusted(
        gradient.values.rechunk({0: 3}),
        _unreadable(gradient.samples.names, len(gradient.samples)),
        gradient.components,
        gradient.properties,
        row_pointer=pointer,
    )
    block = mtd.TensorBlock._trusted(
        source.values.rechunk({0: 2}),
        _unreadable(source.samples.names, len(source.samples)),
        source.components,
        source.properties,
        {"positions": lazy_gradient},
    )
    tensor = mtd.TensorMap._trusted(mtd.Labels.single(), [block])
    for result in [
        mtd.multiply(tensor, tensor),
        mtd.pow(tensor, 2),
        mtd.abs(tensor),
        mtd.divide(tensor, mtd.add(mtd.abs(tensor), 1.0)),
    ]:
        computed = result.block(0).gradient("positions").values.compute()
        assert computed.shape == gradient.shape
    expected = (
        theirs.block(1).gradient("positions").values
        * 2
        * theirs.block(1)
        .values[theirs.block(1).gradient("positions").samples.column("sample")]
        .reshape(-1, 1, *theirs.block(1).values.shape[1:])
    )
    squared = mtd.multiply(tensor, tensor).block(0).gradient("positions").values.compute()
    np.testing.assert_allclose(squared, expected, rtol=1e-15)


@given(strategies.tensor_maps(gradients=["positions", "strain"]))
def test_strategy_gradients_are_co_partitioned(tensor):
    for block in tensor.blocks():
        bounds = np.concatenate([[0], np.cumsum(block.values.chunks[0])])
        for _, gradient in block.gradients():
            pointer = row_pointer(gradient.samples.column("sample"), len(block))
            assert np.array_equal(np.cumsum((0, *gradient.values.chunks[0])), pointer[bounds])
    assert_equal_to_metatensor(tensor, as_metatensor(tensor))


def test_strategy_can_shuffle_gradient_rows():
    def not_grouped(tensor):
        return any(
            row_pointer(b.gradient("positions").samples.column("sample"), len(b)) is None
            for b in tensor.blocks()
        )

    found = find(strategies.tensor_maps(gradients=["positions"], grouped=False), not_grouped)
    assert not_grouped(found)


def test_mixed_numpy_and_dask_inputs():
    _, ours = tutorial()
    computed = ours.compute()
    result = mtd.multiply(ours, computed)
    assert isinstance(result.block(0).values, da.Array)
    assert_equal_to_metatensor(result, as_metatensor(mtd.multiply(computed, computed)))


def test_gradients_of_gradients_are_refused():
    _, ours = tutorial("radial-spectrum")
    block = ours.block(0)
    gradient = block.gradient("positions")
    nested = mtd.TensorBlock(
        gradient.values, gradient.samples, gradient.components, gradient.properties
    )
    nested.add_gradient(
        "strain",
        mtd.TensorBlock(
            np.zeros((0, *gradient.shape[1:])),
            mtd.Labels.empty(["sample"]),
            gradient.components,
            gradient.properties,
        ),
    )
    outer = mtd.TensorBlock(block.values, block.samples, block.components, block.properties)
    outer.add_gradient("positions", nested)
    tensor = mtd.TensorMap(mtd.Labels.single(), [outer])
    for function in [
        lambda t: mtd.multiply(t, t),
        lambda t: mtd.add(t, 1),
        mtd.abs,
        lambda t: mtd.pow(t, 2),
    ]:
        with pytest.raises(NotImplementedError, match="gradients of gradients are not supported"):
            function(tensor)


def test_blocks_without_properties():
    # metatensor cannot reshape the empty value rows here (-1 with a zero-sized axis)
    _, ours = tutorial("radial-spectrum")
    block = ours.block(0)
    gradient = block.gradient("positions")
    empty = mtd.Labels.empty(["n"])
    new = mtd.TensorBlock(block.values[..., :0], block.samples, block.components, empty)
    new.add_gradient(
        "positions",
        mtd.TensorBlock(gradient.values[..., :0], gradient.samples, gradient.components, empty),
    )
    tensor = mtd.TensorMap(mtd.Labels.single(), [new])
    for result in [mtd.multiply(tensor, tensor), mtd.pow(tensor, 2), mtd.abs(tensor)]:
        computed = result.compute()
        assert computed.block(0).gradient("positions").values.shape == (*gradient.shape[:-1], 0)
