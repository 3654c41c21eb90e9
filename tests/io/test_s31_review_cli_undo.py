"""A command that fails before it set up its write leaves the output location alone: a
store another writer made there meanwhile (the location was new when the command
started) is not removed."""

from __future__ import annotations

import os
import sys
import threading
import time

import metatensor
import numpy as np

import metatensor_dask as mtd
from metatensor_dask.execution import cli
from metatensor_dask.testing import assert_equal_to_metatensor


def _tensor() -> metatensor.TensorMap:
    block = metatensor.TensorBlock(
        np.arange(6.0).reshape(3, 2),
        metatensor.Labels.range("system", 3),
        [],
        metatensor.Labels.range("p", 2),
    )
    return metatensor.TensorMap(metatensor.Labels.range("k", 1), [block])


def _inside(thread: threading.Thread, function: str) -> bool:
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        if frame.f_code.co_name == function:
            return True
        frame = frame.f_back
    return False


def _wait(condition, what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def _feed_until_done(fifo: str, thread: threading.Thread) -> None:
    """Open and close the write end of ``fifo`` whenever a reader waits on it (each
    reader then reads an empty file), until ``thread`` ends (a minute at most)."""
    deadline = time.monotonic() + 60
    while thread.is_alive() and time.monotonic() < deadline:
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # no reader yet
            time.sleep(0.005)


def test_a_store_made_meanwhile_by_another_writer_is_kept(tmp_path):
    """``convert`` into a new location reads its source (a pipe, which blocks it until
    written to) while another writer creates a store at that location; the source
    then fails to load, and the other writer's store is still there, unchanged."""
    fifo, output = str(tmp_path / "source.mts"), tmp_path / "out.zarr"
    os.mkfifo(fifo)
    codes: list[int] = []
    command = threading.Thread(
        target=lambda: codes.append(cli.main(["convert", fifo, str(output), "-q"]))
    )
    command.start()
    try:
        # the command has looked at its output and waits for its source
        _wait(lambda: _inside(command, "open_tensor"), "the command to open its source")
        mtd.from_metatensor(_tensor()).to_zarr(output)
    finally:
        _feed_until_done(fifo, command)
        command.join(60)
    assert codes == [1]
    assert_equal_to_metatensor(mtd.open_zarr(output), _tensor())
