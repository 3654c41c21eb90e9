"""Stores at URLs on the command line, which has no storage options of its own: fsspec
takes a file system's options from the environment, as the refusal of a ``file://``
URL without ``auto_mkdir`` tells."""

import os
import subprocess
import sys

import fsspec.config
import metatensor
from pipeline_support import RADIAL, run

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def _cli(*arguments, **environment):
    variables = {k: v for k, v in os.environ.items() if not k.startswith("FSSPEC_")}
    return subprocess.run(
        [sys.executable, "-m", "metatensor_dask", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        env={**variables, **environment},
    )


def test_file_urls_take_fsspec_options_from_the_environment(tmp_path, capsys, monkeypatch):
    url = f"file://{tmp_path}/radial.zarr"
    # refused without options (in this process, fsspec's options from the environment
    # emptied: a new interpreter took a second or two and reads none either)
    monkeypatch.setattr(fsspec.config, "conf", {})
    code, _, err = run(capsys, "convert", RADIAL, url, "-q")
    assert code == 1
    assert "FSSPEC_FILE_AUTO_MKDIR=true" in err
    assert list(tmp_path.iterdir()) == []

    written = _cli("convert", RADIAL, url, "-q", FSSPEC_FILE_AUTO_MKDIR="true")
    assert written.returncode == 0, written.stderr
    squared = f"file://{tmp_path}/squared.zarr"
    applied = _cli(
        "apply", "pow", url, "--arg", "B=2", "-o", squared, "-q", FSSPEC_FILE='{"auto_mkdir": true}'
    )
    assert applied.returncode == 0, applied.stderr
    expected = metatensor.pow(metatensor.load(RADIAL), 2)
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "squared.zarr").compute(), expected)
