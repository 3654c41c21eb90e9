"""Small stores and pipeline files for the command line and pipeline tests."""

import json
import os
import textwrap
import time

import metatensor

import metatensor_dask as mtd
from metatensor_dask.datasets import tutorial_file
from metatensor_dask.execution.cli import main
from metatensor_dask.io.zarr_progress import recorded_chunks
from metatensor_dask.io.zarr_store import open_store

SPHERICAL = tutorial_file("spherical-expansion.npz")
RADIAL = tutorial_file("radial-spectrum.npz")

# x**2 * x, then summed over atoms: values and gradients, as the demo does
PIPELINE = """\
inputs:
  x: {input}
steps:
  - op: pow
    inputs: x
    args: {{B: 2}}
    name: squared
  - op: multiply
    inputs: [squared, x]
output: {output}
"""


def write_store(path, source=RADIAL, chunks=None):
    """``source`` (a metatensor file) converted to a Zarr store at ``path``."""
    mtd.load(source, chunks=chunks).to_zarr(str(path))
    return str(path)


def write_pipeline(directory, text=PIPELINE, **fields):
    """A pipeline file in ``directory`` from ``text`` (dedented; ``fields``, if any, are
    filled in with ``str.format``)."""
    path = os.path.join(str(directory), "pipeline.yaml")
    text = textwrap.dedent(text)
    with open(path, "w", encoding="utf-8") as file:
        file.write(text.format(**fields) if fields else text)
    return path


def expected_cube(source=RADIAL):
    """metatensor-operations' ``multiply(pow(x, 2), x)`` of ``source``: the oracle."""
    x = metatensor.load(source)
    return metatensor.multiply(metatensor.pow(x, 2), x)


def run(capsys, *argv):
    """``main(argv)``: (exit code, stdout, stderr); usage errors exit through SystemExit."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


def recorded(store):
    """How many chunks a write into ``store`` recorded as written so far (a record
    being written reads as naming none)."""
    if not os.path.isdir(os.path.join(store, ".progress")):
        return 0
    return len(recorded_chunks(open_store(store, None, writable=False)))


def wait_for_records(store, at_least, timeout, process=None):
    """Wait until a write into ``store`` recorded ``at_least`` chunks; False if the time
    ran out or ``process`` (a ``subprocess.Popen``) ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if recorded(store) >= at_least:
            return True
        if process is not None and process.poll() is not None:
            return False
        time.sleep(0.02)
    return False


def is_complete(store):
    """Whether the root of ``store`` records its write as complete."""
    with open(os.path.join(store, "zarr.json")) as file:
        return json.load(file)["attributes"]["metatensor_dask"]["complete"]
