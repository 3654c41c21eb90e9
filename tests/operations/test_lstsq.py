import warnings

import metatensor
import numpy as np
import pytest
from oracle import lazily, rechunked, tutorial

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def _target(theirs):
    """Y = X @ w for known weights, with consistent gradients."""
    rng = np.random.default_rng(3)
    blocks = []
    for block in theirs.blocks():
        w = rng.uniform(-1, 1, (len(block.properties), 2))
        new = metatensor.TensorBlock(
            block.values @ w, block.samples, block.components, metatensor.Labels.range("y", 2)
        )
        for parameter, gradient in block.gradients():
            new.add_gradient(
                parameter,
                metatensor.TensorBlock(
                    gradient.values @ w,
                    gradient.samples,
                    gradient.components,
                    metatensor.Labels.range("y", 2),
                ),
            )
        blocks.append(new)
    return metatensor.TensorMap(theirs.keys, blocks)


def test_tutorial_with_gradients():
    theirs, ours = tutorial()
    target = _target(theirs)
    result = lazily(mtd.lstsq, rechunked(ours, 2), mtd.from_metatensor(target), 1e-10)
    assert_equal_to_metatensor(
        result, metatensor.lstsq(theirs, target, rcond=1e-10), rtol=1e-9, atol=1e-12
    )


def test_rcond_none_warns_as_metatensor():
    theirs, ours = tutorial("radial-spectrum")
    target = mtd.from_metatensor(_target(theirs))
    with pytest.warns(UserWarning, match="WARNING rcond is set to None"):
        result = mtd.lstsq(ours, target, rcond=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = metatensor.lstsq(theirs, _target(theirs), rcond=None)
    assert_equal_to_metatensor(result, expected, rtol=1e-9, atol=1e-12)


def test_errors_match_metatensor():
    theirs, ours = tutorial()
    renamed = mtd.rename_dimension(ours, "samples", "atom", "center")
    with pytest.raises(mtd.NotEqualError, match="inputs to 'lstsq' should have the same samples"):
        mtd.lstsq(ours, renamed, rcond=1e-10)
    with pytest.raises(
        mtd.NotEqualError, match="inputs to 'lstsq' should have the same gradient parameters"
    ):
        mtd.lstsq(ours, mtd.remove_gradients(ours), rcond=1e-10)
    with pytest.raises(
        metatensor.NotEqualError, match="inputs to 'lstsq' should have the same gradient parameters"
    ):
        metatensor.lstsq(theirs, metatensor.remove_gradients(theirs), rcond=1e-10)
