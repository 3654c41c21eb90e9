"""The completion of a write (format 4): the documents of the values arrays are written
once, with their chunk tables, by the completion task; the tables of the plain chunks
come from the storing tasks, and each of those chunk files is read back first: one
missing, cut short or written over since its task stored it keeps the store incomplete.
"""

from __future__ import annotations

import json
from pathlib import Path

import dask
import metatensor
import numpy as np
import pytest
from dask.callbacks import Callback

import metatensor_dask as mtd
from metatensor_dask.io import zarr_layout as layout
from metatensor_dask.testing import assert_equal_to_metatensor

CODECS = {
    "default": {},
    "zstd": {"metatensor_dask.compressor": "zstd"},
    "sharded": {"metatensor_dask.shard-chunks": 2},
}


def _tensor(blocks: int = 3, rows: int = 8) -> metatensor.TensorMap:
    """Blocks of the same shapes (their chunks of the same size) with a gradient."""
    rng = np.random.default_rng(7)
    found = []
    for _ in range(blocks):
        block = metatensor.TensorBlock(
            rng.random((rows, 3)),
            metatensor.Labels(["system"], np.arange(rows, dtype=np.int32)[:, None]),
            [],
            metatensor.Labels.range("p", 3),
        )
        block.add_gradient(
            "alpha",
            metatensor.TensorBlock(
                rng.random((rows, 3)),
                metatensor.Labels(["sample"], np.arange(rows, dtype=np.int32)[:, None]),
                [],
                block.properties,
            ),
        )
        found.append(block)
    keys = metatensor.Labels(["k"], np.arange(blocks, dtype=np.int32)[:, None])
    return metatensor.TensorMap(keys, found)


def _write_with(path: Path, before_completion, codecs: str = "default") -> None:
    """``to_zarr`` at ``path`` (chunks of 4 rows), calling ``before_completion()`` when
    the completion task is about to run: every storing task has run."""

    def pretask(key, *_):
        if isinstance(key, str) and key.startswith("zarr-complete-"):
            before_completion()

    with dask.config.set(CODECS[codecs]), Callback(pretask=pretask):
        mtd.from_metatensor(_tensor()).to_zarr(path, chunks=4)


def _refused(path: Path, change, match: str, codecs: str = "default") -> None:
    """The write whose chunk ``change()`` alters before completion fails with ``match``,
    leaves the store incomplete, and is written again whole by ``mode="w"``."""
    with pytest.raises(mtd.DamagedStoreError, match=match):
        _write_with(path, change, codecs)
    root = json.loads((path / "zarr.json").read_bytes())
    assert root["attributes"]["metatensor_dask"]["complete"] is False
    with pytest.raises(mtd.MetatensorDaskError, match="incomplete"):
        mtd.open_zarr(path)
    with dask.config.set(CODECS[codecs]):
        mtd.from_metatensor(_tensor()).to_zarr(path, chunks=4, mode="w")
    assert mtd.verify(path).ok
    assert_equal_to_metatensor(mtd.open_zarr(path), _tensor())


@pytest.mark.parametrize("codecs", sorted(CODECS))
def test_values_documents_are_written_at_completion_with_their_tables(tmp_path, codecs):
    path = tmp_path / "t.zarr"
    documents = sorted(
        f"blocks/{i}/{a}values/zarr.json" for i in range(3) for a in ("", "gradients/alpha/")
    )
    seen = []

    def look():
        seen.append([name for name in documents if (path / name).exists()])

    _write_with(path, look, codecs)
    assert seen == [[]], "the values documents wait for their tables"
    listed = json.loads((path / "zarr.json").read_bytes())["consolidated_metadata"]["metadata"]
    for name in documents:
        document = json.loads((path / name).read_bytes())
        assert document == listed[name.removesuffix("/zarr.json")]
        table = document["attributes"]["chunk_crc32c"]
        assert len(table) == 2 and all(type(crc) is int for crc in table)
    assert mtd.verify(path).ok
    assert_equal_to_metatensor(mtd.open_zarr(path), _tensor())


@pytest.mark.parametrize("codecs", sorted(CODECS))
def test_a_chunk_removed_before_completion_is_refused(tmp_path, codecs):
    path = tmp_path / "t.zarr"
    # the second chunk, or the shard holding both
    chunk = path / "blocks" / "1" / "values" / ("c.0.0" if codecs == "sharded" else "c.1.0")

    _refused(path, chunk.unlink, r"of the array 'blocks/1/values' is missing", codecs)


def test_a_chunk_cut_short_before_completion_is_refused(tmp_path):
    path = tmp_path / "t.zarr"
    chunk = path / "blocks" / "1" / "values" / "c.1.0"

    def cut():
        chunk.write_bytes(chunk.read_bytes()[:-8])

    message = r"chunk 'c\.1\.0' of the array 'blocks/1/values' changed after it was written"
    _refused(path, cut, message)


def test_a_chunk_written_over_before_completion_is_refused(tmp_path):
    """Another chunk of the same size (of another block), a whole one: its trailing
    crc32c is its own, not the one the task stored."""
    path = tmp_path / "t.zarr"
    chunk = path / "blocks" / "2" / "gradients" / "alpha" / "values" / "c.0.0"
    other = path / "blocks" / "0" / "gradients" / "alpha" / "values" / "c.0.0"

    def overwrite():
        assert chunk.stat().st_size == other.stat().st_size
        chunk.write_bytes(other.read_bytes())

    message = "chunk 'c.0.0' of the array 'blocks/2/gradients/alpha/values' changed after"
    _refused(path, overwrite, message)


def test_documents_encoded_with_their_tables_are_encoded_as_a_whole(tmp_path):
    """The values documents encoded with their tables from their encoding without are
    :func:`encode` of the documents: with no attributes before, with a table already
    (``mode="r+"`` rewrites it), with other attributes."""
    path = tmp_path / "t.zarr"
    _write_with(path, lambda: None)
    listed = json.loads((path / "zarr.json").read_bytes())["consolidated_metadata"]["metadata"]
    documents = [doc for name, doc in listed.items() if name.endswith("/values")]
    assert len(documents) == 6
    for document in documents:
        for before in ({}, {"chunk_crc32c": [1, 2]}, {"other": {"attributes": {}}}):
            untabled = layout.encode({**document, "attributes": before})
            table = [0, 2**32 - 1, 12345]
            tabled = {**document, "attributes": {**before, "chunk_crc32c": table}}
            assert layout.encode_tabled(tabled, untabled) == layout.encode(tabled)
