"""Appending to stores written with other codecs (compressors, no checksum) and with
shards: the partial last chunk or shard is completed with its stored rows kept, the
stored codecs and chunking are kept whatever the settings of the append, and nothing
else already stored is rewritten."""

from __future__ import annotations

import json
from pathlib import Path

import dask
import metatensor
import numpy as np
import pytest
from ingest_support import store_files
from test_zarr_append import assert_equal_to_join, select, shifted
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd

#: Settings the store is written with (``metatensor_dask.`` omitted).
CODECS = {
    "default": {},
    "no-checksum": {"checksum": False},
    "zstd": {"compressor": "zstd"},
    "blosc": {"compressor": "blosc"},
    "gzip": {"compressor": {"name": "gzip", "configuration": {"level": 1}}},
    "zstd-no-checksum": {"compressor": "zstd", "checksum": False},
    "sharded": {"shard-chunks": 2},
    "sharded-zstd": {"shard-chunks": 3, "compressor": "zstd"},
    "sharded-gzip-no-checksum": {"shard-chunks": 2, "compressor": "gzip", "checksum": False},
}


def codec_settings(name: str) -> dict:
    """The ``dask.config`` settings of ``CODECS[name]``."""
    return {f"metatensor_dask.{key}": value for key, value in CODECS[name].items()}


def _arrays(path: Path) -> dict[str, dict]:
    """The stored array documents, by path."""
    root = json.loads((path / "zarr.json").read_text())
    nodes = root["consolidated_metadata"]["metadata"]
    return {p: d for p, d in nodes.items() if d["node_type"] == "array"}


def _grid(document: dict) -> tuple[list[int], list[dict]]:
    """The chunk (or shard) shape and the codecs of an array document."""
    return document["chunk_grid"]["configuration"]["chunk_shape"], document["codecs"]


def _codecs(document: dict) -> list[dict]:
    """The codecs of an array document, and the shard's chunks per shard."""
    codecs = [dict(codec) for codec in document["codecs"]]
    if codecs[0]["name"] == "sharding_indexed":
        configuration = dict(codecs[0]["configuration"])
        rows = document["chunk_grid"]["configuration"]["chunk_shape"][0]
        configuration["chunk_shape"] = rows // configuration["chunk_shape"][0]
        codecs[0] = {**codecs[0], "configuration": configuration}
    return codecs


def _batches(dtype=np.float64) -> list[metatensor.TensorMap]:
    """Four batches, systems numbered apart: keys come and go, one block has no rows,
    one batch is empty; every block has a positions gradient (an ``xyz`` component and
    a nested ``cell`` gradient) and a strain gradient (two components)."""
    a = make_metatensor(0, dtype=dtype)
    b = make_metatensor(1, dtype=dtype, n_samples=(7, 5, 0), n_properties=(4, 3, 0))
    b = metatensor.TensorMap(
        metatensor.Labels(b.keys.names, np.array([[1, 1], [8, 8], [6, 8]], np.int32)),
        [block.copy() for block in b.blocks()],
    )
    c = select(make_metatensor(2, dtype=dtype, n_samples=(9, 4, 13)), [(6, 8), (1, 6)])
    empty = metatensor.TensorMap(metatensor.Labels(a.keys.names, np.empty((0, 2), np.int32)), [])
    return [a, shifted(b, 100), empty, shifted(c, 200)]


def _opened(path: Path, batch: metatensor.TensorMap) -> mtd.TensorMap:
    """``batch`` read lazily from a store of its own, in chunks of 5 rows: dask chunks
    that do not fall on the grid of the store appended to."""
    mtd.from_metatensor(batch).to_zarr(path, chunks=5)
    return mtd.open_zarr(path)


#: Every codec in float64 but two in float32 (the dtype changes only the bytes of the
#: chunks, not how an append completes them).
IN_FLOAT32 = ("zstd", "sharded-gzip-no-checksum")


