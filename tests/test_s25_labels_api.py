"""Labels at the int32 limits, with many dimensions, long names and names that differ
only by case, side by side with metatensor; a new dimension with a bad name is refused
for its name first, as metatensor does, whatever its values."""

import metatensor
import numpy as np
import pytest
from metatensor_compare import assert_same_error_of, assert_same_result

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

HIGH, LOW = 2**31 - 1, -(2**31)


def _many(n_dimensions, seed):
    """Names ``d0, D0, long...`` and unsorted unique entries at the limits."""
    rng = np.random.default_rng(seed)
    names = ["d0", "D0", "x" * 300] + [f"d{i}" for i in range(3, n_dimensions)]
    pool = np.array([LOW, LOW + 1, -1, 0, 1, HIGH - 1, HIGH], dtype=np.int32)
    values = np.unique(rng.choice(pool, size=(12, n_dimensions)), axis=0)
    return names, values[rng.permutation(len(values))]


@pytest.mark.parametrize("n_dimensions", [8, 16])
@pytest.mark.parametrize(
    "operation",
    [
        lambda a, b: a.union(b),
        lambda a, b: a.intersection(b),
        lambda a, b: a.difference(b),
        lambda a, b: a.permute(list(range(len(a.names)))[::-1]),
        lambda a, b: a.rename("D0", "d1"),
        lambda a, b: a.insert(1, "new", np.full(len(a), LOW, dtype=np.int32)),
        lambda a, b: a.remove("x" * 300),
    ],
)
def test_many_dimensions_at_the_limits_are_metatensors(n_dimensions, operation):
    names, values = _many(n_dimensions, n_dimensions)
    _, others = _many(n_dimensions, n_dimensions + 1)
    assert_same_result(
        lambda module: operation(module.Labels(names, values), module.Labels(names, others))
    )


@pytest.mark.parametrize("n_dimensions", [8, 16])
def test_selection_and_positions_at_the_limits_are_metatensors(n_dimensions):
    names, values = _many(n_dimensions, 3)
    ours, theirs = mtd.Labels(names, values), metatensor.Labels(names, values)
    selection = values[::2, [0, 2]]
    selection = np.unique(selection, axis=0)
    np.testing.assert_array_equal(
        ours.select(mtd.Labels([names[0], names[2]], selection)),
        theirs.select(metatensor.Labels([names[0], names[2]], selection)),
    )
    for row in values:
        assert ours.position(row) == theirs.position(row)
    assert ours.position(np.full(n_dimensions, 5)) is None


def _map(module):
    block = module.TensorBlock(
        np.ones((2, 1)),
        module.Labels(["s", "S"], np.array([[HIGH, 0], [LOW, 0]], dtype=np.int32)),
        [],
        module.Labels(["p"], np.array([[0]], dtype=np.int32)),
    )
    return module.TensorMap(module.Labels(["k"], np.array([[0]], dtype=np.int32)), [block])


BAD_NAMES = [
    (axis, name)
    for axis, taken in (("keys", "k"), ("samples", "S"), ("properties", "p"))
    for name in ("", "1a", taken)
]


@pytest.mark.parametrize(("axis", "name"), BAD_NAMES)
@pytest.mark.parametrize("values", [2**31, -(2**31) - 1, np.array([2**31, 2**32])])
def test_a_bad_name_is_refused_before_values_out_of_range(axis, name, values):
    """The name is checked first, as by metatensor (which truncates the values)."""
    if isinstance(values, np.ndarray) and axis != "samples":
        values = values[:1]

    assert_same_error_of(lambda module: module.append_dimension(_map(module), axis, name, values))
    assert_same_error_of(
        lambda module: module.insert_dimension(_map(module), axis, 0, name, values)
    )


def test_a_new_dimension_at_the_limits_is_metatensors():
    for axis, values in (("keys", LOW), ("samples", np.array([HIGH, LOW])), ("properties", HIGH)):
        assert_equal_to_metatensor(
            mtd.append_dimension(_map(mtd), axis, "new", values),
            metatensor.append_dimension(_map(metatensor), axis, "new", values),
        )


@pytest.mark.parametrize(
    "names",
    [["a", "a"], ["s", "p", "p", "s"], ["x", "y", "z", "y", "x"], ["A", "a", "a", "A", "A"]],
)
def test_a_name_given_twice_is_refused_as_by_metatensor(names):
    """metatensor names the first of the names that appear more than once."""
    assert_same_error_of(
        lambda module: module.Labels(names, np.zeros((1, len(names)), dtype=np.int32))
    )
