"""What an append does for each array it extends, done with fewer system calls and less
Python: the files stay those written before (node documents overwritten in place, cut
to their new size), and the store still equals metatensor's join of the batches."""

from __future__ import annotations

import json
from pathlib import Path

import dask
import metatensor
from hypothesis import given
from hypothesis import strategies as st
from ingest_support import renumbered, soap

import metatensor_dask as mtd
from metatensor_dask.io import zarr_layout as layout
from metatensor_dask.io._file_writes import overwrite
from metatensor_dask.testing import assert_equal_to_metatensor


@given(before=st.binary(max_size=300), after=st.binary(max_size=300))
def test_a_file_overwritten_holds_exactly_the_new_bytes(tmp_path_factory, before, after):
    path = tmp_path_factory.mktemp("overwrite") / "zarr.json"
    path.write_bytes(before)
    overwrite(str(path), after)
    assert path.read_bytes() == after


def test_a_missing_file_is_created(tmp_path):
    path = tmp_path / "zarr.json"
    overwrite(str(path), memoryview(b'{"a":1}'))
    assert path.read_bytes() == b'{"a":1}'


def _documents_on_disk_match_the_root(path: Path) -> int:
    """Every node document of the store is the root's consolidated copy, byte for byte
    (as a writer encodes it); returns how many were compared."""
    root = json.loads((path / "zarr.json").read_bytes())
    nodes = root["consolidated_metadata"]["metadata"]
    for name, document in nodes.items():
        assert (path / name / "zarr.json").read_bytes() == layout.encode(document), name
    return len(nodes)


def _batches(n_items: int, size: int) -> list[metatensor.TensorMap]:
    return [
        renumbered(soap(list(range(start, min(start + size, n_items)))), start)
        for start in range(0, n_items, size)
    ]


def test_node_documents_written_again_by_each_batch_are_the_root_s(tmp_path):
    """A batch writes again the document of each array it extends (its shape, chunk
    table, sample records): overwritten in place, each equals its consolidated copy,
    and the store metatensor's join of the batches."""
    path = tmp_path / "soap.zarr"
    with dask.config.set(scheduler="synchronous"):
        mtd.write_batches(soap, list(range(9)), path, batch_size=3, quiet=True)
    assert _documents_on_disk_match_the_root(path) > 50
    assert mtd.verify(path).ok  # the chunk tables list the crc32c ending each chunk
    expected = metatensor.join(_batches(9, 3), axis="samples", different_keys="union")
    assert_equal_to_metatensor(mtd.open_zarr(path), expected)


def test_an_append_with_to_zarr_overwrites_documents_the_same_way(tmp_path):
    path = tmp_path / "soap.zarr"
    first, second = _batches(6, 3)
    mtd.from_metatensor(first).to_zarr(path, chunks=1000)
    mtd.from_metatensor(second).to_zarr(path, append_dim="samples")
    _documents_on_disk_match_the_root(path)
    assert mtd.verify(path).ok
    expected = metatensor.join([first, second], axis="samples", different_keys="union")
    assert_equal_to_metatensor(mtd.open_zarr(path), expected)


def _partial_samples_chunk(path: Path) -> tuple[Path, int]:
    """The partial last chunk of a block's samples: its file and its stored bytes."""
    for node in sorted(path.glob("blocks/*/samples/zarr.json")):
        document = json.loads(node.read_text())
        rows = document["chunk_grid"]["configuration"]["chunk_shape"][0]
        stored, width = document["shape"]
        if stored % rows:
            return node.parent / f"c.{stored // rows}.0", (stored % rows) * width * 4
    raise AssertionError("the test needs a partial samples chunk")


def _stopped_after(batches: int):
    def function(items: list[int]):
        if items[0] >= 3 * batches:
            raise RuntimeError("stopped")
        return soap(items)

    return function


def test_partial_samples_chunks_are_written_from_the_rows_the_digest_vouches_for(tmp_path):
    """The stored rows of a samples chunk that a batch extends are those the append
    already holds, checked against the samples' digest (the chunk is not read again):
    damaged between two batches of one process, the chunk is written again whole with
    the stored rows, and the store is metatensor's join of the batches."""
    path = tmp_path / "soap.zarr"
    with dask.config.set(scheduler="synchronous"):
        try:
            mtd.write_batches(_stopped_after(2), list(range(9)), path, batch_size=3, quiet=True)
        except mtd.MetatensorDaskError as error:
            assert "stopped" in str(error)
        chunk, stored = _partial_samples_chunk(path)
        data = bytearray(chunk.read_bytes())
        data[stored // 2] ^= 0x10
        chunk.write_bytes(bytes(data))
        assert not mtd.verify(path).ok
        mtd.write_batches(soap, list(range(9)), path, batch_size=3, resume=True, quiet=True)
    assert mtd.verify(path).ok
    expected = metatensor.join(_batches(9, 3), axis="samples", different_keys="union")
    assert_equal_to_metatensor(mtd.open_zarr(path), expected)
