import metatensor
import pytest
from oracle2 import (
    assert_co_partitioned,
    assert_same_error,
    check_against_metatensor,
    rechunked,
    tutorial,
)

import metatensor_dask as mtd
from metatensor_dask.testing import raise_if_dask_computes

AXES = ["all", "keys", "samples", "components", "properties", ["keys", "samples"], ["properties"]]


@pytest.mark.parametrize("name", ["radial-spectrum", "spherical-expansion"])
@pytest.mark.parametrize("axes", AXES)
@pytest.mark.parametrize("descending", [False, True])
def test_like_metatensor(name, axes, descending):
    _, theirs = tutorial(name)
    # start from the other order, so that sorting has something to do
    shuffled = metatensor.sort(theirs, descending=not descending)
    ours = rechunked(mtd.from_metatensor(shuffled))
    mine = list(axes) if isinstance(axes, list) else axes
    other = list(axes) if isinstance(axes, list) else axes
    result = check_against_metatensor(
        lambda: mtd.sort(ours, mine, descending=descending),
        lambda: metatensor.sort(shuffled, other, descending=descending),
        [ours],
    )
    assert mine == axes  # not modified (metatensor removes "keys" from the list)
    assert_co_partitioned(result)


def test_sort_block_and_no_op():
    ours, theirs = tutorial("spherical-expansion")
    check_against_metatensor(
        lambda: mtd.sort_block(ours.block(7), "samples", descending=True),
        lambda: metatensor.sort_block(theirs.block(7), "samples", descending=True),
        [],
    )
    with raise_if_dask_computes():
        same = mtd.sort_block(ours.block(7))
    assert same.values is ours.block(7).values  # already sorted: nothing to do


def test_errors_like_metatensor():
    ours, theirs = tutorial("radial-spectrum")
    for axes in ["keys", "xx", 3]:
        assert_same_error(
            lambda axes=axes: mtd.sort_block(ours.block(0), axes),
            lambda axes=axes: metatensor.sort_block(theirs.block(0), axes),
        )
    for axes in ["xx", ["keys", "yy"], 3.0]:
        assert_same_error(
            lambda axes=axes: mtd.sort(ours, axes), lambda axes=axes: metatensor.sort(theirs, axes)
        )
