"""``to_zarr(mode="a")`` into a store without chunk tables (format 3, or the checksum
setting off) of a tensor whose values are read elsewhere: through a bind mount of the
store (one folder at two paths) before the store was written again, its gradients are
refused as of an older state of the store, as through the store's own path; opened
through the mount since, or from a copy of the store, its values are compared, and
accepted when equal."""

from __future__ import annotations

import shutil
import subprocess

import dask
import pytest
from older_formats import make_format_3
from test_s27_modea_kept_values import CHUNK_ROWS, _contents, _tiny_blocks, _without
from zarr_writer_process import make_metatensor, with_strain_of

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


@pytest.mark.parametrize("kind", ["format-3", "no-checksum"])
def test_a_tensor_opened_through_a_mount_before_a_rewrite_is_refused(tmp_path, kind):
    full = make_metatensor(seed=2, nested=False)
    folder, view = tmp_path / "data", tmp_path / "view"
    folder.mkdir()
    view.mkdir()
    path = folder / "t.zarr"

    def write(tensor, mode):
        with dask.config.set({"metatensor_dask.checksum": kind != "no-checksum"}):
            tensor.to_zarr(path, mode=mode, chunks=CHUNK_ROWS)

    write(mtd.from_metatensor(_without(full)), "w-")
    if kind == "format-3":
        make_format_3(path)
    mounted = subprocess.run(["mount", "--bind", folder, view], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"no bind mount here: {mounted.stderr.decode().strip()}")
    try:
        before_rewrite = with_strain_of(mtd.open_zarr(view / "t.zarr"), full)
        write(mtd.multiply(mtd.open_zarr(path).compute(), 2.0), "r+")
        before = _contents(path)
        with pytest.raises(
            mtd.MetatensorDaskError,
            match=r"read the store as it was before it was written again",
        ):
            before_rewrite.to_zarr(path, mode="a")
        assert _contents(path) == before
        write(mtd.from_metatensor(_without(full)), "r+")
        with_strain_of(mtd.open_zarr(view / "t.zarr"), full).to_zarr(path, mode="a")
        assert_equal_to_metatensor(mtd.open_zarr(path), full)
    finally:
        subprocess.run(["umount", view], check=True)


@pytest.mark.parametrize("kind", ["format-3", "no-checksum"])
@pytest.mark.parametrize("tiny", [True, False], ids=["tiny", "chunked"])
def test_values_read_from_a_copy_of_the_store_are_compared(tmp_path, kind, tiny):
    full = _tiny_blocks(3, gradients=True) if tiny else make_metatensor(seed=2, nested=False)
    path, copy = tmp_path / "t.zarr", tmp_path / "copy.zarr"
    with dask.config.set({"metatensor_dask.checksum": kind != "no-checksum"}):
        mtd.from_metatensor(_without(full)).to_zarr(path, chunks=None if tiny else CHUNK_ROWS)
    if kind == "format-3":
        make_format_3(path)
    shutil.copytree(path, copy)
    with_strain_of(mtd.open_zarr(copy), full).to_zarr(path, mode="a")
    assert_equal_to_metatensor(mtd.open_zarr(path), full)
