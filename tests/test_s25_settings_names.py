"""A ``metatensor_dask`` setting whose name metatensor-dask does not read (misspelled,
wrong case) is warned about, naming the close setting, instead of leaving its default
in use without a word."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import dask
import numpy as np
import pytest
import yaml

import metatensor_dask as mtd
from metatensor_dask import config

DEFAULTS = yaml.safe_load(Path(config._DEFAULTS_FILE).read_text())["metatensor_dask"]


def _map() -> mtd.TensorMap:
    values = np.arange(40.0).reshape(20, 2)
    block = mtd.TensorBlock(values, mtd.Labels.range("s", 20), [], mtd.Labels.range("p", 2))
    return mtd.TensorMap(mtd.Labels.range("k", 1), [block])


@pytest.mark.parametrize(
    ("given", "meant"),
    [
        ("chunksize", "chunk-size"),
        ("Shard-Chunks", "shard-chunks"),
        ("COMPRESSOR", "compressor"),
        ("check-sum", "checksum"),
    ],
)
def test_a_misspelled_setting_is_warned_about(tmp_path, given, meant):
    with (
        dask.config.set({f"metatensor_dask.{given}": DEFAULTS[meant]}),
        pytest.warns(UserWarning, match=f"metatensor_dask.{given}.*did you mean '{meant}'"),
    ):
        mtd.to_zarr(_map(), tmp_path / "t.zarr")
    assert mtd.verify(tmp_path / "t.zarr").ok
    np.testing.assert_array_equal(
        mtd.open_zarr(tmp_path / "t.zarr").block(0).values.compute(), _map().block(0).values
    )


def test_a_misspelled_name_is_warned_about_once(tmp_path):
    with dask.config.set({"metatensor_dask.chunk-sise": "1MiB"}):
        with pytest.warns(UserWarning, match="chunk-sise"):
            config.get("progress")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            config.get("progress")


def test_every_setting_by_either_spelling_is_known():
    underscored = {
        f"metatensor_dask.{name.replace('-', '_')}": value for name, value in DEFAULTS.items()
    }
    with dask.config.set(underscored), warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in DEFAULTS:
            assert json.dumps(config.get(name)) == json.dumps(DEFAULTS[name])
