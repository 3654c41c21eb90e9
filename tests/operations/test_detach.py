import pytest
from oracle import lazily, tutorial

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def test_detach_is_a_new_map_sharing_arrays():
    theirs, ours = tutorial()
    result = lazily(mtd.detach, ours)
    assert result is not ours
    assert result.block(0).values is ours.block(0).values
    assert_equal_to_metatensor(result, theirs)
    assert mtd.detach_block(ours.block(0)).values is ours.block(0).values


def test_requires_grad_warns_when_true():
    theirs, ours = tutorial()
    with pytest.warns(
        UserWarning, match="`requires_grad=True` does nothing for numpy and dask arrays"
    ):
        result = mtd.requires_grad(ours)
    assert_equal_to_metatensor(result, theirs)
    with pytest.warns(UserWarning, match="does nothing"):
        mtd.requires_grad_block(ours.block(0), True)
    assert_equal_to_metatensor(mtd.requires_grad(ours, False), theirs)