@pytest.mark.parametrize(
    ("codecs", "dtype"),
    [(name, np.float32 if name in IN_FLOAT32 else np.float64) for name in CODECS],
)
def test_appends_keep_codecs_and_chunking(tmp_path, codecs, dtype):
    """Appended with other chunk sizes, and with the settings of the append differing
    from those of the store: the stored grid and codecs are kept, the appended rows
    re-chunked to them; the store reads as metatensor's join and verifies."""
    batches = _batches(dtype)
    path = tmp_path / "t.zarr"
    with dask.config.set(codec_settings(codecs)):
        mtd.from_metatensor(batches[0]).to_zarr(path, chunks=4)
    stored_documents = _arrays(path)
    stored = {p: _grid(d) for p, d in stored_documents.items()}
    # the settings of the append are not those of the store: the store's are kept
    other = "sharded-zstd" if codecs == "default" else "default"
    with dask.config.set(codec_settings(other)):
        mtd.from_metatensor(batches[1]).to_zarr(path, append_dim="samples", chunks=3)
        mtd.from_metatensor(batches[2]).to_zarr(path, append_dim="samples", chunks=5)
        _opened(tmp_path / "c.zarr", batches[3]).to_zarr(path, append_dim="samples")
    after = _arrays(path)
    for array, grid in stored.items():
        assert _grid(after[array]) == grid, array
    # new keys' blocks are written with the store's codecs, not the append's settings
    assert any(array not in stored for array in after)
    for array, document in after.items():
        if array.endswith("values"):
            assert _codecs(document) == _codecs(stored_documents["blocks/0/values"]), array
    report = mtd.verify(path)
    assert report.ok, report.problems
    assert_equal_to_join(mtd.open_zarr(path), batches)
    assert_equal_to_join(mtd.open_zarr(path, chunks=3), batches)


def _chunk_files(path: Path) -> dict[str, str]:
    """The chunk files of a store (not the documents), with a hash of their content."""
    return {k: v for k, v in store_files(path).items() if "/c." in k and ".progress" not in k}


@pytest.mark.parametrize("codecs", ["default", "zstd", "sharded", "sharded-zstd"])
@pytest.mark.parametrize("lazy", [False, True])
def test_only_the_partial_last_chunk_is_rewritten(tmp_path, codecs, lazy):
    """Of the stored chunk files, an append rewrites at most the one holding the last
    stored rows of each array, when it is partial (a whole shard when sharded)."""
    path = tmp_path / "t.zarr"
    first = make_metatensor(0, n_samples=(23, 0, 11))
    with dask.config.set(codec_settings(codecs)):
        mtd.from_metatensor(first).to_zarr(path, chunks=4)
    before_files, before = _chunk_files(path), _arrays(path)
    second = shifted(make_metatensor(1, n_samples=(9, 3, 6)), 100)
    delayed = mtd.from_metatensor(second).to_zarr(
        path, append_dim="samples", chunks=4, compute=not lazy
    )
    if lazy:
        dask.compute(delayed)
    after_files = _chunk_files(path)
    rewritten = {k for k, v in before_files.items() if after_files.get(k) != v}
    allowed = set()
    for array, document in before.items():
        rows = document["shape"][0]
        step = document["chunk_grid"]["configuration"]["chunk_shape"][0]
        if rows % step:
            index = ".".join([str(rows // step)] + ["0"] * (len(document["shape"]) - 1))
            allowed.add(f"{array}/c.{index}")
    assert rewritten <= allowed, sorted(rewritten - allowed)
    assert rewritten, "the test appends to partial chunks"
    assert mtd.verify(path).ok
    assert_equal_to_join(mtd.open_zarr(path), [first, second])


@pytest.mark.parametrize("codecs", ["default", "sharded-zstd"])
def test_append_a_store_to_itself(tmp_path, codecs):
    """The appended tensor read lazily from the store it goes to (other dask chunks):
    its tasks read stored chunks while the append replaces the partial last ones."""
    first = make_metatensor(0)
    path = tmp_path / "t.zarr"
    with dask.config.set(codec_settings(codecs)):
        mtd.from_metatensor(first).to_zarr(path, chunks=4)
    mtd.open_zarr(path, chunks=3).to_zarr(path, append_dim="samples", renumber={"system": "next"})
    largest = max(int(max(block.samples.column("system"), default=-1)) for block in first)
    assert mtd.verify(path).ok
    assert_equal_to_join(mtd.open_zarr(path), [first, shifted(first, largest + 1)])
