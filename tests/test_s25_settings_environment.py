"""Settings given by environment variables come before those of YAML files, whatever
their kind, and numbers read from them are taken as the same values a YAML file gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dask
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd

SOURCE = str(Path(mtd.__file__).parent.parent)

WRITE = """
import sys
import dask
import numpy as np
import metatensor_dask as mtd

print(repr(dask.config.get("metatensor_dask.compressor")), mtd.config.chunk_size())
values = np.arange(24.0).reshape(6, 2, 2)
block = mtd.TensorBlock(
    values, mtd.Labels.range("s", 6), [mtd.Labels.range("c", 2)], mtd.Labels.range("p", 2)
)
mtd.to_zarr(mtd.TensorMap(mtd.Labels.range("k", 1), [block]), sys.argv[1])
"""


def _run(tmp_path: Path, variables: dict[str, str]) -> str:
    """Write a store from a new process whose settings come from a YAML file with a
    compressor mapping and from ``variables``; what it read of the settings."""
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "metatensor_dask.yaml").write_text(
        "metatensor_dask:\n  compressor: {name: gzip, configuration: {level: 3}}\n"
    )
    environment = {
        **os.environ,
        "DASK_CONFIG": str(folder),
        "PYTHONPATH": SOURCE,
        **variables,
    }
    done = subprocess.run(
        [sys.executable, "-c", WRITE, str(tmp_path / "t.zarr")],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def _codecs(store: Path) -> str:
    return json.dumps(json.loads((store / "blocks/0/values/zarr.json").read_text())["codecs"])


def _same_as_written(store: Path) -> None:
    """The store, read with the default settings, is intact and holds what was written."""
    assert mtd.verify(store).ok
    expected = metatensor.TensorMap(
        metatensor.Labels.range("k", 1),
        [
            metatensor.TensorBlock(
                np.arange(24.0).reshape(6, 2, 2),
                metatensor.Labels.range("s", 6),
                [metatensor.Labels.range("c", 2)],
                metatensor.Labels.range("p", 2),
            )
        ],
    )
    assert metatensor.equal(mtd.to_metatensor(mtd.open_zarr(store)), expected)


def test_a_compressor_name_of_the_environment_replaces_a_yaml_mapping(tmp_path):
    """With a chunk size in exponent notation from the environment too, read as a size
    (one started Python for both settings, each read from its own variable)."""
    printed = _run(
        tmp_path,
        {"DASK_METATENSOR_DASK__COMPRESSOR": "zstd", "DASK_METATENSOR_DASK__CHUNK_SIZE": "1e6"},
    )
    assert printed.rsplit(" ", 1)[0] == "'zstd'"
    codecs = _codecs(tmp_path / "t.zarr")
    assert '"zstd"' in codecs and '"level": 3' not in codecs
    # a chunk size in exponent notation from the environment is a size
    assert printed.rsplit(" ", 1)[1] == "1000000"
    _same_as_written(tmp_path / "t.zarr")


def test_a_null_compressor_of_the_environment_replaces_a_yaml_mapping(tmp_path):
    printed = _run(tmp_path, {"DASK_METATENSOR_DASK__COMPRESSOR": "null"})
    assert printed.rsplit(" ", 1)[0] == "None"
    codecs = _codecs(tmp_path / "t.zarr")
    assert "gzip" not in codecs and "zstd" not in codecs
    _same_as_written(tmp_path / "t.zarr")


def test_the_yaml_mapping_holds_without_a_variable(tmp_path):
    printed = _run(tmp_path, {})
    assert printed.rsplit(" ", 1)[0] == "{'name': 'gzip', 'configuration': {'level': 3}}"
    assert '"level": 3' in _codecs(tmp_path / "t.zarr")
    _same_as_written(tmp_path / "t.zarr")


@pytest.mark.parametrize("value", [1e6, 4096.0])
def test_a_whole_float_chunk_size_is_that_many_bytes(value):
    with dask.config.set({"metatensor_dask.chunk-size": value}):
        assert mtd.config.chunk_size() == int(value)


@pytest.mark.parametrize("value", [1.5, float("inf"), float("nan"), 0.0, -1e6])
def test_other_float_chunk_sizes_are_refused(tmp_path, value):
    values = np.ones((4, 2))
    block = mtd.TensorBlock(values, mtd.Labels.range("s", 4), [], mtd.Labels.range("p", 2))
    tensor = mtd.TensorMap(mtd.Labels.range("k", 1), [block])
    with (
        dask.config.set({"metatensor_dask.chunk-size": value}),
        pytest.raises(mtd.MetatensorDaskError, match=r"metatensor_dask\.chunk-size=.*'64MiB'"),
    ):
        mtd.to_zarr(tensor, tmp_path / "t.zarr")
    assert not (tmp_path / "t.zarr").exists()
