import metatensor
import numpy as np
import pytest
from hypothesis import given
from oracle import (
    assert_matches_oracle,
    check_finite_differences,
    fingerprint,
    lazily,
    rechunked,
    tutorial,
)

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor, strategies


@pytest.mark.parametrize("rows", [1, 3])
def test_tutorial(rows):
    theirs, ours = tutorial()
    before = fingerprint(ours)
    result = lazily(mtd.add, ours, rechunked(ours, rows))
    assert_equal_to_metatensor(result, metatensor.add(theirs, theirs))
    assert_equal_to_metatensor(lazily(mtd.add, ours, 1.5), metatensor.add(theirs, 1.5))
    assert fingerprint(ours) == before


def test_scalar_keeps_gradient_arrays():
    _, ours = tutorial()
    result = mtd.add(ours, 2)
    gradient = result.block(0).gradient("positions").values
    assert gradient.name == ours.block(0).gradient("positions").values.name


@given(strategies.tensor_pairs(dtypes=(np.float64, np.float32), shuffle_keys=True))
def test_random_pairs(pair):
    a, b = pair
    assert_matches_oracle("add", a, b)


def test_finite_differences():
    _, ours = tutorial()
    check_finite_differences(mtd.add, [rechunked(ours, 2), rechunked(ours, 3)], "positions")


def test_errors_match_metatensor():
    theirs, ours = tutorial()
    fewer_theirs = metatensor.drop_blocks(
        theirs, metatensor.Labels(theirs.keys.names, theirs.keys.values[:1])
    )
    fewer_ours = mtd.from_metatensor(fewer_theirs)
    message = (
        "inputs to 'add' should have the same number of blocks, "
        f"got {len(theirs)} and {len(theirs) - 1}"
    )
    with pytest.raises(metatensor.NotEqualError, match=message):
        metatensor.add(theirs, fewer_theirs)
    with pytest.raises(mtd.NotEqualError, match=message):
        mtd.add(ours, fewer_ours)
    renamed = mtd.rename_dimension(ours, "samples", "atom", "center")
    with pytest.raises(
        mtd.NotEqualError,
        match="inputs to 'add' should have the same samples, but they are not the same",
    ):
        mtd.add(ours, renamed)
    with pytest.raises(
        TypeError, match="`B` must be a metatensor TensorMap or a scalar value, not <class 'list'>"
    ):
        mtd.add(ours, [1])
