"""The settings of ``metatensor_dask`` in dask's configuration: documented, read from
environment variables as dask reads them, and wrong values refused naming the setting."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import dask
import numpy as np
import pytest
import yaml

import metatensor_dask as mtd

DOCS = Path(__file__).parent.parent / "docs" / "configuration.md"
DEFAULTS = Path(mtd.__file__).parent / "metatensor_dask.yaml"


def _documented() -> dict[str, str]:
    """The settings of the table of ``docs/configuration.md``: name -> default."""
    rows = re.findall(r"^\| `([a-z-]+)` \| `([^`]*)` \|", DOCS.read_text(), re.MULTILINE)
    return dict(rows)


def test_every_setting_is_documented_with_its_default():
    defaults = yaml.safe_load(DEFAULTS.read_text())["metatensor_dask"]
    documented = _documented()
    assert set(documented) == set(defaults)
    for name, default in documented.items():
        assert yaml.safe_load(default) == defaults[name], name
        assert mtd.config.get(name) == defaults[name]


def _map() -> mtd.TensorMap:
    values = np.arange(12.0).reshape(6, 2)
    block = mtd.TensorBlock(values, mtd.Labels.range("s", 6), [], mtd.Labels.range("p", 2))
    return mtd.TensorMap(mtd.Labels.range("k", 1), [block])


@pytest.mark.parametrize("value", [True, 1.5, [1], {"size": "1MiB"}, None, "0B", "abc"])
def test_a_chunk_size_that_is_not_a_size_is_refused(tmp_path, value):
    with (
        dask.config.set({"metatensor_dask.chunk-size": value}),
        pytest.raises(mtd.MetatensorDaskError, match=r"metatensor_dask.chunk-size=.*'64MiB'"),
    ):
        mtd.to_zarr(_map(), tmp_path / "t.zarr")
    assert not list(tmp_path.glob("**/zarr.json"))


@pytest.mark.parametrize(
    ("name", "value", "remedy"),
    [
        ("progress", "no", "true or false"),
        ("progress", 2, "true or false"),
        ("progress", None, "true or false"),
        ("window-tasks", 0, "a positive number of tasks"),
        ("window-tasks", -3, "a positive number of tasks"),
        ("window-tasks", 2.5, "a positive number of tasks"),
        ("window-tasks", True, "a positive number of tasks"),
        ("window-tasks", "many", "a positive number of tasks"),
    ],
)
def test_wrong_values_are_refused_when_read(name, value, remedy):
    with dask.config.set({f"metatensor_dask.{name}": value}):
        with pytest.raises(mtd.MetatensorDaskError) as raised:
            mtd.config.get(name)
    assert f"metatensor_dask.{name}={value!r}" in str(raised.value)
    assert remedy in str(raised.value)


def test_environment_variables_set_and_are_checked():
    script = (
        "import metatensor_dask as mtd\n"
        "from metatensor_dask.io.zarr_plan import shard_chunks\n"
        "get = mtd.config.get\n"
        "print(get('progress'), get('window-tasks'), mtd.config.chunk_size())\n"
        "try:\n"
        "    shard_chunks()\n"
        "except mtd.MetatensorDaskError as error:\n"
        "    print(error)\n"
    )
    environment = {
        **os.environ,
        "DASK_METATENSOR_DASK__PROGRESS": "false",
        "DASK_METATENSOR_DASK__WINDOW_TASKS": "20",
        "DASK_METATENSOR_DASK__CHUNK_SIZE": "16MiB",
        "DASK_METATENSOR_DASK__SHARD_CHUNKS": "0",
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=environment, capture_output=True, text=True, check=True
    )
    first, second = done.stdout.splitlines()
    assert first == f"False 20 {16 * 2**20}"
    assert "metatensor_dask.shard-chunks=0" in second
