"""Positions of a wrong shape are refused by name before anything is read, on a map
opened from a store, where metatensor fails with numpy's or Labels' errors."""

from __future__ import annotations

import numpy as np
import pytest
from oracle2 import tutorial

import metatensor_dask as mtd

WRONG = [
    (np.array(2), "got a 0-D array: give a single position in a list"),
    ([[1], [2]], "got a list holding sequences: flatten it"),
    ([0, np.array([1, 2])], "got a list holding sequences: flatten it"),
    ([(0, 1)], "got a list holding sequences: flatten it"),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    ours, _ = tutorial("radial-spectrum")
    path = tmp_path_factory.mktemp("wrong-shapes") / "map.zarr"
    mtd.to_zarr(ours, path)
    return path


@pytest.mark.parametrize(("selection", "message"), WRONG)
@pytest.mark.parametrize("axis", ["samples", "properties"])
def test_positions_of_a_wrong_shape(store, axis, selection, message):
    opened = mtd.open_zarr(store)
    for call in (
        lambda: mtd.slice(opened, axis, selection),
        lambda: mtd.slice_block(opened.block(0), axis, selection),
        lambda: mtd.split(opened, axis, [[0], selection]),
    ):
        with pytest.raises(ValueError, match=message):
            call()
    assert not any(block.samples.is_loaded for block in opened.blocks())


def test_positions_holding_scalars_are_positions():
    """0-D arrays and numpy integers in a list are positions, as in metatensor."""
    ours, _ = tutorial("radial-spectrum")
    block = max(ours.blocks(), key=len)
    expected = mtd.slice_block(block, "samples", [1, 0])
    for selection in ([np.array(1), np.array(0)], [np.int64(1), np.int32(0)]):
        got = mtd.slice_block(block, "samples", selection)
        assert got.samples == expected.samples
