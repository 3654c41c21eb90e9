"""Values read from their chunk files directly, and gradients stored co-partitioned."""

from __future__ import annotations

import dask
import metatensor
import numpy as np
import pytest
import zarr
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def _constant_rows(n: int, per_sample: int, seed: int = 0) -> metatensor.TensorMap:
    """One block whose positions gradient has ``per_sample`` rows for every sample."""
    rng = np.random.default_rng(seed)
    properties = metatensor.Labels.range("n", 4)
    block = metatensor.TensorBlock(
        rng.normal(size=(n, 4)), metatensor.Labels.range("s", n), [], properties
    )
    rows = np.stack([np.repeat(np.arange(n), per_sample), np.tile(np.arange(per_sample), n)], 1)
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            rng.normal(size=(n * per_sample, 3, 4)),
            metatensor.Labels(["sample", "atom"], rows.astype(np.int32)),
            [metatensor.Labels.range("xyz", 3)],
            properties,
        ),
    )
    return metatensor.TensorMap(metatensor.Labels.range("k", 1), [block])


def test_constant_rows_per_sample_are_stored_co_partitioned(tmp_path):
    theirs = _constant_rows(10, 3)
    mtd.from_metatensor(theirs).to_zarr(tmp_path / "t.zarr", chunks=4)
    group = zarr.open_group(tmp_path / "t.zarr", mode="r")
    assert group["blocks/0/values"].chunks[0] == 4
    # 4 samples of 3 rows each: a gradient chunk holds exactly its values chunk's rows
    assert group["blocks/0/gradients/positions/values"].chunks[0] == 12
    ours = mtd.open_zarr(tmp_path / "t.zarr")
    gradient = ours.block(0).gradient("positions").values
    assert gradient.chunks[0] == (12, 12, 6)
    # an operation combining values and gradient rows needs no rechunking
    graph = dict(mtd.pow(ours, 2).block(0).gradient("positions").values.__dask_graph__())
    assert not any("rechunk" in str(key[0] if isinstance(key, tuple) else key) for key in graph)
    assert_equal_to_metatensor(mtd.pow(ours, 2), metatensor.pow(theirs, 2))


@pytest.mark.parametrize("chunks", [None, 3, 7, 100])
def test_reading_any_row_range(tmp_path, chunks):
    # stored chunks of 4 rows; dask chunks of other sizes span several stored chunks
    theirs = make_metatensor(seed=5, n_samples=(23, 0, 11))
    mtd.from_metatensor(theirs).to_zarr(tmp_path / "t.zarr", chunks=4)
    ours = mtd.open_zarr(tmp_path / "t.zarr", chunks=chunks)
    assert_equal_to_metatensor(ours, theirs)
    computed = ours.block(0).values.blocks[0].compute()
    assert computed.flags.writeable
    assert computed.dtype == np.float64


def test_a_damaged_values_chunk_fails_the_compute(tmp_path):
    mtd.from_metatensor(make_metatensor(seed=6)).to_zarr(tmp_path / "t.zarr", chunks=4)
    chunk = tmp_path / "t.zarr" / "blocks" / "0" / "values" / "c.1.0.0"
    data = bytearray(chunk.read_bytes())
    data[0] ^= 0xFF
    chunk.write_bytes(bytes(data))
    values = mtd.open_zarr(tmp_path / "t.zarr").block(0).values
    values.blocks[0].compute()  # other chunks are fine
    with pytest.raises(
        mtd.DamagedStoreError,
        match=r"damaged: the checksum of the chunk 'c\.1\.0\.0' of the array 'blocks/0/values'",
    ):
        values.compute()


def test_a_missing_chunk_is_damage(tmp_path):
    # every chunk is stored, all-zero ones too: one that is not there was lost
    ours = mtd.from_metatensor(make_metatensor(seed=7))
    ours.to_zarr(tmp_path / "t.zarr", chunks=4)
    (tmp_path / "t.zarr" / "blocks" / "0" / "values" / "c.2.0.0").unlink()
    values = mtd.open_zarr(tmp_path / "t.zarr").block(0).values
    values.blocks[1].compute()  # other chunks are fine
    with pytest.raises(
        mtd.DamagedStoreError, match=r"chunk 'c\.2\.0\.0' of the array 'blocks/0/values' is missing"
    ):
        values.compute()


@pytest.mark.parametrize("chunks", [None, 3, 7])
def test_every_stored_chunk_is_read_once(tmp_path, monkeypatch, chunks):
    # gradient rows per sample vary: their co-partitioned dask chunks cut the regular
    # stored chunks, and dask chunks of 3 or 7 value rows cut stored chunks of 4
    from metatensor_dask.io import zarr_store

    theirs = make_metatensor(seed=5, n_samples=(23, 0, 11))
    mtd.from_metatensor(theirs).to_zarr(tmp_path / "t.zarr", chunks=4)
    ours = mtd.open_zarr(tmp_path / "t.zarr", chunks=chunks)
    read: list[str] = []
    original = zarr_store._read_files

    def counted(store, keys):
        read.extend(keys)
        return original(store, keys)

    monkeypatch.setattr(zarr_store, "_read_files", counted)

    def arrays(block):
        return [block.values, *(a for _, g in block.gradients() for a in arrays(g))]

    ours_arrays = [a for b in ours.blocks() for a in arrays(b)]
    computed = dask.compute(*ours_arrays, scheduler="sync")
    stored = sorted(
        str(path.relative_to(tmp_path / "t.zarr"))
        for path in (tmp_path / "t.zarr").glob("blocks/*/**/values/c.*")
    )
    assert sorted(read) == stored
    expected = [a for b in theirs.blocks() for a in arrays(b)]
    for array, values in zip(computed, expected, strict=True):
        np.testing.assert_array_equal(array, values)
