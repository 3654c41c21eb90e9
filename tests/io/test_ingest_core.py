"""A metatensor-core batch as an append plans it (``io/ingest_core.py``): the same
metadata, arrays and row pointers as the metatensor-dask tensor it stood for before, its
arrays not copied, the same refusals."""

from __future__ import annotations

import metatensor
import numpy as np
import pytest
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask._partition import block_row_pointer
from metatensor_dask.io.ingest_core import core_view
from metatensor_dask.io.zarr_renumber import shifted


def _same_block(view, ours, theirs, parent=None, parameter=None):
    assert view.samples == ours.samples
    assert view.components == ours.components
    assert view.properties == ours.properties
    assert len(view) == len(ours)
    np.testing.assert_array_equal(view.values, ours.values.compute())
    assert view.values.dtype == ours.values.dtype
    if view.values.size:
        assert np.shares_memory(view.values, np.asarray(theirs.values))  # not copied
    if parent is not None:
        expected = block_row_pointer(parent, parameter)
        if expected is None:
            assert view.row_pointer is None
        else:
            np.testing.assert_array_equal(view.row_pointer, expected)
    assert view.gradients_list() == ours.gradients_list()
    for name, gradient in view.gradients():
        assert view.gradient(name) is gradient
        _same_block(gradient, ours.gradient(name), theirs.gradient(name), ours, name)


@pytest.mark.parametrize("renumber", [None, ("system", 0), ("system", 7), ("atom", -3)])
@pytest.mark.parametrize("seed", [0, 1])
def test_core_view_equals_the_renumbered_tensor(seed, renumber):
    theirs = make_metatensor(seed=seed)
    ours = mtd.from_metatensor(theirs)
    if renumber is not None:
        ours = shifted(ours, *renumber)
    view = core_view(theirs, renumber)
    assert view.keys == ours.keys
    assert view.info() == ours.info()
    assert len(view) == len(ours)
    assert [k.values.tolist() for k, _ in view.items()] == ours.keys.values.tolist()
    for block, mine, core in zip(view.blocks(), ours.blocks(), theirs.blocks(), strict=True):
        _same_block(block, mine, core)


@pytest.mark.parametrize(
    ("renumber", "message"),
    [
        (("center", 1), r"can not renumber 'center': it is not a sample dimension"),
        (("sample", 1), r"can not renumber 'sample'"),
    ],
)
def test_core_view_refuses_what_shifted_refuses(renumber, message):
    theirs = make_metatensor(seed=0)
    with pytest.raises(mtd.MetatensorDaskError, match=message):
        core_view(theirs, renumber)
    with pytest.raises(mtd.MetatensorDaskError, match=message):
        shifted(mtd.from_metatensor(theirs), *renumber)


def test_core_view_refuses_a_renumbering_past_int32():
    theirs = make_metatensor(seed=0)
    with pytest.raises(mtd.MetatensorDaskError, match="goes past the int32 range"):
        core_view(theirs, ("system", 2**31 - 1))


@pytest.mark.parametrize("offset", [7, -3, 2**31 + 10, -(2**31) + 40])
def test_shift_by_offsets_beyond_int32_whose_results_fit(offset):
    """Samples shifted in int32 where they are: the same entries as in Python ints,
    also when the offset itself does not fit in int32 but every result does."""
    column = np.array([-(2**31) + 5, -(2**31) + 9], np.int64)
    if offset < 0:
        column = np.array([2**31 - 50, 2**31 - 41], np.int64)
    values = np.stack([column, np.array([4, 5])], axis=1).astype(np.int32)
    keys = metatensor.Labels(["key"], np.zeros((1, 1), np.int32))
    block = metatensor.TensorBlock(
        np.ones((2, 1)),
        metatensor.Labels(["system", "atom"], values),
        [],
        metatensor.Labels(["p"], np.zeros((1, 1), np.int32)),
    )
    tensor = metatensor.TensorMap(keys, [block])
    view = core_view(tensor, ("system", offset))
    expected = [[int(v) + offset, atom] for v, atom in zip(column, [4, 5], strict=True)]
    assert view.blocks()[0].samples.values.tolist() == expected
    assert view.blocks()[0].samples.values.dtype == np.int32
    np.testing.assert_array_equal(tensor.block(0).samples.values, values)  # untouched


def test_empty_tensor():
    keys = metatensor.Labels(["key"], np.zeros((0, 1), np.int32))
    view = core_view(metatensor.TensorMap(keys, []), ("system", 4))
    assert len(view) == 0
    assert view.blocks() == []
