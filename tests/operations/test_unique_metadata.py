import metatensor
import pytest
from oracle2 import assert_same_error, tutorial

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes

CASES = [
    ("samples", "system", None),
    ("samples", ["atom", "system"], None),
    ("samples", ("atom",), "positions"),
    ("properties", "n", None),
    ("properties", ["n"], "positions"),
]


@pytest.mark.parametrize("name", ["radial-spectrum", "spherical-expansion"])
@pytest.mark.parametrize(("axis", "names", "gradient"), CASES)
def test_like_metatensor(name, axis, names, gradient):
    ours, theirs = tutorial(name)
    with raise_if_dask_computes():
        result = mtd.unique_metadata(ours, axis, names, gradient)
        block_result = mtd.unique_metadata_block(ours.block(2), axis, names, gradient)
    assert_equal_to_metatensor(result, metatensor.unique_metadata(theirs, axis, names, gradient))
    assert_equal_to_metatensor(
        block_result, metatensor.unique_metadata_block(theirs.block(2), axis, names, gradient)
    )


def test_errors_like_metatensor():
    ours, theirs = tutorial("radial-spectrum")
    for args in [
        ("components", "n"),
        ("samples", "zz"),
        (3, "n"),
        ("samples", [3]),
        ("samples", {"a"}),
        ("samples", "atom", 3),
    ]:
        assert_same_error(
            lambda args=args: mtd.unique_metadata(ours, *args),
            lambda args=args: metatensor.unique_metadata(theirs, *args),
        )
    assert_same_error(
        lambda: mtd.unique_metadata(3, "samples", "atom"),
        lambda: metatensor.unique_metadata(3, "samples", "atom"),
    )
