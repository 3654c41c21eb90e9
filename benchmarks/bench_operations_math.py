"""Element-wise operations: metatensor-dask against metatensor and plain dask.

Two measurements (disabled in CI, like every benchmark; run with ``--benchmark-enable``):

* store to store: ``open_zarr -> multiply / pow / add -> to_zarr`` on featomic-like
  data (float64 values ``(n, 180)``, a ``positions`` gradient of 36 rows per sample,
  a ``strain`` gradient ``(n, 3, 3, 180)``), against the same op with metatensor on
  the data in memory, and plain ``dask.array`` ``from_zarr -> op -> to_zarr`` on the
  same arrays (what DESIGN §7 compares throughput with);
* 1,000 tiny blocks (values ``(10, 3, 4)``, a gradient ``(30, 3, 3, 4)``):
  ``multiply(t, t)``, graph building + compute, against metatensor.

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
import pytest
import zarr
from bench_support import ELEMENTWISE_OPERATIONS as OPERATIONS
from bench_support import featomic_like, samples_per_block, tiny_blocks

import metatensor_dask as mtd

SIZE_MIB = float(os.environ.get("MTD_BENCH_OPS_MIB", "32"))
CHUNK_SIZE = os.environ.get("MTD_BENCH_OPS_CHUNK", "16MiB")
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


def teardown_module():
    print(f"\nelement-wise operations, {SIZE_MIB:g} MiB, chunks {CHUNK_SIZE}")
    for label, seconds in _RESULTS.items():
        print(f"  {label:<60} {seconds:8.3f} s")
