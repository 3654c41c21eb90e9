"""Maps of many tiny blocks: metatensor-dask against metatensor, side by side.

Every block is tiny (values ``(10, 3, 4)``, one ``positions`` gradient
``(30, 3, 3, 4)``, see :func:`bench_support.tiny_blocks`), so what is measured is the
cost per block of metadata, graphs and scheduling, not arithmetic. For each number of
blocks, each case runs metatensor-dask (building the lazy result, then computing it)
and metatensor (eager) in turn, ``MTD_BENCH_REPEATS`` times interleaved; the table
gives medians of CPU time (``time.process_time``, all threads: the machine may be
shared) and of wall time, and the ratio metatensor-dask / metatensor of CPU times; for
the operations, also the medians of metatensor-dask's user and system time
(``os.times``), each close to its share of the CPU time: system time is mostly the
first touch of memory new to the process (large results), counted by the memory of its
minor page faults (``resource.getrusage``, in MiB: faults times the page size). Before
each case the memory freed by what ran before is given back to the system
(:func:`_collect`), so that every case pays for the first touch of its own results: a
case run after others that freed as much memory would reuse their pages for free, and
`keys_to_samples` at 10,000 blocks after other operations did (its growth to 100,000
blocks: 11.2 times with that discount, 10.1 without, in two runs one after the other).

Files: ``.mts`` load (metatensor-dask: lazy, labels read), save, and load then save
(a file copied: metatensor's eager load and save against ours, values read by groups of
blocks as they are written); Zarr write, against
the *floor* (plain Python creating the same files with the same sizes), and Zarr open
(labels read), against metatensor's load of the same data from ``.mts``. Then two
appends of ``APPENDED`` tiny blocks of new keys to that store (the first in the process
to read its root, then one more), each against a write of the same blocks to a new
store (the metatensor column): what an append costs beyond writing its blocks is what
it does in proportion to the blocks stored (their metadata). Every repeat
of the file cases writes into a new folder, and nothing is deleted until the module is
done; ours and the floor take turns to go first (see :func:`_zarr_write`).

Sizes come from environment variables; the default (50 blocks) keeps the normal test
run fast::

    MTD_BENCH_BLOCKS=1000,10000 MTD_BENCH_REPEATS=3 \\
        .venv/bin/python -m pytest benchmarks/bench_many_blocks.py --benchmark-enable -s

Above ``MTD_BENCH_METATENSOR_UP_TO`` blocks (default 10,000), metatensor's side is left
out (its operations and loads take minutes at 100,000 blocks, and a second map of them
gigabytes): metatensor-dask alone is measured, its results are not compared (the file
cases load the file metatensor-dask saved, and check the keys), and the table shows "—"
for metatensor (the Zarr write still shows its floor). The map of metatensor-dask is
then built from metatensor's, which is dropped once converted. The ``per block`` column
is the CPU time of metatensor-dask divided by the blocks, in microseconds: flat when the
cost is linear.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dask
import metatensor
import numpy as np
import pytest
from bench_support import tiny_blocks

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

BLOCKS = [int(n) for n in os.environ.get("MTD_BENCH_BLOCKS", "50").split(",")]
REPEATS = int(os.environ.get("MTD_BENCH_REPEATS", "1"))
METATENSOR_UP_TO = int(os.environ.get("MTD_BENCH_METATENSOR_UP_TO", "10000"))
"""Largest number of blocks for which metatensor's side runs."""

OPERATIONS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "multiply": (lambda t: mtd.multiply(t, t), lambda t: metatensor.multiply(t, t)),
    "add": (lambda t: mtd.add(t, t), lambda t: metatensor.add(t, t)),
    "sum_over_samples": (
        lambda t: mtd.sum_over_samples(t, "atom"),
        lambda t: metatensor.sum_over_samples(t, "atom"),
    ),
    "sum_over_properties": (
        lambda t: mtd.sum_over_properties(t, "p"),
        lambda t: metatensor.sum_over_properties(t, "p"),
    ),
    "slice samples": (
        lambda t: mtd.slice(t, "samples", mtd.Labels(["system"], np.array([[0]]))),
        lambda t: metatensor.slice(t, "samples", metatensor.Labels(["system"], np.array([[0]]))),
    ),
    "join samples": (
        lambda t: mtd.join([t, t], "samples", add_dimension="tensor"),
        lambda t: metatensor.join([t, t], "samples", add_dimension="tensor"),
    ),
    "keys_to_samples": (lambda t: t.keys_to_samples("k"), lambda t: t.keys_to_samples("k")),
    "keys_to_properties": (
        lambda t: t.keys_to_properties("k"),
        lambda t: t.keys_to_properties("k"),
    ),
    "equal": (lambda t: mtd.equal(t, t), lambda t: metatensor.equal(t, t)),
    "allclose": (lambda t: mtd.allclose(t, t), lambda t: metatensor.allclose(t, t)),
}
"""Each operation as ``(metatensor-dask, metatensor)``."""

