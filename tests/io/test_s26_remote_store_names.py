"""Messages name a store given by an fsspec URL by its URL, as they name a directory by
its path: not by the repr of zarr's store object, which for ``memory://`` and
``file://`` URLs reads the same (``AsyncFileSystemWrapper``) and names no protocol."""

from __future__ import annotations

import shutil
import uuid

import pytest
from zarr.storage import FsspecStore, ZipStore
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd


def _tensor() -> mtd.TensorMap:
    return mtd.from_metatensor(make_metatensor(seed=2, n_samples=(3, 1, 0), nested=False))


@pytest.mark.parametrize("kind", ["memory://", "file://", "store object"])
def test_a_refusal_names_the_url(tmp_path, kind):
    if kind == "file://":
        url, options = f"file://{tmp_path}/t.zarr", {"auto_mkdir": True}
    else:
        url, options = f"memory://s26-remote-{uuid.uuid4().hex}/t.zarr", None
    store = FsspecStore.from_url(url) if kind == "store object" else url
    _tensor().to_zarr(store, storage_options=options)
    with pytest.raises(mtd.MetatensorDaskError) as refused:
        _tensor().to_zarr(store, storage_options=options)
    # fsspec writes the paths of its memory file system from its root, '/'
    where = url if kind == "file://" else url.replace("memory://", "memory:///")
    assert str(refused.value).startswith(f"a store already exists at {where}: "), refused.value


def test_an_incomplete_store_is_named_by_its_url(tmp_path):
    url = f"file://{tmp_path}/t.zarr"
    delayed = _tensor().to_zarr(url, storage_options={"auto_mkdir": True}, compute=False)
    with pytest.raises(mtd.IncompleteStoreError, match=f"^{url} is incomplete: "):
        mtd.open_zarr(url)
    delayed.compute()


@pytest.mark.parametrize("write", ["to_zarr", "append", "discard_append"])
def test_writes_to_a_zip_store_opened_to_read_name_the_remedy(tmp_path, write):
    """A ZipStore opened writable is refused too (it can not delete): the remedy is to
    write a directory, not to open the store with ``read_only=False``."""
    mtd.from_metatensor(make_metatensor(seed=2)).to_zarr(tmp_path / "t.zarr")
    archive = shutil.make_archive(str(tmp_path / "t"), "zip", tmp_path / "t.zarr")
    store = ZipStore(archive, mode="r")
    with pytest.raises(mtd.MetatensorDaskError) as refused:
        if write == "discard_append":
            mtd.discard_append(store)
        else:
            appending = {"append_dim": "samples"} if write == "append" else {"mode": "w"}
            _tensor().to_zarr(store, **appending)
    message = str(refused.value)
    assert "can not delete" in message and "write to a directory" in message, message
    assert "read_only=False" not in message, message
    assert mtd.verify(store).ok
