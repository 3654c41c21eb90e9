"""Storage settings under every writer: a compressor setting that dask left text is
told as such, and blosc chunks cut short (without checksum) are damage."""

from __future__ import annotations

import dask
import numpy as np
import pytest

import metatensor_dask as mtd


def test_compressor_mapping_written_as_json_text_is_named(tmp_path):
    # what DASK_METATENSOR_DASK__COMPRESSOR='{"name": "zstd", ... true}' gives: dask
    # reads variables as Python literals, so JSON's `true` leaves the whole value text
    text = '{"name": "zstd", "configuration": {"level": 3, "checksum": true}}'
    with dask.config.set({"metatensor_dask.compressor": text}):
        with pytest.raises(mtd.MetatensorDaskError, match=r"Python literal.*True"):
            mtd.to_zarr(_rows(0, 3), tmp_path / "a.zarr")
    assert not (tmp_path / "a.zarr" / "zarr.json").exists()


def _rows(start: int, rows: int) -> mtd.TensorMap:
    values = np.arange(start, start + rows * 1.0).reshape(rows, 1) * 7.5 + 3
    block = mtd.TensorBlock(
        values,
        mtd.Labels(["system"], np.arange(start, start + rows).reshape(-1, 1)),
        [],
        mtd.Labels(["n"], np.array([[0]])),
    )
    return mtd.TensorMap(mtd.Labels(["key"], np.array([[0]])), [block])


def _blosc_store_cut_short(store, rows: int) -> str:
    """A store of ``rows`` rows in blosc chunks of 256 rows without checksum, the file
    of its last chunk then cut short by a byte; the name of that chunk."""
    blosc = {"name": "blosc", "configuration": {"cname": "lz4"}}
    with dask.config.set({"metatensor_dask.compressor": blosc, "metatensor_dask.checksum": False}):
        mtd.to_zarr(_rows(0, rows), store, chunks=256)
    name = f"c.{(rows - 1) // 256}.0"
    chunk = store / "blocks" / "0" / "values" / name
    chunk.write_bytes(chunk.read_bytes()[:-1])
    return name


@pytest.mark.parametrize("rows", [400, 3])
def test_blosc_chunk_cut_short_is_damage_without_checksum(tmp_path, rows):
    # blosc's decoder trusts the size its header states: a frame cut short decoded
    # without an error, with bytes read past its end as the last values (an lz4 frame
    # of 144 rows; a frame of 3 rows is stored as a copy)
    store = tmp_path / "a.zarr"
    name = _blosc_store_cut_short(store, rows)
    with pytest.raises(mtd.DamagedStoreError, match=rf"'{name}' .* blosc frame .* cut short"):
        mtd.open_zarr(store).block(0).values.compute()
    assert not mtd.verify(store).ok


def test_append_onto_a_blosc_chunk_cut_short_is_refused(tmp_path):
    # the append rewrote the partial last chunk whole, with its last bytes read past
    # the end of the frame (whatever memory held there), which verify then passed
    store = tmp_path / "a.zarr"
    _blosc_store_cut_short(store, 300)
    with pytest.raises(mtd.DamagedStoreError, match="blosc frame"):
        mtd.to_zarr(_rows(300, 5), store, append_dim="samples")