FILES = [
    "save .mts",
    "load .mts",
    "load then save .mts",
    "Zarr write",
    "Zarr open",
    "Zarr append",
    "Zarr append again",
]
APPENDED = min(500, max(BLOCKS))
"""Tiny blocks of new keys in each of the Zarr appends: 500 (a realistic batch of new
keys) once the maps have that many blocks, else as many as the largest map (the small
default run, which CI runs with timing off, stays quick)."""

_ROWS: list[tuple[str, int, dict[str, float]]] = []


_TIMED = [True]
"""Whether this run times the cases (set for the module by :func:`_timing`)."""


@pytest.fixture(scope="module", autouse=True)
def _timing(request: pytest.FixtureRequest) -> Iterator[None]:
    """:data:`_TIMED` as pytest-benchmark's timing: off (CI's check that every case runs
    and is right), :func:`_collect` is left out, its cost not a check (80 ms a case in
    a test process's heap, a third of the check)."""
    config = request.config
    _TIMED[0] = config.getoption("benchmark_enable") or not config.getoption("benchmark_disable")
    yield
    _TIMED[0] = True


def _collect() -> None:
    """A full garbage collection, then the memory that the C library holds freed given
    back to the system (glibc's ``malloc_trim``, where there is one); nothing when the
    run is not timed (:data:`_TIMED`)."""
    if not _TIMED[0]:
        return
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


_LIBC = None
if ctypes.util.find_library("c"):
    _LIBC = ctypes.CDLL(ctypes.util.find_library("c"))
    if not hasattr(_LIBC, "malloc_trim"):  # (not glibc)
        _LIBC = None


def _clock(function: Callable[[], Any], collect: bool = True) -> tuple[Any, float, float]:
    """``function()``, its CPU time and its wall time. Unless ``collect`` is false, a
    full garbage collection runs first, unclocked, and the memory freed is given back
    (:func:`_collect`): the collector's debt and the freed pages left by what ran
    before (building the maps, the previous case, metatensor's garbage) are neither
    charged nor lent to the next case (the debt a case leaves is charged to none)."""
    result, cpu, wall, _ = _clock_split(function, collect)
    return result, cpu, wall


def _clock_split(
    function: Callable[[], Any], collect: bool = True
) -> tuple[Any, float, float, tuple[float, float, float]]:
    """:func:`_clock`, with the CPU time split in user and system time (``os.times``,
    all threads of the process), and the MiB of minor page faults (memory touched for
    the first time)."""
    if collect:
        _collect()
    before, faults = os.times(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    cpu, wall = time.process_time(), time.perf_counter()
    result = function()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    after = os.times()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    touched = faults * resource.getpagesize() / 2**20
    return result, cpu, wall, (after.user - before.user, after.system - before.system, touched)


def _compute(result: Any) -> Any:
    return dask.compute(result)[0] if dask.is_dask_collection(result) else result


def _median(samples: list[dict[str, float]]) -> dict[str, float]:
    return {name: statistics.median(s[name] for s in samples) for name in samples[0]}


@pytest.fixture(scope="module")
def maps() -> dict[int, tuple[metatensor.TensorMap | None, mtd.TensorMap]]:
    """For each number of blocks, the map with metatensor (None above
    ``METATENSOR_UP_TO`` blocks) and with metatensor-dask."""
    result: dict[int, tuple[metatensor.TensorMap | None, mtd.TensorMap]] = {}
    for n in BLOCKS:
        theirs = tiny_blocks(n)
        ours = mtd.from_metatensor(theirs)
        result[n] = (theirs if n <= METATENSOR_UP_TO else None, ours)
        del theirs
    return result


def _timed(lazy: Callable[[Any], Any], ours: Any) -> dict[str, float]:
    """CPU and wall times of building and computing ``lazy(ours)`` (the result is not
    kept: it is not held while metatensor runs)."""
    built, build_cpu, build_wall, build_split = _clock_split(lambda: lazy(ours))
    # the build's debt counts
    _, cpu, wall, split = _clock_split(lambda: _compute(built), collect=False)
    return {
        "build": build_cpu,
        "cpu": build_cpu + cpu,
        "wall": build_wall + wall,
        "user": build_split[0] + split[0],
        "system": build_split[1] + split[1],
        "faults": build_split[2] + split[2],
    }


def _operation(name: str, theirs: Any, ours: Any, check: bool) -> dict[str, float]:
    lazy, eager = OPERATIONS[name]
    row = _timed(lazy, ours)
    if theirs is None:
        return row
    expected, their_cpu, their_wall = _clock(lambda: eager(theirs))
    if check:
        computed = _compute(lazy(ours))
        if isinstance(expected, metatensor.TensorMap):
            # reductions may add in another order
            assert_equal_to_metatensor(computed, expected, rtol=1e-12)
        else:
            assert computed == expected
    return {**row, "their cpu": their_cpu, "their wall": their_wall}


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_operation(benchmark, maps, name):
    def run() -> None:
        for n, (theirs, ours) in maps.items():
            samples = [_operation(name, theirs, ours, i == 0) for i in range(REPEATS)]
            _ROWS.append((name, n, _median(samples)))

    benchmark.pedantic(run, rounds=1, iterations=1)


def _sizes(root: Path) -> list[tuple[str, int]]:
    """Every file under ``root``, as ``(relative path, size)``."""
    return [
        (str(path.relative_to(root)), path.stat().st_size)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    ]


def _create_files(root: Path, sizes: list[tuple[str, int]]) -> None:
    """The floor of a Zarr write: the same files with the same sizes, plain Python."""
    for relative, size in sizes:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes(size))


