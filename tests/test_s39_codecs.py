"""Storage settings under every writer: what a setting given in a form dask does not
parse is told as such."""

from __future__ import annotations

import dask
import numpy as np
import pytest

import metatensor_dask as mtd


def _tensor() -> mtd.TensorMap:
    block = mtd.TensorBlock(
        np.arange(6.0).reshape(3, 2),
        mtd.Labels(["system"], np.arange(3).reshape(-1, 1)),
        [],
        mtd.Labels(["n"], np.arange(2).reshape(-1, 1)),
    )
    return mtd.TensorMap(mtd.Labels(["key"], np.array([[0]])), [block])


def test_compressor_mapping_written_as_json_text_is_named(tmp_path):
    # what DASK_METATENSOR_DASK__COMPRESSOR='{"name": "zstd", ... true}' gives: dask
    # reads variables as Python literals, so JSON's `true` leaves the whole value text
    text = '{"name": "zstd", "configuration": {"level": 3, "checksum": true}}'
    with dask.config.set({"metatensor_dask.compressor": text}):
        with pytest.raises(mtd.MetatensorDaskError, match=r"Python literal.*True"):
            mtd.to_zarr(_tensor(), tmp_path / "a.zarr")
    assert not (tmp_path / "a.zarr" / "zarr.json").exists()


@pytest.mark.parametrize("rows", [400, 3])
def test_blosc_chunk_cut_short_is_damage_without_checksum(tmp_path, rows):
    # blosc's decoder trusts the size its header states: a frame cut short decoded
    # without an error, with bytes read past its end as the last values (lz4 frames
    # of 400 rows; a frame of 3 rows is stored as a copy)
    values = np.arange(rows * 1.0).reshape(rows, 1) * 7.5 + 3
    block = mtd.TensorBlock(
        values,
        mtd.Labels(["system"], np.arange(rows).reshape(-1, 1)),
        [],
        mtd.Labels(["n"], np.array([[0]])),
    )
    tensor = mtd.TensorMap(mtd.Labels(["key"], np.array([[0]])), [block])
    blosc = {"name": "blosc", "configuration": {"cname": "lz4"}}
    store = tmp_path / "a.zarr"
    with dask.config.set({"metatensor_dask.compressor": blosc, "metatensor_dask.checksum": False}):
        mtd.to_zarr(tensor, store)
    chunk = store / "blocks" / "0" / "values" / "c.0.0"
    chunk.write_bytes(chunk.read_bytes()[:-1])
    with pytest.raises(mtd.DamagedStoreError, match=r"'c\.0\.0' .* blosc frame .* cut short"):
        mtd.open_zarr(store).block(0).values.compute()
    assert not mtd.verify(store).ok
