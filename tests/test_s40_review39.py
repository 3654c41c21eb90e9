"""Cases the changes of the previous session missed.

A ``DirFileSystem`` given the file system it wraps by position (``DirFileSystem(path,
fs)``), or zarr's asynchronous wrapper given it by name, failed every read and write
with a ``TypeError``: the instance that keeps no listings was made with that file system
given twice.
"""

from __future__ import annotations

import metatensor
import numpy as np
import pytest
from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem
from zarr.storage import FsspecStore

import metatensor_dask as mtd


def _tensor(scale: float = 1.0, rows: int = 10) -> metatensor.TensorMap:
    """One block of ``rows`` samples with one component, and a positions gradient."""
    values = np.arange(rows * 6, dtype=np.float64).reshape(rows, 2, 3) * scale + 0.25
    samples = metatensor.Labels(["system"], np.arange(rows, dtype=np.int32)[:, None])
    components = [metatensor.Labels(["xyz"], np.arange(2, dtype=np.int32)[:, None])]
    properties = metatensor.Labels(["n"], np.arange(3, dtype=np.int32)[:, None])
    block = metatensor.TensorBlock(values, samples, components, properties)
    gradient_samples = metatensor.Labels(
        ["sample", "atom"], np.stack([np.arange(rows), np.zeros(rows)], axis=1).astype(np.int32)
    )
    gradient = metatensor.TensorBlock(
        values[:, None] * -2.0,
        gradient_samples,
        [metatensor.Labels(["d"], np.arange(1, dtype=np.int32)[:, None]), *components],
        properties,
    )
    block.add_gradient("positions", gradient)
    return metatensor.TensorMap(metatensor.Labels(["key"], np.array([[0]], np.int32)), [block])


# -- file systems wrapping another, given it by position or by name -----------------


def _written_and_read(store: FsspecStore) -> None:
    """Write a map to ``store``, verify it, and read it back whole."""
    mtd.from_metatensor(_tensor()).to_zarr(store, chunks=5)
    assert mtd.verify(store).ok
    metatensor.equal_raise(mtd.to_metatensor(mtd.open_zarr(store)), _tensor())


def test_a_dir_file_system_given_its_file_system_by_position_is_used(tmp_path):
    fs = DirFileSystem(str(tmp_path), LocalFileSystem(auto_mkdir=True))
    # was TypeError: DirFileSystem.__init__() got multiple values for argument 'fs'
    _written_and_read(FsspecStore(AsyncFileSystemWrapper(fs, asynchronous=True), path="t.zarr"))
    assert (tmp_path / "t.zarr" / "zarr.json").exists()


def test_an_asynchronous_wrapper_given_its_file_system_by_name_is_used(tmp_path):
    wrapper = AsyncFileSystemWrapper(fs=LocalFileSystem(auto_mkdir=True), asynchronous=True)
    # was TypeError: AsyncFileSystemWrapper.__init__() got multiple values for 'fs'
    _written_and_read(FsspecStore(wrapper, path=str(tmp_path / "t.zarr")))
