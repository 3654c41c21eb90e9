"""``reads_as_zeros`` (``io/_file_holes.py``): whether a range of a file reads as
zeros, from its holes and its partial blocks, against the file's bytes, on files with
holes and data written at random places (including past the range and the file's end)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metatensor_dask.io._file_holes import reads_as_zeros

BLOCK = 4096

#: pieces of data, by offset and length, in a file of at most 8 blocks
pieces = st.lists(st.tuples(st.integers(0, 8 * BLOCK), st.integers(1, 2 * BLOCK)), max_size=4)


@settings(max_examples=150, deadline=None)
@given(
    pieces=pieces,
    size=st.integers(0, 9 * BLOCK),
    start=st.integers(0, 10 * BLOCK),
    length=st.integers(0, 10 * BLOCK),
)
def test_reads_as_zeros_is_what_the_file_reads(tmp_path_factory, pieces, size, start, length):
    name = tmp_path_factory.mktemp("holes") / "file"
    descriptor = os.open(name, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(descriptor, size)
        for offset, count in pieces:
            os.pwrite(descriptor, b"\x5a" * count, offset)
        held = os.pread(descriptor, length, start)
        assert reads_as_zeros(descriptor, start, start + length) == (not held.strip(b"\0"))
    finally:
        os.close(descriptor)


@pytest.mark.parametrize("synced", [False, True])
def test_zeros_written_are_not_taken_for_a_hole(tmp_path, synced):
    """Blocks of zeros written hold data: the answer is ``False`` (unsure), never wrong,
    whether the blocks are still in the page cache only or on disk."""
    descriptor = os.open(tmp_path / "file", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(descriptor, bytes(4 * BLOCK), 0)
        if synced:
            os.fsync(descriptor)
        assert not reads_as_zeros(descriptor, 1, 4 * BLOCK - 1)
        assert reads_as_zeros(descriptor, 1, BLOCK + 1)  # partial blocks only: read
    finally:
        os.close(descriptor)
