"""Realistic medium maps: every public operation, metatensor-dask against metatensor.

The maps are featomic's: a SOAP power spectrum of small molecules (``positions``
gradients) and a spherical expansion of periodic cells of three species
(``positions`` and ``strain`` gradients), plus
:func:`metatensor_dask.datasets.featomic_like`. metatensor-dask gets each map three
ways: in memory (``from_metatensor``, one chunk per array), from the ``.mts`` file in
chunks of ``MTD_BENCH_CHUNKS``, and from a Zarr store written with those chunks. Every
case builds the lazy result and computes it (threads); metatensor runs the same
operation on its map in memory, interleaved, ``MTD_BENCH_REPEATS`` times.

The table gives medians of CPU time (``time.process_time``: all threads, the machine
may be shared), the ratio metatensor-dask / metatensor, the growth of the resident
memory during the case (MiB, sampled every few milliseconds; memory freed by an
earlier case and reused is not counted) and the tasks of the lazy result. The
``chunked`` and ``zarr`` columns include reading the data (metatensor's map is in
memory): the ``read`` row is that cost alone.

Sizes come from environment variables; the defaults keep the normal test run fast::

    MTD_BENCH_MOLECULES=300 MTD_BENCH_CELLS=30 MTD_BENCH_MAX_RADIAL=4 \\
    MTD_BENCH_FEATOMIC_LIKE=150MiB MTD_BENCH_REPEATS=2 \\
        .venv/bin/python -m pytest benchmarks/bench_medium_maps.py --benchmark-enable -s

(~260 MiB, 120 MiB and 150 MiB maps of 18, 45 and 18 blocks).

With timing off and no sizes given (CI's check that every operation runs and equals
metatensor), the maps have fewer blocks: angular momenta up to 1 (18 blocks of the
spherical expansion, not 45; the power spectrum's keys do not depend on it) and a
featomic-like map of two atomic types (6 blocks, not 18). Every operation then runs on
the same kinds of blocks (with and without components, with ``positions`` and
``strain`` gradients) at a fraction of the tasks.
"""

from __future__ import annotations

import gc
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dask
import metatensor
import numpy as np
import psutil
import pytest

import metatensor_dask as mtd
from metatensor_dask.datasets.featomic_like import featomic_like, systems_for_size
from metatensor_dask.testing import assert_equal_to_metatensor

featomic = pytest.importorskip("featomic")
ase = pytest.importorskip("ase")

MOLECULES = int(os.environ.get("MTD_BENCH_MOLECULES", "3"))
CELLS = int(os.environ.get("MTD_BENCH_CELLS", "1"))
MAX_RADIAL = int(os.environ.get("MTD_BENCH_MAX_RADIAL", "1"))
FEATOMIC_LIKE = os.environ.get("MTD_BENCH_FEATOMIC_LIKE", "128KiB")
CHUNKS = os.environ.get("MTD_BENCH_CHUNKS", "8MiB")
REPEATS = int(os.environ.get("MTD_BENCH_REPEATS", "1"))
SIZES_GIVEN = any(
    name in os.environ
    for name in ("MTD_BENCH_MOLECULES", "MTD_BENCH_CELLS", "MTD_BENCH_FEATOMIC_LIKE")
)
MODES = ["memory", "chunked", "zarr"]

CUTOFF = {"radius": 4.0, "smoothing": {"type": "ShiftedCosine", "width": 0.5}}
DENSITY = {"type": "Gaussian", "width": 0.3}

_ROWS: list[tuple[str, str, dict[str, float]]] = []


def _molecules(rng: np.random.Generator) -> list[Any]:
    """``MOLECULES`` random molecules of 6 to 15 atoms of H, C and O."""
    systems = []
    for _ in range(MOLECULES):
        symbols = rng.choice(["C", "H", "O"], size=int(rng.integers(6, 16)), p=[0.35, 0.45, 0.2])
        positions = rng.uniform(0, 3.5, size=(len(symbols), 3))
        systems.append(ase.Atoms("".join(symbols), positions=positions))
    return systems


