"""Labels, TensorBlock and TensorMap against metatensor-core on inputs with more than one
problem, or at the edges: the same error first, and the same counts of entries."""

import metatensor
import numpy as np
import pytest
from metatensor_compare import assert_same_error_of, run_both

import metatensor_dask as mtd


def labels(module, names, values):
    return module.Labels(names, np.array(values, dtype=np.int32).reshape(-1, len(names)))


def no_dimension(module, rows):
    """Labels without dimensions but with ``rows`` rows (metatensor counts no entry)."""
    return module.Labels([], np.zeros((rows, 0), dtype=np.int32))


# -- Labels --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "values"),
    [
        (["a b"], np.zeros((1, 2), np.int32)),
        (["a", "a"], np.zeros((1, 2), np.float64) + 0.5),
        (["1a"], np.zeros(3, np.int32)),
        (["a", "a"], np.zeros((2, 2, 1), np.int32)),
    ],
    ids=["invalid name, wrong columns", "repeated name, floats", "digit, 1-D", "repeated, 3-D"],
)
def test_labels_check_their_values_before_the_rules_of_names(names, values):
    assert_same_error_of(lambda m: m.Labels(names, values))


def test_labels_print_with_a_negative_indent_as_metatensor():
    def printed(module):
        return labels(module, ["a", "b"], [[0, 1], [1, 2], [2, 3], [0, 5]]).print(3, -2)

    theirs, ours = run_both(printed)
    assert ours == theirs


@pytest.mark.parametrize(("rows", "other_rows"), [(3, 3), (3, 0), (0, 2), (1, 1), (0, 0)])
def test_set_operations_hold_at_most_the_empty_entry_without_dimensions(rows, other_rows):
    """Every row of Labels without dimensions is the empty entry: a set operation gives
    it at most once, and maps every row to it (metatensor counts no entry in them)."""
    first, second = no_dimension(mtd, rows), no_dimension(mtd, other_rows)
    expected = {
        "union": bool(rows or other_rows),
        "intersection": bool(rows and other_rows),
        "difference": bool(rows and not other_rows),
    }
    for operation, present in expected.items():
        result, *mappings = getattr(first, f"{operation}_and_mapping")(second)
        assert len(result) == int(present) == len(getattr(first, operation)(second))
        # a difference maps the entries of the first Labels only
        for mapping, count in zip(mappings, (rows, other_rows), strict=False):
            assert len(mapping) == count
            assert all(-1 <= position < len(result) for position in mapping.tolist())
    _, in_first, in_second = first.union_and_mapping(second)
    assert in_first.tolist() == [0] * rows and in_second.tolist() == [0] * other_rows
    _, kept, _ = first.intersection_and_mapping(second)
    assert kept.tolist() == [0 if other_rows else -1] * rows


@pytest.mark.parametrize(("rows", "selected"), [(3, 1), (3, 0), (0, 1)])
def test_selecting_in_labels_without_dimensions_matches_every_row(rows, selected):
    """metatensor refuses this (it counts no entry); a selection without dimensions
    matches every row, as it does in Labels that have dimensions, where metatensor
    selects every entry with a selection of one such row or of none."""
    found = no_dimension(mtd, rows).select(no_dimension(mtd, selected))
    with_dimension = labels(mtd, ["a"], [[i] for i in range(rows)])
    assert found.tolist() == with_dimension.select(no_dimension(mtd, selected)).tolist()
    assert found.tolist() == list(range(rows))
    if rows:
        theirs = labels(metatensor, ["a"], [[i] for i in range(rows)])
        assert theirs.select(no_dimension(metatensor, selected)).tolist() == found.tolist()


# -- TensorBlock ---------------------------------------------------------------------


@pytest.mark.parametrize("axis", ["samples", "properties"])
def test_a_block_of_no_rows_counts_no_entry_in_labels_without_dimensions(axis):
    def built(module):
        full = labels(module, ["p"], [[0], [1]])
        if axis == "samples":
            return module.TensorBlock(np.zeros((0, 2)), no_dimension(module, 3), [], full)
        return module.TensorBlock(np.zeros((2, 0)), full, [], no_dimension(module, 3))

    theirs, ours = run_both(built)
    assert len(ours) == len(theirs)
    assert ours.shape == tuple(theirs.shape)
    mine, expected = getattr(ours, axis), getattr(theirs, axis)
    assert len(mine) == len(expected) == 0
    assert mine.values.shape == expected.values.shape


def _block_with(module, shape, components):
    samples = labels(module, ["s"], [[0], [1], [2]])
    return module.TensorBlock(np.zeros(shape), samples, components, labels(module, ["p"], [[0]]))


