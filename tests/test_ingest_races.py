"""write_batches runs (on threads, in subprocesses) killed by SIGKILL at random moments,
and their resumes killed too: the store is refused as incomplete until the run is
finished, ``resume=True`` finishes it equal to metatensor's join of the batches, and a
plain append after it works.

The kills fall at random delays (seeded: ``MTD_RACE_SEED``) over the whole duration of
a run; the suite makes a few, ``MTD_RACE_KILLS=30`` makes more.
"""

from __future__ import annotations

import random
from pathlib import Path

import dask
import metatensor
import pytest
from forked_process import scripts_together, started_script
from ingest_support import Slow, renumbered, soap
from kill_support import KILLS, SEED, killed_after, seconds_to_done
from test_ingest import expected

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

# processes killed, or locks aged, at chosen moments: one such test at a time
pytestmark = pytest.mark.xdist_group("serial")

SCRIPT = Path(__file__).with_name("ingest_support.py")
N_ITEMS = 12
BATCH_SIZE = 2
#: Rows per chunk: many chunks, and most batches start in a partial one.
CHUNKS = 3


def _run(path: Path, *options: str):
    """A ``write_batches`` run (``ingest_support.py``) to ``path`` in a process of its
    own (forked from a server that imported everything once), once it is ready."""
    return started_script(str(SCRIPT), str(path), str(N_ITEMS), str(BATCH_SIZE), "0", *options)


def _runs(*commands: tuple[Path, ...]):
    """A ``write_batches`` run for each ``(path, *options)`` of ``commands``, each in a
    forked process, once each is ready; killed at the end if still running."""
    return scripts_together(
        *(
            [str(SCRIPT), str(path), str(N_ITEMS), str(BATCH_SIZE), "0", *options]
            for path, *options in commands
        )
    )


def _duration(path: Path) -> float:
    """Seconds a run takes in a subprocess, from ``ready`` to ``done``."""
    return seconds_to_done(_run(path, "--chunks", str(CHUNKS)))


def _assert_refused_or_finished(path: Path, whole: metatensor.TensorMap, what: str) -> None:
    """The store of a killed run: refused as incomplete (or absent, when killed before
    its first write), or whole."""
    if not (path / "zarr.json").exists():
        return
    try:
        stored = mtd.open_zarr(path)
    except mtd.IncompleteStoreError as error:
        assert "incomplete" in str(error), f"{what}: {error}"
    else:
        assert_equal_to_metatensor(stored.compute(), whole)
    report = mtd.verify(path)
    expected = ("the store is incomplete", "consolidated", "cut short by the unfinished write")
    unexpected = [p for p in report.problems if not any(e in p for e in expected)]
    assert not unexpected, f"{what}: {unexpected}"


def test_runs_killed_at_random_moments_resume(tmp_path):
    """Each run killed at a random moment; every other one resumed in a subprocess
    killed at a random moment too; then resumed here: the join of the batches, and a
    plain append after it."""
    whole = expected(N_ITEMS, BATCH_SIZE)
    extra = renumbered(soap([N_ITEMS, N_ITEMS + 1]), N_ITEMS)
    rng = random.Random(SEED)
    duration = _duration(tmp_path / "timed.zarr")
    for kill in range(KILLS):
        path = tmp_path / f"killed{kill}.zarr"
        delay = rng.uniform(0.0, 1.2 * duration)
        what = f"seed {SEED}, kill {kill}, run killed after {delay:.3f} s of {duration:.3f} s"
        go = [tmp_path / f"go{kill}-{which}" for which in ("run", "resume")]
        # the resume (of every other kill) waits for its turn, started with the run
        resumed = (path, "--chunks", str(CHUNKS), "--resume", "--go", str(go[1]))
        run = (path, "--chunks", str(CHUNKS), "--go", str(go[0]))
        with _runs(run, *([resumed] if kill % 2 else [])) as (writer, *resume):
            go[0].touch()
            killed_after(writer, delay)
            _assert_refused_or_finished(path, whole, what)
            if kill % 2:
                delay = rng.uniform(0.0, 1.2 * duration)
                what += f", its resume killed after {delay:.3f} s"
                go[1].touch()
                killed_after(resume[0], delay)
                _assert_refused_or_finished(path, whole, what)
        with dask.config.set(num_workers=2):
            mtd.write_batches(
                Slow(0.0),
                list(range(N_ITEMS)),
                path,
                batch_size=BATCH_SIZE,
                resume=True,
                chunks=CHUNKS,
                quiet=True,
            )
        assert_equal_to_metatensor(mtd.open_zarr(path).compute(), whole)
        report = mtd.verify(path)
        assert report.ok, f"{what}: {report.problems}"
        assert not (path / ".progress").exists() and not (path / ".lock").exists(), what
        mtd.from_metatensor(extra).to_zarr(path, append_dim="samples")
        assert_equal_to_metatensor(
            mtd.open_zarr(path).compute(),
            metatensor.join([whole, extra], axis="samples", different_keys="union"),
        )
