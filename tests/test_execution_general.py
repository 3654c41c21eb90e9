"""How writes run, as a dask user tries them: the ``Delayed`` of ``to_zarr(...,
compute=False)`` computed twice, after the store changed, with other writes, under each
scheduler."""

import os

import metatensor
import pytest

import metatensor_dask as mtd
from metatensor_dask import StoreLockedError
from metatensor_dask.datasets import tutorial_file
from metatensor_dask.testing import assert_equal_to_metatensor

SPHERICAL = tutorial_file("spherical-expansion.npz")


def _chunk_files(path):
    return {
        os.path.join(folder, name): os.stat(os.path.join(folder, name)).st_mtime_ns
        for folder, _, names in os.walk(path)
        for name in names
        if "/values/c" in os.path.join(folder, name)
    }


def test_a_delayed_write_computed_again_writes_nothing(tmp_path):
    out = str(tmp_path / "out.zarr")
    tensor = mtd.load(SPHERICAL)
    delayed = mtd.to_zarr(tensor, out, compute=False)
    delayed.compute()
    before = _chunk_files(out)
    with pytest.raises(StoreLockedError, match="already ran") as error:
        delayed.compute()
    assert "call to_zarr again" in str(error.value)
    assert _chunk_files(out) == before
    assert_equal_to_metatensor(mtd.open_zarr(out), metatensor.load(SPHERICAL))


def test_a_delayed_write_computed_again_leaves_a_newer_store_alone(tmp_path):
    out = str(tmp_path / "out.zarr")
    tensor = mtd.load(SPHERICAL)
    delayed = mtd.to_zarr(tensor, out, compute=False)
    delayed.compute()
    newer = mtd.multiply(tensor, tensor)
    mtd.to_zarr(newer, out, mode="w")
    with pytest.raises(StoreLockedError):
        delayed.compute()
    assert mtd.equal(mtd.open_zarr(out), newer)
