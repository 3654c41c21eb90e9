"""Processes killed at random moments: start one that says ``ready``, kill it after a
delay, read what it printed.

The kills of the race suites fall at random delays, seeded by ``MTD_RACE_SEED``; the
suite makes ``MTD_RACE_KILLS`` of them per case (a few by default, 30 for a longer hunt).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

KILLS = int(os.environ.get("MTD_RACE_KILLS", "2"))
SEED = int(os.environ.get("MTD_RACE_SEED", "2027"))


def started(script: str, *arguments: str) -> subprocess.Popen:
    """``python script arguments...``, once it printed ``ready`` (its imports done)."""
    process = subprocess.Popen(
        [sys.executable, script, *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    line = process.stdout.readline()
    if line.strip() != "ready":
        process.kill()
        raise AssertionError(line + process.stdout.read())
    return process


def ended(process: subprocess.Popen, timeout: float = 120) -> str:
    """The output of ``process`` once it ended."""
    with process:
        output = process.stdout.read()
        process.wait(timeout=timeout)
    return output


def killed_after(process: subprocess.Popen, delay: float) -> str:
    """Kill ``process`` ``delay`` seconds after it said ``ready``; its output after."""
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
