"""A store whose node is a symbolic link to a folder that is gone: a write into that
node is refused before it stores anything, naming the node and the missing folder."""

from __future__ import annotations

import os
import shutil

import pytest
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd


@pytest.mark.parametrize("node", ["blocks/1", "blocks/1/gradients/positions"])
def test_a_write_into_a_node_linked_to_a_missing_folder_is_refused(tmp_path, node):
    tensor = mtd.from_metatensor(make_metatensor(0, nested=False, n_samples=(7, 5, 4)))
    store = tmp_path / "s.zarr"
    tensor.to_zarr(store, chunks=3)
    gone = tmp_path / "gone"
    shutil.move(store / node, gone)
    os.symlink(gone, store / node)
    shutil.rmtree(gone)
    before = sorted((p.name, p.lstat().st_mtime_ns) for p in store.rglob("*"))
    with pytest.raises(FileNotFoundError, match=f"its node '{node}/.*' is in .*{gone}: no folder"):
        tensor.to_zarr(store, mode="r+")
    assert sorted((p.name, p.lstat().st_mtime_ns) for p in store.rglob("*")) == before
