"""``Labels.select`` of a few entries among many (a minibatch of systems among the
samples of a large store) gives metatensor's positions, whatever the selection's
values: inside or outside the range of the samples, negative, on some dimensions or
on all of them, in any order."""

from __future__ import annotations

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd


def _samples(rng: np.random.Generator) -> np.ndarray:
    """About 5,000 unique (system, atom, cell) entries, unsorted, some negative."""
    rows = rng.integers([-3, 0, -2], [1500, 4, 2], size=(6000, 3))
    rows = np.unique(rows, axis=0).astype(np.int32)
    return rows[rng.permutation(len(rows))]


@pytest.mark.parametrize("seed", range(4))
def test_few_among_many(seed):
    rng = np.random.default_rng(seed)
    values = _samples(rng)
    names = ["system", "atom", "cell"]
    ours, theirs = mtd.Labels(names, values), metatensor.Labels(names, values)
    for columns in ([0], [1], [0, 1], [2, 0], [0, 1, 2], [1, 0, 2]):
        for count in (1, 7, 40):
            picked = values[rng.choice(len(values), count, replace=False)][:, columns]
            outside = rng.integers(-10, 3000, size=(3, len(columns))).astype(np.int32)
            selection = np.unique(np.concatenate([picked, outside]), axis=0)
            selection = selection[rng.permutation(len(selection))]
            chosen = [names[c] for c in columns]
            expected = theirs.select(metatensor.Labels(chosen, selection))
            got = ours.select(mtd.Labels(chosen, selection))
            np.testing.assert_array_equal(got, expected)
            assert got.dtype == expected.dtype
