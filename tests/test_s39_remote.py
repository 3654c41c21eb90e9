"""Stores on fsspec file systems whose paths are relative to something else: a
``DirFileSystem`` (paths under a folder of the file system it wraps) and a zip archive
(paths inside the archive). Every such store used to be described by its relative path
alone (``dir://t.zarr``, ``zip://``), the description that names a store in messages,
tells two stores apart and names the tasks of a write: two stores were taken for one.
And a ``DirFileSystem`` over an object store's file system kept the listings that one
made: chunks another client wrote after a listing read as missing. A write to a file
system that refuses writes (an HTTP server) failed with the server's answer about the
lock file. A ``DirFileSystem`` over a local file system that creates no folders wrote
a store halfway. ``s3fs`` and ``moto[server]`` are test dependencies.
"""

from __future__ import annotations

import functools
import http.server
import threading
import uuid
from pathlib import Path

import dask
import metatensor
import numpy as np
import pytest
import s3fs
from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem
from moto import server as moto_server
from zarr.storage import FsspecStore
from zip_support import zip_store

import metatensor_dask as mtd


def _tensor(scale: float, first: int = 0) -> metatensor.TensorMap:
    """One block of 10 samples, systems ``first`` to ``first + 9`` (5 rows per chunk
    when written)."""
    values = np.arange(60, dtype=np.float64).reshape(10, 2, 3) * scale
    block = metatensor.TensorBlock(
        values,
        metatensor.Labels(["system"], np.arange(first, first + 10, dtype=np.int32)[:, None]),
        [metatensor.Labels(["xyz"], np.arange(2, dtype=np.int32)[:, None])],
        metatensor.Labels(["n"], np.arange(3, dtype=np.int32)[:, None]),
    )
    return metatensor.TensorMap(metatensor.Labels(["key"], np.array([[0]], np.int32)), [block])


def _dir_store(base: Path) -> FsspecStore:
    """The store ``t.zarr`` of a ``DirFileSystem`` rooted at ``base``."""
    base.mkdir()
    fs = DirFileSystem(str(base), fs=LocalFileSystem(auto_mkdir=True))
    return FsspecStore(AsyncFileSystemWrapper(fs, asynchronous=True), path="t.zarr")


def test_two_stores_of_dir_file_systems_written_in_one_computation_are_both_written(tmp_path):
    first, second = _dir_store(tmp_path / "a"), _dir_store(tmp_path / "b")
    tensor = mtd.from_metatensor(_tensor(1.0))
    writes = [mtd.to_zarr(tensor, store, chunks=5, compute=False) for store in (first, second)]
    # the tasks of both writes were named alike: dask ran one of them, for both
    dask.compute(*writes, scheduler="threads")
    for store in (first, second):
        assert metatensor.equal(mtd.to_metatensor(mtd.open_zarr(store)), _tensor(1.0))


def test_a_store_of_a_dir_file_system_is_overwritten_from_another(tmp_path):
    source, target = _dir_store(tmp_path / "a"), _dir_store(tmp_path / "b")
    mtd.from_metatensor(_tensor(1.0)).to_zarr(source, chunks=5)
    mtd.from_metatensor(_tensor(3.0)).to_zarr(target, chunks=5)
    # refused as reading the store it would overwrite: both were 'dir://t.zarr'
    mtd.to_zarr(mtd.open_zarr(source), target, mode="w")
    assert metatensor.equal(mtd.to_metatensor(mtd.open_zarr(target)), _tensor(1.0))
    assert mtd.verify(target).ok


def test_damage_in_a_zipped_store_names_the_archive(tmp_path):
    folder = tmp_path / "t.zarr"
    mtd.from_metatensor(_tensor(1.0)).to_zarr(str(folder), chunks=5)
    archive = tmp_path / "t.zip"
    zip_store(folder, archive, leave_out="blocks/0/values/c.1.0.0")
    url = f"zip://::file://{archive}"
    with pytest.raises(mtd.DamagedStoreError, match=f"the store at zip://::.*{archive}"):
        mtd.to_metatensor(mtd.open_zarr(url))
    (problem,) = mtd.verify(url).problems
    assert str(archive) in str(problem)


@pytest.fixture
def s3_options(monkeypatch):
    """The options reaching a new bucket, named in them, of an S3 server on the loopback."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = {"endpoint_url": f"http://{host}:{port}", "key": "test", "secret": "test"}
    bucket = f"b{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(**options).mkdir(bucket)
    yield bucket, options
    server.stop()


def _s3_dir_store(bucket: str, options: dict) -> FsspecStore:
    """``t.zarr`` in the folder ``data`` of ``bucket``, through a ``DirFileSystem`` over
    an ``s3fs`` client of its own (which keeps the listings it makes)."""
    client = s3fs.S3FileSystem(**options, asynchronous=True, skip_instance_cache=True)
    fs = DirFileSystem(f"{bucket}/data", fs=client, asynchronous=True)
    return FsspecStore(fs, path="t.zarr")


def test_samples_appended_by_another_client_through_a_dir_file_system_are_read(s3_options):
    bucket, options = s3_options
    store = _s3_dir_store(bucket, options)
    mtd.from_metatensor(_tensor(1.0)).to_zarr(store, chunks=5)
    assert mtd.verify(store).ok  # lists the store
    mtd.from_metatensor(_tensor(2.0, first=10)).to_zarr(
        _s3_dir_store(bucket, options), append_dim="samples"
    )
    # the appended chunks were missing from this client's listing: 'damaged'
    assert mtd.verify(store).ok
    expected = metatensor.join([_tensor(1.0), _tensor(2.0, first=10)], axis="samples")
    assert metatensor.equal(mtd.to_metatensor(mtd.open_zarr(store)), expected)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_a_write_to_a_read_only_http_server_is_refused_saying_so(tmp_path):
    handler = functools.partial(_Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/t.zarr"
        tensor = mtd.from_metatensor(_tensor(1.0))
        # was aiohttp's ClientResponseError: 501, "Unsupported method ('PUT')", url=.../.lock
        with pytest.raises(mtd.MetatensorDaskError, match=r"can not be written.*nothing was"):
            tensor.to_zarr(url)
    finally:
        server.shutdown()
        server.server_close()
    assert list(tmp_path.iterdir()) == []


def test_a_dir_file_system_over_one_creating_no_folders_is_refused_before_writing(tmp_path):
    (tmp_path / "t.zarr").mkdir()
    fs = DirFileSystem(str(tmp_path), fs=LocalFileSystem(auto_mkdir=False))
    store = FsspecStore(AsyncFileSystemWrapper(fs, asynchronous=True), path="t.zarr")
    # was FileNotFoundError: .../t.zarr/.progress/plan.json, once the lock was taken
    with pytest.raises(mtd.MetatensorDaskError, match=r"creates no folders.*auto_mkdir=True"):
        mtd.from_metatensor(_tensor(1.0)).to_zarr(store)
    assert list((tmp_path / "t.zarr").iterdir()) == []
