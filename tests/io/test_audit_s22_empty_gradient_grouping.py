"""A gradient first stored without rows counts as grouped by ``"sample"`` (see
docs/ingestion.md): later appends of rows not grouped are refused before anything is
written, grouped ones are taken, and the store then equals metatensor's join."""

from __future__ import annotations

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def tensor(systems: list[int], gradient_rows: list[list[int]]) -> metatensor.TensorMap:
    samples = metatensor.Labels(["system"], np.array(systems, dtype=np.int32).reshape(-1, 1))
    properties = metatensor.Labels.range("p", 2)
    block = metatensor.TensorBlock(
        np.arange(2.0 * len(systems)).reshape(-1, 2), samples, [], properties
    )
    rows = np.array(gradient_rows, dtype=np.int32).reshape(-1, 2)
    gradient = metatensor.TensorBlock(
        np.arange(6.0 * len(rows)).reshape(-1, 3, 2),
        metatensor.Labels(["sample", "atom"], rows),
        [metatensor.Labels.range("xyz", 3)],
        properties,
    )
    block.add_gradient("positions", gradient)
    return metatensor.TensorMap(metatensor.Labels.single(), [block])


@pytest.mark.parametrize("first_samples", [[], [0]])
def test_a_gradient_first_stored_without_rows_takes_only_grouped_rows(tmp_path, first_samples):
    path = tmp_path / "empty_first.zarr"
    first = tensor(first_samples, [])
    mtd.from_metatensor(first).to_zarr(path, append_dim="samples")
    not_grouped = tensor([5, 6], [[1, 0], [0, 0], [1, 1]])
    with pytest.raises(mtd.MetatensorDaskError, match=r"not grouped by 'sample'.*nothing was"):
        mtd.from_metatensor(not_grouped).to_zarr(path, append_dim="samples")
    assert_equal_to_metatensor(mtd.open_zarr(path), first)
    grouped = metatensor.sort(not_grouped, axes="samples")
    mtd.from_metatensor(grouped).to_zarr(path, append_dim="samples")
    assert mtd.verify(path).ok
    expected = metatensor.join([first, grouped], axis="samples")
    assert_equal_to_metatensor(mtd.open_zarr(path), expected)
