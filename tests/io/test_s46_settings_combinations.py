"""A compressor whose configuration zarr takes but whose codec fails on the first chunk
it compresses (blosc's ``clevel: 42``, numcodecs' ``zlib`` level 10, ``shuffle`` with
an element size that does not divide the values') is refused, naming the setting,
before anything is written: no store is left by a new write or a ``convert``, and a
``mode="a"`` write leaves the store as it was."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import dask
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.execution.cli import main as cli

BLOSC_LEVEL_42 = {"name": "blosc", "configuration": {"clevel": 42}}
ZLIB_LEVEL_10 = {"name": "numcodecs.zlib", "configuration": {"level": 10}}
SHUFFLE_BY_3 = {"name": "numcodecs.shuffle", "configuration": {"elementsize": 3}}


def _tensor(key: int) -> metatensor.TensorMap:
    values = np.arange(8.0).reshape(4, 2)
    block = metatensor.TensorBlock(
        values, metatensor.Labels.range("s", 4), [], metatensor.Labels.range("p", 2)
    )
    gradient = metatensor.TensorBlock(
        values[[0, 2]] + 0.5,
        metatensor.Labels(["sample", "atom"], np.array([[0, 0], [2, 1]])),
        [],
        block.properties,
    )
    block.add_gradient("positions", gradient)
    return metatensor.TensorMap(metatensor.Labels(["k"], np.array([[key]])), [block])


def _compressor(value: dict) -> dict:
    return {"metatensor_dask.compressor": value, "metatensor_dask.progress": False}


@pytest.fixture(autouse=True)
def _quiet_numcodecs():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Numcodecs codecs are not in the Zarr")
        yield


@pytest.mark.parametrize("compressor", [BLOSC_LEVEL_42, SHUFFLE_BY_3])
def test_a_new_store_is_refused_before_it_is_created(tmp_path: Path, compressor: dict):
    store = tmp_path / "new.zarr"
    with (
        dask.config.set(_compressor(compressor)),
        pytest.raises(mtd.MetatensorDaskError, match=r"metatensor_dask\.compressor"),
    ):
        mtd.to_zarr(mtd.from_metatensor(_tensor(0)), store)
    assert not store.exists()


def test_convert_fails_before_it_creates_its_destination(tmp_path: Path, capsys):
    source, store = tmp_path / "a.mts", tmp_path / "a.zarr"
    metatensor.save(str(source), _tensor(0))
    with dask.config.set(_compressor(ZLIB_LEVEL_10)):
        assert cli(["convert", str(source), str(store), "--quiet"]) == 1
    assert "metatensor_dask.compressor" in capsys.readouterr().err
    assert not store.exists()


def test_mode_a_leaves_the_store_as_it_was(tmp_path: Path):
    store = tmp_path / "kept.zarr"
    mtd.to_zarr(mtd.from_metatensor(_tensor(0)), store)
    keys_before = json.loads((store / "zarr.json").read_text())
    with (
        dask.config.set(_compressor(ZLIB_LEVEL_10)),
        pytest.raises(mtd.MetatensorDaskError, match=r"metatensor_dask\.compressor"),
    ):
        mtd.to_zarr(mtd.from_metatensor(_tensor(7)), store, mode="a")
    assert [path.name for path in (store / "blocks").iterdir() if path.is_dir()] == ["0"]
    assert json.loads((store / "zarr.json").read_text()) == keys_before
    assert mtd.verify(store).ok
    assert metatensor.equal(mtd.to_metatensor(mtd.open_zarr(store)), _tensor(0))


@pytest.mark.parametrize(
    "compressor",
    ["crc32c", "numcodecs.adler32", {"name": "numcodecs.crc32", "configuration": {}}],
    ids=str,
)
def test_a_checksum_given_as_compressor_is_refused_naming_the_checksum_setting(
    tmp_path: Path, compressor
):
    store = tmp_path / "new.zarr"
    with (
        dask.config.set(_compressor(compressor)),
        pytest.raises(
            mtd.MetatensorDaskError, match=r"names a checksum.*metatensor_dask\.checksum"
        ),
    ):
        mtd.to_zarr(mtd.from_metatensor(_tensor(0)), store)
    assert not store.exists()


def test_a_store_written_with_a_checksum_as_compressor_takes_appends(tmp_path: Path, monkeypatch):
    # earlier versions took "crc32c" as a compressor: their stores keep taking appends
    # (a new key gets the current settings' codecs)
    # (zarr_append imported first: it binds the set of checksum codecs when imported)
    from metatensor_dask.io import zarr_append, zarr_codecs

    assert zarr_append.CHECKSUM_CODECS
    store = tmp_path / "old.zarr"
    with monkeypatch.context() as patch:
        patch.setattr(zarr_codecs, "CHECKSUM_CODECS", frozenset())
        with dask.config.set(_compressor("crc32c")):
            mtd.to_zarr(mtd.from_metatensor(_tensor(0)), store)
    document = json.loads((store / "blocks" / "0" / "values" / "zarr.json").read_text())
    assert [codec["name"] for codec in document["codecs"]] == ["bytes", "crc32c", "crc32c"]

    appended = [_tensor(0), _tensor(7)]
    for tensor in appended:
        shifted = mtd.from_metatensor(tensor)
        mtd.to_zarr(shifted, store, append_dim="samples", renumber={"s": "next"})
    assert mtd.verify(store).ok
    result = mtd.to_metatensor(mtd.open_zarr(store).compute())
    values = _tensor(0).block(0).values
    np.testing.assert_array_equal(result.block(k=0).values, np.concatenate([values] * 2))
    np.testing.assert_array_equal(result.block(k=7).values, _tensor(7).block(0).values)
    np.testing.assert_array_equal(
        result.block(k=7).gradient("positions").values,
        _tensor(7).block(0).gradient("positions").values,
    )
