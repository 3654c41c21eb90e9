"""A tensor read from a store seen through a bind mount is not written over that store
at its other path (mode='w' emptied it, then failed: the data lost)."""

from __future__ import annotations

import subprocess

import pytest
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


@pytest.mark.parametrize("mode", ["w", "r+"])
def test_a_store_read_through_a_mount_is_not_overwritten_by_what_reads_it(tmp_path, mode):
    tensor = make_metatensor(4, nested=False, n_properties=(4, 3, 2))
    folder, view = tmp_path / "data", tmp_path / "view"
    folder.mkdir()
    view.mkdir()
    mtd.from_metatensor(tensor).to_zarr(folder / "s.zarr", chunks=5)
    mounted = subprocess.run(["mount", "--bind", folder, view], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"no bind mount here: {mounted.stderr.decode().strip()}")
    try:
        twice = mtd.multiply(mtd.open_zarr(view / "s.zarr"), 2.0)
        with pytest.raises(mtd.MetatensorDaskError, match="this tensor reads the store it would"):
            twice.to_zarr(folder / "s.zarr", mode=mode)
    finally:
        subprocess.run(["umount", view], check=True)
    assert_equal_to_metatensor(mtd.open_zarr(folder / "s.zarr"), tensor)
