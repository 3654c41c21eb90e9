import metatensor
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracle2 import (
    assert_co_partitioned,
    assert_same_error,
    check_against_metatensor,
    check_out_of_core,
    max_chunk,
    to_mts,
    tutorial,
)

import metatensor_dask as mtd
from metatensor_dask.testing import strategies

SELECTIONS = [
    ("samples", ["atom"], [[0], [2]]),
    ("samples", ["system", "atom"], [[0, 1]]),
    ("samples", ["system"], [[99]]),
    ("properties", ["n"], [[0], [2]]),
    ("properties", ["n"], [[4], [1]]),
]


@pytest.mark.parametrize("name", ["radial-spectrum", "spherical-expansion"])
@pytest.mark.parametrize(("axis", "names", "values"), SELECTIONS)
def test_labels_selection(name, axis, names, values):
    ours, theirs = tutorial(name)
    ours_sel = mtd.Labels(names, np.array(values))
    theirs_sel = metatensor.Labels(names, np.array(values))
    result = check_against_metatensor(
        lambda: mtd.slice(ours, axis, ours_sel),
        lambda: metatensor.slice(theirs, axis, theirs_sel),
        [ours],
    )
    assert_co_partitioned(result)


@pytest.mark.parametrize("axis", ["samples", "properties"])
@pytest.mark.parametrize(
    "selection", [[0, 2], [2, 0], np.array([1, 2]), [-1], [], np.array([], np.int64)]
)
def test_positions_selection(axis, selection):
    ours, theirs = tutorial("radial-spectrum")
    key = np.array([[8, 8]])
    ours = mtd.filter_blocks(ours, mtd.Labels(["center_type", "neighbor_type"], key))
    theirs = metatensor.filter_blocks(
        theirs, metatensor.Labels(["center_type", "neighbor_type"], key)
    )
    check_against_metatensor(
        lambda: mtd.slice(ours, axis, selection),
        lambda: metatensor.slice(theirs, axis, selection),
        [ours],
    )
    block = ours.block(0)
    check_against_metatensor(
        lambda: mtd.slice_block(block, axis, selection),
        lambda: metatensor.slice_block(theirs.block(0), axis, selection),
        [],
    )


@given(tensor=strategies.tensor_maps(max_samples=8), data=st.data())
def test_random_tensors(tensor, data):
    theirs = to_mts(tensor)
    axis = data.draw(st.sampled_from(["samples", "properties"]))
    if axis == "samples":
        selection = mtd.Labels(["atom"], np.array([[data.draw(st.integers(0, 2))]]))
    else:
        selection = mtd.Labels(["n"], np.array([[1], [5]]))
    result = check_against_metatensor(
        lambda: mtd.slice(tensor, axis, selection),
        lambda: metatensor.slice(theirs, axis, to_mts(selection)),
        [tensor],
    )
    for mine, source in zip(result.blocks(), tensor.blocks(), strict=True):
        assert max_chunk(mine.values) <= max(1, max_chunk(source.values))
    assert_co_partitioned(result)


def test_out_of_core_structure():
    """Each output chunk comes from one input chunk, small ones are merged, gradients
    stay co-partitioned, and the graph grows linearly with the number of chunks."""
    kept = mtd.Labels(["atom"], np.array([[1]]))
    check_out_of_core(lambda tensor: mtd.slice(tensor, "samples", kept))


def test_errors_like_metatensor():
    ours, theirs = tutorial("radial-spectrum")
    cases = [
        ("components", mtd.Labels.range("n", 1), metatensor.Labels.range("n", 1)),
        ("samples", mtd.Labels.range("xx", 1), metatensor.Labels.range("xx", 1)),
        ("properties", mtd.Labels.range("xx", 1), metatensor.Labels.range("xx", 1)),
        ("samples", 3.5, 3.5),
        ("samples", np.zeros((2, 2), np.int64), np.zeros((2, 2), np.int64)),
    ]
    for axis, mine, other in cases:
        assert_same_error(
            lambda axis=axis, mine=mine: mtd.slice(ours, axis, mine),
            lambda axis=axis, other=other: metatensor.slice(theirs, axis, other),
        )
    assert_same_error(
        lambda: mtd.slice(3, "samples", []), lambda: metatensor.slice(3, "samples", [])
    )


def test_own_errors():
    ours, _ = tutorial("radial-spectrum")
    with pytest.raises(ValueError, match="same sample more than once"):
        mtd.slice(ours, "samples", [0, 0])
    with pytest.raises(IndexError, match="index 7 is out of bounds for the 1 sample"):
        mtd.slice(ours, "samples", [7])
    empty = mtd.TensorMap(mtd.Labels.empty(["a"]), [])
    assert mtd.slice(empty, "samples", []) is empty
    with pytest.raises(ValueError, match="not known as a slicing axis"):
        mtd.slice(empty, "keys", [])
