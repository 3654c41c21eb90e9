"""Temporary files of atomic writes (``<name>.<uuid hex>.partial``) left by a writer
killed (SIGKILL, in a process of its own) between writing one and renaming it over its file:
``verify`` notes them with the remedy, and the writer taking the killed one's lock over
(an append's ``resume=True`` or ``discard_append``, a whole write's ``resume=True``, a
resumed run of ``write_batches``) removes them, and nothing else. A writer that fails
(here: the file size limit) removes its own temporary file. An append that takes a lock
nobody held does not look for them (it does not walk the store)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from forked_process import Forked, run_code
from kill_support import ended
from test_zarr_append import assert_equal_to_join, shifted
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.io._lock import LOCK_KEY, Holder
from metatensor_dask.testing import assert_equal_to_metatensor

pytestmark = pytest.mark.xdist_group("serial")

#: Appends ``make_metatensor(1)`` to the store ``argv[1]``, killing itself (SIGKILL)
#: once the temporary file replacing a partial last chunk is written, before its rename.
KILLED = """
import os, signal, sys
sys.path.insert(0, {folder!r})
import metatensor_dask as mtd
from metatensor_dask.io import zarr_rows
from test_zarr_append import assert_equal_to_join, shifted
from zarr_writer_process import make_metatensor

original = zarr_rows._write

def write(name, *args, **kwargs):
    original(name, *args, **kwargs)
    if str(name).endswith(".partial"):
        os.kill(os.getpid(), signal.SIGKILL)

zarr_rows._write = write
mtd.from_metatensor(make_metatensor(1)).to_zarr(
    sys.argv[1], append_dim="samples", renumber={{"system": "next"}}, chunks=4
)
print("not killed")
"""

#: Replaces the chunk ``argv[2]`` of the local store ``argv[1]`` atomically with more
#: bytes than the file size limit allows.
TOO_BIG = """
import resource, signal, sys
import numpy as np
import zarr
from metatensor_dask.io.zarr_rows import write_parts

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
store = zarr.storage.LocalStore(sys.argv[1])
try:
    write_parts(store, {sys.argv[2]: [np.zeros(100_000, np.uint8)]}, atomic=True)
except OSError as error:
    print(type(error).__name__, error.errno)
"""


def _run(script: str, *arguments: str) -> tuple[int, str]:
    """``python -c script arguments...`` in a process forked from a server that
    imported metatensor-dask once: its exit code (``-9`` killed) and output."""
    process = Forked(run_code, script, list(arguments), {})
    output = ended(process, timeout=300)
    return process.returncode, output


def _temporaries(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*.partial"))


def _assert_appended(path: Path) -> None:
    """The store at ``path`` holds ``make_metatensor(0)`` then ``make_metatensor(1)``
    renumbered after it, as metatensor joins them (values and gradients)."""
    first, second = make_metatensor(0), make_metatensor(1)
    largest = max(int(max(block.samples.column("system"), default=-1)) for block in first)
    assert_equal_to_join(mtd.open_zarr(path), [first, shifted(second, largest + 1)])


@pytest.fixture(scope="module")
def killed_append(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of ``make_metatensor(0)`` whose append of ``make_metatensor(1)`` was
    killed (by :data:`KILLED`) before it renamed a temporary file: made once, each test
    takes a copy (its files, their contents and times), as if its own writer was
    killed."""
    path = tmp_path_factory.mktemp("killed") / "killed.zarr"
    mtd.from_metatensor(make_metatensor(0)).to_zarr(path, chunks=3)
    code, output = _run(KILLED.format(folder=str(Path(__file__).parent)), str(path))
    assert code == -9, output
    return path


