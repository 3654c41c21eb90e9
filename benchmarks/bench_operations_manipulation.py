"""Selection, joining and reductions: metatensor-dask out of core against metatensor.

Operations: ``sum_over_samples(t, "atom")``, ``slice(t, "samples", atom < 5)`` and
``join([t, t], "samples", add_dimension="copy")``, on featomic-like data (float64
values ``(n, 180)``, a ``positions`` gradient of 36 rows per sample with an ``xyz``
component, a ``strain`` gradient ``(n, 3, 3, 180)``; gradients are ~99% of the bytes).

* metatensor: ``load`` the ``.mts`` file, then the operation in memory (timed);
* metatensor-dask: ``open_zarr -> operation -> to_zarr``, store to store (timed).

Each library runs in its own Python process; before each operation the peak resident
memory counter is reset (``/proc/self/clear_refs``), so the reported peak (``VmHWM``)
is that of the operation (for metatensor it includes the loaded tensor, which the
operation needs in memory), and dirty pages are flushed (``os.sync``), so that the
writes of the inputs and of earlier operations do not slow down this one's. Sizes come
from environment variables::

    MTD_BENCH_MANIP_MIB=1024 MTD_BENCH_MANIP_CHUNK=16MiB \\
        .venv/bin/python -m pytest benchmarks/bench_operations_manipulation.py \\
        --benchmark-enable -s

``MTD_BENCH_MANIP_MIB`` is the tensor size in MiB (default 8), ``MTD_BENCH_MANIP_CHUNK``
the store's chunk size (default 16MiB). ``-s`` prints a summary table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import dask
import metatensor
import pytest
from bench_support import ATOMS_PER_SYSTEM, featomic_like, samples_per_block

import metatensor_dask as mtd

SIZE_MIB = float(os.environ.get("MTD_BENCH_MANIP_MIB", "8"))
CHUNK_SIZE = os.environ.get("MTD_BENCH_MANIP_CHUNK", "16MiB")
N_BLOCKS = 4

_RESULTS: dict[str, dict[str, dict[str, float]]] = {}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    n_samples = samples_per_block(SIZE_MIB, N_BLOCKS, minimum=ATOMS_PER_SYSTEM)
    tensor = featomic_like(n_samples, N_BLOCKS)
    root = tmp_path_factory.mktemp("manipulation")
    metatensor.save(str(root / "input.mts"), tensor)
    with dask.config.set({"metatensor_dask.chunk-size": CHUNK_SIZE}):
        mtd.from_metatensor(tensor).to_zarr(str(root / "input.zarr"))
    return root


_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    import numpy as np

    library, root = sys.argv[1], sys.argv[2]

    def peak_mib():
        with open("/proc/self/status") as status:
            return next(int(l.split()[1]) for l in status if l.startswith("VmHWM")) / 1024

    def reset_peak():
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")

    if library == "metatensor":
        import metatensor as m
        tensor = m.load(f"{root}/input.mts")
        run = lambda op: op(tensor)
    else:
        import metatensor_dask as m
        counter = iter(range(100))
        def run(op):
            op(m.open_zarr(f"{root}/input.zarr")).to_zarr(f"{root}/out-{next(counter)}.zarr")
    selection = m.Labels(["atom"], np.arange(5).reshape(-1, 1))
    operations = {
        "sum_over_samples": lambda t: m.sum_over_samples(t, "atom"),
        "slice": lambda t: m.slice(t, "samples", selection),
        "join": lambda t: m.join([t, t], "samples", add_dimension="copy"),
    }
    results = {}
    for name, op in operations.items():
        os.sync()
        reset_peak()
        start = time.perf_counter()
        run(op)
        results[name] = {"seconds": time.perf_counter() - start, "peak_mib": peak_mib()}
    print(json.dumps(results))
    """
)


def _run(library: str, root: Path) -> dict[str, dict[str, float]]:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, library, str(root)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
@pytest.mark.parametrize("library", ["metatensor", "metatensor-dask"])
def test_manipulation(benchmark, inputs, library):
    results = benchmark.pedantic(lambda: _run(library, inputs), rounds=1, iterations=1)
    assert set(results) == {"sum_over_samples", "slice", "join"}
    _RESULTS[library] = results


def teardown_module():
    print(f"\nmanipulation and reductions, {SIZE_MIB:g} MiB, chunks {CHUNK_SIZE}")
    print(f"  {'operation':<20} {'library':<16} {'time (s)':>9} {'peak RSS (MiB)':>15}")
    for library, results in _RESULTS.items():
        for name, figures in results.items():
            print(
                f"  {name:<20} {library:<16} {figures['seconds']:9.3f} {figures['peak_mib']:15.0f}"
            )
