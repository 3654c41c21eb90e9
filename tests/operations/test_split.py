import metatensor
import numpy as np
import pytest
from oracle2 import assert_co_partitioned, assert_same_error, check_against_metatensor, tutorial

import metatensor_dask as mtd


@pytest.mark.parametrize("name", ["radial-spectrum", "spherical-expansion"])
def test_split_samples_and_properties(name):
    ours, theirs = tutorial(name)
    for axis, names, groups in [
        ("samples", ["atom"], [[[0], [1]], [[2], [3]], [[99]]]),
        ("properties", ["n"], [[[0]], [[1], [2]]]),
    ]:
        result = check_against_metatensor(
            lambda axis=axis, groups=groups, names=names: mtd.split(
                ours, axis, [mtd.Labels(names, np.array(g)) for g in groups]
            ),
            lambda axis=axis, groups=groups, names=names: metatensor.split(
                theirs, axis, [metatensor.Labels(names, np.array(g)) for g in groups]
            ),
            [ours],
        )
        for tensor in result:
            assert_co_partitioned(tensor)


def test_split_block_positions():
    ours, theirs = tutorial("radial-spectrum")
    check_against_metatensor(
        lambda: mtd.split_block(ours.block(4), "samples", [[0, 2], [1]]),
        lambda: metatensor.split_block(theirs.block(4), "samples", [[0, 2], [1]]),
        [],
    )


def test_errors_like_metatensor():
    ours, theirs = tutorial("radial-spectrum")
    for axis, selections in [("samples", (1,)), ("components", []), (3, [])]:
        assert_same_error(
            lambda axis=axis, selections=selections: mtd.split(ours, axis, selections),
            lambda axis=axis, selections=selections: metatensor.split(theirs, axis, selections),
        )
    assert_same_error(
        lambda: mtd.split(ours, "samples", [mtd.Labels.range("xx", 1)]),
        lambda: metatensor.split(theirs, "samples", [metatensor.Labels.range("xx", 1)]),
    )


def test_empty_tensor():
    empty = mtd.TensorMap(mtd.Labels.empty(["a"]), [])
    result = mtd.split(empty, "samples", [[0], [1]])
    assert [len(t) for t in result] == [0, 0]
