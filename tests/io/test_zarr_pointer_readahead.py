"""The row pointers of a map opened from a local Zarr store are read ahead: the first
one asked for is read with the next ones not read yet (at most ``READ_AHEAD`` pointers
and ``READ_AHEAD_BYTES``), so that an operation over many tiny blocks makes a read
call per batch, not per block. Files opened are counted with an audit hook (Python's
``open`` event, raised by every file the reader opens). Each pointer is still checked
at its first use: a damaged one in the middle of a batch raises when its block is used,
and the blocks around it work (on a store that is not local too, where one batch brings
every pointer)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import metatensor
import numpy as np
import pytest
import zarr
from older_formats import make_format_4
from store_support import CountingStore
from zarr.storage import LocalStore

import metatensor_dask as mtd
from metatensor_dask._partition import block_row_pointer, row_pointer
from metatensor_dask.io import zarr_pointers
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes

BLOCKS = 300
POINTER = "blocks/{}/gradients/positions/row_pointer"

#: The lists recording the files opened, while a recording is on (see `_opened`).
_RECORDING: list[list[str]] = []


def _record_opens(event: str, args: tuple) -> None:
    if event == "open" and _RECORDING and isinstance(args[0], str | bytes):
        _RECORDING[-1].append(str(args[0]))


sys.addaudithook(_record_opens)  # a hook stays for the process: it records only when asked


@contextmanager
def _opened() -> Iterator[list[str]]:
    """The row pointer chunk files opened inside the block, as ``(block, chunk key)``
    strings such as ``"12/c.0"``."""
    files: list[str] = []
    _RECORDING.append(files)
    pointers: list[str] = []
    try:
        yield pointers
    finally:
        _RECORDING.remove(files)
        for name in files:
            if "/gradients/positions/row_pointer/" in name:
                head, chunk = name.rsplit("/row_pointer/", 1)
                block = head.rsplit("/blocks/", 1)[1].split("/")[0]
                pointers.append(f"{block}/{chunk}")


def _blocks_read(files: list[str]) -> list[int]:
    """The blocks whose pointer files ``files`` (see :func:`_opened`) are, in order."""
    return list(dict.fromkeys(int(name.split("/")[0]) for name in files))


def _tiny_map(count: int, seed: int = 0) -> metatensor.TensorMap:
    """``count`` tiny blocks of 4 samples, each a random number of ``positions``
    gradient rows (grouped by sample: a stored row pointer)."""
    rng = np.random.default_rng(seed)
    samples = metatensor.Labels(["system", "atom"], np.array([[i // 2, i % 2] for i in range(4)]))
    components = [metatensor.Labels.range("c", 2)]
    properties = metatensor.Labels.range("p", 3)
    blocks = []
    for _ in range(count):
        rows = np.repeat(np.arange(4), rng.integers(1, 4, size=4))
        gradient_samples = metatensor.Labels(
            ["sample", "neighbor"], np.stack([rows, np.arange(len(rows))], axis=1)
        )
        block = metatensor.TensorBlock(rng.random((4, 2, 3)), samples, components, properties)
        block.add_gradient(
            "positions",
            metatensor.TensorBlock(
                rng.random((len(rows), 3, 2, 3)),
                gradient_samples,
                [metatensor.Labels.range("xyz", 3), *components],
                properties,
            ),
        )
        blocks.append(block)
    return metatensor.TensorMap(metatensor.Labels.range("k", count), blocks)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    theirs = _tiny_map(BLOCKS)
    path = tmp_path_factory.mktemp("readahead") / "t.zarr"
    mtd.from_metatensor(theirs).to_zarr(path)  # one chunk per block
    return path, theirs


@pytest.fixture
def copy(written, tmp_path):
    """A copy of the written store (to damage) and the map."""
    path, theirs = written
    shutil.copytree(path, tmp_path / "t.zarr")
    return tmp_path / "t.zarr", theirs


def _expected_pointer(theirs: metatensor.TensorMap, index: int) -> np.ndarray:
    block = theirs.block(index)
    return row_pointer(block.gradient("positions").samples.column("sample"), len(block))


def _chunk_files(path) -> int:
    return sum(1 for _ in path.glob("blocks/*/gradients/positions/row_pointer/c.*"))


@pytest.mark.parametrize("read_ahead", [7, zarr_pointers.READ_AHEAD])
def test_operations_on_pointers_read_ahead_equal_metatensor(written, monkeypatch, read_ahead):
    path, theirs = written
    monkeypatch.setattr(zarr_pointers, "READ_AHEAD", read_ahead)
    tensor = mtd.open_zarr(path)
    with _opened() as files, raise_if_dask_computes():
        product = mtd.multiply(tensor, tensor)
    assert sorted(files) == sorted(set(files)) and len(files) == _chunk_files(path)  # each once
    with _opened() as files, raise_if_dask_computes():
        summed = mtd.sum_over_samples(mtd.open_zarr(path), "atom")
    assert len(files) == len(set(files))
    assert not any(block.gradient("positions").samples.is_loaded for block in tensor.blocks())
    assert_equal_to_metatensor(product, metatensor.multiply(theirs, theirs))
    assert_equal_to_metatensor(
        summed, metatensor.sum_over_samples(theirs, "atom"), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize(
    ("read_ahead", "pointer_bytes"),
    [(64, 2**20), (1024, 10 * 5 * 8)],  # a bound of 64 pointers, then of 10 pointers' bytes
)
def test_pointers_are_read_by_batches_not_by_blocks(
    written, monkeypatch, read_ahead, pointer_bytes
):
    path, theirs = written
    monkeypatch.setattr(zarr_pointers, "READ_AHEAD", read_ahead)
    monkeypatch.setattr(zarr_pointers, "READ_AHEAD_BYTES", pointer_bytes)
    per_batch = min(read_ahead, pointer_bytes // (5 * 8))  # pointers of 4 value rows: 5 int64
    tensor = mtd.open_zarr(path)
    reading = []  # the blocks whose asking opened files
    for index, block in enumerate(tensor.blocks()):
        with _opened() as files:
            pointer = block_row_pointer(block, "positions")
        np.testing.assert_array_equal(pointer, _expected_pointer(theirs, index))
        if files:
            reading.append(index)
            expected = list(range(index, min(index + per_batch, BLOCKS)))
            assert _blocks_read(files) == expected
    assert reading == list(range(0, BLOCKS, per_batch))
    assert len(reading) < BLOCKS // 5


def test_one_block_alone_reads_a_bounded_number_of_pointers(written, monkeypatch):
    path, theirs = written
    monkeypatch.setattr(zarr_pointers, "READ_AHEAD", 64)
    tensor = mtd.open_zarr(path)
    with _opened() as files:
        np.testing.assert_array_equal(
            block_row_pointer(tensor.block(0), "positions"), _expected_pointer(theirs, 0)
        )
    assert _blocks_read(files) == list(range(64))
    # a block near the end: its pointer, those after it, then the first ones not read
    with _opened() as files:
        np.testing.assert_array_equal(
            block_row_pointer(tensor.block(BLOCKS - 10), "positions"),
            _expected_pointer(theirs, BLOCKS - 10),
        )
    assert _blocks_read(files) == [*range(BLOCKS - 10, BLOCKS), *range(64, 64 + 54)]
    with _opened() as files:  # read ahead: nothing more to open
        block_row_pointer(tensor.block(BLOCKS - 1), "positions")
        block_row_pointer(tensor.block(100), "positions")
    assert files == []


def _garbage(path, block: int) -> None:
    chunk = path / POINTER.format(block) / "c.0"
    chunk.write_bytes(np.random.default_rng(block).bytes(chunk.stat().st_size))


def _decreasing(path, block: int) -> None:
    make_format_4(path)  # (its pointers' content checks: no chunk table to find it first)
    with zarr.config.set({"array.write_empty_chunks": True}):
        array = zarr.open_array(path / POINTER.format(block), mode="r+")
        array[...] = array[...][::-1]  # valid chunks (checksums rewritten), wrong numbers


DAMAGE = {
    "garbage": (_garbage, rf"the checksum of the chunk 'c.0' of the array '{POINTER}' is wrong"),
    "decreasing": (_decreasing, rf"'{POINTER}' is not a non-decreasing row pointer"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_pointer_in_a_batch_raises_when_its_block_is_used(copy, monkeypatch, damage):
    path, theirs = copy
    monkeypatch.setattr(zarr_pointers, "READ_AHEAD", 64)
    change, message = DAMAGE[damage]
    damaged = 100  # in the middle of the batch of blocks 64 to 127
    change(path, damaged)
    message = message.format(damaged)
    tensor = mtd.open_zarr(path)
    for index in range(damaged):  # the healthy blocks before it work
        np.testing.assert_array_equal(
            block_row_pointer(tensor.block(index), "positions"), _expected_pointer(theirs, index)
        )
    key = np.array([[damaged - 1]])
    one = mtd.TensorMap(mtd.Labels(["k"], key), [tensor.block(damaged - 1)])
    their_one = metatensor.TensorMap(
        metatensor.Labels(["k"], key), [theirs.block(damaged - 1).copy()]
    )
    assert_equal_to_metatensor(mtd.multiply(one, one), metatensor.multiply(their_one, their_one))
    for _ in range(2):  # at each use
        with pytest.raises(mtd.DamagedStoreError, match=message):
            block_row_pointer(tensor.block(damaged), "positions")
    with _opened() as files:  # and those after it were read in its batch
        for index in range(damaged + 1, 128):
            np.testing.assert_array_equal(
                block_row_pointer(tensor.block(index), "positions"),
                _expected_pointer(theirs, index),
            )
    assert files == []
    with pytest.raises(mtd.DamagedStoreError, match=message):
        mtd.multiply(mtd.open_zarr(path), mtd.open_zarr(path))


def test_a_damaged_pointer_leaves_the_others_of_a_remote_batch_read(copy):
    """Outside a local directory, the first pointer asked for brings all the others in
    one batch: a damaged one is read again alone when used, the others are not."""
    path, theirs = copy
    _garbage(path, 100)
    store = CountingStore(LocalStore(path, read_only=True))
    tensor = mtd.open_zarr(store)
    opened = len(store.reads)
    np.testing.assert_array_equal(
        block_row_pointer(tensor.block(0), "positions"), _expected_pointer(theirs, 0)
    )
    pointer_keys = [key for key in store.reads[opened:] if "/row_pointer/" in key]
    assert sorted(pointer_keys) == sorted(set(pointer_keys))
    assert len(pointer_keys) == _chunk_files(path)
    batch = len(store.reads)
    for index in [*range(1, 100), *range(101, BLOCKS)]:
        np.testing.assert_array_equal(
            block_row_pointer(tensor.block(index), "positions"), _expected_pointer(theirs, index)
        )
    assert len(store.reads) == batch
    with pytest.raises(mtd.DamagedStoreError, match=DAMAGE["garbage"][1].format(100)):
        block_row_pointer(tensor.block(100), "positions")
    # read alone (and the store's root, to tell damage from an overwrite)
    again = [key for key in store.reads[batch:] if "/row_pointer/" in key]
    assert again and all(key.startswith(POINTER.format(100)) for key in again)
