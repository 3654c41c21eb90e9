"""The gradient samples of a group of tiny blocks opened from Zarr are read together and
checked against their row pointers at once; damage in any of them still raises as the
check of that gradient alone does."""

from __future__ import annotations

import metatensor
import numpy as np
import pytest
import zarr
from older_formats import make_format_4
from test_zarr_tiny_reads import tiny_map

import metatensor_dask as mtd
from metatensor_dask.io import zarr_columns
from metatensor_dask.testing import assert_equal_to_metatensor

N_BLOCKS = 30
DAMAGED = 17


def _samples(block: int) -> str:
    return f"blocks/{block}/gradients/positions/samples"


@pytest.fixture
def stored(tmp_path):
    # blocks with and without samples (every seventh has none), none without properties
    # (metatensor multiplies them wrongly)
    every = tiny_map(N_BLOCKS + 3)
    kept = [i for i in range(N_BLOCKS + 3) if i % 11 != 5]
    theirs = metatensor.TensorMap(
        metatensor.Labels(["k"], np.array(kept, dtype=np.int32).reshape(-1, 1)),
        [every.block(i).copy() for i in kept],
    )
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(theirs).to_zarr(path)
    return path, theirs


def _counted_batches(monkeypatch) -> list[int]:
    """The number of gradients of each batch read by the checks together."""
    batches: list[int] = []
    original = zarr_columns.read_plain_regions

    def counted(reads):
        batches.append(len(reads))
        return original(reads)

    monkeypatch.setattr(zarr_columns, "read_plain_regions", counted)
    return batches


def test_a_group_checks_its_gradient_samples_in_one_read(stored, monkeypatch):
    path, theirs = stored
    batches = _counted_batches(monkeypatch)
    ours = mtd.multiply(mtd.open_zarr(path), mtd.open_zarr(path)).compute()
    assert_equal_to_metatensor(ours, metatensor.multiply(theirs, theirs))
    assert batches == [N_BLOCKS]


def test_a_sample_moved_to_another_value_row_is_refused(stored):
    path, _ = stored
    make_format_4(path)  # (its Labels' content checks: no chunk table to find it first)
    samples = zarr.open_array(path / _samples(DAMAGED), mode="r+")
    rows = samples[...]
    rows[3, 0] += 1  # the fourth gradient row given to the next value row
    samples[...] = rows  # zarr rewrites the chunk's checksum
    result = mtd.multiply(mtd.open_zarr(path), 2.0)
    with pytest.raises(
        mtd.DamagedStoreError,
        match=(
            rf"the gradient samples '{_samples(DAMAGED)}' disagree with the stored row "
            r"pointer in chunk 0 \(the gradient rows 0:10 of the value rows 0:5\): the "
            r"gradient row 3 has the sample 2, where the row pointer puts it in the value "
            r"row 1"
        ),
    ):
        mtd.multiply(result, mtd.open_zarr(path)).compute()


@pytest.mark.parametrize("damage", ["random bytes", "missing", "cut short"])
def test_a_damaged_samples_chunk_in_a_group_is_refused(stored, damage):
    path, _ = stored
    chunk = path / _samples(DAMAGED) / "c.0.0"
    if damage == "missing":
        chunk.unlink()
        expected = r"chunk 'c\.0\.0'.* is missing"
    elif damage == "cut short":
        chunk.write_bytes(chunk.read_bytes()[:-9])
        expected = r"has 71 bytes, not 80"
    else:
        size = len(chunk.read_bytes())
        chunk.write_bytes(np.random.default_rng(3).integers(0, 256, size, np.uint8).tobytes())
        expected = "the checksum of the chunk 'c.0.0'"
    result = mtd.multiply(mtd.open_zarr(path), mtd.open_zarr(path))
    with pytest.raises(mtd.DamagedStoreError, match=f"{_samples(DAMAGED)}|{expected}") as error:
        result.compute()
    assert _samples(DAMAGED) in str(error.value)
