import metatensor
import numpy as np
import pytest
from oracle2 import assert_same_error

import metatensor_dask as mtd


@pytest.mark.parametrize("dimension", [[[1], [6], [8]], [[8], [1], [6], [7]]])
def test_like_metatensor(dimension):
    values = np.array([[0, 1], [0, 8], [1, 6], [1, 1]])
    ours = mtd.one_hot(
        mtd.Labels(["system", "type"], values), mtd.Labels(["type"], np.array(dimension))
    )
    theirs = metatensor.one_hot(
        metatensor.Labels(["system", "type"], values),
        metatensor.Labels(["type"], np.array(dimension)),
    )
    assert ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours, theirs)


def test_errors_like_metatensor():
    values = np.array([[0, 1], [0, 2]])
    for dimension_names, dimension in [
        (["type"], [[1]]),
        (["type", "x"], [[1, 0]]),
        (["zz"], [[1]]),
    ]:
        assert_same_error(
            lambda dimension=dimension, dimension_names=dimension_names: mtd.one_hot(
                mtd.Labels(["system", "type"], values),
                mtd.Labels(dimension_names, np.array(dimension)),
            ),
            lambda dimension=dimension, dimension_names=dimension_names: metatensor.one_hot(
                metatensor.Labels(["system", "type"], values),
                metatensor.Labels(dimension_names, np.array(dimension)),
            ),
        )
