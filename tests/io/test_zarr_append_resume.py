"""Interrupted appends: an appending process killed by SIGKILL at several points leaves
the store readable as before the append, and ``resume=True`` finishes it; a second
writer racing an append is refused and no rows are lost."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import dask
import metatensor
import pytest
from forked_process import Forked, forked_script
from test_zarr_append import join, shifted
from zarr_writer_process import slow_tensor

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

SCRIPT = Path(__file__).with_name("zarr_writer_process.py")
N_CHUNKS = 12
SETTINGS = {"scheduler": "synchronous", "metatensor_dask.chunk-size": "256B"}


def _recorded(path: Path) -> int:
    folder = path / ".progress"
    if not folder.exists():
        return 0
    return len([name for name in os.listdir(folder) if name.startswith("blocks%2F0%2Fvalues%2F")])


def _start_append(path: Path, log: Path, delay: float, *options: str) -> Forked:
    """The append of ``zarr_writer_process.py`` in a process of its own (forked from a
    server that imported everything once), its output in ``log``."""
    return forked_script(
        SCRIPT, str(path), str(N_CHUNKS), str(delay), "--append", *options, log=log
    )


def _wait_for(process: Forked, log: Path, condition) -> None:
    deadline = time.monotonic() + 120
    while not condition():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the appending process made no progress"
        time.sleep(0.01)


def _expected() -> metatensor.TensorMap:
    """The first batch, then the second one numbered after it (what the writer appends:
    the first has the systems 0 to 4)."""
    first = mtd.to_metatensor(slow_tensor(N_CHUNKS, 0.0).compute())
    return join([first, shifted(first, 5)])


def _assert_equal(stored: mtd.TensorMap, expected) -> None:
    if isinstance(expected, mtd.TensorMap):
        expected = mtd.to_metatensor(expected.compute())
    assert_equal_to_metatensor(stored.compute(), expected)


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "t.zarr"
    with dask.config.set(SETTINGS):
        mtd.to_zarr(slow_tensor(N_CHUNKS, 0.0), path)
    return path


@pytest.mark.parametrize("kill_after", [0, 6])
def test_killed_append_reads_as_before_and_resumes(store, tmp_path, kill_after):
    """Killed before any values chunk is stored, or after some (after one: the sharded
    store's test below)."""
    _killed_and_resumed(store, tmp_path, kill_after)


def test_killed_append_to_a_sharded_compressed_store_resumes(tmp_path):
    """The same, on a store of zstd shards of 3 chunks: the appended values are
    written (and recorded) a shard at a time."""
    path = tmp_path / "sharded.zarr"
    sharded = {"metatensor_dask.shard-chunks": 3, "metatensor_dask.compressor": "zstd"}
    with dask.config.set({**SETTINGS, **sharded}):
        mtd.to_zarr(slow_tensor(N_CHUNKS, 0.0), path)
    values = json.loads((path / "blocks/0/values/zarr.json").read_text())
    assert values["codecs"][0]["name"] == "sharding_indexed"
    _killed_and_resumed(path, tmp_path, 1)


def _killed_and_resumed(store: Path, tmp_path: Path, kill_after: int) -> None:
    before = mtd.open_zarr(store).compute()
    log = tmp_path / "append.log"
    process = _start_append(store, log, 0.1)
    try:
        # 0: killed once the append is recorded, before any values chunk is stored
        _wait_for(
            process,
            log,
            lambda: (
                (store / ".progress" / "append.json").exists() and _recorded(store) >= kill_after
            ),
        )
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert _recorded(store) < N_CHUNKS, "the append finished before it was killed"
    # readable as before the append: no half-appended rows
    _assert_equal(mtd.open_zarr(store), before)
    # the lock of the killed process is not taken over without resume=True
    with pytest.raises(mtd.StoreLockedError, match="looks gone"):
        mtd.to_zarr(
            slow_tensor(N_CHUNKS, 0.0), store, append_dim="samples", renumber={"system": "next"}
        )
    with dask.config.set(SETTINGS):
        mtd.to_zarr(
            slow_tensor(N_CHUNKS, 0.0),
            store,
            append_dim="samples",
            renumber={"system": "next"},
            resume=True,
        )
        # resuming again is a no-op: the append is not repeated
        mtd.to_zarr(
            slow_tensor(N_CHUNKS, 0.0),
            store,
            append_dim="samples",
            renumber={"system": "next"},
            resume=True,
        )
    _assert_equal(mtd.open_zarr(store), _expected())
    assert mtd.verify(store).ok
    assert not (store / ".progress").exists() and not (store / ".lock").exists()


def test_resume_refuses_another_append(store, tmp_path):
    log = tmp_path / "append.log"
    process = _start_append(store, log, 0.1)
    try:
        _wait_for(process, log, lambda: _recorded(store) >= 1)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    with pytest.raises(mtd.MetatensorDaskError, match=r"interrupted.*this is another tensor"):
        mtd.to_zarr(
            mtd.multiply(slow_tensor(N_CHUNKS, 0.0), 3.0),
            store,
            append_dim="samples",
            renumber={"system": "next"},
            resume=True,
        )


def test_a_second_writer_racing_an_append_is_refused(store, tmp_path):
    log = tmp_path / "append.log"
    process = _start_append(store, log, 0.05)
    try:
        _wait_for(process, log, lambda: _recorded(store) >= 1)
        with pytest.raises(mtd.StoreLockedError, match="being written by another writer"):
            mtd.to_zarr(slow_tensor(N_CHUNKS, 0.0, key=7), store, append_dim="samples")
        assert process.wait(timeout=120) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
    assert "done" in log.read_text()
    _assert_equal(mtd.open_zarr(store), _expected())


def test_appenders_started_together_lose_no_rows(store, tmp_path):
    """Three appends started at the same moment: each either appends or is refused
    with StoreLockedError (exit 3) before writing anything; retried one after the
    other, the refused ones complete the store, which then holds every batch once."""
    go = tmp_path / "go"
    processes = [
        _start_append(store, tmp_path / f"append{i}.log", 0.0, "--go", str(go)) for i in range(3)
    ]
    go.touch()
    codes = [process.wait(timeout=300) for process in processes]
    logs = [(tmp_path / f"append{i}.log").read_text() for i in range(3)]
    assert set(codes) <= {0, 3} and 0 in codes, logs
    for code, log in zip(codes, logs, strict=True):
        assert ("done" in log) if code == 0 else ("locked: " in log), log
    first = mtd.to_metatensor(slow_tensor(N_CHUNKS, 0.0).compute())
    appended = codes.count(0)
    _assert_equal(mtd.open_zarr(store), join([shifted(first, 5 * k) for k in range(appended + 1)]))
    with dask.config.set(SETTINGS):
        for _ in range(codes.count(3)):
            mtd.to_zarr(
                slow_tensor(N_CHUNKS, 0.0), store, append_dim="samples", renumber={"system": "next"}
            )
    _assert_equal(mtd.open_zarr(store), join([shifted(first, 5 * k) for k in range(4)]))
    assert mtd.verify(store).ok
