import metatensor
import numpy as np
import pytest
from oracle import check_finite_differences, lazily, rechunked, tutorial

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def _weights(theirs, n=3, seed=0):
    rng = np.random.default_rng(seed)
    blocks = [
        metatensor.TensorBlock(
            rng.uniform(-1, 1, (n, len(block.properties))),
            metatensor.Labels.range("weight", n),
            [],
            block.properties,
        )
        for block in theirs.blocks()
    ]
    return metatensor.TensorMap(theirs.keys, blocks)


@pytest.mark.parametrize("name", ["spherical-expansion", "radial-spectrum"])
def test_tutorial(name):
    theirs, ours = tutorial(name)
    weights = _weights(theirs)
    result = lazily(mtd.dot, rechunked(ours, 2, arbitrary=7), mtd.from_metatensor(weights))
    assert_equal_to_metatensor(result, metatensor.dot(theirs, weights), rtol=1e-13, atol=1e-15)


def test_finite_differences():
    theirs, ours = tutorial()
    weights = mtd.from_metatensor(_weights(theirs))
    check_finite_differences(mtd.dot, [rechunked(ours, 2), weights], "positions", [True, False])


def test_errors_match_metatensor():
    theirs, ours = tutorial()
    for their_b, message in [
        (theirs, "the second TensorMap in `dot` should not have components"),
        (
            metatensor.remove_gradients(theirs),
            "the second TensorMap in `dot` should not have components",
        ),
    ]:
        with pytest.raises(ValueError, match=message):
            metatensor.dot(theirs, their_b)
        with pytest.raises(ValueError, match=message):
            mtd.dot(ours, mtd.from_metatensor(their_b))
    weights = _weights(theirs)
    with_gradient = []
    for block in weights.blocks():
        copy = block.copy()
        gradient = metatensor.TensorBlock(
            np.zeros((1, len(block.properties))),
            metatensor.Labels(["sample"], np.array([[0]])),
            [],
            block.properties,
        )
        copy.add_gradient("g", gradient)
        with_gradient.append(copy)
    weights_gradient = metatensor.TensorMap(weights.keys, with_gradient)
    message = "the second TensorMap in `dot` should not have gradients"
    with pytest.raises(ValueError, match=message):
        metatensor.dot(theirs, weights_gradient)
    with pytest.raises(ValueError, match=message):
        mtd.dot(ours, mtd.from_metatensor(weights_gradient))
    other = mtd.from_metatensor(_weights(tutorial("radial-spectrum")[0]))
    with pytest.raises(mtd.NotEqualError, match="inputs to 'dot' should have the same keys names"):
        mtd.dot(ours, other)
