"""The row pointers of blocks of one values chunk are read on first use, checked then:
opening reads none of them, an operation reads each once (read ahead with the next
ones; a store that is not local: all in one batch), and a damaged one raises
DamagedStoreError at its first use, before any of its numbers is used."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import metatensor
import numpy as np
import pytest
import zarr
from older_formats import make_format_4
from store_support import CountingStore
from zarr.storage import LocalStore
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask._partition import block_row_pointer, row_pointer
from metatensor_dask.io import zarr_pointers
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes

POINTER = "blocks/{}/gradients/positions/row_pointer"


@pytest.fixture
def written(tmp_path):
    theirs = make_metatensor(seed=7, n_samples=(9, 0, 6), n_properties=(3, 2, 1), nested=False)
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(theirs).to_zarr(path)  # one chunk per block
    return path, theirs


@pytest.fixture
def pointer_reads(monkeypatch):
    """The paths of the row pointers read through :mod:`.zarr_pointers` (alone or read
    ahead), in order."""
    paths: list[str] = []

    def recording(read):
        def record(refs):
            paths.extend(ref.path for ref in refs)
            return read(refs)

        return record

    for name in ["read_arrays", "read_healthy_arrays"]:
        monkeypatch.setattr(zarr_pointers, name, recording(getattr(zarr_pointers, name)))
    return paths


def _store(path, local: bool):
    return path if local else CountingStore(LocalStore(path, read_only=True))


@pytest.mark.parametrize("local", [True, False])
def test_opening_reads_no_pointer_and_operations_read_each_once(written, pointer_reads, local):
    path, theirs = written
    tensor = mtd.open_zarr(_store(path, local))
    assert pointer_reads == []
    assert all(len(block.values.chunks[0]) == 1 for block in tensor.blocks())
    with raise_if_dask_computes():
        product = mtd.multiply(tensor, tensor)
    assert sorted(pointer_reads) == sorted(
        f"blocks/{i}/gradients/{parameter}/row_pointer"
        for i in range(3)
        for parameter in ["positions", "strain"]
    )
    # the pointers came from the store, not from the gradient samples
    assert not any(block.gradient("positions").samples.is_loaded for block in tensor.blocks())
    assert_equal_to_metatensor(product, metatensor.multiply(theirs, theirs))
    read = len(pointer_reads)
    assert_equal_to_metatensor(tensor, theirs)  # loading the samples checks them too
    assert len(pointer_reads) == read


def test_the_stored_pointer_is_the_one_of_the_samples(written):
    path, theirs = written
    tensor = mtd.open_zarr(path)
    for block, their_block in zip(tensor.blocks(), theirs.blocks(), strict=True):
        gradient = block.gradient("positions")
        assert gradient.row_pointer is None  # not read yet
        pointer = block_row_pointer(block, "positions")
        assert pointer is not None and not pointer.flags.writeable
        assert gradient.row_pointer is pointer  # attached once read
        expected = row_pointer(
            their_block.gradient("positions").samples.column("sample"), len(their_block)
        )
        np.testing.assert_array_equal(pointer, expected)
        assert block_row_pointer(block, "positions") is pointer
        assert not gradient.samples.is_loaded


def test_nested_gradients_read_their_pointers_on_first_use_too(tmp_path, pointer_reads):
    theirs = make_metatensor(seed=3)
    mtd.from_metatensor(theirs).to_zarr(tmp_path / "t.zarr")
    tensor = mtd.open_zarr(tmp_path / "t.zarr")
    assert pointer_reads == []
    for block, their_block in zip(tensor.blocks(), theirs.blocks(), strict=True):
        positions = block.gradient("positions")
        their_positions = their_block.gradient("positions")
        pointer = block_row_pointer(positions, "cell")
        expected = row_pointer(
            their_positions.gradient("cell").samples.column("sample"), len(their_positions)
        )
        np.testing.assert_array_equal(pointer, expected)
    # the pointers of the other gradients were read ahead with them, each once
    cell = {f"{POINTER.format(i)[:-12]}/gradients/cell/row_pointer" for i in range(3)}
    assert cell <= set(pointer_reads)
    assert len(pointer_reads) == len(set(pointer_reads))
    assert_equal_to_metatensor(tensor, theirs)


def _damage(path, block: int, change) -> None:
    with zarr.config.set({"array.write_empty_chunks": True}):
        array = zarr.open_array(path / POINTER.format(block), mode="r+")
        pointer = array[...]
        change(pointer)
        array[...] = pointer  # valid chunks (checksums rewritten) with wrong numbers


DAMAGE = {
    "decreasing": lambda p: p.__setitem__(slice(None), p[::-1]),
    "wrong end": lambda p: p.__setitem__(-1, p[-1] + 1),
    "wrong start": lambda p: p.__setitem__(0, 1),
}


@pytest.mark.parametrize("local", [True, False])
@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_pointer_raises_at_first_use(written, local, damage):
    path, _ = written
    make_format_4(path)  # (its Labels' content checks: no chunk table to find it first)
    _damage(path, 2, DAMAGE[damage])
    message = f"damaged: '{POINTER.format(2)}' is not a non-decreasing row pointer"
    tensor = mtd.open_zarr(_store(path, local))  # not read yet
    # the other blocks' pointers are fine, on any store
    assert block_row_pointer(tensor.block(0), "positions") is not None
    with pytest.raises(mtd.DamagedStoreError, match=message):
        mtd.multiply(tensor, tensor)
    with pytest.raises(mtd.DamagedStoreError, match=message):
        block_row_pointer(tensor.block(2), "positions")
    with pytest.raises(mtd.DamagedStoreError, match=message):
        _ = mtd.open_zarr(_store(path, local)).block(2).gradient("positions").samples.values


@pytest.mark.parametrize("local", [True, False])
@pytest.mark.parametrize("damage", ["missing", "checksum"])
def test_a_lost_or_corrupted_pointer_chunk_raises_at_first_use(written, local, damage):
    path, _ = written
    chunk = path / POINTER.format(2) / "c.0"
    if damage == "missing":
        chunk.unlink()
        message = "the chunk 'c.0' of the array '.*row_pointer' is missing"
    else:
        data = bytearray(chunk.read_bytes())
        data[0] ^= 0xFF
        chunk.write_bytes(bytes(data))
        message = "row_pointer"
    tensor = mtd.open_zarr(_store(path, local))
    np.testing.assert_array_equal(
        block_row_pointer(tensor.block(0), "positions"),
        block_row_pointer(mtd.open_zarr(path).block(0), "positions"),
    )
    with pytest.raises(mtd.DamagedStoreError, match=message):
        mtd.multiply(tensor, tensor)


def test_blocks_of_several_chunks_still_read_their_pointers_when_opened(written, pointer_reads):
    path, theirs = written
    tensor = mtd.open_zarr(path, chunks=4)
    # the blocks of 9 and 6 samples are cut in chunks: their gradients too, by pointer
    assert {POINTER.format(0), POINTER.format(2)} <= set(pointer_reads)
    assert tensor.block(0).gradient("positions").row_pointer is not None
    assert_equal_to_metatensor(mtd.multiply(tensor, tensor), metatensor.multiply(theirs, theirs))


def test_threads_asking_at_once_read_each_pointer_once(written, pointer_reads):
    path, theirs = written
    tensor = mtd.open_zarr(path)
    blocks = [block for block in tensor.blocks() for _ in range(8)]
    with ThreadPoolExecutor(4) as pool:
        pointers = list(pool.map(lambda b: block_row_pointer(b, "positions"), blocks))
    assert {POINTER.format(i) for i in range(3)} <= set(pointer_reads)
    assert len(pointer_reads) == len(set(pointer_reads))
    for i, their_block in enumerate(theirs.blocks()):
        expected = row_pointer(
            their_block.gradient("positions").samples.column("sample"), len(their_block)
        )
        for pointer in pointers[8 * i : 8 * i + 8]:
            np.testing.assert_array_equal(pointer, expected)
