"""Files written in system calls of at most 128 KiB (``io/_file_writes.py``): the bytes
on disk are those given, in order, whatever the mix of buffers; the number of write
calls is read from the kernel's count (``/proc/thread-self/io``)."""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from metatensor_dask.io._file_writes import MOST_BUFFERS, PIECE_BYTES, write_all


def _write_calls() -> int:
    with open("/proc/thread-self/io") as file:
        for line in file:
            if line.startswith("syscw:"):
                return int(line.split()[1])
    raise AssertionError("no syscw line")


def _buffers(sizes: list[int], seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size, dtype=np.uint8).tobytes() for size in sizes]


sizes = st.lists(
    st.one_of(
        st.integers(0, 64),
        st.integers(PIECE_BYTES - 3, PIECE_BYTES + 3),
        st.integers(0, 3 * PIECE_BYTES),
    ),
    max_size=6,
)


@given(sizes=sizes, seed=st.integers(0, 2**16))
def test_the_file_holds_the_buffers_in_order(tmp_path_factory, sizes, seed):
    buffers = _buffers(sizes, seed)
    path = tmp_path_factory.mktemp("writes") / "file"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        os.write(descriptor, b"head")
        written = write_all(descriptor, buffers)
    finally:
        os.close(descriptor)
    assert written == sum(sizes)
    assert path.read_bytes() == b"head" + b"".join(buffers)


@given(sizes=sizes, seed=st.integers(0, 2**16), offset=st.integers(0, 3 * PIECE_BYTES))
def test_writing_at_an_offset_leaves_the_rest_of_the_file(tmp_path_factory, sizes, seed, offset):
    buffers = _buffers(sizes, seed)
    before = _buffers([offset + sum(sizes) + 10], seed + 1)[0]
    path = tmp_path_factory.mktemp("writes") / "file"
    path.write_bytes(before)
    descriptor = os.open(path, os.O_WRONLY)
    try:
        os.lseek(descriptor, 5, os.SEEK_SET)
        assert write_all(descriptor, buffers, offset) == sum(sizes)
        # the file's position is not moved by writes at an offset
        assert os.lseek(descriptor, 0, os.SEEK_CUR) == 5
    finally:
        os.close(descriptor)
    joined = b"".join(buffers)
    assert path.read_bytes() == before[:offset] + joined + before[offset + len(joined) :]


def test_arrays_of_any_shape_are_written_as_their_c_order_bytes(tmp_path):
    arrays = [np.arange(24.0).reshape(2, 3, 4), np.arange(7, dtype=np.int32), np.zeros(0)]
    path = tmp_path / "file"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        write_all(descriptor, arrays)
    finally:
        os.close(descriptor)
    assert path.read_bytes() == b"".join(a.tobytes() for a in arrays)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the count is Linux's")
@pytest.mark.parametrize(
    "sizes",
    [[8 * 2**20], [3 * PIECE_BYTES + 1], [100] * 1000, [PIECE_BYTES - 1, 2, PIECE_BYTES]],
)
def test_no_call_writes_more_than_a_piece_and_small_buffers_share_calls(tmp_path, sizes):
    buffers = _buffers(sizes, 0)
    descriptor = os.open(tmp_path / "file", os.O_WRONLY | os.O_CREAT)
    try:
        calls = _write_calls()
        write_all(descriptor, buffers)
        calls = _write_calls() - calls
    finally:
        os.close(descriptor)
    assert calls == math.ceil(sum(sizes) / PIECE_BYTES)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the count is Linux's")
@pytest.mark.parametrize("offset", [None, 3])
def test_many_tiny_buffers_take_calls_of_at_most_the_buffers_a_call_takes(tmp_path, offset):
    """5,000 buffers of 10 bytes (50 kB: one piece by size) go in calls of at most
    ``MOST_BUFFERS`` buffers, which ``writev`` refuses beyond."""
    buffers = _buffers([10] * 5000, 1)
    path = tmp_path / "file"
    path.write_bytes(b"abc")
    descriptor = os.open(path, os.O_WRONLY)
    try:
        os.lseek(descriptor, 3, os.SEEK_SET)
        calls = _write_calls()
        assert write_all(descriptor, buffers, offset) == 50_000
        calls = _write_calls() - calls
    finally:
        os.close(descriptor)
    assert calls == math.ceil(5000 / MOST_BUFFERS)
    assert path.read_bytes() == b"abc" + b"".join(buffers)


def test_a_write_the_file_refuses_raises(tmp_path):
    descriptor = os.open(tmp_path / "file", os.O_RDONLY | os.O_CREAT)
    try:
        with pytest.raises(OSError):
            write_all(descriptor, [b"bytes"])
    finally:
        os.close(descriptor)
