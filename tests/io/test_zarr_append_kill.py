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


def _append_killed(path: Path, moment: str) -> subprocess.CompletedProcess:
    script = SCRIPT.format(folder=str(Path(__file__).parent))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        [sys.executable, "-c", script, str(path), moment],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def _largest_system(tensor: metatensor.TensorMap) -> int:
    return max(int(max(block.samples.column("system"), default=-1)) for block in tensor)


@pytest.mark.parametrize("codecs", ["default", "sharded-zstd"])
@pytest.mark.parametrize("moment", ["tail", "documents", "records"])
def test_killed_append_reads_as_before_or_after_and_resumes(tmp_path, codecs, moment):
    first, second = make_metatensor(0), make_metatensor(1)
    path = tmp_path / "t.zarr"
    with dask.config.set(codec_settings(codecs)):
        mtd.from_metatensor(first).to_zarr(path, chunks=4)
    finished = _append_killed(path, moment)
    assert finished.returncode == -9, finished.stdout + finished.stderr
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
