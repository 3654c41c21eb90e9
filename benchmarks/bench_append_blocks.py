"""Appends of new tiny blocks to a store of many: what an append costs per stored block.

For each number of stored blocks, a store of that many tiny blocks (see
:func:`bench_support.tiny_blocks`) is written once into ``FOLDER`` (kept for the next
runs: a store of 100,000 tiny blocks takes minutes to write and about 11 GB). Then, in a
new process (so that the first append is the first of its process to read the root),
two appends of ``--appended`` tiny blocks of new keys each, then a write of the same
blocks to a new store: the floor, what writing the appended blocks costs. Each case
gives its CPU time (``time.process_time``: all threads) and wall time; what an append
costs beyond the floor is what it does in proportion to the stored blocks. The stores
grow by the appended blocks at each run (the keys of each append are new: ``k`` from
``10**7`` plus the number of blocks stored).

With ``--profile``, the second append runs under :mod:`cProfile`, whose functions are
listed by their own time (the first ``--profile`` lines; with ``--synchronous``, dask
runs the storing tasks and the commit in the main thread, where the profile sees
them)::

    .venv/bin/python benchmarks/bench_append_blocks.py --folder /dev/shm/mtd-appends \\
        --blocks 1000,10000,100000 [--profile 30 --synchronous]

``/dev/shm`` keeps the file system out of the figures, if it has the room and the
inodes (38 files and 107 kB a block). Under pytest, :func:`test_measure` runs the
measure on a small store, so that the script stays correct.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask
import metatensor
import numpy as np
from bench_support import tiny_blocks

import metatensor_dask as mtd


def _clock(function: Callable[[], Any]) -> tuple[float, float]:
    """CPU and wall times of ``function()``, after a full garbage collection."""
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    function()
    return time.process_time() - cpu, time.perf_counter() - wall


def _store(folder: Path, n: int) -> Path:
    """The store of ``n`` tiny blocks in ``folder``, written if it is not there."""
    store = folder / f"blocks-{n}.zarr"
    if not (store / "zarr.json").exists():
        shutil.rmtree(store, ignore_errors=True)
        mtd.from_metatensor(tiny_blocks(n)).to_zarr(store)
    return store


def _new_blocks(appended: int, first: int, seed: int) -> mtd.TensorMap:
    """``appended`` tiny blocks with keys ``k`` from ``first`` on (``a = k % 10``)."""
    blocks = tiny_blocks(appended, seed=seed)
    k = first + np.arange(appended)
    keys = metatensor.Labels(["a", "k"], np.stack([k % 10, k], axis=1))
    return mtd.from_metatensor(metatensor.TensorMap(keys, [b.copy() for b in blocks]))


def _stored_blocks(store: Path) -> int:
    """The number of blocks of ``store`` (its block folders: the root is not read)."""
    return sum(name.isdigit() for name in os.listdir(store / "blocks"))


def _append(batch: mtd.TensorMap, store: Path, profiler: cProfile.Profile | None) -> None:
    """Append ``batch`` to ``store``, under ``profiler`` when there is one (its main
    thread: dask's scheduler runs the storing tasks in other threads unless told to
    run them in its own, ``--synchronous``)."""
    if profiler is not None:
        profiler.enable()
    batch.to_zarr(store, append_dim="samples")
    if profiler is not None:
        profiler.disable()


def measure(store: Path, appended: int, profile: int) -> dict[str, Any]:
    """The two appends to ``store`` and the floor (see the module's documentation)."""
    stored = _stored_blocks(store)
    row: dict[str, Any] = {"stored": stored, "root MB": (store / "zarr.json").stat().st_size / 1e6}
    for case in ("first append", "next append"):
        batch = _new_blocks(appended, 10**7 + _stored_blocks(store), seed=1)
        profiler = cProfile.Profile() if profile and case == "next append" else None
        row[case] = _clock(lambda batch=batch, profiler=profiler: _append(batch, store, profiler))
        if profiler is not None:
            text = io.StringIO()
            stats = pstats.Stats(profiler, stream=text).sort_stats("tottime")
            stats.print_stats(profile)
            row["profile"] = text.getvalue()
    batch = _new_blocks(appended, 0, seed=1)
    with tempfile.TemporaryDirectory(dir=store.parent) as folder:
        row["write alone"] = _clock(lambda: batch.to_zarr(Path(folder) / "alone.zarr"))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--blocks", default="1000,10000")
    parser.add_argument("--appended", type=int, default=500)
    parser.add_argument("--profile", type=int, default=0)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--synchronous", action="store_true")
    options = parser.parse_args()
    if options.synchronous:
        dask.config.set(scheduler="synchronous")
    if options.measure is not None:
        print(json.dumps(measure(options.measure, options.appended, options.profile)))
        return
    options.folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in map(int, options.blocks.split(",")):
        store = _store(options.folder, n)
        command = [sys.executable, __file__, "--folder", str(options.folder)]
        command += ["--measure", str(store), "--appended", str(options.appended)]
        command += ["--profile", str(options.profile)]
        command += ["--synchronous"] if options.synchronous else []
        found = subprocess.run(command, check=True, capture_output=True, text=True)
        rows.append(json.loads(found.stdout.splitlines()[-1]))
    _report(rows, options.appended)


def _report(rows: list[dict[str, Any]], appended: int) -> None:
    load = os.getloadavg()
    print(
        f"appends of {appended} new tiny blocks; load average {load[0]:.2f}, {os.cpu_count()} CPUs"
    )
    print(f"{'stored':>8} {'root MB':>8}", end="")
    for case in ("first append", "next append", "write alone"):
        print(f" {case + ' cpu':>17} {'wall':>7}", end="")
    print()
    for row in rows:
        print(f"{row['stored']:>8} {row['root MB']:>8.1f}", end="")
        for case in ("first append", "next append", "write alone"):
            cpu, wall = row[case]
            print(f" {cpu:>17.2f} {wall:>7.2f}", end="")
        print()
    for row in rows:
        if "profile" in row:
            print(f"\nnext append, {row['stored']} blocks stored:\n{row['profile']}")


def test_measure(tmp_path):
    """The measure on a small store, in this process (every test run keeps the script
    correct; its figures are not checked): both appends land, and the profile is kept."""
    store = _store(tmp_path, 20)
    row = measure(store, appended=5, profile=5)
    assert row["stored"] == 20
    assert "profile" in row
    assert len(mtd.open_zarr(store).keys) == 30


if __name__ == "__main__":
    main()
