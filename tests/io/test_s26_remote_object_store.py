"""Stores on an S3-compatible object store (a moto server on the loopback, through
``s3fs``), written by one client and read by another.

``s3fs`` keeps the listings it made and answers from them the size of a file it reads
whole: a chunk that another client wrote after this process listed the store (``verify``
and ``info`` list it) would read as missing, a healthy store as damaged. ``s3fs`` and
``moto[server]`` are test dependencies.
"""

from __future__ import annotations

import uuid

import metatensor
import pytest
import s3fs
from moto import server as moto_server
from zarr.storage import FsspecStore
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


@pytest.fixture(scope="module")
def endpoint(monkeypatch_module):
    """The address of an S3 server on the loopback, for this module's tests."""
    monkeypatch_module.setenv("AWS_DEFAULT_REGION", "us-east-1")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture
def bucket(endpoint):
    """A new bucket, its URL and the options to reach it."""
    options = {"endpoint_url": endpoint, "key": "test", "secret": "test"}
    name = f"b{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(**options).mkdir(name)
    return f"s3://{name}", options


def _other_client(url: str, options: dict) -> FsspecStore:
    """The store at ``url`` through a client of its own, as another process has (other
    options make another instance, which fsspec keeps alive as the first)."""
    fs = s3fs.S3FileSystem(**options, asynchronous=True, default_block_size=2**22)
    return FsspecStore(fs, path=url[len("s3://") :])


def _shifted(tensor: metatensor.TensorMap, by: int) -> metatensor.TensorMap:
    """``tensor`` with ``by`` added to the "system" of every sample of its blocks."""
    blocks = []
    for block in tensor.blocks():
        values = block.samples.values.copy()
        values[:, 0] += by
        samples = metatensor.Labels(block.samples.names, values)
        moved = metatensor.TensorBlock(block.values, samples, block.components, block.properties)
        for name, gradient in block.gradients():
            moved.add_gradient(name, gradient.copy())
        blocks.append(moved)
    return metatensor.TensorMap(tensor.keys, blocks)


def test_samples_appended_by_another_client_after_a_listing_are_read(bucket):
    root, options = bucket
    url = f"{root}/t.zarr"
    first = make_metatensor(seed=1, n_samples=(9, 0, 5), nested=False)
    second = _shifted(make_metatensor(seed=2, n_samples=(9, 0, 5), nested=False), 100)
    mtd.from_metatensor(first).to_zarr(url, chunks=4, storage_options=options)
    assert mtd.verify(url, storage_options=options).ok  # lists the whole store
    # another job appends: new chunks of every array, a new root
    mtd.from_metatensor(second).to_zarr(_other_client(url, options), append_dim="samples")

    expected = metatensor.join([first, second], axis="samples")
    for name, value in first.info().items():
        expected.set_info(name, value)
    assert_equal_to_metatensor(mtd.open_zarr(url, storage_options=options), expected)
    report = mtd.verify(url, storage_options=options)
    assert report.ok, report.problems


def test_a_store_rewritten_by_another_client_after_a_listing_is_read(bucket):
    root, options = bucket
    url = f"{root}/t.zarr"
    first = make_metatensor(seed=3, n_samples=(9, 0, 5), nested=False)
    mtd.from_metatensor(first).to_zarr(url, chunks=8, storage_options=options)
    assert mtd.verify(url, storage_options=options).ok  # lists the whole store
    # another job writes the store again, in smaller chunks: more chunk files
    theirs = make_metatensor(seed=4, n_samples=(12, 5, 2), n_properties=(2, 0, 3))
    mtd.from_metatensor(theirs).to_zarr(_other_client(url, options), mode="w", chunks=3)

    assert_equal_to_metatensor(mtd.open_zarr(url, storage_options=options), theirs)


def test_a_write_to_a_missing_bucket_is_refused_naming_it(endpoint):
    options = {"endpoint_url": endpoint, "key": "test", "secret": "test"}
    url = f"s3://missing-{uuid.uuid4().hex[:12]}/t.zarr"
    tensor = mtd.from_metatensor(make_metatensor(seed=1, nested=False))
    with pytest.raises(mtd.MetatensorDaskError, match=f"^{url} can not be written .*bucket"):
        tensor.to_zarr(url, storage_options=options)
