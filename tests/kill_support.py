"""Processes killed at random moments: wait until each says ``ready``, kill it after a
delay, read what it printed.

The kills of the race suites fall at random delays, seeded by ``MTD_RACE_SEED``; the
suite makes ``MTD_RACE_KILLS`` of them per case (a few by default, 30 for a longer hunt).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

KILLS = int(os.environ.get("MTD_RACE_KILLS", "2"))
SEED = int(os.environ.get("MTD_RACE_SEED", "2027"))


def _ready(process: subprocess.Popen) -> None:
    """Wait until ``process`` printed ``ready``; kill it if it printed something else."""
    line = process.stdout.readline()
    if line.strip() != "ready":
        process.kill()
        raise AssertionError(line + process.stdout.read())


@contextlib.contextmanager
def all_ready(processes: list[Any]) -> Iterator[list[Any]]:
    """``processes`` (``subprocess.Popen`` or alike), once each printed ``ready``; those
    still running at the end are killed."""
    try:
        for process in processes:
            _ready(process)
        yield processes
    finally:
        for process in processes:
            with process:
                process.kill()


def ended(process: subprocess.Popen, timeout: float = 120) -> str:
    """The output of ``process`` once it ended."""
    with process:
        output = process.stdout.read()
        process.wait(timeout=timeout)
    return output


def killed_after(process: subprocess.Popen, delay: float) -> str:
    """Kill ``process`` ``delay`` seconds from now (once it said ``ready``, or was let
    go); its output after."""
    time.sleep(delay)
    process.kill()
    return ended(process)


def seconds_to_done(process: subprocess.Popen) -> float:
    """Seconds from ``ready`` until ``process`` printed ``done`` (it must end well)."""
    start = time.monotonic()
    line = process.stdout.readline()
    duration = time.monotonic() - start
    output = ended(process)
    assert line.strip() == "done" and process.returncode == 0, line + output
    return duration


def lock_holder(store: Path) -> int | None:
    """The process id that the lock file of ``store`` names (``None``: no readable lock)."""
    try:
        return json.loads((store / ".lock").read_bytes())["pid"]
    except (OSError, ValueError, KeyError):
        return None


@contextlib.contextmanager
def writer_holding(
    code: str, arguments: list[str], store: Path, wanted: Callable[[], bool] = lambda: True
) -> Iterator[subprocess.Popen]:
    """``python -c code arguments...``, which prints ``ready`` then writes ``store``:
    given once it holds the store's lock and ``wanted()`` is true, killed (SIGKILL)
    when the block ends."""
    process = subprocess.Popen(
        [sys.executable, "-c", code, *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    with process:
        holding_the_lock(process, store, wanted)
        yield process
        process.kill()
        process.wait()


def holding_the_lock(process: Any, store: Path, wanted: Callable[[], bool]) -> None:
    """Return once ``process`` (a ``Popen`` or a forked process, which prints ``ready``
    first) holds the lock of ``store`` and ``wanted()`` is true; fail when it ends
    before, or after 60 s."""
    line = process.stdout.readline()
    assert line.strip() == "ready", line + process.stdout.read()
    deadline = time.monotonic() + 60
    while lock_holder(store) != process.pid or not wanted():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline
        time.sleep(0.002)
