"""The command line as a new user meets it: arguments a YAML file or ``--arg`` can give,
outputs and inputs of the wrong kind, and messages that say what to do."""

import os

import pytest
from pipeline_support import SPHERICAL, run, write_store


@pytest.fixture
def store(tmp_path):
    return write_store(tmp_path / "x.zarr", source=SPHERICAL)


@pytest.mark.parametrize("name", ["out.mts", "out.npz"])
def test_apply_refuses_a_metatensor_file_as_output(capsys, tmp_path, store, name):
    out = tmp_path / name
    code, _, err = run(capsys, "apply", "abs", store, "-o", out, "-q")
    assert code == 1
    assert "pipelines write Zarr stores" in err
    assert "metatensor-dask convert" in err
    assert not os.path.exists(out)
