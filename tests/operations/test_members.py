"""TensorMap operators delegate to the operations, as metatensor's do."""

import metatensor
import numpy as np
import pytest
from oracle import rechunked, tutorial

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes


def test_arithmetic_operators():
    theirs, ours = tutorial()
    other = rechunked(ours, 2)
    positive_theirs = metatensor.add(metatensor.abs(theirs), 1.0)
    positive = mtd.from_metatensor(positive_theirs)
    with raise_if_dask_computes():
        results = [
            (ours + other, theirs + theirs),
            (ours - 1, theirs - 1),
            (ours * other, theirs * theirs),
            (ours * 2, theirs * 2),
            (ours / positive, theirs / positive_theirs),
            (positive**2.5, positive_theirs**2.5),
            (-ours, -theirs),
        ]
    for mine, expected in results:
        assert_equal_to_metatensor(mine, expected)
    assert +ours is ours


def test_matmul():
    theirs, ours = tutorial("radial-spectrum")
    rng = np.random.default_rng(0)
    blocks = [
        metatensor.TensorBlock(
            rng.uniform(size=(2, len(b.properties))),
            metatensor.Labels.range("w", 2),
            [],
            b.properties,
        )
        for b in theirs.blocks()
    ]
    weights = metatensor.TensorMap(theirs.keys, blocks)
    assert_equal_to_metatensor(
        ours @ mtd.from_metatensor(weights), theirs @ weights, rtol=1e-13, atol=1e-15
    )


def test_no_reflected_operators():
    _, ours = tutorial()
    with pytest.raises(TypeError):
        2 * ours
