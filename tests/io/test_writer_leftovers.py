"""A location holding only what a killed writer leaves before its root (a temporary
file of an atomic write) is not someone else's data: writes and appends go on."""

from __future__ import annotations

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def tensor() -> metatensor.TensorMap:
    block = metatensor.TensorBlock(
        np.arange(6.0).reshape(3, 2),
        metatensor.Labels(["system"], np.arange(3).reshape(-1, 1)),
        [],
        metatensor.Labels.range("p", 2),
    )
    return metatensor.TensorMap(metatensor.Labels.single(), [block])


@pytest.mark.parametrize("how", ["append", "write_batches"])
def test_a_temporary_root_file_left_by_a_killed_writer_is_not_foreign(tmp_path, how):
    path = tmp_path / "left.zarr"
    path.mkdir()
    (path / "zarr.json.8c0ffee.partial").write_bytes(b'{"zarr_format": 3, "node_ty')
    if how == "append":
        mtd.from_metatensor(tensor()).to_zarr(path, append_dim="samples")
    else:
        mtd.write_batches(lambda items: tensor(), [0], path, batch_size=1, quiet=True)
    assert_equal_to_metatensor(mtd.open_zarr(path), tensor())


def test_other_files_are_still_refused(tmp_path):
    path = tmp_path / "other.zarr"
    path.mkdir()
    (path / "notes.txt").write_text("mine")
    with pytest.raises(mtd.errors.MetatensorDaskError, match="holds no Zarr store"):
        mtd.from_metatensor(tensor()).to_zarr(path, append_dim="samples")