def _cells(rng: np.random.Generator) -> list[Any]:
    """``CELLS`` random periodic cubic cells of 16 to 31 atoms of Si, O and Al."""
    systems = []
    for _ in range(CELLS):
        symbols = rng.choice(["Si", "O", "Al"], size=int(rng.integers(16, 32)), p=[0.4, 0.45, 0.15])
        side = rng.uniform(6.5, 8.0)
        positions = rng.uniform(0, side, size=(len(symbols), 3))
        systems.append(ase.Atoms("".join(symbols), positions=positions, cell=[side] * 3, pbc=True))
    return systems


def _descriptors(small: bool) -> dict[str, metatensor.TensorMap]:
    """The three maps; with ``small``, those of fewer blocks (the module's docstring)."""
    rng = np.random.default_rng(0)
    radial = {"type": "Gto", "max_radial": MAX_RADIAL}
    power = featomic.SoapPowerSpectrum(
        cutoff=CUTOFF,
        density=DENSITY,
        basis={"type": "TensorProduct", "max_angular": 1 if small else 3, "radial": radial},
    )
    expansion = featomic.SphericalExpansion(
        cutoff=CUTOFF,
        density=DENSITY,
        basis={"type": "TensorProduct", "max_angular": 1 if small else 4, "radial": radial},
    )
    kwargs: dict[str, Any] = {"atoms_per_system": 16, "neighbors": (8, 16)}
    if small:
        kwargs["types"] = (1, 6)
    systems = systems_for_size(FEATOMIC_LIKE, **kwargs)
    generated = featomic_like(systems, chunks=CHUNKS, **kwargs)  # type: ignore[arg-type]
    return {
        "power spectrum": power.compute(_molecules(rng), gradients=["positions"]),
        "spherical expansion": expansion.compute(_cells(rng), gradients=["positions", "strain"]),
        "featomic_like": mtd.to_metatensor(generated),
    }


def _nbytes(tensor: metatensor.TensorMap) -> int:
    return sum(
        block.values.nbytes + sum(g.values.nbytes for _, g in block.gradients())
        for block in tensor.blocks()
    )


@pytest.fixture(scope="module")
def inputs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, dict[str, Any]]]:
    """For each map: metatensor's and metatensor-dask's in each of :data:`MODES`."""
    config = request.config
    timed = config.getoption("benchmark_enable") or not config.getoption("benchmark_disable")
    folder = tmp_path_factory.mktemp("medium")
    result = {}
    for name, theirs in _descriptors(small=not (timed or SIZES_GIVEN)).items():
        path = folder / f"{name.replace(' ', '-')}.mts"
        metatensor.save(str(path), theirs)
        mtd.to_zarr(mtd.load(path, chunks=CHUNKS), folder / path.with_suffix(".zarr").name)
        buffer = metatensor.io.save_buffer(theirs)
        result[name] = {
            "metatensor": theirs,
            "buffer": buffer,
            "memory": mtd.from_metatensor(metatensor.io.load_buffer(buffer)),
            "chunked": mtd.load(path, chunks=CHUNKS),
            "zarr": mtd.open_zarr(folder / path.with_suffix(".zarr").name),
            "folder": folder,
            "MiB": _nbytes(theirs) / 2**20,
        }
    # what exists now (modules, the maps) is left out of every collection: each case
    # starts with one, which would otherwise take most of the run
    gc.collect()
    gc.freeze()
    yield result
    gc.unfreeze()


def _selection(library: Any, tensor: Any, start: int, stop: int) -> Any:
    return library.Labels(["system"], np.arange(start, stop, dtype=np.int32).reshape(-1, 1))