def _zarr_write(
    ours: Any, root: Path, repeat: int, sizes: list[tuple[str, int]] | None
) -> tuple[tuple[float, float, float, float], list[tuple[str, int]]]:
    """CPU and wall times of ``to_zarr`` and of its floor, each into a new folder.

    Both are measured on the same file system state: nothing is deleted between
    repeats (ext4 without a journal skips the inodes deleted in the last minute or so
    when it allocates new ones, which slows whichever write comes first after a
    deletion), and ours and the floor take turns to go first. The floor of repeat 0
    copies the sizes of the store just written; later repeats reuse them.
    """

    def write() -> None:
        ours.to_zarr(root / f"ours-{repeat}.zarr")

    def floor() -> None:
        assert sizes is not None
        _create_files(root / f"floor-{repeat}", sizes)

    if repeat % 2 == 1 and sizes is not None:
        _, floor_cpu, floor_wall = _clock(floor)
        _, cpu, wall = _clock(write)
    else:
        _, cpu, wall = _clock(write)
        if sizes is None:
            sizes = _sizes(root / f"ours-{repeat}.zarr")
        _, floor_cpu, floor_wall = _clock(floor)
    return (cpu, wall, floor_cpu, floor_wall), sizes


def _paired(
    ours: Callable[[], Any], theirs: Callable[[], Any] | None
) -> tuple[Any, tuple[float, ...]]:
    """The result of ``ours()``, with its CPU and wall times, then those of ``theirs()``
    when there is one."""
    result, cpu, wall = _clock(ours)
    if theirs is None:
        return result, (cpu, wall)
    _, their_cpu, their_wall = _clock(theirs)
    return result, (cpu, wall, their_cpu, their_wall)


def _check_read(read: Any, theirs: Any, ours: Any) -> None:
    """A map read back equals metatensor's, or without it, has the keys of ours."""
    if theirs is not None:
        assert_equal_to_metatensor(read, theirs)
    else:
        assert read.keys == ours.keys


