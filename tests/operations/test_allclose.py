import metatensor
import pytest
from oracle import rechunked, tutorial

import metatensor_dask as mtd
from metatensor_dask.testing import raise_if_dask_computes


def test_close_and_not_close():
    theirs, ours = tutorial()
    slightly = mtd.multiply(rechunked(ours, 2), 1 + 1e-15)
    farther = mtd.multiply(ours, 1 + 1e-6)
    with raise_if_dask_computes(max_computes=1):
        assert mtd.allclose(ours, slightly)
    assert not mtd.allclose(ours, farther)
    assert mtd.allclose(ours, farther, rtol=1e-5)
    assert mtd.allclose_block(ours.block(1), farther.block(1), rtol=1e-5)
    assert mtd.allclose(ours, farther) == metatensor.allclose(
        theirs, metatensor.multiply(theirs, 1 + 1e-6)
    )


def test_same_messages_as_metatensor():
    theirs, ours = tutorial()
    their_other = metatensor.multiply(theirs, 1.01)
    our_other = rechunked(mtd.from_metatensor(their_other), 3)
    with pytest.raises(metatensor.NotEqualError) as expected:
        metatensor.allclose_raise(theirs, their_other)
    with pytest.raises(mtd.NotEqualError) as got:
        mtd.allclose_raise(ours, our_other)
    assert str(got.value) == str(expected.value)
    with pytest.raises(metatensor.NotEqualError) as expected:
        metatensor.allclose_block_raise(
            theirs.block(2), metatensor.remove_gradients(theirs).block(2)
        )
    with pytest.raises(mtd.NotEqualError) as got:
        mtd.allclose_block_raise(ours.block(2), mtd.remove_gradients(ours).block(2))
    assert str(got.value) == str(expected.value)
