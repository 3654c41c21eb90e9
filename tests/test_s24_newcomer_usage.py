"""Usage errors are named by the command they belong to."""

import pytest
from pipeline_support import run


@pytest.mark.parametrize("command", ["info", "verify", "run"])
def test_an_unknown_option_after_a_command_prints_that_command_usage(capsys, command):
    code, out, err = run(capsys, command, "x.zarr", "--bogus")
    assert (code, out) == (2, "")
    assert err.startswith(f"usage: metatensor-dask {command} "), err
    assert err.endswith(f"metatensor-dask {command}: error: unrecognized arguments: --bogus\n")
