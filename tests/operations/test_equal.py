import metatensor
import numpy as np
import pytest
from hypothesis import given
from oracle import as_metatensor, rechunked, tutorial

import metatensor_dask as mtd
from metatensor_dask.testing import raise_if_dask_computes, strategies


def _modified(theirs, block_index, gradient=False):
    blocks = []
    for i, block in enumerate(theirs.blocks()):
        block = block.copy()
        if i == block_index:
            target = block.gradient("positions") if gradient else block
            target.values[0] += 1.0
        blocks.append(block)
    return metatensor.TensorMap(theirs.keys, blocks)


def _messages(function, theirs_1, theirs_2, ours_1, ours_2):
    with pytest.raises(metatensor.NotEqualError) as theirs:
        function(metatensor, theirs_1, theirs_2)
    with pytest.raises(mtd.NotEqualError) as ours:
        function(mtd, ours_1, ours_2)
    assert str(ours.value) == str(theirs.value)


def test_equal_tensors_in_one_compute():
    _, ours = tutorial()
    with raise_if_dask_computes(max_computes=1):
        assert mtd.equal(ours, rechunked(ours, 2))
    with raise_if_dask_computes(max_computes=1):
        mtd.equal_raise(ours, rechunked(ours, 3, arbitrary=4))


@pytest.mark.parametrize("gradient", [False, True])
def test_differences_same_messages(gradient):
    theirs, ours = tutorial()
    other = _modified(theirs, 3, gradient)
    assert not mtd.equal(ours, mtd.from_metatensor(other))
    _messages(
        lambda m, a, b: m.equal_raise(a, b),
        theirs,
        other,
        ours,
        rechunked(mtd.from_metatensor(other), 2),
    )
    _messages(
        lambda m, a, b: m.equal_block_raise(a.block(3), b.block(3)),
        theirs,
        other,
        ours,
        mtd.from_metatensor(other),
    )


@pytest.mark.parametrize(
    "modify",
    [
        lambda t: metatensor.rename_dimension(t, "samples", "atom", "center"),
        lambda t: metatensor.rename_dimension(t, "keys", "o3_sigma", "sigma"),
        metatensor.remove_gradients,
    ],
    ids=["samples", "keys", "gradients"],
)
def test_metadata_and_keys_differences(modify):
    theirs, ours = tutorial()
    other = modify(theirs)
    _messages(lambda m, a, b: m.equal_raise(a, b), theirs, other, ours, mtd.from_metatensor(other))


def test_nan_is_not_equal():
    theirs, _ = tutorial("radial-spectrum")
    block = theirs.block(0).copy()
    block.values[0, 0] = np.nan
    nan = mtd.TensorBlock(
        mtd.from_metatensor(block).values,
        mtd.from_metatensor(block).samples,
        [],
        mtd.from_metatensor(block).properties,
    )
    assert not mtd.equal_block(nan, nan)


@given(strategies.tensor_maps(dtypes=(np.float64, np.float32)))
def test_random_tensors(tensor):
    theirs = as_metatensor(tensor)
    assert mtd.equal(tensor, mtd.from_metatensor(theirs))
    shifted = mtd.add(tensor, 1.0)
    assert mtd.equal(tensor, shifted) == metatensor.equal(theirs, as_metatensor(shifted))


def test_operators():
    theirs, ours = tutorial()
    assert ours == rechunked(ours, 2)
    assert not (ours != rechunked(ours, 2))
    assert ours != mtd.from_metatensor(_modified(theirs, 0))
    assert ours.block(0) == rechunked(ours, 2).block(0)


def test_not_tensors():
    _, ours = tutorial()
    with pytest.raises(TypeError, match="`tensor_2` must be a metatensor TensorMap"):
        mtd.equal(ours, 3)
    with pytest.raises(TypeError, match="`block_2` must be a metatensor TensorBlock"):
        mtd.equal_block(ours.block(0), ours)