@pytest.mark.parametrize(
    ("shape", "components"),
    [
        ((3, 1, 1), lambda m: [labels(m, ["x", "y"], [[0, 0], [1, 1]])]),
        ((3, 2, 1), lambda m: [no_dimension(m, 1)]),
        ((3, 1, 1), lambda m: [m.Labels.empty("c")]),
        ((3, 2, 2), lambda m: [labels(m, ["x", "y"], [[0, 0], [1, 1]])]),
        ((3, 2, 2, 1), lambda m: [m.Labels.empty("c"), labels(m, ["c"], [[0], [1]])]),
        ((3, 1, 1, 1), lambda m: [no_dimension(m, 1), no_dimension(m, 1)]),
    ],
    ids=[
        "two dimensions, wrong size",
        "no dimension, wrong size",
        "no entry, wrong size",
        "two dimensions, wrong properties",
        "no entry, repeated name",
        "no dimension twice",
    ],
)
def test_a_block_checks_its_shape_before_its_component_labels(shape, components):
    assert_same_error_of(lambda m: _block_with(m, shape, components(m)))


def _gradient_added(module, problems):
    """A (3, 2, 4) block, given a gradient with each of ``problems``."""
    component = labels(module, ["c"], [[0], [1]])
    properties = labels(module, ["p"], [[0], [1], [2], [3]])
    block = module.TensorBlock(
        np.zeros((3, 2, 4)), labels(module, ["s"], [[0], [1], [2]]), [component], properties
    )
    names, rows = ["sample"], [[0], [2]]
    if "first name" in problems:
        names = ["atom"]
    if "row out of range" in problems:
        rows = [[0], [5]]
    samples = labels(module, names, rows)
    if "no sample dimension" in problems:
        samples = no_dimension(module, 0)
    components = [component]
    if "no components" in problems:
        components = []
    if "other component" in problems:
        components = [labels(module, ["d"], [[0], [1]])]
    if "other properties" in problems:
        properties = labels(module, ["q"], [[0], [1], [2], [3]])
    dtype = np.float32 if "float32" in problems else np.float64
    shape = (len(samples), *(len(c) for c in components), 4)
    block.add_gradient(
        "g", module.TensorBlock(np.zeros(shape, dtype), samples, components, properties)
    )


@pytest.mark.parametrize(
    "problems",
    [
        ["no sample dimension"],
        ["first name", "float32"],
        ["row out of range", "float32"],
        ["no components", "float32"],
        ["other component", "other properties"],
        ["other properties", "float32"],
    ],
    ids=", ".join,
)
def test_add_gradient_reports_the_problem_metatensor_reports_first(problems):
    assert_same_error_of(lambda m: _gradient_added(m, problems))


# -- TensorMap -----------------------------------------------------------------------


def _map_block(module, sample="s", dtype=np.float64):
    return module.TensorBlock(
        np.zeros((2, 1), dtype),
        labels(module, [sample], [[0], [1]]),
        [],
        labels(module, ["p"], [[0]]),
    )


@pytest.mark.parametrize("where", ["same block", "later block"])
def test_a_map_checks_the_dtypes_of_all_blocks_before_their_names(where):
    def built(module):
        if where == "same block":
            blocks = [_map_block(module), _map_block(module, "t", np.float32)]
        else:
            blocks = [
                _map_block(module),
                _map_block(module, "t"),
                _map_block(module, "s", np.float32),
            ]
        return module.TensorMap(module.Labels.range("k", len(blocks)), blocks)

    assert_same_error_of(built)


def test_a_map_without_entries_in_keys_without_dimensions_has_no_block():
    theirs, ours = run_both(lambda m: m.TensorMap(no_dimension(m, 3), []))
    assert len(ours) == len(theirs) == 0
    assert ours.keys.values.shape == theirs.keys.values.shape
    assert list(ours) == []


def _empty_map(module):
    return module.TensorMap(module.Labels.empty(["a", "b"]), [])


@pytest.mark.parametrize(
    "selection",
    [
        "a",
        1.5,
        {"z": 0},
        {"a": 0.5},
        lambda m: labels(m, ["z"], [[0]]),
    ],
    ids=["a string", "a float", "an unknown name", "a float value", "Labels of an unknown name"],
)
@pytest.mark.parametrize("method", ["block", "blocks"])
def test_a_selection_is_checked_on_a_map_without_blocks(selection, method):
    def selected(module):
        chosen = selection(module) if callable(selection) else selection
        return getattr(_empty_map(module), method)(chosen)

    assert_same_error_of(selected)


def test_a_valid_selection_on_a_map_without_blocks_as_metatensor():
    assert_same_error_of(lambda m: _empty_map(m).block({"a": 0}))
    assert_same_error_of(lambda m: _empty_map(m).block(m.Labels.empty(["a"])))
    theirs, ours = run_both(lambda m: _empty_map(m).blocks(m.Labels.empty(["a"])))
    assert ours == theirs == []
    theirs, ours = run_both(lambda m: _empty_map(m).blocks(a=0))
    assert ours == theirs == []
