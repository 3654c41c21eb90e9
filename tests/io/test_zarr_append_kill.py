"""An append killed (SIGKILL, in a process of its own) at each step of its commit, on stores
with the default codecs, compressed and sharded: the store reads as before the append
or as after it, never half-appended, and ``resume=True`` completes it."""

from __future__ import annotations

from pathlib import Path

import cut_writers
import dask
import metatensor
import pytest
from forked_process import Forked
from kill_support import ended
from test_zarr_append import assert_equal_to_join, shifted
from test_zarr_append_codecs import codec_settings
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

# processes killed, or locks aged, at chosen moments: one such test at a time
pytestmark = pytest.mark.xdist_group("serial")

CODECS = ["default", "sharded-zstd"]
MOMENTS = ["tail", "documents", "records"]


def _append_killed(path: Path, moment: str) -> Forked:
    """``cut_writers.killed_at_step`` appending to ``path`` until ``moment``, in a
    process of its own (forked from a server that imported everything once), just
    started."""
    return Forked(cut_writers.killed_at_step, str(path), moment)


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
            output = ended(process, timeout=300)
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
