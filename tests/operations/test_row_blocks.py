"""Gradient kernels computed block by block of rows give the bits of the whole-chunk
formulas, whatever the block size."""

import numpy as np
import pytest

from metatensor_dask.operations import _chunkwise
from metatensor_dask.operations._multiply import _multiply_gradient
from metatensor_dask.operations._pow import _power_gradient


def _arrays(dtype_values, dtype_gradients, rows=7, seed=0):
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 4, rows)
    index = np.repeat(np.arange(rows), counts)
    # positive values: fractional powers of them are defined
    a, b = (rng.uniform(0.5, 2.0, size=(rows, 2, 5)).astype(dtype_values) for _ in range(2))
    ga, gb = (rng.normal(size=(len(index), 3, 2, 5)).astype(dtype_gradients) for _ in range(2))
    return a, b, ga, gb, index


@pytest.mark.parametrize("block_bytes", [1, 80, 200, 2**19])
@pytest.mark.parametrize(
    "dtypes", [(np.float64, np.float64), (np.float32, np.float32), (np.float32, np.float64)]
)
def test_kernels_by_row_blocks(monkeypatch, block_bytes, dtypes):
    monkeypatch.setattr(_chunkwise, "ROW_BLOCK_BYTES", block_bytes)
    a, b, ga, gb, index = _arrays(*dtypes)
    a_rows, b_rows = a[index][:, None], b[index][:, None]
    expected = a_rows * gb + ga * b_rows
    found = _multiply_gradient(a, b, ga, gb, index)
    assert found.dtype == expected.dtype
    np.testing.assert_array_equal(found, expected)
    for exponent in (2, 3, 0.5, -1.5):
        expected = exponent * ga * a_rows ** (exponent - 1)
        found = _power_gradient(a, ga, index, exponent)
        assert found.dtype == expected.dtype
        np.testing.assert_array_equal(found, expected)


def test_row_blocks_cover_the_rows(monkeypatch):
    monkeypatch.setattr(_chunkwise, "ROW_BLOCK_BYTES", 100)
    array = np.zeros((23, 3), np.float64)  # 24 bytes a row: 4 rows a block
    blocks = list(_chunkwise.row_blocks(array))
    assert blocks[0] == slice(0, 4) and blocks[-1] == slice(20, 23) and len(blocks) == 6
    assert list(_chunkwise.row_blocks(array[:0])) == []
