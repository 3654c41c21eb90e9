import metatensor
import numpy as np
import pytest
from hypothesis import given
from oracle import (
    as_metatensor,
    assert_matches_oracle,
    check_finite_differences,
    fingerprint,
    lazily,
    rechunked,
    shuffled_gradients,
    tutorial,
)

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor, strategies


@pytest.mark.parametrize("rows", [1, 2, 5])
def test_tutorial_tensor_times_tensor(rows):
    theirs, ours = tutorial()
    other = rechunked(ours, rows)
    before = fingerprint(ours)
    result = lazily(mtd.multiply, ours, other)
    assert_equal_to_metatensor(result, metatensor.multiply(theirs, theirs))
    assert fingerprint(ours) == before


@pytest.mark.parametrize("scalar", [3, -1.5, np.float64(2.0), np.int64(2), True])
def test_tensor_times_scalar(scalar):
    theirs, ours = tutorial("radial-spectrum")
    result = lazily(mtd.multiply, rechunked(ours, 2), scalar)
    assert_equal_to_metatensor(result, metatensor.multiply(theirs, float(scalar)))


@given(strategies.tensor_pairs(dtypes=(np.float64, np.float32), shuffle_keys=True))
def test_random_pairs(pair):
    a, b = pair
    assert_matches_oracle("multiply", a, b)


@given(strategies.tensor_pairs(grouped=False, arbitrary_gradient_chunks=True))
def test_gradients_not_grouped_by_sample(pair):
    a, b = pair
    assert_matches_oracle("multiply", a, b)


@given(strategies.tensor_pairs(arbitrary_gradient_chunks=True))
def test_gradients_in_arbitrary_chunks(pair):
    a, b = pair
    assert_matches_oracle("multiply", a, b)


def test_shuffled_tutorial_gradients():
    _, ours = tutorial()
    shuffled = shuffled_gradients(ours)
    expected = metatensor.multiply(as_metatensor(shuffled), as_metatensor(shuffled))
    assert_equal_to_metatensor(lazily(mtd.multiply, shuffled, shuffled), expected)


def test_computed_inputs_give_computed_outputs():
    theirs, ours = tutorial()
    computed = ours.compute()
    result = mtd.multiply(computed, computed)
    assert isinstance(result.block(0).values, np.ndarray)
    assert_equal_to_metatensor(result, metatensor.multiply(theirs, theirs))


def test_finite_differences():
    _, ours = tutorial()
    check_finite_differences(mtd.multiply, [rechunked(ours, 2), rechunked(ours, 3)], "positions")
    check_finite_differences(lambda a: mtd.multiply(a, 2.5), [rechunked(ours, 2)], "positions")


def test_one_task_per_chunk():
    _, ours = tutorial()
    a = rechunked(ours, 2)
    result = mtd.multiply(a, a)
    for block, source in zip(result.blocks(), a.blocks(), strict=True):
        gradient = block.gradient("positions").values
        layer = gradient.dask.layers[gradient.name]
        assert len(layer) == source.values.numblocks[0]
        assert gradient.chunks[0] == source.gradient("positions").values.chunks[0]


def test_errors_match_metatensor():
    theirs, ours = tutorial()
    other_theirs, other_ours = tutorial("radial-spectrum")
    with pytest.raises(
        mtd.NotEqualError, match="inputs to 'multiply' should have the same keys names"
    ):
        mtd.multiply(ours, other_ours)
    with pytest.raises(
        metatensor.NotEqualError, match="inputs to 'multiply' should have the same keys names"
    ):
        metatensor.multiply(theirs, other_theirs)
    with pytest.raises(
        TypeError, match="`B` must be a metatensor TensorMap or a scalar value, not <class 'str'>"
    ):
        mtd.multiply(ours, "2")
    with pytest.raises(TypeError, match="`A` must be a metatensor TensorMap, not <class 'int'>"):
        mtd.multiply(2, ours)
    no_gradients = mtd.remove_gradients(ours)
    with pytest.raises(
        mtd.NotEqualError, match="inputs to 'multiply' should have the same gradient parameters"
    ):
        mtd.multiply(ours, no_gradients)
    with pytest.raises(
        metatensor.NotEqualError,
        match="inputs to 'multiply' should have the same gradient parameters",
    ):
        metatensor.multiply(theirs, metatensor.remove_gradients(theirs))
