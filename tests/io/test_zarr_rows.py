"""Chunks written from the memory of their rows (``zarr_rows``): the same bytes as the
encoded chunks, whatever the layout of the rows, with or without stored rows first."""

from __future__ import annotations

import os

import numpy as np
import pytest
import zarr

from metatensor_dask.io import zarr_rows
from metatensor_dask.io.zarr_codecs import encode_chunks, small_template
from metatensor_dask.io.zarr_layout import array_document, encode
from metatensor_dask.io.zarr_rows import chunk_parts, row_bytes, write_parts
from metatensor_dask.io.zarr_store import open_store


def _document(shape: tuple[int, ...], rows: int, checksum: bool) -> dict:
    document = array_document(small_template(np.float64, len(shape)), shape, rows, None, {})
    if not checksum:
        document["codecs"] = document["codecs"][:1]
    return document


def _joined(parts: dict[str, list[np.ndarray]]) -> dict[str, bytes]:
    return {key: b"".join(p.tobytes() for p in chunk) for key, chunk in parts.items()}


@pytest.mark.parametrize("checksum", [True, False])
@pytest.mark.parametrize("layout", ["contiguous", "fortran", "big-endian", "rows of a view"])
def test_parts_are_the_encoded_chunks(checksum, layout):
    values = np.random.default_rng(0).normal(size=(11, 3, 2))
    if layout == "fortran":
        values = np.asfortranarray(values)
    elif layout == "big-endian":
        values = values.astype(">f8")
    elif layout == "rows of a view":
        values = np.random.default_rng(0).normal(size=(22, 3, 2))[::2]
    document = _document((11, 3, 2), 4, checksum)
    # from chunk 2 on: 4 + 4 + 3 rows, the last padded with zeros
    parts = chunk_parts("a/values", document, values, 2)
    expected = {f"a/values/{k}": bytes(v) for k, v in encode_chunks(values, document, 2).items()}
    assert list(parts) == ["a/values/c.2.0.0", "a/values/c.3.0.0", "a/values/c.4.0.0"]
    assert _joined(parts) == expected


@pytest.mark.parametrize("checksum", [True, False])
def test_stored_rows_come_first(checksum):
    values = np.random.default_rng(1).normal(size=(9, 2))
    document = _document((12, 2), 5, checksum)
    # 3 rows stored at the start of chunk 1, then 2 + 5 + 2 appended rows
    parts = chunk_parts("v", document, values[3:], 1, row_bytes(values[:3], document))
    expected = {f"v/{k}": bytes(v) for k, v in encode_chunks(values, document, 1).items()}
    assert _joined(parts) == expected


@pytest.mark.parametrize("appended", [1, 2, 7, 12])
def test_rows_kept_in_place_take_their_checksum_from_the_listed_one(appended):
    """With the stored rows kept in the chunk's file, its parts start with the new rows
    and its checksum follows from the one listed for the stored rows and zeros."""
    import google_crc32c

    values = np.random.default_rng(2).normal(size=(3 + appended, 2))
    document = _document((3 + appended, 2), 5, True)
    stored = row_bytes(values[:3], document)
    listed = google_crc32c.value(stored.tobytes() + bytes(5 * 16 - stored.size))
    kept = zarr_rows.Kept(stored.size, listed)
    parts = chunk_parts("v", document, values[3:], 1, kept=kept)
    expected = {f"v/{k}": bytes(v) for k, v in encode_chunks(values, document, 1).items()}
    found = _joined(parts)
    found["v/c.1.0"] = stored.tobytes() + found["v/c.1.0"]
    assert found == expected


def test_no_rows_no_chunks():
    document = _document((0, 2), 5, True)
    assert chunk_parts("v", document, np.zeros((0, 2)), 0) == {}


@pytest.mark.parametrize("atomic", [True, False])
def test_written_chunks_read_back_with_zarr(tmp_path, atomic):
    values = np.random.default_rng(2).normal(size=(7, 3))
    document = _document((7, 3), 3, True)
    store = open_store(tmp_path / "z.zarr", None, writable=True)
    write_parts(store, {"a/zarr.json": [np.frombuffer(encode(document), np.uint8)]})
    write_parts(store, chunk_parts("a", document, values, 0), atomic=atomic)
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "z.zarr" / "a")[:], values)
    # no temporary files left
    assert sorted(p.name for p in (tmp_path / "z.zarr" / "a").iterdir()) == [
        "c.0.0",
        "c.1.0",
        "c.2.0",
        "zarr.json",
    ]


@pytest.fixture
def written(monkeypatch) -> list[int]:
    """The byte counts of the ``os.writev`` and ``os.write`` calls made during the test
    (a single small buffer is written by ``os.write``)."""
    counts: list[int] = []

    def counting(call):
        def counted(descriptor, buffers):
            count = call(descriptor, buffers)
            counts.append(count)
            return count

        return counted

    monkeypatch.setattr(os, "writev", counting(os.writev))
    monkeypatch.setattr(os, "write", counting(os.write))
    return counts


@pytest.mark.parametrize("checksum", [True, False])
def test_padding_is_not_written_to_local_files(tmp_path, written, checksum):
    """The zero padding of an edge chunk is skipped (a hole in the file, read as zeros):
    the file holds the encoded chunk, but only its rows and checksum are written."""
    values = np.random.default_rng(3).normal(size=(5, 4))
    document = _document((5, 4), 4, checksum)
    store = open_store(tmp_path / "z.zarr", None, writable=True)
    write_parts(store, chunk_parts("a", document, values, 0), atomic=True)
    expected = encode_chunks(values, document, 0)
    for key, encoded in expected.items():
        assert (tmp_path / "z.zarr" / "a" / key).read_bytes() == bytes(encoded)
    # 5 rows of 4 doubles and the checksums; the 3 rows of padding of the last chunk not
    assert sum(written) == 5 * 4 * 8 + (8 if checksum else 0)
    assert sum(len(bytes(e)) for e in expected.values()) == sum(written) + 3 * 4 * 8


def test_padding_made_before_a_larger_one_is_still_skipped(tmp_path, written):
    """The parts of a chunk padded before another chunk needed more zeros (another
    batch, another thread) still leave their padding unwritten."""
    small = _document((5, 4), 4, checksum=True)
    early = chunk_parts("a", small, np.ones((5, 4)), 0)
    zarr_rows._zeros(2**30)  # more zeros than any chunk before (pages never touched)
    store = open_store(tmp_path / "z.zarr", None, writable=True)
    write_parts(store, early)
    expected = encode_chunks(np.ones((5, 4)), small, 0)
    for key, encoded in expected.items():
        assert (tmp_path / "z.zarr" / "a" / key).read_bytes() == bytes(encoded)
    assert sum(written) == 5 * 4 * 8 + 8
