import metatensor
import numpy as np
import pytest
from oracle import lazily

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def _system(n=4, seed=0):
    rng = np.random.default_rng(seed)
    keys = metatensor.Labels(["k"], np.array([[0], [1]]))
    x_blocks, y_blocks = [], []
    for _ in range(2):
        samples = metatensor.Labels.range("s", n)
        x_blocks.append(
            metatensor.TensorBlock(
                rng.uniform(size=(n, n)) + n * np.eye(n),
                samples,
                [],
                metatensor.Labels.range("p", n),
            )
        )
        y_blocks.append(
            metatensor.TensorBlock(
                rng.uniform(size=(n, 2)), samples, [], metatensor.Labels.range("q", 2)
            )
        )
    return metatensor.TensorMap(keys, x_blocks), metatensor.TensorMap(keys, y_blocks)


def test_matches_metatensor():
    x, y = _system()
    ours_x = mtd.from_metatensor(x)
    ours_x = mtd.TensorMap(
        ours_x.keys,
        [
            mtd.TensorBlock(b.values.rechunk({0: 1}), b.samples, b.components, b.properties)
            for b in ours_x.blocks()
        ],
    )
    result = lazily(mtd.solve, ours_x, mtd.from_metatensor(y))
    assert_equal_to_metatensor(result, metatensor.solve(x, y), rtol=1e-12, atol=1e-14)


def test_errors_match_metatensor():
    x, y = _system()
    message = "the values in each block of X should be a square 2D array"
    with pytest.raises(ValueError, match=message):
        metatensor.solve(y, y)
    with pytest.raises(ValueError, match=message):
        mtd.solve(mtd.from_metatensor(y), mtd.from_metatensor(y))
    other = mtd.rename_dimension(mtd.from_metatensor(y), "samples", "s", "t")
    message = "X and Y blocks in `solve` should have the same samples in the same order"
    with pytest.raises(ValueError, match=message):
        mtd.solve(mtd.from_metatensor(x), other)
