"""Damaged stores met by the paths other suites do not take. Each case is refused,
naming the store, the array and the remedy, and ``verify`` reports it."""

from __future__ import annotations

import dask
import metatensor
import numpy as np
import pytest
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd


def _tensor(seed: int, n_samples: int, dtype) -> metatensor.TensorMap:
    return make_metatensor(
        seed=seed, dtype=dtype, n_samples=(n_samples, 4), n_properties=(2, 3), nested=False
    )


@pytest.mark.parametrize("cut", [3, "half"])
def test_a_gzip_chunk_cut_short_without_checksum_is_damage(tmp_path, cut):
    path = tmp_path / "t.zarr"
    settings = {"metatensor_dask.compressor": "gzip", "metatensor_dask.checksum": False}
    with dask.config.set(settings):
        mtd.from_metatensor(_tensor(1, 8, np.float64)).to_zarr(path, chunks=3)
    chunk = path / "blocks/0/values/c.1.0.0"
    data = chunk.read_bytes()
    chunk.write_bytes(data[: len(data) // 2 if cut == "half" else -cut])
    match = r"rows 3:6 of the array 'blocks/0/values' can not be decoded \(EOFError"
    with pytest.raises(mtd.DamagedStoreError, match=match):
        mtd.to_metatensor(mtd.open_zarr(path))
    with pytest.raises(mtd.DamagedStoreError, match=match):
        mtd.sum_over_samples(mtd.open_zarr(path), "atom").compute()
    report = mtd.verify(path)  # a report, never an exception
    assert any("'blocks/0/values' can not be decoded (EOFError" in p for p in report.problems)
