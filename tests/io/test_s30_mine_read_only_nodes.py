"""A store whose node is a symbolic link into a folder that can not be written (a
block shared from a read-only data set): a write that would store into that node is
refused before it stores anything, with the node and the folder named, and the store
reads as before; a write that leaves that node alone goes on."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import metatensor
import pytest
from read_only_mounts import unwritable
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def _snapshot(folder: Path) -> dict[str, tuple[int, float]]:
    return {
        str(p.relative_to(folder)): (p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in folder.rglob("*")
    }


@pytest.fixture(params=["blocks/1", "blocks/1/gradients/positions"])
def linked(request, tmp_path):
    """A store of 3 blocks whose node ``request.param`` is a link into a read-only
    folder; its snapshot and its tensor."""
    tensor = make_metatensor(0, nested=False, n_samples=(7, 5, 4), n_properties=(4, 3, 2))
    store = tmp_path / "s.zarr"
    mtd.from_metatensor(tensor).to_zarr(store, chunks=3)
    shared = tmp_path / "shared"
    shared.mkdir()
    shutil.move(store / request.param, shared / "node")
    with unwritable(shared) as view:
        os.symlink(view / "node", store / request.param)
        yield store, request.param, view / "node", tensor


WRITES = {
    "append": lambda store, t: t.to_zarr(store, append_dim="samples", renumber={"system": "next"}),
    "r+": lambda store, t: t.to_zarr(store, mode="r+"),
}


@pytest.mark.parametrize("write", WRITES)
def test_a_write_into_the_linked_node_is_refused_before_it_stores(linked, write):
    store, node, view, tensor = linked
    before = _snapshot(store)
    with pytest.raises(OSError, match=r"Read-only file system|Permission denied") as refused:
        WRITES[write](store, mtd.multiply(mtd.from_metatensor(tensor), 2.0))
    message = str(refused.value)
    assert f"can not write to {store}" in message and "nothing was written" in message
    assert f"'{node}/" in message and str(view) in message, message
    assert _snapshot(store) == before
    assert_equal_to_metatensor(mtd.open_zarr(store), tensor)


def test_an_append_of_other_blocks_goes_on(linked):
    store, _, _, tensor = linked
    new_key = metatensor.Labels(tensor.keys.names, tensor.keys.values[:1] + 100)
    other = metatensor.TensorMap(new_key, [tensor.block(0).copy()])
    mtd.from_metatensor(other).to_zarr(store, append_dim="samples")
    expected = metatensor.join([tensor, other], axis="samples", different_keys="union")
    for name, value in tensor.info().items():
        expected.set_info(name, value)
    assert_equal_to_metatensor(mtd.open_zarr(store), expected)


def _with_gradient(tensor: metatensor.TensorMap, name: str) -> metatensor.TensorMap:
    """``tensor`` whose blocks have one more gradient, ``name``, a copy of "positions"."""
    blocks = []
    for block in tensor.blocks():
        new = block.copy()
        positions = block.gradient("positions")
        new.add_gradient(
            name,
            metatensor.TensorBlock(
                positions.values.copy(),
                positions.samples,
                positions.components,
                positions.properties,
            ),
        )
        blocks.append(new)
    result = metatensor.TensorMap(tensor.keys, blocks)
    for key, value in tensor.info().items():
        result.set_info(key, value)
    return result


def test_a_gradient_added_to_every_block_is_refused_only_into_a_linked_block(linked):
    store, node, view, tensor = linked
    added = _with_gradient(tensor, "extra")
    before = _snapshot(store)
    if node != "blocks/1":  # the new gradient goes beside the linked one
        mtd.from_metatensor(added).to_zarr(store, mode="a")
        assert_equal_to_metatensor(mtd.open_zarr(store), added)
        return
    with pytest.raises(OSError, match=r"Read-only file system|Permission denied") as refused:
        mtd.from_metatensor(added).to_zarr(store, mode="a")
    message = str(refused.value)
    assert "'blocks/1/gradients/extra" in message and str(view) in message, message
    assert _snapshot(store) == before
    assert_equal_to_metatensor(mtd.open_zarr(store), tensor)
