import metatensor
import numpy as np
import pytest
from hypothesis import given
from oracle import (
    as_metatensor,
    assert_matches_oracle,
    check_finite_differences,
    lazily,
    rechunked,
    tutorial,
)

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor, strategies


def test_tutorial():
    theirs, ours = tutorial()
    other = metatensor.multiply(theirs, 0.5)
    result = lazily(mtd.subtract, rechunked(ours, 2), mtd.from_metatensor(other))
    assert_equal_to_metatensor(result, metatensor.subtract(theirs, other))
    assert_equal_to_metatensor(lazily(mtd.subtract, ours, 2), metatensor.subtract(theirs, 2))


@given(strategies.tensor_pairs(dtypes=(np.float64, np.float32), shuffle_keys=True))
def test_random_pairs(pair):
    a, b = pair
    assert_matches_oracle("subtract", a, b)


def test_finite_differences():
    _, ours = tutorial()
    other = mtd.multiply(ours, 0.3)
    check_finite_differences(mtd.subtract, [rechunked(ours, 2), other], "positions")


def test_errors_match_metatensor():
    theirs, ours = tutorial()
    renamed = mtd.rename_dimension(ours, "samples", "atom", "center")
    # metatensor subtracts by adding the negated operand: its messages name 'add'
    with pytest.raises(mtd.NotEqualError, match="inputs to 'add' should have the same samples"):
        mtd.subtract(ours, renamed)
    with pytest.raises(
        metatensor.NotEqualError, match="inputs to 'add' should have the same samples"
    ):
        metatensor.subtract(theirs, as_metatensor(renamed))
    with pytest.raises(TypeError, match="`B` must be a metatensor TensorMap or a scalar value"):
        mtd.subtract(ours, None)
