"""Files written past the page cache (``O_DIRECT``) hold exactly the bytes given, with
holes where whole blocks of zeros were marked, and a file system that refuses direct
I/O is told to the caller, which writes the same bytes the usual way."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import dask
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask._huge_pages import free_page_reporting
from metatensor_dask.errors import MetatensorDaskError
from metatensor_dask.io import _direct_writes, zarr_rows
from metatensor_dask.io._direct_writes import ALIGNMENT, write_new_file
from metatensor_dask.testing import assert_equal_to_metatensor

#: Sizes around the block and buffer boundaries (the buffer made 3 blocks below).
SIZES = [0, 1, 7, ALIGNMENT - 1, ALIGNMENT, ALIGNMENT + 1, 2 * ALIGNMENT + 5, 3 * ALIGNMENT]


def accepts_direct_io(folder: Path) -> bool:
    try:
        descriptor = os.open(folder / "probe", os.O_WRONLY | os.O_CREAT | os.O_DIRECT)
    except OSError as error:
        assert error.errno == errno.EINVAL
        return False
    os.close(descriptor)
    os.unlink(folder / "probe")
    return True


@pytest.fixture
def small_buffers(monkeypatch):
    """Buffers of 3 blocks, so that the cases cross buffer boundaries cheaply (and are
    not kept for later writes)."""
    monkeypatch.setattr(_direct_writes, "BUFFER_BYTES", 3 * ALIGNMENT)
    monkeypatch.setattr(_direct_writes, "_free", [])


def test_random_pieces_and_holes_read_back_exactly(tmp_path, small_buffers):
    rng = np.random.default_rng(0)
    direct = accepts_direct_io(tmp_path)
    for case in range(300):
        pieces: list[memoryview | int] = []
        expected = []
        for _ in range(rng.integers(1, 6)):
            size = int(rng.choice(SIZES)) + int(rng.integers(0, 3))
            if rng.random() < 0.3:
                pieces.append(size)
                expected.append(bytes(size))
            else:
                data = rng.integers(0, 256, size, dtype=np.uint8)
                pieces.append(data.data)
                expected.append(data.tobytes())
        path = tmp_path / f"{case}.bin"
        path.write_bytes(b"old bytes, longer than some of the new files" * 300)
        size = write_new_file(str(path), pieces)
        whole = b"".join(expected)
        if not direct:
            assert size is None
            continue
        assert size == len(whole), case
        assert path.read_bytes() == whole, case


def test_whole_blocks_of_zeros_are_holes(tmp_path):
    if not accepts_direct_io(tmp_path):
        pytest.fail(f"{tmp_path} refuses O_DIRECT: run this test on a disk")
    data = np.arange(2**20, dtype=np.uint8)
    path = tmp_path / "chunk"
    size = write_new_file(str(path), [data.data, 8 * 2**20, memoryview(b"crc!")])
    assert size == 9 * 2**20 + 4
    assert path.read_bytes() == data.tobytes() + bytes(8 * 2**20) + b"crc!"
    # the 8 MiB of zeros take no room on disk
    assert os.stat(path).st_blocks * 512 < 2 * 2**20


def test_stores_are_the_same_bytes_with_and_without_direct_io(tmp_path, monkeypatch):
    """A tensor whose chunks are written past the page cache (1 MiB or more, an edge
    chunk padded, checksums), and the same tensor written where direct I/O is missing
    (the usual writes): every file is the same."""
    rng = np.random.default_rng(1)
    samples = metatensor.Labels(["system"], np.arange(700, dtype=np.int32)[:, None])
    block = metatensor.TensorBlock(
        rng.normal(size=(700, 3, 100)),
        samples,
        [metatensor.Labels.range("c", 3)],
        metatensor.Labels.range("p", 100),
    )
    expected = metatensor.TensorMap(metatensor.Labels.range("k", 1), [block])
    tensor = mtd.from_metatensor(expected)
    written = []
    write = _direct_writes.write_new_file

    def counted(name, pieces):
        size = write(name, pieces)
        written.append(size)
        return size

    monkeypatch.setattr(zarr_rows, "write_new_file", counted)
    with dask.config.set({"metatensor_dask.direct-writes": True}):
        tensor.to_zarr(tmp_path / "direct.zarr", chunks=500)  # 1.1 MiB chunks, one padded
    assert written == [500 * 300 * 8 + 4, 500 * 300 * 8 + 4]  # the edge chunk padded
    tensor.to_zarr(tmp_path / "usual.zarr", chunks=500)  # (direct-writes: false)
    assert len(written) == 2
    direct, usual = (
        {
            str(p.relative_to(tmp_path / name)): p.read_bytes()
            for p in (tmp_path / name).rglob("*")
            if p.is_file() and p.name != "zarr.json"
        }
        for name in ("direct.zarr", "usual.zarr")
    )
    assert direct.keys() == usual.keys()
    assert max(map(len, direct.values())) > 2**20
    assert direct == usual
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "direct.zarr"), expected)


def test_direct_writes_follow_the_setting_on_local_disks_only(tmp_path):
    """The tests' folder is on a local disk (ext4 here and in CI); /dev/shm is tmpfs,
    the page cache itself, and /proc no disk at all. Direct writes are off by default;
    ``auto`` uses them on a virtual machine that reports free pages to its host (this
    one and CI), ``true`` on any local disk; another value is refused by name."""
    assert _direct_writes.on_local_disk(str(tmp_path))
    assert not _direct_writes.on_local_disk("/dev/shm")
    assert not _direct_writes.on_local_disk("/proc/self")
    assert not _direct_writes.suits(str(tmp_path))
    for value, expected in [(True, True), ("TRUE", True), ("auto", free_page_reporting())]:
        with dask.config.set({"metatensor_dask.direct-writes": value}):
            assert _direct_writes.suits(str(tmp_path)) == expected
            assert not _direct_writes.suits("/dev/shm")
    with dask.config.set({"metatensor_dask.direct-writes": "false"}):
        assert not _direct_writes.suits(str(tmp_path))
    with dask.config.set({"metatensor_dask.direct-writes": "sometimes"}):
        with pytest.raises(
            MetatensorDaskError,
            match=r"direct-writes must be true, false or auto, not 'sometimes'.*"
            r"DASK_METATENSOR_DASK__DIRECT_WRITES",
        ):
            _direct_writes.suits(str(tmp_path))
