"""The batches of write_batches extend the partial last chunk of values arrays in
place: equal to metatensor's join, zero padding, and a batch killed while it wrote
(rows and checksum half written) resumed as if it had not run; damage to the stored
rows, which a batch does not read, refused by readers and by verify."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dask
import metatensor
import numpy as np
import pytest
from ingest_support import renumbered, soap

import metatensor_dask as mtd
from metatensor_dask.errors import DamagedStoreError, MetatensorDaskError
from metatensor_dask.testing import assert_equal_to_metatensor


def _expected(n_items: int, size: int) -> metatensor.TensorMap:
    batches = [
        renumbered(soap(list(range(start, min(start + size, n_items)))), start)
        for start in range(0, n_items, size)
    ]
    return metatensor.join(batches, axis="samples", different_keys="union")


def _partial_chunks(path: Path) -> list[tuple[Path, int, int]]:
    """Every partial last chunk of a values array: its file, the bytes of its stored
    rows and of the whole chunk."""
    found = []
    for node in sorted(path.glob("blocks/**/values/zarr.json")):
        document = json.loads(node.read_text())
        rows = document["chunk_grid"]["configuration"]["chunk_shape"][0]
        stored = document["shape"][0]
        if stored % rows == 0:
            continue
        row = int(np.prod(document["shape"][1:])) * np.dtype(document["data_type"]).itemsize
        key = "c." + ".".join([str(stored // rows)] + ["0"] * (len(document["shape"]) - 1))
        found.append((node.parent / key, (stored % rows) * row, rows * row))
    return found


def _padding_is_zeros(path: Path) -> None:
    for file, stored, whole in _partial_chunks(path):
        data = file.read_bytes()
        assert len(data) == whole + 4  # the rows, the padding, the crc32c
        assert not any(data[stored:whole])


def _run(path: Path, n_items: int, size: int, function=soap, **options) -> None:
    with dask.config.set(scheduler="synchronous"):
        mtd.write_batches(
            function, list(range(n_items)), path, batch_size=size, chunks=1000, quiet=True,
            **options,
        )  # fmt: skip


def test_batches_extend_chunks_in_place(tmp_path):
    path = tmp_path / "t.zarr"
    _run(path, 7, 2)
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), _expected(7, 2))
    assert mtd.verify(path).ok
    assert _partial_chunks(path), "the test needs partial chunks"
    _padding_is_zeros(path)


def _failing_after(batches: int):
    def function(items: list[int]):
        if items[0] >= 2 * batches:
            raise RuntimeError("stopped")
        return soap(items)

    return function


def _interrupted(path: Path) -> list[tuple[Path, int, int]]:
    """A run of 4 batches of 2 items stopped after its second batch."""
    with pytest.raises(MetatensorDaskError, match="stopped"):
        _run(path, 8, 2, _failing_after(2))
    partial = _partial_chunks(path)
    assert partial
    return partial


@pytest.mark.parametrize(
    "left",
    ["rows and checksum", "the last byte of the padding", "a byte past the checksum"],
)  # fmt: skip
def test_batch_killed_while_extending_is_resumed(tmp_path, left):
    """What a killed batch wrote after the stored rows (more rows than the resumed batch
    has, and the chunk's checksum, or a byte where the resumed batch writes nothing) is
    not kept: the padding is zeros again."""
    path = tmp_path / "t.zarr"
    for file, stored, whole in _interrupted(path):
        with open(file, "r+b") as opened:
            if left == "rows and checksum":
                opened.seek(stored)
                opened.write(b"\x5a" * (whole - stored))  # rows of a batch never committed
                opened.write(b"\x01\x02\x03\x04")  # and its checksum
            elif left == "the last byte of the padding":
                opened.seek(whole - 1)
                opened.write(b"\x5a")
            else:
                opened.seek(whole + 4)
                opened.write(b"\x5a")
    # verify: the run is unfinished, nothing is damaged
    (problem,) = mtd.verify(path).problems
    assert problem.startswith("the store is incomplete") and "write_batches" in problem
    _run(path, 8, 2, resume=True)
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), _expected(8, 2))
    assert mtd.verify(path).ok
    _padding_is_zeros(path)


def _flip(file: Path, position: int) -> None:
    data = bytearray(file.read_bytes())
    data[position] ^= 0x10
    file.write_bytes(bytes(data))


def _damage_stored_rows(path: Path) -> tuple[Path, int]:
    """A run stopped after its second batch, then one bit of the stored rows of a
    partial chunk flipped; that chunk's file and the byte flipped."""
    file, stored, _ = _interrupted(path)[0]
    _flip(file, stored // 2)
    return file, stored // 2


def test_damaged_stored_rows_are_found_by_verify_while_unfinished(tmp_path):
    path = tmp_path / "t.zarr"
    _damage_stored_rows(path)
    problems = mtd.verify(path).problems
    assert len(problems) == 2 and "does not hold the rows the store lists" in problems[1]


def test_damaged_stored_rows_extended_are_refused_by_readers(tmp_path):
    """A batch extends a chunk without reading its stored rows: damage to them is not
    found then, but the chunk it leaves does not match its checksum, which every
    reader checks."""
    path = tmp_path / "t.zarr"
    file, position = _damage_stored_rows(path)
    _run(path, 8, 2, resume=True)
    (problem,) = mtd.verify(path).problems
    assert f"the checksum of the chunk '{file.name}'" in problem and "is wrong" in problem
    with pytest.raises(DamagedStoreError, match=f"the checksum of the chunk '{file.name}'"):
        mtd.open_zarr(path).compute()
    # the checksum written is that of the rows as listed, followed by the batch's
    _flip(file, position)
    assert mtd.verify(path).ok
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), _expected(8, 2))


def test_partial_chunk_cut_short_is_refused(tmp_path):
    path = tmp_path / "t.zarr"
    file, stored, _ = _interrupted(path)[0]
    os.truncate(file, stored - 1)
    with pytest.raises(MetatensorDaskError, match=r"batch 2 .* failed: DamagedStoreError") as e:
        _run(path, 8, 2, resume=True)
    assert f"holds {stored - 1} bytes, not its {stored} stored" in str(e.value)


def test_missing_partial_chunk_is_refused(tmp_path):
    path = tmp_path / "t.zarr"
    file, _, _ = _interrupted(path)[0]
    file.unlink()
    with pytest.raises(MetatensorDaskError, match=r"batch 2 .* failed: DamagedStoreError") as e:
        _run(path, 8, 2, resume=True)
    assert f"the chunk '{file.name}'" in str(e.value) and "is missing" in str(e.value)
