"""The segment sums under reductions over samples: every way of adding rows."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from metatensor_dask.operations._segments import _plan, segment_sum


def _identity(rows: np.ndarray) -> np.ndarray:
    return rows


def _neighbour_targets(rng: np.random.Generator, centers: int, atoms: int) -> np.ndarray:
    """Gradient rows grouped by sample: each sample's neighbours, increasing."""
    return np.concatenate(
        [np.sort(rng.choice(atoms, atoms - 2, replace=False)) for _ in range(centers)]
    )


@pytest.mark.parametrize(
    ("kind", "make"),
    [
        ("runs", lambda rng: _neighbour_targets(rng, 12, 20)),
        ("at", lambda rng: np.repeat(np.arange(30), 4)),
        ("at", lambda rng: rng.permutation(np.repeat(np.arange(30), 4))),
    ],
)
@pytest.mark.parametrize("in_chunks", [1, 3])
def test_every_plan_adds_each_row_once(kind, make, in_chunks):
    rng = np.random.default_rng(3)
    target = make(rng)
    assert _plan(target)[0] == kind
    rows = rng.normal(size=(len(target), 3, 5))
    n_out = int(target.max()) + 1
    expected = np.zeros((n_out, 3, 5))
    np.add.at(expected, target, rows)
    chunked = da.from_array(rows, chunks=(-(-len(target) // in_chunks), 3, 5))
    out_chunks = (n_out // 2, n_out - n_out // 2)
    result = segment_sum(
        _identity, [chunked], target, out_chunks, expected.shape, rows.dtype
    ).compute(scheduler="sync")
    if in_chunks == 1:
        # rows reach each target in their order, as with np.add.at: the same bits
        # (across input chunks, partial sums are added: another order)
        np.testing.assert_array_equal(result, expected)
    else:
        np.testing.assert_allclose(result, expected, rtol=1e-13, atol=1e-13)
