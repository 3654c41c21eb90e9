import metatensor
import pytest
from oracle import lazily, tutorial

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


@pytest.mark.parametrize("remove", [None, ["positions"], [], ["unknown"]])
def test_matches_metatensor(remove):
    theirs, ours = tutorial()
    assert_equal_to_metatensor(
        lazily(mtd.remove_gradients, ours, remove), metatensor.remove_gradients(theirs, remove)
    )
    block = lazily(mtd.remove_gradients_block, ours.block(0), remove)
    assert_equal_to_metatensor(block, metatensor.remove_gradients_block(theirs.block(0), remove))


def test_shares_arrays():
    _, ours = tutorial()
    result = mtd.remove_gradients(ours)
    assert result.block(0).values is ours.block(0).values
    assert ours.block(0).gradients_list() == ["positions"]
