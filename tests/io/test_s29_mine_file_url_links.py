"""A tensor read from a store is not written over that store when one side names it by
a ``file://`` URL and the other by a path, or either goes through a symbolic link
(mode='w' emptied the store, then failed: the data lost; mode='r+' rewrote chunks its
own tasks read)."""

from __future__ import annotations

import os

import pytest
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

#: (how the read names the store, how the write names it): "path" or "url", to the
#: store's folder ("real") or to a symbolic link to it ("link")
_NAMINGS = [
    (("url", "link"), ("path", "real")),
    (("path", "link"), ("url", "real")),
    (("url", "link"), ("url", "real")),
    (("url", "real"), ("url", "link")),
    (("url", "real"), ("path", "real")),
]


def _name(tmp_path, how: tuple[str, str]) -> str:
    kind, target = how
    path = str(tmp_path / f"{target}.zarr")
    return f"file://{path}" if kind == "url" else path


@pytest.mark.parametrize("mode", ["w", "r+"])
@pytest.mark.parametrize(("read", "write"), _NAMINGS)
def test_a_store_read_by_another_name_is_not_overwritten_by_what_reads_it(
    tmp_path, mode, read, write
):
    tensor = make_metatensor(3, nested=False, n_properties=(4, 3, 2))
    mtd.from_metatensor(tensor).to_zarr(tmp_path / "real.zarr", chunks=5)
    os.symlink(tmp_path / "real.zarr", tmp_path / "link.zarr")
    twice = mtd.multiply(mtd.open_zarr(_name(tmp_path, read)), 2.0)
    destination = _name(tmp_path, write)
    options = {"storage_options": {"auto_mkdir": True}} if write[0] == "url" else {}
    with pytest.raises(mtd.MetatensorDaskError, match="this tensor reads the store it would"):
        twice.to_zarr(destination, mode=mode, **options)
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "real.zarr"), tensor)
