import metatensor
import numpy as np
import pytest
from hypothesis import given
from oracle import as_metatensor, check_finite_differences, lazily, rechunked, tutorial

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor, strategies


def test_tutorial():
    theirs, ours = tutorial()
    assert_equal_to_metatensor(lazily(mtd.abs, rechunked(ours, 2)), metatensor.abs(theirs))


@given(strategies.tensor_maps(dtypes=(np.float64, np.float32)))
def test_random_tensors(tensor):
    assert_equal_to_metatensor(lazily(mtd.abs, tensor), metatensor.abs(as_metatensor(tensor)))


@given(strategies.tensor_maps(grouped=False))
def test_gradients_not_grouped_by_sample(tensor):
    assert_equal_to_metatensor(lazily(mtd.abs, tensor), metatensor.abs(as_metatensor(tensor)))


def test_finite_differences():
    _, ours = tutorial()
    check_finite_differences(mtd.abs, [rechunked(ours, 2)], "positions")


def test_not_a_tensor():
    with pytest.raises(TypeError, match="`A` must be a metatensor TensorMap, not <class 'float'>"):
        mtd.abs(-1.0)
