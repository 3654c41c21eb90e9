"""Stores given by a ``file://`` URL: fsspec writes a file there in place (truncated,
then written), so the documents and chunks a write replaces (the root of an append,
the partial last chunk it extends) are written aside and renamed over them, as in a
store given by its path. An append whose new root does not fit (a file size limit, in
a process of its own, standing for a full disk or a writer killed while it wrote) leaves the
store reading as before it, and its resume finishes it with metatensor's result."""

from __future__ import annotations

import errno
import getpass
import socket
import subprocess
import sys
import time

import pytest
from forked_process import Forked, run_code
from ingest_support import renumbered
from kill_support import ended
from test_s25_fs_full_disk import LIMITED
from test_zarr_append import assert_equal_to_join
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.io._lock import Holder
from metatensor_dask.testing import assert_equal_to_metatensor

pytestmark = pytest.mark.xdist_group("serial")

APPEND = (
    "mtd.from_metatensor(make_metatensor(2)).to_zarr(store, append_dim='samples', "
    "renumber={'system': 'next'}, storage_options={'auto_mkdir': True}{resume})"
)


def test_an_append_whose_root_does_not_fit_leaves_the_store_as_it_was(tmp_path):
    path = tmp_path / "s.zarr"
    url = f"file://{path}"
    mtd.from_metatensor(make_metatensor(1)).to_zarr(path, chunks=4)
    root = path / "zarr.json"
    # every file of the append fits but its root, longer than the one it replaces
    limit = root.stat().st_size
    # in a process forked from a server that imported metatensor-dask once (a new
    # interpreter took seconds)
    process = Forked(run_code, LIMITED, [url, str(limit), APPEND.replace("{resume}", "")], {})
    printed = ended(process).strip()
    assert process.returncode == 0, printed
    assert printed.startswith(f"{errno.EFBIG} "), printed
    assert root.stat().st_size == limit
    assert_equal_to_metatensor(mtd.open_zarr(url), make_metatensor(1))
    assert not list(path.rglob("*.partial"))

    # the resume of a user who made room, in this process (a new interpreter for it took
    # seconds): the append that failed has exited, as after a full disk
    appended = mtd.from_metatensor(make_metatensor(2))
    appended.to_zarr(
        url,
        append_dim="samples",
        renumber={"system": "next"},
        storage_options={"auto_mkdir": True},
        resume=True,
    )
    _assert_appended(url)


def _assert_appended(url: str) -> None:
    """The store holds ``make_metatensor(1)``, then ``make_metatensor(2)`` renumbered
    after it, as metatensor joins them (values and gradients)."""
    first, second = make_metatensor(1), make_metatensor(2)
    largest = max(int(max(block.samples.column("system"), default=-1)) for block in first)
    assert_equal_to_join(mtd.open_zarr(url), [first, renumbered(second, largest + 1)])


def test_taking_a_killed_writers_lock_over_removes_its_temporary_files(tmp_path):
    path = tmp_path / "s.zarr"
    url, options = f"file://{path}", {"auto_mkdir": True}
    mtd.from_metatensor(make_metatensor(1)).to_zarr(url, chunks=4, storage_options=options)
    # what an append killed while it replaced files leaves: its lock, temporary files
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    now = time.time()
    holder = Holder(getpass.getuser(), socket.gethostname(), gone.pid, now, now, "0" * 32)
    (path / ".lock").write_bytes(holder.encode())
    left = [
        path / f"zarr.json.{'a' * 32}.partial",
        path / "blocks" / "0" / "values" / f"c.5.0.0.{'b' * 32}.partial",
    ]
    for file in left:
        file.write_bytes(b"cut short")
    assert any("partial" in note for note in mtd.verify(url).notes)

    appended = mtd.from_metatensor(make_metatensor(2))
    renumber = {"system": "next"}
    appended.to_zarr(
        url, append_dim="samples", renumber=renumber, resume=True, storage_options=options
    )
    assert [file for file in left if file.exists()] == []
    _assert_appended(url)
