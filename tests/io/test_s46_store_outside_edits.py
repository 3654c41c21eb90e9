"""Stores touched by other tools and users: hard-linked snapshots and chunks linked by
deduplicating tools (a write never changes the bytes of another name of a file it
rewrites, nor of a file a link points to); nodes added, resized or written by
zarr-python and xarray (read as written, or refused naming the cause; ``verify`` tells
damage from another tool's array); a store named with spaces, non-ASCII letters,
``..``, a trailing slash and as a ``file://`` URL."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import metatensor
import metatensor.operations as mops
import numpy as np
import pytest
import xarray as xr
import zarr
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

TENSOR = make_metatensor(1, nested=False, n_samples=(9, 0, 5), n_properties=(3, 2, 0))
MORE = make_metatensor(2, nested=False, n_samples=(3, 0, 2), n_properties=(3, 2, 0))


def _contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


WRITES = {
    "r+": lambda store: mtd.from_metatensor(mops.multiply(TENSOR, 3.0)).to_zarr(store, mode="r+"),
    "append": lambda store: mtd.from_metatensor(MORE).to_zarr(
        store, append_dim="samples", renumber={"system": "next"}
    ),
}


@pytest.mark.parametrize("write", list(WRITES))
def test_a_write_leaves_a_hard_linked_snapshot_as_it_was(tmp_path, write):
    """``cp -al`` or ``rsync --link-dest`` snapshots share the files of the store: a
    write into the store replaces them, never writes into them."""
    store, snapshot = tmp_path / "s.zarr", tmp_path / "snapshot.zarr"
    mtd.from_metatensor(TENSOR).to_zarr(store, chunks=4)
    shutil.copytree(store, snapshot, copy_function=os.link)
    before = _contents(snapshot)
    WRITES[write](store)
    assert _contents(snapshot) == before
    assert mtd.verify(snapshot).problems == []
    assert_equal_to_metatensor(mtd.open_zarr(snapshot), TENSOR)
    assert mtd.verify(store).problems == []


def _block(values: np.ndarray) -> metatensor.TensorBlock:
    return metatensor.TensorBlock(
        values,
        metatensor.Labels(["system"], np.arange(len(values), dtype=np.int32)[:, None]),
        [],
        metatensor.Labels(["n"], np.arange(values.shape[1], dtype=np.int32)[:, None]),
    )


def _two_blocks(first: np.ndarray, second: np.ndarray) -> metatensor.TensorMap:
    keys = metatensor.Labels(["key"], np.array([[0], [1]], dtype=np.int32))
    return metatensor.TensorMap(keys, [_block(first), _block(second)])


@pytest.mark.parametrize("link", [os.link, os.symlink], ids=["hard", "symbolic"])
def test_chunks_deduplicated_by_links_are_rewritten_apart(tmp_path, link):
    """A deduplicating tool links the equal chunk files of two blocks into one file
    (``rdfind -makehardlinks``, ``-makesymlinks``): ``mode="r+"`` giving the blocks
    other values stores each block's own."""
    store = tmp_path / "s.zarr"
    values = np.arange(600.0).reshape(20, 30)
    mtd.from_metatensor(_two_blocks(values, values.copy())).to_zarr(store, chunks=8)
    chunks = sorted((store / "blocks/1/values").glob("c.*"))
    assert len(chunks) == 3
    for chunk in chunks:
        twin = store / "blocks/0/values" / chunk.name
        assert twin.read_bytes() == chunk.read_bytes()
        chunk.unlink()
        link(twin, chunk)
    rewritten = _two_blocks(2 * values, 3 * values)
    mtd.from_metatensor(rewritten).to_zarr(store, mode="r+")
    assert_equal_to_metatensor(mtd.open_zarr(store), rewritten)
    assert mtd.verify(store).problems == []


def _appends_as_a_store_of_the_tensor_alone(store: Path, control: Path) -> None:
    """An append to ``store`` reads as the same append to ``control``, a store of
    ``TENSOR`` alone written here, and leaves ``store`` without problem."""
    mtd.from_metatensor(TENSOR).to_zarr(control, chunks=4)
    for path in [store, control]:
        WRITES["append"](path)
    assert_equal_to_metatensor(mtd.open_zarr(store), mtd.to_metatensor(mtd.open_zarr(control)))
    assert mtd.verify(store).problems == []


@pytest.mark.filterwarnings("ignore:Consolidated metadata:UserWarning")
def test_an_array_xarray_adds_to_a_block_is_another_tools_not_damage(tmp_path):
    """xarray's ``to_zarr(group=..., mode="a")`` adds a variable to a block's group and
    consolidates the root: the tensor reads, appends and verifies as before; ``verify``
    notes the array instead of reporting the store damaged."""
    store = tmp_path / "s.zarr"
    mtd.from_metatensor(TENSOR).to_zarr(store, chunks=4)
    energy = xr.Dataset({"energy": ("system", np.arange(3.0))})
    energy.to_zarr(store, group="blocks/0", mode="a")
    assert_equal_to_metatensor(mtd.open_zarr(store), TENSOR)
    report = mtd.verify(store)
    assert report.problems == []
    assert any("('blocks/0/energy')" in note and "another tool" in note for note in report.notes)
    _appends_as_a_store_of_the_tensor_alone(store, tmp_path / "control.zarr")
    assert zarr.open_array(store, path="blocks/0/energy")[:].tolist() == [0.0, 1.0, 2.0]