def _operations(library: Any, tensor: Any, folder: Path) -> dict[str, Callable[[], Any]]:
    """Every public operation on ``tensor``, with ``library`` (``mtd`` or metatensor)."""
    lib = library
    first = tensor.block(0)
    prop = first.properties.names[0]
    systems = int(np.max(first.samples.column("system"))) + 1
    half = _selection(lib, tensor, 0, max(systems // 2, 1))
    rest = _selection(lib, tensor, max(systems // 2, 1), systems)
    plain = lib.remove_gradients(tensor)
    keys = tensor.keys
    kept = lib.Labels(keys.names, np.asarray(keys.values)[: max(len(keys) // 2, 1)])

    def save() -> None:
        lib.save(str(folder / f"out-{time.time_ns()}.mts"), tensor)

    operations = {
        "abs": lambda: lib.abs(tensor),
        "add": lambda: lib.add(tensor, tensor),
        "subtract": lambda: lib.subtract(tensor, tensor),
        "multiply": lambda: lib.multiply(tensor, tensor),
        "multiply scalar": lambda: lib.multiply(tensor, 3.0),
        "divide": lambda: lib.divide(tensor, lib.add(tensor, 1.0)),
        "pow": lambda: lib.pow(tensor, 2),
        "lstsq": lambda: lib.lstsq(plain, plain, rcond=1e-10),
        "equal": lambda: lib.equal(tensor, tensor),
        "allclose": lambda: lib.allclose(tensor, tensor),
        "equal_metadata": lambda: lib.equal_metadata(tensor, tensor),
        "unique_metadata": lambda: lib.unique_metadata(tensor, "samples", ["system"]),
        "sum_over_samples": lambda: lib.sum_over_samples(tensor, "atom"),
        "mean_over_samples": lambda: lib.mean_over_samples(tensor, "atom"),
        "std_over_samples": lambda: lib.std_over_samples(tensor, "atom"),
        "sum_over_properties": lambda: lib.sum_over_properties(tensor, prop),
        "std_over_properties": lambda: lib.std_over_properties(tensor, prop),
        "join samples": lambda: lib.join([tensor, tensor], "samples", add_dimension="t"),
        "join properties": lambda: lib.join([tensor, tensor], "properties", add_dimension="t"),
        "split samples": lambda: lib.split(tensor, "samples", [half, rest]),
        "slice samples": lambda: lib.slice(tensor, "samples", half),
        "sort": lambda: lib.sort(tensor),
        "keys_to_samples": lambda: tensor.keys_to_samples("center_type"),
        "keys_to_properties": lambda: tensor.keys_to_properties(keys.names[-1]),
        "remove_gradients": lambda: lib.remove_gradients(tensor),
        "drop_blocks": lambda: lib.drop_blocks(tensor, kept),
        "insert_dimension": lambda: lib.insert_dimension(tensor, "samples", 0, "new", 0),
        "permute_dimensions": lambda: lib.permute_dimensions(tensor, "samples", [1, 0]),
        "zeros_like": lambda: lib.zeros_like(tensor),
        "save .mts": save,
    }
    if not first.components:
        operations["dot"] = lambda: lib.dot(tensor, plain)
    else:
        name = first.components[0].names[0]
        operations["components_to_properties"] = lambda: tensor.components_to_properties(name)
    return operations


def _compute(result: Any) -> Any:
    if isinstance(result, list):
        return list(dask.compute(*result))
    return dask.compute(result)[0] if dask.is_dask_collection(result) else result


class _PeakMemory:
    """Growth of the resident memory during a ``with`` block, sampled in a thread."""

    def __enter__(self) -> _PeakMemory:
        self._process = psutil.Process()
        self._stop = threading.Event()
        self.start = self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mib(self) -> float:
        return (self.peak - self.start) / 2**20


def _measured(function: Callable[[], Any], timed: bool) -> tuple[Any, dict[str, float]]:
    """``function()`` computed, its CPU time, memory growth and tasks. When ``timed``, a
    full garbage collection first, so that no case pays for the garbage of the one
    before (with timing off it only cost time: 35 ms a case, a sixth of the check)."""
    if timed:
        gc.collect()
    with _PeakMemory() as memory:
        cpu = time.process_time()
        lazy = function()
        tasks = len(lazy.__dask_graph__()) if dask.is_dask_collection(lazy) else 0
        result = _compute(lazy)
        cpu = time.process_time() - cpu
    return result, {"cpu": cpu, "MiB": memory.mib, "tasks": tasks}


SPARSE_GRADIENTS_DIFFER = {"mean_over_samples", "std_over_samples"}
"""metatensor divides these gradients by the gradient rows merged, not by the samples:
wrong for sparse ``positions`` gradients (metatensor-dask is right); values only."""


def _check(ours: Any, theirs: Any, name: str) -> None:
    if isinstance(theirs, list):
        for one, other in zip(ours, theirs, strict=True):
            _check(one, other, name)
    elif isinstance(theirs, metatensor.TensorMap) and name in SPARSE_GRADIENTS_DIFFER:
        plain = mtd.remove_gradients(ours)
        expected = metatensor.remove_gradients(theirs)
        assert_equal_to_metatensor(plain, expected, rtol=1e-8, atol=1e-12)
    elif isinstance(theirs, metatensor.TensorMap):
        # reductions and solvers may add in another order
        assert_equal_to_metatensor(ours, theirs, rtol=1e-8, atol=1e-12)
    elif isinstance(theirs, metatensor.Labels):
        assert np.array_equal(np.asarray(ours.values), np.asarray(theirs.values))
    else:
        assert ours == theirs


def _case(data: dict[str, Any], name: str, check: bool, timed: bool) -> dict[str, float]:
    """metatensor, then each mode of metatensor-dask. Where metatensor fails (its
    property reductions but the sum fail on blocks with components), its time is NaN
    and the results are not compared."""
    # a map of its own: some of metatensor's operations change the arrays of their input
    own = metatensor.io.load_buffer(data["buffer"])
    theirs = _operations(metatensor, own, data["folder"])[name]
    try:
        expected, row = _measured(theirs, timed)
    except ValueError:
        expected, row, check = None, {"cpu": float("nan"), "MiB": 0.0, "tasks": 0}, False
    for mode in MODES:
        ours = _operations(mtd, data[mode], data["folder"])[name]
        computed, measured = _measured(ours, timed)
        if check and name != "save .mts":
            _check(computed, expected, name)
        row.update({f"{mode} {k}": v for k, v in measured.items()})
    return row


def _read(data: dict[str, Any], timed: bool) -> dict[str, float]:
    """Reading the data alone: computing the map of each mode as it is."""
    row = {"cpu": 0.0, "MiB": 0.0, "tasks": 0}
    for mode in MODES:
        _, measured = _measured(lambda mode=mode: data[mode], timed)
        row.update({f"{mode} {k}": v for k, v in measured.items()})
    return row


@pytest.mark.parametrize("dataset", ["power spectrum", "spherical expansion", "featomic_like"])
def test_medium_map(benchmark, inputs, dataset):
    data = inputs[dataset]
    names = list(_operations(metatensor, data["metatensor"], data["folder"]))

    def run() -> None:
        reads = [_read(data, benchmark.enabled) for _ in range(REPEATS)]
        _ROWS.append((dataset, "read", _median(reads)))
        for name in names:
            samples = [
                _case(data, name, repeat == 0, benchmark.enabled) for repeat in range(REPEATS)
            ]
            _ROWS.append((dataset, name, _median(samples)))

    benchmark.pedantic(run, rounds=1, iterations=1)


def _median(samples: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(s[key] for s in samples) for key in samples[0]}


def teardown_module() -> None:
    load = os.getloadavg()
    print(f"\nmedium maps, medians of {REPEATS}; load average {load[0]:.2f}")
    print("CPU s of metatensor, then per mode: CPU s, ratio to metatensor, MiB, tasks")
    header = f"{'map':<20} {'operation':<25} {'mt':>6}"
    for mode in MODES:
        header += f" | {mode:>7} {'ratio':>5} {'MiB':>5} {'tasks':>6}"
    print(header)
    for dataset, name, row in _ROWS:
        line = f"{dataset:<20} {name:<25} {row['cpu']:6.2f}"
        for mode in MODES:
            cpu = row[f"{mode} cpu"]
            ratio = cpu / row["cpu"] if row["cpu"] > 1e-3 else float("nan")
            line += f" | {cpu:7.2f} {ratio:5.1f} {row[f'{mode} MiB']:5.0f}"
            line += f" {int(row[f'{mode} tasks']):6d}"
        print(line)
