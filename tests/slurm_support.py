"""Helpers for tests that need a real SLURM (started by ``bash .ci/slurm.sh start``).

Outside CI, a missing SLURM skips those tests. When the ``CI`` environment variable is set (to
anything non-empty), it fails them instead, so that a broken SLURM set-up never passes unnoticed.
"""

import functools
import importlib
import os
import shutil
import subprocess
import time
from types import ModuleType

import pytest

HINT = "start one with `sudo bash .ci/slurm.sh start` (see docs/clusters.md)"


def unavailable(reason: str) -> None:
    """Fail the current test if ``CI`` is set, skip it otherwise."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: SLURM tests must not be skipped)", pytrace=False)
    pytest.skip(reason)


def sh(*cmd: str, timeout: float = 30) -> str:
    """Run a SLURM command and return its stdout; raise with its stderr if it fails."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


@functools.cache
def _slurm_problem() -> str | None:
    # probed once per session: without slurmctld, each sinfo call retries for ~9 s
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return f"SLURM commands (sinfo, sbatch) not found: {HINT}"
    try:
        nodes = sh("sinfo", "--noheader", "--Node", "--format=%N").split()
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        return f"sinfo does not work ({exc}): {HINT}"
    return None if nodes else f"sinfo lists no node: {HINT}"


def require_slurm() -> None:
    """Return normally if ``sinfo`` works and lists a node; otherwise fail (CI) or skip."""
    problem = _slurm_problem()
    if problem is not None:
        unavailable(problem)


def require_module(name: str) -> ModuleType:
    """Import ``name``, failing (CI) or skipping the test if it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        unavailable(f"{name} is not installed ({exc}); install the `hpc` extra")
        raise  # not reached: unavailable() raises


def wait_for_job(job: str, timeout: float) -> str:
    """The final state of the batch job ``job`` (cancelled, and an error, if it has not
    ended within ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = sh("scontrol", "show", "job", job, "--oneliner").split("JobState=")[1].split()[0]
        if state not in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING"):
            return state
        time.sleep(0.3)
    sh("scancel", job)
    raise AssertionError(f"job {job} did not end within {timeout} s")