def _files(
    theirs: Any, ours: Any, root: Path, repeat: int, sizes: list[tuple[str, int]] | None
) -> tuple[dict[str, dict[str, float]], list[tuple[str, int]]]:
    """One repeat of every file case, in the new folder ``root``; without metatensor's
    map (``theirs`` is ``None``), metatensor-dask alone, on the file it saved."""
    check = repeat == 0
    root.mkdir(parents=True)
    with_theirs = theirs is not None
    source = root / ("theirs.mts" if with_theirs else "ours.mts")
    rows: dict[str, tuple[float, ...]] = {}
    _, rows["save .mts"] = _paired(
        lambda: mtd.save(root / "ours.mts", ours),
        (lambda: metatensor.save(source, theirs)) if with_theirs else None,
    )
    if check:
        assert (root / "ours.mts").read_bytes() == source.read_bytes()

    loaded, rows["load .mts"] = _paired(
        lambda: mtd.load(source), (lambda: metatensor.load(source)) if with_theirs else None
    )
    if check:
        _check_read(loaded, theirs, ours)

    # a file copied through each library: metatensor-dask reads the values by groups
    # of tiny blocks as it writes them
    _, rows["load then save .mts"] = _paired(
        lambda: mtd.save(root / "again.mts", mtd.load(source)),
        (lambda: metatensor.save(root / "theirs-again.mts", metatensor.load(source)))
        if with_theirs
        else None,
    )
    if check:
        assert (root / "again.mts").read_bytes() == source.read_bytes()

    rows["Zarr write"], sizes = _zarr_write(ours, root, repeat, sizes)

    store = root / f"ours-{repeat}.zarr"
    opened, rows["Zarr open"] = _paired(
        lambda: mtd.open_zarr(store), (lambda: metatensor.load(source)) if with_theirs else None
    )
    if check:
        _check_read(opened, theirs, ours)
    for case, offset in (("Zarr append", 0), ("Zarr append again", 1)):
        batch = _new_keys(offset)
        _, rows[case] = _paired(
            lambda batch=batch: batch.to_zarr(store, append_dim="samples"),
            lambda batch=batch, offset=offset: batch.to_zarr(root / f"alone-{offset}.zarr"),
        )
    if check:
        assert len(mtd.open_zarr(store).keys) == len(ours.keys) + 2 * APPENDED
    names = ("cpu", "wall", "their cpu", "their wall")
    return {case: dict(zip(names, row, strict=False)) for case, row in rows.items()}, sizes


def _new_keys(offset: int) -> mtd.TensorMap:
    """``APPENDED`` tiny blocks whose keys no map of :func:`tiny_blocks` has (``k``
    from a million on), different for each ``offset``."""
    blocks = tiny_blocks(APPENDED, seed=1 + offset)
    k = 10**6 + APPENDED * offset + np.arange(APPENDED)
    keys = metatensor.Labels(["a", "k"], np.stack([k % 10, k], axis=1))
    return mtd.from_metatensor(metatensor.TensorMap(keys, [b.copy() for b in blocks]))


@pytest.fixture(scope="module")
def files_folder() -> Iterator[Path]:
    """A folder for the file cases, removed once the module is done: nothing is
    deleted while they run (see :func:`_zarr_write`)."""
    folder = Path(tempfile.mkdtemp(prefix="mtd-bench-files-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_files(benchmark, maps, files_folder):
    def run() -> None:
        for n, (theirs, ours) in maps.items():
            samples, sizes = [], None
            for i in range(REPEATS):
                sample, sizes = _files(theirs, ours, files_folder / f"{n}-{i}", i, sizes)
                samples.append(sample)
            for case in FILES:
                _ROWS.append((case, n, _median([s[case] for s in samples])))

    benchmark.pedantic(run, rounds=1, iterations=1)


def teardown_module() -> None:
    load = os.getloadavg()
    print(f"\nmany tiny blocks, medians of {REPEATS}; load average {load[0]:.2f}")
    print("metatensor column: eager metatensor; for Zarr write, the file-creation floor")
    print("mtd user / mtd sys: the user and system parts of mtd cpu (operations only)")
    print("mtd faults: MiB of minor page faults of mtd (operations only)")
    header = f"{'case':<20} {'blocks':>7} {'mtd cpu':>9} {'(build)':>9} {'per block':>9}"
    header += f" {'mtd wall':>9} {'mt cpu':>9} {'mt wall':>9} {'cpu ratio':>9}"
    print(header + f" {'mtd user':>9} {'mtd sys':>9} {'mtd faults':>10}")
    for name, n, row in _ROWS:
        build = f"{row['build']:9.3f}" if "build" in row else f"{'':>9}"
        per_block = f"{row['cpu'] / n * 1e6:7.1f}us"
        if "their cpu" in row:
            ratio = f"{row['cpu'] / max(row['their cpu'], 1e-9):9.2f}"
            theirs = f"{row['their cpu']:9.3f} {row['their wall']:9.3f} {ratio}"
        else:
            theirs = f"{'—':>9} {'—':>9} {'—':>9}"
        ours = f"{row['cpu']:9.3f} {build} {per_block} {row['wall']:9.3f}"
        split = (
            f" {row['user']:9.3f} {row['system']:9.3f} {row['faults']:8.1f}Mi"
            if "user" in row
            else ""
        )
        print(f"{name:<20} {n:>7} {ours} {theirs}{split}")
