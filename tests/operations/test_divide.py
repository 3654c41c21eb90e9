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


def _positive(tensor):
    return mtd.add(mtd.abs(tensor), 0.5)


def test_tutorial():
    theirs, ours = tutorial()
    denominator = _positive(ours)
    expected = metatensor.divide(theirs, as_metatensor(denominator))
    assert_equal_to_metatensor(lazily(mtd.divide, rechunked(ours, 2), denominator), expected)
    assert_equal_to_metatensor(lazily(mtd.divide, ours, 4), metatensor.divide(theirs, 4))


@given(strategies.tensor_pairs(dtypes=(np.float64, np.float32), positive=(False, True)))
def test_random_pairs(pair):
    a, b = pair
    assert_matches_oracle("divide", a, b)


@given(strategies.tensor_pairs(positive=(False, True), grouped=False))
def test_gradients_not_grouped_by_sample(pair):
    a, b = pair
    assert_matches_oracle("divide", a, b)


def test_division_by_zero_gives_inf():
    _, ours = tutorial("radial-spectrum")
    zeros = mtd.zeros_like(ours)
    result = mtd.divide(mtd.add(ours, 1.0), zeros)
    with pytest.warns(RuntimeWarning, match="divide by zero"):
        values = result.block(0).values.compute()
    assert np.all(np.isinf(values))


def test_finite_differences():
    _, ours = tutorial()
    check_finite_differences(mtd.divide, [rechunked(ours, 2), _positive(ours)], "positions")
    check_finite_differences(lambda a: mtd.divide(a, 3.0), [ours], "positions")


def test_errors_match_metatensor():
    theirs, ours = tutorial()
    with pytest.raises(TypeError, match="`B` must be a metatensor TensorMap or a scalar value"):
        mtd.divide(ours, "x")
    with pytest.raises(
        mtd.NotEqualError, match="inputs to 'divide' should have the same gradient parameters"
    ):
        mtd.divide(ours, mtd.remove_gradients(ours))
    with pytest.raises(
        metatensor.NotEqualError,
        match="inputs to 'divide' should have the same gradient parameters",
    ):
        metatensor.divide(theirs, metatensor.remove_gradients(theirs))
