import metatensor
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracle import as_metatensor, check_finite_differences, lazily, rechunked, tutorial

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor, strategies


@pytest.mark.parametrize("exponent", [2, 3.0, 0.5, -1])
def test_tutorial(exponent):
    theirs, _ = tutorial()
    positive = metatensor.add(metatensor.abs(theirs), 0.1)
    result = lazily(mtd.pow, rechunked(mtd.from_metatensor(positive), 2), exponent)
    assert_equal_to_metatensor(result, metatensor.pow(positive, exponent))


@given(
    strategies.tensor_maps(dtypes=(np.float64, np.float32), positive=True),
    st.sampled_from([2, 0.5, -1.5, 3]),
)
def test_random_tensors(tensor, exponent):
    expected = metatensor.pow(as_metatensor(tensor), exponent)
    assert_equal_to_metatensor(lazily(mtd.pow, tensor, exponent), expected)


@given(strategies.tensor_maps(positive=True, grouped=False))
def test_gradients_not_grouped_by_sample(tensor):
    expected = metatensor.pow(as_metatensor(tensor), 2.5)
    assert_equal_to_metatensor(lazily(mtd.pow, tensor, 2.5), expected)


def test_finite_differences():
    _, ours = tutorial()
    positive = mtd.add(mtd.abs(ours), 0.5)
    check_finite_differences(lambda a: mtd.pow(a, 2.5), [rechunked(positive, 3)], "positions")


def test_errors_match_metatensor():
    theirs, ours = tutorial()
    with pytest.raises(
        TypeError, match=r"`B` must be a scalar value, not <class 'metatensor\.TensorMap'>"
    ):
        metatensor.pow(theirs, theirs)
    with pytest.raises(
        TypeError,
        match=r"`B` must be a scalar value, not <class 'metatensor_dask\.tensor\.TensorMap'>",
    ):
        mtd.pow(ours, ours)
    with pytest.raises(TypeError, match="`A` must be a metatensor TensorMap"):
        mtd.pow(2.0, 2)
