"""A part of a metatensor file's member read in several chunks (a slice of samples, one
chunk) is checked too: the member's streamed check reads the member again, once per
member and process, one chunk at a time."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import dask
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.io import _zip
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes

MEMBER = "blocks/0/values.npy"
ROWS, WIDTH, CHUNK_ROWS = 4096, 16, 64
CHUNK_BYTES = CHUNK_ROWS * WIDTH * 8  # 8 KiB: 64 chunks, 512 KiB of values


def _tensor(rows: int = ROWS) -> metatensor.TensorMap:
    values = np.random.default_rng(48).standard_normal((rows, WIDTH))
    samples = metatensor.Labels(["system"], np.arange(rows, dtype=np.int32).reshape(-1, 1))
    block = metatensor.TensorBlock(values, samples, [], metatensor.Labels.range("p", WIDTH))
    return metatensor.TensorMap(metatensor.Labels.range("k", 1), [block])


def _data(path: Path) -> tuple[int, int]:
    """Where the values of :data:`MEMBER` (after their ``.npy`` header) start in the
    file ``path``, and their size."""
    member = _zip.read_directory(str(path))[MEMBER]
    size = ROWS * WIDTH * 8
    return member.offset + member.size - size, size


@pytest.fixture
def clean(tmp_path) -> Path:
    path = tmp_path / "clean.mts"
    metatensor.save(str(path), _tensor())
    return path


@pytest.fixture
def damaged(tmp_path) -> Path:
    """A file whose last row of values has a bit changed."""
    path = tmp_path / "damaged.mts"
    metatensor.save(str(path), _tensor())
    start, size = _data(path)
    data = bytearray(path.read_bytes())
    data[start + size - 3] ^= 0x10
    path.write_bytes(bytes(data))
    return path


def _rows(*systems: int) -> mtd.Labels:
    return mtd.Labels(["system"], np.array(systems, dtype=np.int32).reshape(-1, 1))


def _first_row(path: Path) -> mtd.TensorMap:
    """The first sample of the file's map: one chunk of its member read."""
    return mtd.slice(mtd.load(path, chunks=CHUNK_ROWS), "samples", _rows(0))


PARTIAL = {
    "compute": lambda t, _: t.compute(),
    "to_metatensor": lambda t, _: mtd.to_metatensor(t),
    "unoptimized": lambda t, _: dask.compute(t, optimize_graph=False),
    "values-alone": lambda t, _: t.block(0).values.compute(),
    "equal": lambda t, _: mtd.equal(t, mtd.multiply(t, 1.0)),
    "to_zarr": lambda t, folder: t.to_zarr(folder / "part.zarr", mode="w"),
    "save": lambda t, folder: mtd.save(folder / "part.mts", t),
}


@pytest.mark.parametrize("compute", PARTIAL)
def test_a_partial_read_of_a_damaged_member_fails_every_time(damaged, tmp_path, compute):
    # the first row is clean, the last one damaged: before, the first row was given
    # without an error
    sliced = _first_row(damaged)
    assert sliced.block(0).values.npartitions == 1
    for _ in range(2):  # a damaged member is not remembered as checked
        with pytest.raises(mtd.DamagedFileError) as error:
            PARTIAL[compute](sliced, tmp_path)
        assert f"'{damaged}' is damaged: Invalid checksum" in str(error.value)
        assert f"in member '{MEMBER}'" in str(error.value)
    assert not (tmp_path / "part.mts").exists()
    if (tmp_path / "part.zarr").exists():
        with pytest.raises(mtd.MetatensorDaskError, match="incomplete"):
            mtd.open_zarr(tmp_path / "part.zarr")


def test_write_batches_of_a_partial_read_of_a_damaged_member_fails(damaged, tmp_path):
    store = tmp_path / "batches.zarr"
    with pytest.raises(mtd.MetatensorDaskError, match=f"damaged.mts' is damaged.*{MEMBER}"):
        mtd.write_batches(lambda items: _first_row(damaged), [0], store, quiet=True)
    with pytest.raises(mtd.IncompleteStoreError):
        mtd.open_zarr(store)


def test_a_partial_read_of_a_clean_member_computes_as_metatensor(clean):
    expected = metatensor.slice(
        _tensor(), "samples", metatensor.Labels(["system"], np.array([[5], [900]]))
    )
    sliced = mtd.slice(mtd.load(clean, chunks=CHUNK_ROWS), "samples", _rows(5, 900))
    assert_equal_to_metatensor(sliced.compute(), expected)


def test_building_a_partial_read_computes_nothing(damaged):
    with raise_if_dask_computes():
        sliced = _first_row(damaged)
        sliced.__dask_graph__()
        keys = sliced.__dask_keys__()
        dask.optimize(sliced)
        dask.optimize(sliced.block(0).values)
    assert any(str(key).startswith("mts-check-streamed-") for key in keys)


