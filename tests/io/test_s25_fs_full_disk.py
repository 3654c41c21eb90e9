"""Writes that run out of room (a file size limit, in a subprocess, standing for a full
disk: both fail the write with an ``OSError``) leave no file of their own behind: the
lock a writer could not write is not left beside the store, a store that the write
created is removed, and a rerun without the limit (in the test's process) finishes the
write with metatensor's result."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import metatensor
import pytest
from ingest_support import renumbered
from test_zarr_append import assert_equal_to_join
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.execution.cli import main
from metatensor_dask.testing import assert_equal_to_metatensor

pytestmark = pytest.mark.xdist_group("serial")

#: Runs ``argv[3]`` (Python code using ``store``, ``mtd``, ``make_metatensor``) with
#: files limited to ``argv[2]`` bytes, for the store ``argv[1]``; prints the errno of
#: the ``OSError`` it raised and its message, or ``done``.
LIMITED = """
import resource, signal, sys
import metatensor_dask as mtd
from metatensor_dask.execution.cli import main
from zarr_writer_process import make_metatensor

store, limit = sys.argv[1], int(sys.argv[2])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    exec(sys.argv[3])
except OSError as error:
    print(error.errno, error)
else:
    print("done")
"""

WRITE = "mtd.from_metatensor(make_metatensor(1)).to_zarr(store, chunks=4)"
APPEND = (
    "mtd.from_metatensor(make_metatensor(2)).to_zarr("
    "store, append_dim='samples', renumber={'system': 'next'}, chunks=4)"
)


def run_python(script: str, *arguments: str) -> str:
    """What ``script`` prints, run with ``arguments`` by a new interpreter that imports
    what this one does."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", script, *arguments],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _limited(store: Path, limit: int, code: str) -> str:
    return run_python(LIMITED, str(store), str(limit), code)


def _with_room(store: Path, code: str) -> None:
    """Run ``code`` (as :data:`LIMITED` does) in this process, without a limit: the
    rerun of a user who made room (a new interpreter for it took a second or two)."""
    exec(code, {"store": str(store), "mtd": mtd, "main": main, "make_metatensor": make_metatensor})


def _lock_files(store: Path) -> list[str]:
    return sorted(path.name for path in store.glob(".lock*"))


def test_a_lock_that_can_not_be_written_leaves_no_store(tmp_path):
    store = tmp_path / "new.zarr"
    printed = _limited(store, 1000, WRITE)
    assert printed.startswith(f"{errno.EFBIG} "), printed
    assert not store.exists(), sorted(os.listdir(store))
    mtd.from_metatensor(make_metatensor(1)).to_zarr(store, chunks=4)
    assert_equal_to_metatensor(mtd.open_zarr(store), make_metatensor(1))


def test_an_append_whose_lock_can_not_be_written_leaves_the_store_as_it_was(tmp_path):
    store = tmp_path / "s.zarr"
    mtd.from_metatensor(make_metatensor(1)).to_zarr(store, chunks=4)
    before = sorted(str(path.relative_to(store)) for path in store.rglob("*"))
    printed = _limited(store, 1000, APPEND)
    assert printed.startswith(f"{errno.EFBIG} "), printed
    assert sorted(str(path.relative_to(store)) for path in store.rglob("*")) == before
    assert_equal_to_metatensor(mtd.open_zarr(store), make_metatensor(1))
    _with_room(store, APPEND)
    _assert_appended(store)


def _assert_appended(store: Path) -> None:
    """The store holds ``make_metatensor(1)``, then ``make_metatensor(2)`` renumbered
    after it, as metatensor joins them (values and gradients)."""
    first, second = make_metatensor(1), make_metatensor(2)
    largest = max(int(max(block.samples.column("system"), default=-1)) for block in first)
    assert_equal_to_join(mtd.open_zarr(store), [first, renumbered(second, largest + 1)])


