"""The end of a pause of the garbage collector runs finalizers (its collections free
garbage cycles): a finalizer that pauses the collector again, as opening a store does,
runs there without waiting for the end that runs it, and the collector is resumed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import metatensor
import numpy as np

import metatensor_dask as mtd

#: Run in a process of its own: a pause waiting for its own end would hold the pauses'
#: lock for ever, and every later pause of the process with it.
_SCRIPT = """
import gc
import sys

import metatensor_dask as mtd
from metatensor_dask._gc import collector_paused

opened = []


class Cycle:
    def __init__(self):
        self.itself = self

    def __del__(self):
        opened.append(mtd.open_zarr(sys.argv[1]))  # pauses the collector


with collector_paused(young_collected=True):
    Cycle()
{after}
assert len(opened) == 1 and len(opened[0]) == 1, opened
assert gc.isenabled()
print("ok")
"""


def _run(tmp_path, after: str = "") -> None:
    store = tmp_path / "tiny.zarr"
    block = metatensor.TensorBlock(
        np.ones((1, 1)),
        metatensor.Labels.range("s", 1),
        [],
        metatensor.Labels.range("p", 1),
    )
    tensor = metatensor.TensorMap(metatensor.Labels.range("k", 1), [block])
    mtd.from_metatensor(tensor).to_zarr(store)
    script = _SCRIPT.format(after=textwrap.dedent(after))
    try:
        done = subprocess.run(
            [sys.executable, "-c", script, str(store)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError("the end of the pause waited for the finalizer's pause") from None
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok"]


def test_a_finalizer_pausing_the_collector_at_the_end_of_a_pause_runs(tmp_path):
    _run(tmp_path)


def test_the_collector_stays_as_the_caller_left_it_after_such_a_finalizer(tmp_path):
    _run(
        tmp_path,
        """
gc.disable()
with collector_paused(young_collected=True):
    Cycle()
assert not gc.isenabled()
gc.enable()
opened.pop()
""",
    )