@pytest.fixture
def reads(monkeypatch) -> list[tuple[int, int]]:
    """The ``(offset, bytes)`` of every read of a values chunk or piece (``preadv``)."""
    found: list[tuple[int, int]] = []
    preadv = os.preadv

    def recording(fd, buffers, offset):
        found.append((offset, sum(memoryview(b).nbytes for b in buffers)))
        return preadv(fd, buffers, offset)

    monkeypatch.setattr(os, "preadv", recording)
    return found


def _read_bytes(reads: list[tuple[int, int]], path: Path) -> int:
    """How many bytes of the values of :data:`MEMBER` ``reads`` read."""
    start, size = _data(path)
    return sum(
        max(0, min(offset + count, start + size) - max(offset, start)) for offset, count in reads
    )


def test_a_member_read_in_part_is_read_whole_once_per_process(clean, reads):
    _, size = _data(clean)
    _first_row(clean).compute()
    # the chunk computed, and the member again for its check
    assert _read_bytes(reads, clean) == size + CHUNK_BYTES
    reads.clear()
    _first_row(clean).compute()
    last = mtd.slice(mtd.load(clean, chunks=CHUNK_ROWS), "samples", _rows(ROWS - 1))
    last.compute()
    # checked: each computation reads its own chunk only
    assert _read_bytes(reads, clean) == 2 * CHUNK_BYTES


def test_a_member_read_whole_is_read_once(clean, reads):
    start, size = _data(clean)
    tensor = mtd.load(clean, chunks=CHUNK_ROWS)
    assert tensor.block(0).values.npartitions == ROWS // CHUNK_ROWS
    assert_equal_to_metatensor(tensor.compute(), _tensor())
    chunks = sorted((offset, count) for offset, count in reads if start <= offset < start + size)
    assert chunks == [(start + i * CHUNK_BYTES, CHUNK_BYTES) for i in range(ROWS // CHUNK_ROWS)]
    # its check passed: a later partial read needs no streamed check
    reads.clear()
    _first_row(clean).compute()
    assert _read_bytes(reads, clean) == CHUNK_BYTES


def test_halves_read_together_are_checked_at_no_second_read(clean, damaged, reads):
    # each half reads part of the member, both together all of it: its check combines
    # the chunks' CRCs, no streamed check reads it again
    def halves(path: Path) -> mtd.TensorMap:
        tensor = mtd.load(path, chunks=CHUNK_ROWS)
        first, second = _rows(*range(ROWS // 2)), _rows(*range(ROWS // 2, ROWS))
        return mtd.join(
            mtd.split(tensor, "samples", [first, second]), "samples", add_dimension="part"
        )

    halves(clean).compute()
    assert _read_bytes(reads, clean) == _data(clean)[1]
    with pytest.raises(mtd.DamagedFileError, match=f"in member '{MEMBER}'"):
        halves(damaged).compute()


def test_parts_computed_together_share_the_check_of_their_member(tmp_path, damaged, reads):
    # each part (each map) asks for the member's streamed check; the computation reads
    # the member whole, so its check serves instead, at no second read
    def parts(path: Path) -> list[mtd.TensorMap]:
        tensor = mtd.load(path, chunks=CHUNK_ROWS)
        first, second = _rows(*range(ROWS // 2)), _rows(*range(ROWS // 2, ROWS))
        return mtd.split(tensor, "samples", [first, second])

    for name in ["split", "whole-and-slice"]:
        path = tmp_path / f"{name}.mts"
        metatensor.save(str(path), _tensor())
        reads.clear()
        if name == "split":
            dask.compute(*parts(path))
        else:
            dask.compute(mtd.load(path, chunks=CHUNK_ROWS), _first_row(path))
        assert _read_bytes(reads, path) == _data(path)[1], name
    with pytest.raises(mtd.DamagedFileError, match=f"in member '{MEMBER}'"):
        dask.compute(*parts(damaged))


def test_a_partial_read_holds_about_one_chunk(tmp_path):
    # a member of 64 chunks of 64 KiB (4 MiB): its streamed check holds one chunk at a
    # time, never the member
    chunk = 512 * WIDTH * 8
    sliced = {}
    for name in ["first", "measured"]:
        path = tmp_path / f"{name}.mts"
        metatensor.save(str(path), _tensor(64 * 512))
        sliced[name] = mtd.slice(mtd.load(path, chunks=512), "samples", _rows(7))
    # the first computation of a process imports modules and fills caches (27 MB)
    sliced["first"].compute(scheduler="synchronous")
    tracemalloc.start()
    try:
        computed = sliced["measured"].compute(scheduler="synchronous")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert computed.block(0).values.shape == (1, WIDTH)
    assert peak < 4 * chunk, peak
