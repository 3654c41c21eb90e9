"""Labels compare their rows in three ways by size: a dict of positions (up to 131,072
entries), rows' bytes (fewer than 2,048 rows), and one packed int64 key per row (more,
when the ranges of the columns allow). Each answers as metatensor does on either side
of these sizes, for positions, set operations, mappings and repeated entries."""

from __future__ import annotations

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask import labels as labels_module

INT32 = np.iinfo(np.int32)

#: (columns, low, high): packed keys, negative values, and boxes too large to pack
RANGES = [
    (1, -(10**6), 10**6),
    (2, -300, 300),
    (3, 0, 80),
    (2, -(2**20), 2**20),
    (2, INT32.min, INT32.max),
    (3, -(2**21), 2**21),
]

SIZES = [
    labels_module.PACKED_FROM - 1,
    labels_module.PACKED_FROM,
    labels_module.POSITIONS_IN_A_DICT + 1000,
]


def _unique_rows(rng, count, columns, low, high):
    values = rng.integers(low, high, (2 * count, columns), dtype=np.int64)
    values = np.unique(values.astype(np.int32), axis=0)
    return values[rng.permutation(len(values))[:count]]


@pytest.mark.parametrize("count", SIZES)
@pytest.mark.parametrize("columns, low, high", RANGES)
def test_positions_and_set_operations_equal_metatensor(count, columns, low, high):
    rng = np.random.default_rng(count + columns)
    names = [f"d{i}" for i in range(columns)]
    first = _unique_rows(rng, count, columns, low, high)
    assert len(first) == count
    second = np.unique(
        np.concatenate([first[::3], _unique_rows(rng, 500, columns, low, high)]), axis=0
    )
    # rows whose last column is out of its range by exactly that range: a key made of
    # them without checking ranges would be the key of another row
    span = int(first[:, -1].max()) - int(first[:, -1].min()) + 1
    shifted = []
    for row in first[:: max(count // 20, 1)].astype(np.int64):
        for step in (span, -span):
            if INT32.min <= row[-1] + step <= INT32.max:
                shifted.append(np.concatenate([row[:-1], [row[-1] + step]]).astype(np.int32))
    queries = [
        *shifted,
        *first[:: max(count // 60, 1)],
        *second[::17],
        first[0] + 1,
        np.full(columns, high, np.int32),
        np.full(columns, max(low - 1, INT32.min), np.int32),
        np.full(columns, min(high + 5, INT32.max), np.int32),
    ]
    found = []
    for module in (metatensor, mtd):
        a, b = module.Labels(names, first), module.Labels(names, second)
        found.append(
            [
                [a.position(np.asarray(q, np.int32)) for q in queries],
                a.union(b).values,
                a.intersection(b).values,
                a.difference(b).values,
                [np.asarray(m) for m in a.union_and_mapping(b)[1:]],
                [np.asarray(m) for m in b.intersection_and_mapping(a)[1:]],
            ]
        )
    theirs, ours = found
    assert ours[0] == theirs[0]
    for mine, their in zip(ours[1:4], theirs[1:4], strict=True):
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(their))
    for mine, their in zip(ours[4:], theirs[4:], strict=True):
        for m, t in zip(mine, their, strict=True):
            np.testing.assert_array_equal(m, np.asarray(t))


@pytest.mark.parametrize("count", [500, *SIZES[:2]])
@pytest.mark.parametrize("columns, low, high", RANGES)
def test_repeated_entries_are_refused_as_metatensor_does(count, columns, low, high):
    rng = np.random.default_rng(count * columns)
    values = _unique_rows(rng, count, columns, low, high)
    repeated = np.concatenate([values, values[123:124], values[:5]])
    messages = []
    for module in (metatensor, mtd):
        with pytest.raises(Exception) as error:
            module.Labels([f"d{i}" for i in range(columns)], repeated)
        messages.append(str(error.value))
    assert messages[1] == messages[0]
    # and the same rows once each are accepted
    assert len(mtd.Labels([f"d{i}" for i in range(columns)], values)) == count
