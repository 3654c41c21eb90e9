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
