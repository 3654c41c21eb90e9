"""``place`` on pieces that fill whole rows: batches, rows left uncovered, source rows."""

import numpy as np
import pytest

from metatensor_dask.operations import _placement
from metatensor_dask.operations._placement import Placement, place


def _expected(pieces, placement, shape, fill):
    out = np.full(shape, fill)
    for piece, rows, source in zip(pieces, placement.rows, placement.sources, strict=True):
        piece = piece if source is None else piece[source]
        if not isinstance(rows, np.ndarray):
            rows = np.arange(rows, rows + len(piece))
        for row, values in zip(rows, piece, strict=True):
            out[row] = values
    return out


@pytest.mark.parametrize("batch_bytes", [1, 100, 2**30])
def test_rows_placed_in_batches_with_uncovered_rows_filled(monkeypatch, batch_bytes):
    monkeypatch.setattr(_placement, "BATCH_BYTES", batch_bytes)
    rng = np.random.default_rng(0)
    pieces = [rng.random((n, 2, 3)) for n in (3, 2, 4, 1)]
    # a start, scattered rows, rows taken from a piece, an empty selection; rows 1, 9
    # and 11 are covered by none
    placement = Placement(
        [2, np.array([10, 0]), np.array([8, 5, 7]), np.array([], dtype=np.int64)],
        [0, 0, 0, 0],
        [None, None, np.array([3, 0, 2]), np.array([], dtype=np.int64)],
    )
    shape = (12, 2, 3)
    result = place(*pieces, placement, shape, np.float64, -1.5)
    np.testing.assert_array_equal(result, _expected(pieces, placement, shape, -1.5))
    assert (result[[1, 9, 11]] == -1.5).all()


def test_rows_placed_later_pieces_win():
    """Rows placed twice hold the later piece, as metatensor copies blocks in order."""
    first, second = np.zeros((2, 3)), np.ones((2, 3))
    placement = Placement([0, np.array([1, 2])], [0, 0])
    result = place(first, second, placement, (3, 3), np.float64, 7.0)
    np.testing.assert_array_equal(result, [[0, 0, 0], [1, 1, 1], [1, 1, 1]])


def test_rows_placed_every_row_covered_no_fill():
    pieces = [np.arange(6.0).reshape(2, 3), np.arange(6.0, 12.0).reshape(2, 3)]
    placement = Placement([np.array([3, 0]), np.array([1, 2])], [0, 0])
    result = place(*pieces, placement, (4, 3), np.float64, np.nan)
    assert not np.isnan(result).any()
    np.testing.assert_array_equal(result, _expected(pieces, placement, (4, 3), np.nan))
