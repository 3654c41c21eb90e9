"""A store is never created inside another Zarr store given by an fsspec URL (or store
object) either, as in a local folder: the outer store would hold its files as unknown
nodes, and delete them when overwritten."""

from __future__ import annotations

import uuid

import dask
import pytest
from zarr.storage import FsspecStore
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def _location(kind: str, tmp_path) -> tuple[str, dict | None]:
    if kind == "file://":
        return f"file://{tmp_path}/outer.zarr", {"auto_mkdir": True}
    return f"memory://s26-remote-{uuid.uuid4().hex}/outer.zarr", None


def _batch(items: list[int]):
    return make_metatensor(seed=items[0], n_samples=(2, 1, 0), nested=False)


@pytest.mark.parametrize("kind", ["memory://", "file://", "store object"])
@pytest.mark.parametrize("write", ["to_zarr", "append", "write_batches"])
def test_a_store_inside_another_one_is_refused(tmp_path, kind, write):
    outer, options = _location(kind, tmp_path)
    theirs = make_metatensor(seed=1, nested=False)
    mtd.from_metatensor(theirs).to_zarr(outer, storage_options=options)
    inner: object = f"{outer}/deeper/inner.zarr"
    if kind == "store object":
        inner, options = FsspecStore.from_url(inner), None
    tensor = mtd.from_metatensor(make_metatensor(seed=2, nested=False))
    # named by its folder on this machine, or by its URL
    where = outer.replace("memory://", "memory:///").removeprefix("file://")
    with pytest.raises(mtd.MetatensorDaskError, match=f"is inside the Zarr store {where},"):
        if write == "write_batches":
            with dask.config.set(scheduler="synchronous"):
                mtd.write_batches(_batch, [0, 1], inner, storage_options=options, quiet=True)
        elif write == "append":
            tensor.to_zarr(inner, append_dim="samples", storage_options=options)
        else:
            tensor.to_zarr(inner, storage_options=options)
    report = mtd.verify(outer, storage_options=options if kind == "file://" else None)
    assert report.ok and not report.notes, (report.problems, report.notes)
    assert_equal_to_metatensor(mtd.open_zarr(outer), theirs)
