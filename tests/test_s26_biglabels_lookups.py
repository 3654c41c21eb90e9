"""Labels look-ups on many entries: same answers as metatensor, memory bounded by a few
numbers per entry (no Python object per entry)."""

import tracemalloc

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd

INT32 = np.iinfo(np.int32)


def _values(rng, count, columns, low, high):
    values = rng.integers(low, high, (count, columns), dtype=np.int64).astype(np.int32)
    return np.unique(values, axis=0)[rng.permutation(len(np.unique(values, axis=0)))]


CASES = [
    # (columns, low, high): small boxes, negative values, and boxes too large to pack
    (1, 0, 50),
    (2, -5, 40),
    (3, 0, 12),
    (2, INT32.min, INT32.max),
    (3, -(2**21), 2**21),
]


@pytest.mark.parametrize("columns, low, high", CASES)
def test_set_operations_and_positions_are_metatensors(columns, low, high):
    rng = np.random.default_rng(columns + low % 97)
    names = [f"d{i}" for i in range(columns)]
    first = _values(rng, 3000, columns, low, high)
    second = np.concatenate([first[::3], _values(rng, 1000, columns, low, high)])
    second = np.unique(second, axis=0)
    selection = np.concatenate([first[:50, :1], rng.integers(low, high, (50, 1))]).astype(np.int32)
    selection = np.unique(selection, axis=0)
    results = []
    for module in (metatensor, mtd):
        a, b = module.Labels(names, first), module.Labels(names, second)
        outside = [[high] * columns, [max(low - 1, INT32.min)] * columns]
        queries = [*first[::97], *second[::89], *outside]
        results.append(
            [
                [a.position(np.asarray(q, np.int32)) for q in queries],
                a.union(b).values,
                b.union(a).values,
                a.intersection(b).values,
                b.intersection(a).values,
                a.difference(b).values,
                a.select(b),
                a.select(module.Labels(names[:1], selection)),
                [np.asarray(m) for m in a.union_and_mapping(b)[1:]],
                [np.asarray(m) for m in a.intersection_and_mapping(b)[1:]],
            ]
        )
    theirs, ours = results
    assert ours[0] == theirs[0]
    for mine, their in zip(ours[1:], theirs[1:], strict=True):
        if isinstance(mine, list):
            for m, t in zip(mine, their, strict=True):
                np.testing.assert_array_equal(m, np.asarray(t))
        else:
            np.testing.assert_array_equal(np.asarray(mine), np.asarray(their))


def test_position_of_repeated_entries_is_the_first_one():
    values = np.array([[3, 1], [0, 0], [3, 1], [2, 2]], np.int32)
    labels = mtd.Labels(["a", "b"], values, assume_unique=True)
    assert labels.position([3, 1]) == 0
    assert labels.position([2, 2]) == 3
    assert labels.position([2, 1]) is None


def _allocated_by(function):
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_first_position_allocates_a_few_numbers_per_entry():
    count = 200_000
    systems, atoms = np.divmod(np.arange(count, dtype=np.int32), 100)
    labels = mtd.Labels(["system", "atom"], np.stack([systems, atoms], axis=1))
    allocated = _allocated_by(lambda: labels.position([1000, 7]))
    assert labels.position([1000, 7]) == 100_007
    # a dictionary of entries takes more than 100 bytes per entry
    assert allocated < 40 * count, allocated / count


def test_first_position_in_unsorted_entries_allocates_a_few_numbers_per_entry():
    count = 200_000
    values = np.random.default_rng(3).permutation(count).astype(np.int32)[:, None]
    labels = mtd.Labels(["sample"], values)
    allocated = _allocated_by(lambda: labels.position([int(values[777, 0])]))
    assert labels.position([int(values[777, 0])]) == 777
    assert allocated < 40 * count, allocated / count


@pytest.mark.parametrize("columns, low, high", [*CASES, (0, 0, 1)])
@pytest.mark.parametrize("count", [0, 1, 2, 300])
def test_repeats_an_entry_tells_what_numpy_unique_tells(columns, low, high, count):
    rng = np.random.default_rng(count + columns)
    values = _values(rng, count, columns, low, high) if columns else np.zeros((count, 0), np.int32)
    repeated = np.concatenate([values, values[-1:]])
    for rows in (values, repeated):
        expected = len(np.unique(rows, axis=0)) != len(rows) if len(rows) else False
        assert mtd.labels.repeats_an_entry(rows) == expected
