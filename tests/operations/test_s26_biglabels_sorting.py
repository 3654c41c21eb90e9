"""Sorting rows of many samples: same order as metatensor, through packed row keys."""

import metatensor
import metatensor.operations as mops
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.operations import _manipulation_utils

INT32 = np.iinfo(np.int32)


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize(
    "columns, low, high",
    [(1, -3, 4), (2, 0, 30), (3, -50, 50), (2, INT32.min, INT32.max), (4, 0, 2**20)],
)
def test_rows_sort_as_numpy_lexsort_with_ties_in_place(columns, low, high, descending):
    rng = np.random.default_rng(columns)
    values = rng.integers(low, high, (5000, columns), dtype=np.int64).astype(np.int32)
    values = np.concatenate([values, values[::7]])  # ties keep their order
    expected = np.lexsort(values.T[::-1])
    expected = expected[::-1] if descending else expected
    order = _manipulation_utils.lexsort_rows(values, descending)
    np.testing.assert_array_equal(order, expected)


def _count_calls(monkeypatch, names):
    """Record the calls to the numpy functions ``names``."""
    calls = []
    for name in names:
        original = getattr(np, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(np, name, counted)
    return calls


def test_rows_with_packable_ranges_are_not_lexsorted_column_by_column(monkeypatch):
    calls = _count_calls(monkeypatch, ["lexsort"])
    systems, atoms = np.divmod(np.arange(100_000, dtype=np.int32), 100)
    shuffled = np.random.default_rng(0).permutation(len(systems))
    values = np.stack([systems, atoms], axis=1)[shuffled]
    order = _manipulation_utils.lexsort_rows(values)
    np.testing.assert_array_equal(order, np.argsort(shuffled))
    assert calls == []


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize(
    "columns, low, high",
    [(0, 0, 1), (1, -3, 4), (2, 0, 30), (3, -50, 50), (2, INT32.min, INT32.max), (5, 0, 2**14)],
)
@pytest.mark.parametrize("count", [0, 1, 4000])
def test_unique_rows_are_numpys(columns, low, high, count, shuffle):
    rng = np.random.default_rng(count + columns)
    values = rng.integers(low, high, (count, columns), dtype=np.int64).astype(np.int32)
    values = np.concatenate([values, values[::5]])
    if not shuffle:
        values = values[np.lexsort(values.T[::-1])] if columns else values
    unique, inverse = _manipulation_utils.unique_rows(values)
    expected, expected_inverse = np.unique(values, axis=0, return_inverse=True)
    np.testing.assert_array_equal(unique, expected)
    np.testing.assert_array_equal(inverse, expected_inverse.reshape(-1))


def test_unique_rows_in_order_are_neither_sorted_nor_given_to_numpy_unique(monkeypatch):
    calls = _count_calls(monkeypatch, ["lexsort", "unique", "argsort", "sort"])
    systems = np.repeat(np.arange(1000, dtype=np.int32), 100)
    values = np.stack([systems, np.zeros_like(systems), systems % 7], axis=1)
    unique, inverse = _manipulation_utils.unique_rows(values)
    np.testing.assert_array_equal(unique[:, 0], np.arange(1000))
    np.testing.assert_array_equal(inverse, systems)
    assert calls == []


def _shuffled_map(module, rng, count):
    keys = module.Labels(["center"], np.array([[6], [1]], np.int32))
    blocks = []
    for _ in range(2):
        samples = np.stack(
            [rng.integers(-40, 40, count), rng.integers(0, 20, count), rng.integers(-3, 3, count)],
            axis=1,
        ).astype(np.int32)
        samples = np.unique(samples, axis=0)
        samples = samples[rng.permutation(len(samples))]
        n = len(samples)
        block = module.TensorBlock(
            rng.random((n, 3)),
            module.Labels(["system", "atom", "cell"], samples),
            [],
            module.Labels(["n"], np.array([[2], [0], [1]], np.int32)),
        )
        rows = np.sort(rng.choice(n, 2 * n))
        gradient_samples = np.stack([rows, rng.integers(0, 5, 2 * n)], axis=1).astype(np.int32)
        gradient_samples = np.unique(gradient_samples, axis=0)
        gradient_samples = gradient_samples[rng.permutation(len(gradient_samples))]
        block.add_gradient(
            "positions",
            module.TensorBlock(
                rng.random((len(gradient_samples), 3, 3)),
                module.Labels(["sample", "atom"], gradient_samples),
                [module.Labels(["xyz"], np.array([[0], [1], [2]], np.int32))],
                block.properties,
            ),
        )
        blocks.append(block)
    return module.TensorMap(keys, blocks)


@pytest.mark.parametrize("descending", [False, True])
def test_sort_of_shuffled_samples_is_metatensors(descending):
    theirs = _shuffled_map(metatensor, np.random.default_rng(5), 3000)
    ours = mtd.sort(mtd.from_metatensor(theirs), descending=descending)
    expected = mops.sort(theirs, descending=descending)
    assert mops.equal(mtd.to_metatensor(ours), expected)