def _assert_out_of_room(printed: str, store: Path, then: str) -> None:
    """``printed`` is a file size limit error naming the store, the limit and ``then``."""
    number, message = printed.split(" ", 1)
    assert int(number) == errno.EFBIG, printed
    assert str(store) in message, printed
    assert "ulimit -f" in message, printed
    assert then in message, printed


def test_a_write_without_room_names_the_store_and_the_remedy(tmp_path):
    store = tmp_path / "s.zarr"
    printed = _limited(store, 8192, WRITE)
    _assert_out_of_room(printed, store, "resume=True")
    with pytest.raises(mtd.IncompleteStoreError):
        mtd.open_zarr(store)
    assert _lock_files(store) == []
    resumed = WRITE.replace("chunks=4)", "chunks=4, resume=True)")
    _with_room(store, resumed)
    assert_equal_to_metatensor(mtd.open_zarr(store), make_metatensor(1))


def test_an_append_without_room_names_the_store_and_the_remedy(tmp_path):
    store = tmp_path / "s.zarr"
    mtd.from_metatensor(make_metatensor(1)).to_zarr(store, chunks=4)
    printed = _limited(store, 8192, APPEND)
    _assert_out_of_room(printed, store, "discard_append")
    assert_equal_to_metatensor(mtd.open_zarr(store), make_metatensor(1))
    assert _lock_files(store) == []
    resumed = APPEND.replace("chunks=4)", "chunks=4, resume=True)")
    _with_room(store, resumed)
    _assert_appended(store)


def test_a_lock_without_room_says_nothing_was_written(tmp_path):
    store = tmp_path / "s.zarr"
    mtd.from_metatensor(make_metatensor(1)).to_zarr(store, chunks=4)
    printed = _limited(store, 1000, APPEND)
    _assert_out_of_room(printed, store, "nothing was written: run it again")


def test_new_blocks_without_room_leave_the_store_as_it_was(tmp_path):
    store = tmp_path / "s.zarr"
    full = make_metatensor(1)
    first = metatensor.TensorMap(
        metatensor.Labels(full.keys.names, full.keys.values[:2]),
        [full.block(0).copy(), full.block(1).copy()],
    )
    mtd.from_metatensor(first).to_zarr(store, chunks=4)
    add = (
        "import metatensor\n"
        "full = make_metatensor(1)\n"
        "last = metatensor.TensorMap(metatensor.Labels(full.keys.names, full.keys.values[2:]),"
        " [full.block(2).copy()])\n"
        "mtd.from_metatensor(last).to_zarr(store, mode='a', chunks=4)"
    )
    printed = _limited(store, 8192, add)
    _assert_out_of_room(printed, store, "the store is as it was: run it again")
    assert_equal_to_metatensor(mtd.open_zarr(store), first)
    _with_room(store, add)
    whole = metatensor.TensorMap(full.keys, [block.copy() for block in full.blocks()])
    assert_equal_to_metatensor(mtd.open_zarr(store), whole)  # the info of the first write


#: Runs the command line ``argv[2:]`` with files limited to ``argv[1]`` bytes.
COMMAND = """
import resource, signal, sys
from metatensor_dask.execution.cli import main

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("append", [False, True])
def test_a_convert_without_room_names_its_resume(tmp_path, append):
    source, store = tmp_path / "t.mts", tmp_path / "s.zarr"
    metatensor.save(str(source), make_metatensor(1))
    command = ["convert", str(source), str(store), "--quiet"] + (["--append"] if append else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    failed = subprocess.run(
        [sys.executable, "-c", COMMAND, "8192", *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert failed.returncode == 1, failed.stderr
    assert f"writing {store} failed (File too large)" in failed.stderr, failed.stderr
    assert "ulimit -f" in failed.stderr and "with --resume" in failed.stderr, failed.stderr
    with pytest.raises(mtd.IncompleteStoreError):
        mtd.open_zarr(store)
    assert main([*command, "--resume"]) == 0
    assert_equal_to_metatensor(mtd.open_zarr(store), make_metatensor(1))
