"""The growth of a Zarr write of tiny blocks with the number of blocks, against its floor.

One process per run: ``tiny_blocks(n)`` converted with ``from_metatensor``, then
``to_zarr`` into a new folder of ``FOLDER`` and the *floor* (plain Python creating
the same files with the same sizes) into another, in the order given; each store is
deleted before the next is written, so that a store of 100,000 blocks (2.4 million
files) and its floor are never on the disk together. A full garbage collection and
``malloc_trim`` run before each. Prints the CPU time (user + system, all threads) and
the wall time of both, and their ratio::

    mount -t tmpfs -o size=20G,nr_inodes=0 tmpfs /mnt/ram
    PYTHONPATH=$PWD/src .venv/bin/python benchmarks/zarr_write_growth.py /mnt/ram 10000 ours
    PYTHONPATH=$PWD/src .venv/bin/python benchmarks/zarr_write_growth.py /mnt/ram 100000 floor

(``ours`` or ``floor``: which goes first.) ``/dev/shm`` has too few inodes for
100,000 blocks, hence a tmpfs mounted without an inode limit.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench_many_blocks import _collect, _create_files, _sizes
from bench_support import tiny_blocks

import metatensor_dask as mtd


def _clocked(function: Callable[[], None]) -> tuple[float, float, float, float]:
    """CPU (user, system) and wall seconds of ``function()``, after a collection."""
    _collect()
    before, wall = os.times(), time.perf_counter()
    function()
    after = os.times()
    user, system = after.user - before.user, after.system - before.system
    return user + system, user, system, time.perf_counter() - wall


def main(folder: Path, n_blocks: int, first: str) -> None:
    import bench_many_blocks

    bench_many_blocks._TIMED[0] = True
    ours = mtd.from_metatensor(tiny_blocks(n_blocks))
    store, floor = folder / f"ours-{n_blocks}.zarr", folder / f"floor-{n_blocks}"
    sizes = None
    results = {}

    def write() -> None:
        ours.to_zarr(store)

    def run(case: str) -> None:
        nonlocal sizes
        if case == "ours":
            results["ours"] = _clocked(write)
            sizes = _sizes(store)
            shutil.rmtree(store)
        else:
            if sizes is None:  # the floor first: the sizes of a write made unclocked
                write()
                sizes = _sizes(store)
                shutil.rmtree(store)
            results["floor"] = _clocked(lambda: _create_files(floor, sizes))
            shutil.rmtree(floor)

    for case in (first, "floor" if first == "ours" else "ours"):
        run(case)
    load = os.getloadavg()[0]
    for case, (cpu, user, system, wall) in results.items():
        print(f"{n_blocks} {case}: cpu {cpu:.2f} s ({user:.2f} + {system:.2f}), wall {wall:.2f} s")
    ratio = results["ours"][0] / results["floor"][0]
    print(f"{n_blocks} write / floor (cpu): {ratio:.2f}; files {len(sizes)}; load {load:.1f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
