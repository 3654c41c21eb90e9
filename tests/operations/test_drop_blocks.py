import metatensor
import numpy as np
import pytest
from oracle2 import assert_same_error, check_against_metatensor, tutorial

import metatensor_dask as mtd

SELECTIONS = [
    (["center_type"], [[8]]),
    (["center_type"], [[8], [6]]),
    (["center_type", "neighbor_type"], [[7, 7]]),
    (["neighbor_type"], [[42]]),
]


@pytest.mark.parametrize(("names", "values"), SELECTIONS)
@pytest.mark.parametrize("function", ["drop_blocks", "filter_blocks"])
def test_like_metatensor(function, names, values):
    ours, theirs = tutorial("radial-spectrum")
    result = check_against_metatensor(
        lambda: getattr(mtd, function)(ours, mtd.Labels(names, np.array(values))),
        lambda: getattr(metatensor, function)(theirs, metatensor.Labels(names, np.array(values))),
        [ours],
    )
    for key, block in result.items():
        source = ours.block(key)
        assert block.values is source.values  # shared, not copied


def test_drop_empty_blocks():
    ours, theirs = tutorial("spherical-expansion")
    partly_empty = mtd.slice(ours, "samples", mtd.Labels(["atom"], np.array([[1]])))
    theirs_partly = metatensor.slice(
        theirs, "samples", metatensor.Labels(["atom"], np.array([[1]]))
    )
    result = check_against_metatensor(
        lambda: mtd.drop_empty_blocks(partly_empty),
        lambda: metatensor.drop_empty_blocks(theirs_partly),
        [partly_empty],
    )
    assert 0 < len(result) < len(partly_empty)


def test_copy_of_computed_blocks():
    ours, _ = tutorial("radial-spectrum")
    computed = ours.compute()
    copied = mtd.filter_blocks(computed, mtd.Labels(["center_type"], np.array([[8]])), copy=True)
    shared = mtd.filter_blocks(computed, mtd.Labels(["center_type"], np.array([[8]])))
    assert copied.block(0).values is not computed.block(3).values
    assert shared.block(0).values is computed.block(3).values
    np.testing.assert_array_equal(copied.block(0).values, computed.block(3).values)


def test_errors_like_metatensor():
    ours, theirs = tutorial("radial-spectrum")
    good, bad = mtd.Labels.range("center_type", 1), metatensor.Labels.range("center_type", 1)
    for function in ("drop_blocks", "filter_blocks"):
        assert_same_error(
            lambda function=function: getattr(mtd, function)(3, good),
            lambda function=function: getattr(metatensor, function)(3, bad),
        )
        assert_same_error(
            lambda function=function: getattr(mtd, function)(ours, 3),
            lambda function=function: getattr(metatensor, function)(theirs, 3),
        )
        assert_same_error(
            lambda function=function: getattr(mtd, function)(ours, good, copy=1),
            lambda function=function: getattr(metatensor, function)(theirs, bad, copy=1),
        )
        assert_same_error(
            lambda function=function: getattr(mtd, function)(ours, mtd.Labels.range("zz", 1)),
            lambda function=function: getattr(metatensor, function)(
                theirs, metatensor.Labels.range("zz", 1)
            ),
        )
    assert_same_error(
        lambda: mtd.drop_empty_blocks(ours, copy="x"),
        lambda: metatensor.drop_empty_blocks(theirs, copy="x"),
    )
