"""Local chunk files read whole with plain system calls, and chunk formats worked out
once per kind of array."""

from __future__ import annotations

import os

import numpy as np
import pytest

from metatensor_dask.errors import MetatensorDaskError
from metatensor_dask.io import _file_reads, zarr_codecs
from metatensor_dask.io._file_reads import read_whole_files


def test_files_are_read_whole_into_writable_buffers(tmp_path):
    rng = np.random.default_rng(0)
    contents = [rng.integers(0, 256, size, dtype=np.uint8).tobytes() for size in (0, 1, 517)]
    names = []
    for i, content in enumerate(contents):
        (tmp_path / f"c.{i}").write_bytes(content)
        names.append(str(tmp_path / f"c.{i}"))
    found = read_whole_files([*names, str(tmp_path / "missing"), f"{names[0]}/under_a_file"])
    assert found[3] is None and found[4] is None
    for buffer, content in zip(found[:3], contents, strict=True):
        assert buffer is not None and buffer.dtype == np.uint8
        assert buffer.tobytes() == content
        assert buffer.flags.writeable


def test_files_larger_than_one_read_call_are_read_in_pieces(tmp_path, monkeypatch):
    monkeypatch.setattr(_file_reads, "READ_SIZE", 1000)
    content = np.random.default_rng(1).integers(0, 256, 4321, dtype=np.uint8).tobytes()
    (tmp_path / "big").write_bytes(content)
    (found,) = read_whole_files([str(tmp_path / "big")])
    assert found is not None and found.tobytes() == content


def test_a_directory_is_not_read_as_a_file(tmp_path):
    # but as no file, as zarr's local store reads it: a chunk missing, named so
    os.mkdir(tmp_path / "folder")
    assert read_whole_files([str(tmp_path / "folder")]) == [None]


def _document(dtype: str, shape: list, chunks: list) -> dict:
    document = zarr_codecs.small_template(np.dtype(dtype), len(shape))
    document["shape"] = shape
    document["chunk_grid"]["configuration"]["chunk_shape"] = chunks
    return document


@pytest.mark.parametrize(
    ("dtype", "shape", "chunks"),
    [("float64", [10, 3, 4], [10, 3, 4]), ("int32", [7, 2], [3, 2]), ("int64", [5], [2])],
)
def test_a_known_format_is_the_one_worked_out(dtype, shape, chunks):
    document = _document(dtype, shape, chunks)
    found = zarr_codecs.ChunkFormat.of(document)
    again = zarr_codecs.ChunkFormat.of(_document(dtype, shape, chunks))
    assert found is again  # worked out once
    assert found is not None
    assert found.dtype == np.dtype(dtype).newbyteorder("<")
    assert found.shape == tuple(chunks)
    assert found.size == int(np.prod(chunks)) * np.dtype(dtype).itemsize
    assert found.checksum


def test_formats_differ_with_their_documents():
    first = zarr_codecs.ChunkFormat.of(_document("float64", [10, 3, 4], [10, 3, 4]))
    other = zarr_codecs.ChunkFormat.of(_document("float32", [10, 3, 4], [10, 3, 4]))
    rows = zarr_codecs.ChunkFormat.of(_document("float64", [10, 3, 4], [5, 3, 4]))
    assert first is not None and other is not None and rows is not None
    assert other.dtype == np.dtype("<f4") and rows.shape == (5, 3, 4)


def test_chunks_across_the_other_axes_are_still_refused():
    for _ in range(2):  # the refusal is not remembered as a format
        with pytest.raises(MetatensorDaskError, match="only chunked along their first axis"):
            zarr_codecs.ChunkFormat.of(_document("float64", [10, 3, 4], [10, 2, 4]))


def test_a_format_from_entries_that_are_not_numbers_is_refused():
    with pytest.raises(TypeError):
        zarr_codecs.ChunkFormat.of(_document("float64", [10, [3], 4], [10, 3, 4]))
