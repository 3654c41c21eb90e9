"""Labels of 2,048 rows and more, whose columns span a box of just under or just over
2**62 rows (the largest whose rows get one int64 key each), or nine columns: positions,
set operations and mappings answer as metatensor does, queried with rows outside the
box by a little and by the whole int32 range."""

from __future__ import annotations

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd

INT32 = np.iinfo(np.int32)

#: the smallest and largest value of each column
BOXES = {
    # 2**31 * (2**31 - 1) rows: keyed
    "under 2**62": [(0, 2**31 - 1), (-(2**30), 2**30 - 2)],
    # 2**31 * 2**31 rows: compared by their bytes
    "2**62": [(0, 2**31 - 1), (-(2**30), 2**30 - 1)],
    "int32 extremes": [(INT32.min, INT32.max), (INT32.min, INT32.max)],
    # 4**9 rows: keyed
    "nine columns": [(-2, 1)] * 9,
    "nine wide columns": [(INT32.min, INT32.max)] + [(-2, 1)] * 8,
}


def _rows(rng: np.random.Generator, count: int, box: list[tuple[int, int]]) -> np.ndarray:
    """``count`` distinct rows inside ``box``, its corners among them."""
    columns = [rng.integers(low, high, count, endpoint=True) for low, high in box]
    values = np.stack(columns, axis=1)
    values[0] = [low for low, _ in box]
    values[1] = [high for _, high in box]
    values = np.unique(values.astype(np.int32), axis=0)
    return values[rng.permutation(len(values))]


def _outside(rows: np.ndarray, box: list[tuple[int, int]]) -> list[np.ndarray]:
    """Rows of ``rows`` with one value moved out of its column's range (by 1, and to the
    end of the int32 range), where int32 allows."""
    found = []
    for j, (low, high) in enumerate(box):
        for value in (low - 1, high + 1, INT32.min, INT32.max):
            if INT32.min <= value <= INT32.max and not low <= value <= high:
                row = rows[j % len(rows)].copy()
                row[j] = value
                found.append(row)
    return found


def _answers(module, names, first, second, queries) -> list:
    a, b = module.Labels(names, first), module.Labels(names, second)
    answers: list = [
        [a.position(q) for q in queries],
        [a.position(tuple(int(v) for v in q)) for q in queries[:5]],
        [a.position([int(v) for v in q]) for q in queries[:5]],
        a.select(b),
        a.select(module.Labels(names[::-1], np.ascontiguousarray(second[:40, ::-1]))),
    ]
    for x, y in ((a, b), (b, a)):
        for operation in ("union", "intersection"):
            result, *mappings = getattr(x, f"{operation}_and_mapping")(y)
            answers += [result.values, *mappings]
        result, mapping = x.difference_and_mapping(y)
        answers += [result.values, mapping]
    return answers


@pytest.mark.parametrize("box", list(BOXES))
@pytest.mark.parametrize("sizes", [(2100, 600), (600, 2100), (2100, 2500)])
def test_rows_in_boxes_at_the_limit_of_keys_answer_as_metatensor(box, sizes):
    rng = np.random.default_rng(len(box) + sizes[0])
    limits = BOXES[box]
    names = [f"d{j}" for j in range(len(limits))]
    first = _rows(rng, sizes[0], limits)
    second = np.unique(np.concatenate([first[::4], _rows(rng, sizes[1], limits)]), axis=0)
    queries = [*first[::150], *second[::170], *_outside(first, limits)]
    theirs = _answers(metatensor, names, first, second, queries)
    ours = _answers(mtd, names, first, second, queries)
    assert ours[:3] == theirs[:3]
    for mine, their in zip(ours[3:], theirs[3:], strict=True):
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(their))


@pytest.mark.parametrize(
    "low, high, columns",
    [(0, 20, 4), (-2, 1, 9), (INT32.max - 11, INT32.max, 5), (INT32.min, INT32.min + 2, 11)],
)
def test_rows_outside_a_full_box_are_not_taken_for_rows_inside(low, high, columns):
    # every row of the box is there (more rows than the dict of positions holds), so
    # that a row outside it, keyed as if inside, would be the key of one of them
    grid = np.meshgrid(*[np.arange(low, high + 1, dtype=np.int64)] * columns, indexing="ij")
    first = np.stack([g.ravel() for g in grid], axis=1).astype(np.int32)
    assert len(first) > mtd.labels.POSITIONS_IN_A_DICT
    box = [(low, high)] * columns
    outside = np.unique(np.array(_outside(first[::997], box)), axis=0)
    second = np.concatenate([first[::5000], outside])
    names = [f"d{j}" for j in range(columns)]
    queries = [*outside, *first[::7919]]
    theirs = _answers(metatensor, names, first, second, queries)
    ours = _answers(mtd, names, first, second, queries)
    assert ours[0][: len(outside)] == [None] * len(outside)
    assert ours[:3] == theirs[:3]
    for mine, their in zip(ours[3:], theirs[3:], strict=True):
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(their))