@pytest.mark.parametrize("then", ["resume", "discard"])
def test_a_killed_appends_temporary_files_are_noted_and_removed_after(
    tmp_path, killed_append, then
):
    path = tmp_path / "killed.zarr"
    shutil.copytree(killed_append, path)
    (left,) = _temporaries(path)
    # as zarr's local store names its own (the chunk key's last suffix replaced)
    zarrs = path / "blocks/0/properties" / f"c.{uuid.uuid4().hex}.partial"
    zarrs.write_bytes(b"cut short")
    # not temporary files of ours or zarr's: never removed
    kept = [
        path / "notes.partial",
        path / "blocks/0/values/c.0.0.0.partial",
        path / "blocks/0" / f"x.{uuid.uuid4().hex[:31]}.partial",
        path / "blocks/0" / f"x.{uuid.uuid4().hex.upper()}.partial",
    ]
    for other in kept:
        other.write_bytes(b"mine")

    report = mtd.verify(path)
    (note,) = [n for n in report.notes if "temporary file" in n]
    assert "2 temporary files" in note
    assert left.relative_to(path).as_posix() in note
    assert "resume=True" in note and "delete them" in note

    if then == "resume":
        mtd.from_metatensor(make_metatensor(1)).to_zarr(
            path, append_dim="samples", renumber={"system": "next"}, chunks=4, resume=True
        )
    else:
        assert mtd.discard_append(path)
    assert not left.exists() and not zarrs.exists()
    assert all(other.exists() for other in kept)
    assert not any("temporary file" in n for n in mtd.verify(path).notes)
    if then == "resume":
        _assert_appended(path)
    else:
        assert_equal_to_metatensor(mtd.open_zarr(path), make_metatensor(0))


def test_an_append_without_a_killed_writer_does_not_look_for_them(tmp_path):
    path = tmp_path / "left.zarr"
    mtd.from_metatensor(make_metatensor(0)).to_zarr(path, chunks=3)
    left = path / "blocks/0/values" / f"c.0.0.0.{uuid.uuid4().hex}.partial"
    left.write_bytes(b"left by a worker killed under a writer that went on")
    mtd.from_metatensor(make_metatensor(1)).to_zarr(
        path, append_dim="samples", renumber={"system": "next"}, chunks=4
    )
    assert left.exists()
    _assert_appended(path)


def test_a_failed_replacement_removes_its_temporary_file(tmp_path):
    path = tmp_path / "store"
    (path / "array").mkdir(parents=True)
    chunk = path / "array" / "c.0"
    chunk.write_bytes(b"stored")
    _, output = _run(TOO_BIG, str(path), "array/c.0")
    assert output.strip() == "OSError 27", output  # EFBIG
    assert chunk.read_bytes() == b"stored"
    assert _temporaries(path) == []


def _leave_temporaries(path: Path) -> list[Path]:
    """Temporary files as a killed writer leaves them: ours at the root (the root
    document replaced) and zarr's in an array folder."""
    left = [
        path / f"zarr.json.{uuid.uuid4().hex}.partial",
        path / "blocks/0/values" / f"c.0.0.{uuid.uuid4().hex}.partial",
    ]
    for file in left:
        file.write_bytes(b"cut short")
    return left


def test_a_whole_writes_resume_removes_them(tmp_path):
    path = tmp_path / "write.zarr"
    tensor = mtd.from_metatensor(make_metatensor(0))
    # the lock of a write whose Delayed never runs, taken over by the resume
    tensor.to_zarr(path, chunks=3, compute=False)
    left = _leave_temporaries(path)
    tensor.to_zarr(path, chunks=3, resume=True)
    assert not any(file.exists() for file in left)
    assert_equal_to_metatensor(mtd.open_zarr(path), make_metatensor(0))


def test_a_resumed_run_of_batches_removes_them(tmp_path):
    path = tmp_path / "batches.zarr"
    first = make_metatensor(0)
    mtd.write_batches(lambda items: first, [0], path, batch_size=1, quiet=True)
    # the lock a killed run leaves: its process is gone
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    holder = Holder("me", socket.gethostname(), gone.pid, 1.0, 1.0, "a" * 32, "write_batches")
    (path / LOCK_KEY).write_bytes(holder.encode())
    left = _leave_temporaries(path)
    mtd.write_batches(lambda items: first, [0], path, batch_size=1, quiet=True, resume=True)
    assert not any(file.exists() for file in left)
    assert not (path / LOCK_KEY).exists()
    assert_equal_to_metatensor(mtd.open_zarr(path), first)
