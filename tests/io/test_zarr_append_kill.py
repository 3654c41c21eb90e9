"""An append killed (SIGKILL, in a subprocess) at each step of its commit, on stores
with the default codecs, compressed and sharded: the store reads as before the append
or as after it, never half-appended, and ``resume=True`` completes it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dask
import metatensor
import pytest
from test_zarr_append import assert_equal_to_join, shifted
from test_zarr_append_codecs import codec_settings
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

# processes killed, or locks aged, at chosen moments: one such test at a time
pytestmark = pytest.mark.xdist_group("serial")

#: Appends ``make_metatensor(1)`` to the store ``argv[1]``, killing itself (SIGKILL)
#: when the append reaches the moment ``argv[2]``.
SCRIPT = """
import os, signal, sys
sys.path.insert(0, {folder!r})
import metatensor_dask as mtd
from metatensor_dask.io import zarr_append
from zarr_writer_process import make_metatensor

path, moment = sys.argv[1], sys.argv[2]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def wrap(name, when):
    original = getattr(zarr_append, name)
    def wrapped(*args, **kwargs):
        if when(*args):
            die()
        return original(*args, **kwargs)
    setattr(zarr_append, name, wrapped)

if moment == "tail":  # a partial last chunk (of samples at least), being replaced
    wrap("_replace", lambda store, items: "zarr.json" not in items)
if moment == "documents":  # the data and the node documents stored, not the root
    wrap("_replace", lambda store, items: "zarr.json" in items)
if moment == "records":  # committed, the records of the append not yet deleted
    wrap("delete_prefix", lambda store, prefix: os.path.exists(f"{{path}}/{{zarr_append.RECORD}}"))
mtd.from_metatensor(make_metatensor(1)).to_zarr(
    path, append_dim="samples", renumber={{"system": "next"}}, chunks=3
)
print("done")
"""


CODECS = ["default", "sharded-zstd"]
MOMENTS = ["tail", "documents", "records"]


def _append_killed(path: Path, moment: str) -> subprocess.Popen:
    """``SCRIPT`` appending to ``path`` until ``moment``, just started."""
    script = SCRIPT.format(folder=str(Path(__file__).parent))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [sys.executable, "-c", script, str(path), moment],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """For each codecs and moment: a store of ``make_metatensor(0)`` with those codecs,
    the append to it killed at that moment, and the exit code and output of the killed
    process. The stores are independent: their appends run side by side (their imports
    overlap on the cores), each test then takes its own store."""
    folder = tmp_path_factory.mktemp("killed")
    processes, found = {}, {}
    try:
        for codecs in CODECS:
            for moment in MOMENTS:
                path = folder / f"{codecs}-{moment}.zarr"
                with dask.config.set(codec_settings(codecs)):
                    mtd.from_metatensor(make_metatensor(0)).to_zarr(path, chunks=4)
                processes[codecs, moment] = path, _append_killed(path, moment)
        for key, (path, process) in processes.items():
            output, _ = process.communicate(timeout=300)
            found[key] = path, process.returncode, output
    finally:
        for _, process in processes.values():
            with process:
                process.kill()
    return found


def _largest_system(tensor: metatensor.TensorMap) -> int:
    return max(int(max(block.samples.column("system"), default=-1)) for block in tensor)


@pytest.mark.parametrize("codecs", CODECS)
@pytest.mark.parametrize("moment", MOMENTS)
def test_killed_append_reads_as_before_or_after_and_resumes(killed, codecs, moment):
    first, second = make_metatensor(0), make_metatensor(1)
    path, returncode, output = killed[codecs, moment]
    assert returncode == -9, output
    expected = [first, shifted(second, _largest_system(first) + 1)]
    if moment == "records":
        assert_equal_to_join(mtd.open_zarr(path), expected)
    else:
        assert_equal_to_metatensor(mtd.open_zarr(path).compute(), first)
    # the killed writer's lock is only taken over by resume=True
    with pytest.raises(mtd.StoreLockedError, match="looks gone"):
        mtd.from_metatensor(second).to_zarr(path, append_dim="samples", renumber={"system": "next"})
    mtd.from_metatensor(second).to_zarr(
        path, append_dim="samples", renumber={"system": "next"}, chunks=3, resume=True
    )
    assert_equal_to_join(mtd.open_zarr(path), expected)
    report = mtd.verify(path)
    assert report.ok, report.problems
    assert not (path / ".progress").exists() and not (path / ".lock").exists()
