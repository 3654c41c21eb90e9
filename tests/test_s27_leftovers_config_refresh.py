"""An environment variable comes before YAML files for every ``metatensor_dask``
setting, as for dask's own settings: at import and after ``dask.config.refresh()``,
even where a file gives the setting as a mapping (a ``compressor`` with its
configuration); ``dask.config.set`` comes before both."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

_SCRIPT = r"""
import json, sys
import dask
import numpy as np
import metatensor_dask as mtd


def written(path):
    values = np.arange(12.0).reshape(6, 2)
    block = mtd.TensorBlock(values, mtd.Labels.range("s", 6), [], mtd.Labels.range("p", 2))
    mtd.to_zarr(mtd.TensorMap(mtd.Labels.range("k", 1), [block]), path)
    return sorted({
        codec["name"]
        for document in __import__("pathlib").Path(path).rglob("zarr.json")
        for codec in json.loads(document.read_text()).get("codecs", [])
        if codec["name"] in ("gzip", "zstd", "blosc")
    })


seen = {}
for moment in ("import", "refresh"):
    if moment == "refresh":
        dask.config.refresh()
    seen[moment] = {
        "ours": mtd.config.get("compressor"),
        "dask": dask.config.get("array.chunk-size"),
        "written": written(sys.argv[1] + "/" + moment + ".zarr"),
    }
    with dask.config.set({"metatensor_dask.compressor": {"name": "blosc"}}):
        seen[moment]["set"] = written(sys.argv[1] + "/" + moment + "-set.zarr")
print(json.dumps(seen))
"""


@pytest.mark.xdist_group("serial")
@pytest.mark.parametrize("variable", ["gzip", "null"])
def test_the_environment_comes_before_a_file_after_a_refresh(tmp_path: Path, variable: str):
    configuration = tmp_path / "configuration"
    configuration.mkdir()
    (configuration / "settings.yaml").write_text(
        "metatensor_dask:\n"
        "  compressor: {name: zstd, configuration: {level: 3}}\n"
        "array:\n"
        "  chunk-size: 1MiB\n"
    )
    environment = {
        **os.environ,
        "DASK_CONFIG": str(configuration),
        "DASK_METATENSOR_DASK__COMPRESSOR": variable,
        "DASK_ARRAY__CHUNK_SIZE": "7MiB",
    }
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    expected = None if variable == "null" else variable
    for moment in ("import", "refresh"):
        # dask's own setting: the variable over the file, before and after a refresh
        assert seen[moment]["dask"] == "7MiB"
        assert seen[moment]["ours"] == expected
        assert seen[moment]["written"] == ([] if expected is None else [expected])
        assert seen[moment]["set"] == ["blosc"]
