"""Element-wise operations: metatensor-dask against metatensor and plain dask.

Two measurements (disabled in CI, like every benchmark; run with ``--benchmark-enable``):

* store to store: ``open_zarr -> multiply / pow / add -> to_zarr`` on featomic-like
  data (float64 values ``(n, 180)``, a ``positions`` gradient of 36 rows per sample,
  a ``strain`` gradient ``(n, 3, 3, 180)``), against the same op with metatensor on
  the data in memory, and plain ``dask.array`` ``from_zarr -> op -> to_zarr`` on the
  same arrays (the reference of the throughput target);
* 1,000 tiny blocks (values ``(10, 3, 4)``, a gradient ``(30, 3, 3, 4)``):
  ``multiply(t, t)``, graph building + compute, against metatensor;
* the gradient kernels on one chunk of a positions gradient (36 rows of ``3 x 180``
  float64 per sample), each layout: regular (36 rows per sample, in order) and varying
  counts (30 to 42), CPU time (minimum of 20 calls) against plain ``g * g`` on the same
  chunk. ``MTD_BENCH_KERNEL_MIB`` sets the chunk size (default 4; 64 for the figures of
  ``docs/performance-measurements.md``).

Sizes come from environment variables::

    MTD_BENCH_OPS_MIB=2048 MTD_BENCH_OPS_CHUNK=64MiB \\
        .venv/bin/python -m pytest benchmarks/bench_operations_math.py --benchmark-enable -s

``MTD_BENCH_OPS_MIB`` is the tensor size in MiB (default 32), ``MTD_BENCH_OPS_CHUNK``
the chunk size of the store (default 16MiB). ``-s`` prints a summary table.
"""

from __future__ import annotations

import os
import time

import dask
import dask.array as da
import metatensor
import numpy as np
import pytest
import zarr
from bench_support import ELEMENTWISE_OPERATIONS as OPERATIONS
from bench_support import featomic_like, samples_per_block, tiny_blocks

import metatensor_dask as mtd
from metatensor_dask.operations._abs import _abs_gradient
from metatensor_dask.operations._divide import _divide_gradient
from metatensor_dask.operations._multiply import _multiply_gradient
from metatensor_dask.operations._pow import _power_gradient

SIZE_MIB = float(os.environ.get("MTD_BENCH_OPS_MIB", "32"))
CHUNK_SIZE = os.environ.get("MTD_BENCH_OPS_CHUNK", "16MiB")
KERNEL_MIB = float(os.environ.get("MTD_BENCH_KERNEL_MIB", "4"))
N_BLOCKS = 2
_RESULTS: dict[str, float] = {}


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    theirs = featomic_like(samples_per_block(SIZE_MIB, N_BLOCKS), N_BLOCKS)
    root = tmp_path_factory.mktemp("ops")
    with dask.config.set({"metatensor_dask.chunk-size": CHUNK_SIZE}):
        mtd.from_metatensor(theirs).to_zarr(str(root / "input.zarr"))
    return theirs, root


def _timed(label: str, function) -> float:
    start = time.perf_counter()
    function()
    _RESULTS[label] = time.perf_counter() - start
    return _RESULTS[label]


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_store_to_store(benchmark, stores, name):
    theirs, root = stores
    ours, eager, plain = OPERATIONS[name]
    counter = iter(range(10**6))

    def run():
        output = str(root / f"{name}-{next(counter)}.zarr")
        ours(mtd.open_zarr(str(root / "input.zarr"))).to_zarr(output)

    benchmark.pedantic(
        lambda: _timed(f"{name}: metatensor-dask store->store", run), rounds=1, iterations=1
    )
    _timed(f"{name}: metatensor in memory (op only)", lambda: eager(theirs))

    def plain_dask():
        group = zarr.open_group(str(root / "input.zarr"), mode="r")
        arrays = []
        for path in _array_paths(group):
            source = da.from_zarr(group[path])
            target = str(root / f"plain-{name}-{next(counter)}.zarr")
            arrays.append(plain(source).to_zarr(target, compute=False))
        dask.compute(*arrays)

    _timed(f"{name}: plain dask zarr->op->zarr", plain_dask)


def _array_paths(group) -> list[str]:
    """Paths of the values arrays (values and gradients) in a store."""
    paths = []

    def visit(node, prefix):
        for key, child in node.members():
            path = f"{prefix}{key}"
            if isinstance(child, zarr.Array):
                if key == "values":
                    paths.append(path)
            else:
                visit(child, path + "/")

    visit(group, "")
    return paths


def test_tiny_blocks_multiply(benchmark):
    theirs = tiny_blocks(1000)
    ours = mtd.from_metatensor(theirs)
    label = "1000 tiny blocks: metatensor-dask multiply build+compute"
    timings = []

    def run():
        timings.append(_timed(label, lambda: mtd.multiply(ours, ours).compute()))

    benchmark.pedantic(run, rounds=3, iterations=1)
    _RESULTS[label] = min(timings)
    _timed("1000 tiny blocks: metatensor-dask build only", lambda: mtd.multiply(ours, ours))
    eager = [_timed("eager", lambda: metatensor.multiply(theirs, theirs)) for _ in range(3)]
    del _RESULTS["eager"]
    _RESULTS["1000 tiny blocks: metatensor multiply"] = min(eager)


def _kernel_inputs(layout: str) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    n = max(1, int(KERNEL_MIB * 2**20 / (36 * 3 * 180 * 8)))
    a, b = (rng.uniform(0.5, 2.0, size=(n, 180)) for _ in range(2))
    counts = np.full(n, 36) if layout == "regular" else rng.integers(30, 43, n)
    index = np.repeat(np.arange(n), counts)
    g, h = (rng.normal(size=(len(index), 3, 180)) for _ in range(2))
    return a, b, g, h, index


KERNELS = {
    "multiply(t, t)": lambda a, b, g, h, index: _multiply_gradient(a, a, g, g, index),
    "multiply(t, u)": lambda a, b, g, h, index: _multiply_gradient(a, b, g, h, index),
    "pow(t, 2)": lambda a, b, g, h, index: _power_gradient(a, g, index, 2.0),
    "pow(t, 3)": lambda a, b, g, h, index: _power_gradient(a, g, index, 3.0),
    "divide(t, u)": lambda a, b, g, h, index: _divide_gradient(a, b, g, h, index),
    "abs(t)": lambda a, b, g, h, index: _abs_gradient(a, g, index),
}


def _cpu_seconds(function, calls: int = 20) -> float:
    times = []
    for _ in range(calls):
        start = time.process_time()
        function()
        times.append(time.process_time() - start)
    return min(times)


@pytest.mark.parametrize("layout", ["regular", "varying counts"])
@pytest.mark.parametrize("kernel", list(KERNELS))
def test_gradient_kernel(benchmark, kernel, layout):
    arrays = _kernel_inputs(layout)
    benchmark.pedantic(lambda: KERNELS[kernel](*arrays), rounds=3, iterations=1)
    label = f"kernel {kernel}, {layout}, {KERNEL_MIB:g} MiB (CPU)"
    _RESULTS[label] = _cpu_seconds(lambda: KERNELS[kernel](*arrays))
    gradient = arrays[2]
    _RESULTS[f"plain g * g, {KERNEL_MIB:g} MiB (CPU)"] = _cpu_seconds(lambda: gradient * gradient)


def teardown_module():
    print(f"\nelement-wise operations, {SIZE_MIB:g} MiB, chunks {CHUNK_SIZE}")
    for label, seconds in _RESULTS.items():
        print(f"  {label:<60} {seconds:9.4f} s")
