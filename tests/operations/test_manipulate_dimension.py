import metatensor
import numpy as np
import pytest
from oracle2 import assert_same_error, check_function, tutorial

import metatensor_dask as mtd

CALLS = [
    ("insert_dimension", ("keys", 1, "new", 3)),
    ("insert_dimension", ("samples", 0, "new", np.array([0, 0, 1]))),
    ("insert_dimension", ("properties", 1, "new", 7)),
    ("append_dimension", ("keys", "new", np.arange(5))),
    ("append_dimension", ("samples", "new", 2)),
    ("append_dimension", ("properties", "new", np.array([1, 2, 3]))),
    ("remove_dimension", ("samples", "system")),
    ("permute_dimensions", ("keys", [1, 0])),
    ("permute_dimensions", ("samples", [1, 0])),
    ("rename_dimension", ("keys", "center_type", "center")),
    ("rename_dimension", ("samples", "system", "structure")),
    ("rename_dimension", ("samples", "atom", "center")),
    ("rename_dimension", ("properties", "n", "radial")),
]


@pytest.mark.parametrize(("function", "args"), CALLS)
def test_like_metatensor(function, args):
    ours, theirs = tutorial("radial-spectrum")
    if args[0] == "samples" and not isinstance(args[-1], str) and not np.isscalar(args[-1]):
        key = np.array([[8, 8]])  # the block with 3 samples
        ours = mtd.filter_blocks(ours, mtd.Labels(["center_type", "neighbor_type"], key))
        theirs = metatensor.filter_blocks(
            theirs, metatensor.Labels(["center_type", "neighbor_type"], key)
        )
    result = check_function(function, ours, theirs, *args)
    for mine, source in zip(result.blocks(), ours.blocks(), strict=True):
        assert mine.values is source.values


def test_rename_components():
    ours, theirs = tutorial("spherical-expansion")
    check_function("rename_dimension", ours, theirs, "components", "o3_mu", "m")


def test_errors_like_metatensor():
    ours, theirs = tutorial("radial-spectrum")
    for function, args in [
        ("insert_dimension", ("xx", 0, "a", 1)),
        ("insert_dimension", ("keys", 0, "center_type", 1)),
        ("append_dimension", ("components", "a", 1)),
        ("remove_dimension", ("keys", "zz")),
        ("remove_dimension", ("keys", "neighbor_type")),
        ("remove_dimension", ("samples", "atom")),
        ("permute_dimensions", ("keys", [0])),
        ("rename_dimension", ("xx", "a", "b")),
    ]:
        assert_same_error(
            lambda args=args, function=function: getattr(mtd, function)(ours, *args),
            lambda args=args, function=function: getattr(metatensor, function)(theirs, *args),
        )


@pytest.mark.parametrize(
    ("function", "args"),
    [
        ("insert_dimension", ("components", 0, "a", 1)),
        ("remove_dimension", ("components", "o3_mu")),
        ("permute_dimensions", ("components", [0])),
    ],
)
def test_components_are_refused(function, args):
    """metatensor 0.5.0 silently returns the input unchanged here."""
    ours, _ = tutorial("spherical-expansion")
    with pytest.raises(ValueError, match="can not change 'components'"):
        getattr(mtd, function)(ours, *args)
