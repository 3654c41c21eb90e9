"""The template documents of uncompressed arrays, written without zarr-python, are byte
for byte the documents zarr-python's ``create_array`` writes."""

import json

import dask
import numpy as np
import pytest

from metatensor_dask.io import zarr_codecs
from metatensor_dask.io.zarr_codecs import _STORABLE, codec_settings, stored_dtype, template

DTYPES = sorted({stored_dtype(dtype).str for dtype in _STORABLE})


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("checksum", [True, False])
def test_uncompressed_templates_are_zarrs(dtype, checksum):
    settings = json.dumps({"compressor": None, "checksum": checksum}, sort_keys=True)
    for ndim in range(5):
        for sharded in (False, True):
            ours = json.dumps(zarr_codecs._uncompressed(np.dtype(dtype), ndim, checksum, sharded))
            zarrs = zarr_codecs._zarr_template(dtype, ndim, settings, sharded)
            assert ours == zarrs, (dtype, ndim, sharded)


def test_every_storable_dtype_is_compared():
    # both byte orders of each dtype are stored little endian: one template each
    assert len(DTYPES) == 14
    assert all(dtype[0] in "<|" for dtype in DTYPES)


@pytest.mark.parametrize("dtype", [">f8", "<i4", "?", "<c8"])
def test_default_settings_give_zarrs_document(dtype):
    with dask.config.set({"metatensor_dask.compressor": None, "metatensor_dask.checksum": True}):
        found = template(np.dtype(dtype), 3, True)
        settings = codec_settings()
    expected = zarr_codecs._zarr_template(stored_dtype(dtype).str, 3, settings, True)
    assert found == json.loads(expected)


def test_compressed_templates_still_come_from_zarr():
    with dask.config.set({"metatensor_dask.compressor": "zstd"}):
        found = template(np.dtype("f8"), 2, False)
    assert found["codecs"][0] == {"name": "bytes", "configuration": {"endian": "little"}}
    assert found["codecs"][1]["name"] == "zstd"
