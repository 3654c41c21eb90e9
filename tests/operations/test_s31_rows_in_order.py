"""Rows added into their targets in passes give ``np.add.at``'s sums bit for bit: each
target receives its rows one after the other, in their order, as metatensor adds them
(a segment sum adds them in another order, which changes the last bits)."""

import numpy as np
import pytest

from metatensor_dask.operations._segments import PASS_ELEMENTS, WIDE_ROW, add_rows_in_order


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.complex128, np.int32, np.bool_])
@pytest.mark.parametrize("width", [1, WIDE_ROW, 3 * WIDE_ROW])
@pytest.mark.parametrize("sorted_targets", [True, False])
def test_rows_in_order_are_add_at_bit_for_bit(dtype, width, sorted_targets):
    rng = np.random.default_rng(width)
    for n_rows, n_targets in [(0, 3), (1, 1), (40, 1), (2 * PASS_ELEMENTS, 600), (500, 97)]:
        targets = rng.integers(0, n_targets, n_rows)
        if sorted_targets:
            targets = np.sort(targets)
        if np.dtype(dtype).kind in "fc":
            magnitudes = 10.0 ** rng.integers(-8, 17, (n_rows, width))
            rows = (rng.normal(size=(n_rows, width)) * magnitudes).astype(dtype)
        else:
            rows = rng.integers(-1000, 1000, (n_rows, width)).astype(dtype)
        expected = np.zeros((n_targets, width), dtype)
        np.add.at(expected, targets, rows)
        found = np.zeros((n_targets, width), dtype)
        add_rows_in_order(found, targets, rows)
        assert found.tobytes() == expected.tobytes()


def test_cancellations_come_out_as_metatensor_adds_them():
    # 1e16 + 1 - 1e16 + 1, one after the other: 1 (a pairwise sum gives 0 or 2)
    rows = np.repeat(np.array([[1e16], [1.0], [-1e16], [1.0]]), WIDE_ROW, axis=1)
    targets = np.zeros(4, dtype=np.int64)
    found = np.zeros((1, WIDE_ROW))
    add_rows_in_order(found, targets, rows)
    assert np.all(found == 1.0)
