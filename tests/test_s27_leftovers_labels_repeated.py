"""Labels built with ``assume_unique=True`` that repeat an entry anyway: metatensor
keeps them, and its set operations give the same entries as ours (a union adds each
new entry once, however often ``other`` holds it)."""

from __future__ import annotations

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd

_OPERATIONS = ["union_and_mapping", "intersection_and_mapping", "difference_and_mapping"]


def _pair(rows: np.ndarray, names: list[str]) -> tuple[metatensor.Labels, mtd.Labels]:
    return (
        metatensor.Labels(names, rows, assume_unique=True),
        mtd.Labels(names, rows, assume_unique=True),
    )


@pytest.mark.parametrize("seed", range(12))
def test_set_operations_give_metatensor_entries(seed: int) -> None:
    rng = np.random.default_rng(seed)
    dimensions = int(rng.integers(1, 4))
    names = [f"d{i}" for i in range(dimensions)]
    high = int(rng.choice([2, 4, 50]))
    sizes = rng.choice([0, 1, 3, 17, 2100, 2600], size=2)
    first, second = (rng.integers(-2, high, (n, dimensions)).astype(np.int32) for n in sizes)
    theirs_1, ours_1 = _pair(first, names)
    theirs_2, ours_2 = _pair(second, names)
    for operation in _OPERATIONS:
        for (a, b), (x, y) in [
            ((theirs_1, theirs_2), (ours_1, ours_2)),
            ((theirs_2, theirs_1), (ours_2, ours_1)),
        ]:
            expected = getattr(a, operation)(b)[0]
            got = getattr(x, operation)(y)[0]
            np.testing.assert_array_equal(got.values, expected.values, err_msg=operation)


@pytest.mark.parametrize("count", [2, 5, 3000])
def test_union_adds_each_new_entry_once_with_its_mapping(count: int) -> None:
    # the entries of `other` are new, `self` holds each entry once: every mapping is
    # the one metatensor gives
    rng = np.random.default_rng(count)
    other = rng.integers(0, max(count // 3, 1), (count, 2)).astype(np.int32)
    mine = np.array([[-1, 0], [int(other[0, 0]), int(other[0, 1])]], np.int32)
    theirs_other, ours_other = _pair(other, ["a", "b"])
    theirs_self = metatensor.Labels(["a", "b"], mine)
    ours_self = mtd.Labels(["a", "b"], mine)
    expected = theirs_self.union_and_mapping(theirs_other)
    got = ours_self.union_and_mapping(ours_other)
    np.testing.assert_array_equal(got[0].values, expected[0].values)
    np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_array_equal(got[2], expected[2])


def test_repeats_kept_by_an_operation_are_added_once_by_a_later_union() -> None:
    # the shorter Labels give the intersection its entries, with their repeats
    repeated = np.array([[3], [1], [3], [1]], np.int32)
    theirs, ours = _pair(repeated, ["a"])
    others = np.array([[1], [3], [7], [8], [9]])
    kept_theirs = theirs.intersection(metatensor.Labels(["a"], others))
    kept_ours = ours.intersection(mtd.Labels(["a"], others))
    np.testing.assert_array_equal(kept_ours.values, kept_theirs.values)
    assert len(kept_ours) == 4
    zero = np.array([[0]])
    expected = metatensor.Labels(["a"], zero).union_and_mapping(kept_theirs)
    got = mtd.Labels(["a"], zero).union_and_mapping(kept_ours)
    np.testing.assert_array_equal(got[0].values, expected[0].values)
    np.testing.assert_array_equal(got[2], expected[2])


_REBUILDS = {
    "rename": lambda labels: labels.rename("a", "c"),
    "permute": lambda labels: labels.permute([1, 0]),
    "insert": lambda labels: labels.insert(1, "z", np.zeros(len(labels), np.int32)),
    "remove": lambda labels: labels.remove("b"),
}


@pytest.mark.parametrize("operation", sorted(_REBUILDS))
@pytest.mark.parametrize("count", [3, 2500])
def test_operations_that_rebuild_labels_refuse_repeats_as_metatensor(
    operation: str, count: int
) -> None:
    rows = np.stack([np.arange(count) % (count - 1), np.zeros(count, int)], axis=1)
    theirs, ours = _pair(rows.astype(np.int32), ["a", "b"])
    with pytest.raises(metatensor.MetatensorError) as expected:
        _REBUILDS[operation](theirs)
    with pytest.raises(mtd.MetatensorError) as got:
        _REBUILDS[operation](ours)
    assert str(got.value) == str(expected.value)
    # derived by a set operation, the repeats are refused the same
    with pytest.raises(mtd.MetatensorError, match="same label entry multiple times"):
        _REBUILDS[operation](ours.difference(mtd.Labels(["a", "b"], np.array([[-5, 0]]))))