@pytest.mark.filterwarnings("ignore:Consolidated metadata:UserWarning")
def test_a_root_whose_attributes_xarray_replaced_is_named_damaged(tmp_path):
    """xarray's ``to_zarr(mode="a")`` into the root of a store writes the dataset's
    attributes in place of the root's, ours and the tensor's info with them: the store
    is refused as damaged, saying so, not as some other Zarr data."""
    store = tmp_path / "s.zarr"
    mtd.from_metatensor(TENSOR).to_zarr(store, chunks=4)
    xr.Dataset({"energy": ("system", np.arange(3.0))}).to_zarr(store, mode="a")
    lost = "lost its 'metatensor_dask' attribute"
    with pytest.raises(mtd.DamagedStoreError, match=f"{lost}.*xarray's Dataset.to_zarr"):
        mtd.open_zarr(store)
    with pytest.raises(mtd.DamagedStoreError, match=lost):
        WRITES["append"](store)
    (problem,) = mtd.verify(store).problems
    assert lost in problem and "mode='w' replaces the store" in problem
    # which it does: the remedy works
    mtd.from_metatensor(TENSOR).to_zarr(store, mode="w", chunks=4)
    assert_equal_to_metatensor(mtd.open_zarr(store), TENSOR)
    assert mtd.verify(store).ok


def _grown(group: zarr.Group) -> None:
    values = group["blocks/0/values"]
    values.resize((values.shape[0] + 2, *values.shape[1:]))


ZARR_EDITS = {
    # edit, what open_zarr says (None: reads the tensor as written)
    "values written": (lambda group: group["blocks/0/values"].__setitem__(0, 42.0), "c.0.0.0"),
    "values resized and consolidated": (
        lambda group: (_grown(group), zarr.consolidate_metadata(group.store)),
        "'blocks/0/samples' has 9 entries but 'blocks/0/values' has 11 rows",
    ),
    "properties deleted": (lambda group: group["blocks/0"].__delitem__("properties"), "missing"),
    "values resized": (_grown, None),
    "attribute added and consolidated": (
        lambda group: (
            group["blocks/0/values"].attrs.__setitem__("unit", "eV"),
            zarr.consolidate_metadata(group.store),
        ),
        None,
    ),
}


@pytest.mark.filterwarnings("ignore:Consolidated metadata:UserWarning")
@pytest.mark.parametrize("edit", list(ZARR_EDITS))
def test_edits_by_zarr_python_read_as_written_or_are_refused(tmp_path, edit):
    """zarr-python's ``open_group(mode="a")`` edits: the tensor reads as stored and an
    append goes on, or every reader, ``verify`` and appends refuse it naming what is
    wrong; never other numbers."""
    store = tmp_path / "s.zarr"
    mtd.from_metatensor(TENSOR).to_zarr(store, chunks=4)
    change, refusal = ZARR_EDITS[edit]
    change(zarr.open_group(store, mode="a"))
    if refusal is None:
        assert_equal_to_metatensor(mtd.open_zarr(store), TENSOR)
        _appends_as_a_store_of_the_tensor_alone(store, tmp_path / "control.zarr")
        return
    with pytest.raises(mtd.DamagedStoreError, match=re.escape(refusal)):
        mtd.to_metatensor(mtd.open_zarr(store))
    assert any(refusal in problem for problem in mtd.verify(store).problems)


def test_a_store_named_with_spaces_unicode_dots_and_as_a_url_is_one_store(tmp_path):
    """A store at a path with spaces, non-ASCII letters, ``..`` and a trailing slash, and
    the same store as a ``file://`` URL: written, appended to and verified under either
    name, and one store for the refusal of a write over what a tensor reads."""
    (tmp_path / "run 1").mkdir()
    folder = tmp_path / "données à partager"
    path = f"{tmp_path / 'run 1' / '..' / folder.name / 's é.zarr'}/"
    url = f"file://{folder / 's é.zarr'}"
    options = {"storage_options": {"auto_mkdir": True}}
    mtd.from_metatensor(TENSOR).to_zarr(path, chunks=4)
    assert_equal_to_metatensor(mtd.open_zarr(url, **options), TENSOR)
    mtd.from_metatensor(MORE).to_zarr(
        url, append_dim="samples", renumber={"system": "next"}, **options
    )
    assert mtd.verify(path).problems == []
    appended = mtd.to_metatensor(mtd.open_zarr(path))
    assert [len(block.samples) for block in appended.blocks()] == [12, 0, 7]
    with pytest.raises(mtd.MetatensorDaskError, match="reads the store it would overwrite"):
        mtd.multiply(mtd.open_zarr(path), 2.0).to_zarr(url, mode="w", **options)
    assert_equal_to_metatensor(mtd.open_zarr(url, **options), appended)
    assert sorted(os.listdir(folder)) == ["s é.zarr"]


def test_mode_w_replaces_a_store_whose_root_is_not_json_as_the_damage_remedy_says(tmp_path):
    """The damage error's remedy, "write or convert the tensor again", failed with the
    same error: a whole write read the damaged root before replacing the store. Other
    modes keep refusing it, and so does a tensor that reads the store it replaces."""
    store = tmp_path / "s.zarr"
    tensor = mtd.from_metatensor(TENSOR)
    tensor.to_zarr(store, chunks=4)
    lazy = mtd.open_zarr(store)
    (store / "zarr.json").write_text("{not json")
    for mode in ("a", "r+", "w-"):
        with pytest.raises(mtd.DamagedStoreError, match="write or convert the tensor again"):
            tensor.to_zarr(store, mode=mode)
    with pytest.raises(mtd.MetatensorDaskError, match="reads the store it would overwrite"):
        lazy.to_zarr(store, mode="w")
    tensor.to_zarr(store, mode="w", chunks=4)
    assert_equal_to_metatensor(mtd.open_zarr(store), TENSOR)
    assert mtd.verify(store).ok
