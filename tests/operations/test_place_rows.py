"""``place`` on pieces that fill whole rows: batches, rows left uncovered, source rows;
the layouts of ``keys_to_*`` (rows at their targets, pieces side by side)."""

import numpy as np
import pytest

from metatensor_dask.operations import _placement, _stacking
from metatensor_dask.operations._placement import Placement, place
from metatensor_dask.operations._stacking import ColumnStarts, RowTargets


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


@pytest.mark.parametrize("batch_bytes", [1, 100, 2**30])
def test_row_targets_in_batches(monkeypatch, batch_bytes):
    """Rows at their targets by batches; rows left out (-1) skipped, uncovered rows
    filled, a piece without rows."""
    monkeypatch.setattr(_stacking, "BATCH_BYTES", batch_bytes)
    rng = np.random.default_rng(1)
    pieces = [rng.random((n, 2, 3)) for n in (3, 0, 2, 4)]
    targets = np.array([4, 0, 7, 2, -1, 9, 1, 3, -1])
    layout = RowTargets(targets, [3, 0, 2, 4], 10)
    expected = np.full((10, 2, 3), -1.5)
    rows = np.concatenate(pieces)
    expected[targets[targets >= 0]] = rows[targets >= 0]
    result = layout.placed(pieces, (10, 2, 3), np.float64, -1.5)
    np.testing.assert_array_equal(result, expected)
    assert (result[[5, 6, 8]] == -1.5).all()
    kept, local = layout.within(2, 8)
    np.testing.assert_array_equal(kept, [0, 2, 3])
    part = local.placed([pieces[i] for i in kept], (6, 2, 3), np.float64, -1.5)
    np.testing.assert_array_equal(part, expected[2:8])


@pytest.mark.parametrize("batch_bytes", [1, 100, 2**30])
def test_column_starts_in_batches(monkeypatch, batch_bytes):
    """Pieces side by side with gaps before, between and after them, filled; written
    into a given array; the rows of a row chunk alone."""
    monkeypatch.setattr(_stacking, "BATCH_BYTES", batch_bytes)
    rng = np.random.default_rng(2)
    widths = [2, 1, 3, 0, 2]
    starts = [1, 3, 4, 7, 7]
    pieces = [rng.random((4, 2, w)) for w in widths]
    expected = np.full((4, 2, 11), 9.0)
    for piece, start, width in zip(pieces, starts, widths, strict=True):
        expected[..., start : start + width] = piece
    layout = ColumnStarts(np.array(starts), np.array(widths))
    out = np.empty((4, 2, 11))
    assert layout.placed(pieces, (4, 2, 11), np.float64, 9.0, out) is out
    np.testing.assert_array_equal(out, expected)
    kept, local = layout.within(1, 3)
    np.testing.assert_array_equal(kept, np.arange(5))
    part = local.placed(pieces, (2, 2, 11), np.float64, 9.0)
    np.testing.assert_array_equal(part, expected[1:3])


def test_row_targets_later_pieces_win():
    """Rows placed twice hold the later piece's row, as metatensor copies blocks in
    order."""
    pieces = [np.zeros((2, 3)), np.ones((2, 3)), np.full((1, 3), 2.0)]
    layout = RowTargets(np.array([0, 1, 1, 2, 0]), [2, 2, 1], 4)
    result = layout.placed(pieces, (4, 3), np.float64, -1.0)
    np.testing.assert_array_equal(result, [[2, 2, 2], [1, 1, 1], [1, 1, 1], [-1, -1, -1]])
