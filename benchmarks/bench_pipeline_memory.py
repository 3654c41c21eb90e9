"""A pipeline from store to store as data grow, on a LocalCluster with limited workers.

For each size, a featomic-like store is generated (values, positions and strain
gradients), then ``metatensor-dask run`` computes ``sum_over_samples(x**2 * x, "atom")``
with gradients in its own process, on a ``LocalCluster`` of ``MTD_BENCH_PIPELINE_WORKERS``
workers limited to ``MTD_BENCH_PIPELINE_MEMORY`` each. A thread samples the resident
memory of that process and all its children (the workers) every 50 ms: the peak of the
sum is reported with the wall time, and the result is checked against numpy.

Sizes come from environment variables so that CI runs this quickly::

    MTD_BENCH_PIPELINE_SIZES=256MiB,1GiB,4GiB MTD_BENCH_PIPELINE_MEMORY=1GiB \\
        .venv/bin/python -m pytest benchmarks/bench_pipeline_memory.py --benchmark-enable -s

Defaults: 48 and 96 MiB (one and two systems of 48 atoms), 2 workers of 1 GiB (above
the data: the small default only keeps the benchmark working). With timing off (CI's
run, a check that it works), one smaller case instead, :data:`CHECK`: two systems of 8
atoms (4.5 MiB) in chunks of 1 MiB, so that the same command still runs on a cluster
over several chunks and several systems per block, at a tenth of the bytes to generate,
write, compute and check. ``-s`` shows the table
(copied to ``docs/cli.md``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import dask
import psutil
import pytest
from bench_support import tree_rss
from dask.utils import format_bytes, parse_bytes

import metatensor_dask as mtd
from metatensor_dask.datasets import featomic_like, systems_for_size
from metatensor_dask.execution.demo import PIPELINE, check_against_numpy

# measures memory or the page cache: one such test at a time
pytestmark = pytest.mark.xdist_group("serial")

SIZES = os.environ.get("MTD_BENCH_PIPELINE_SIZES", "48MiB,96MiB").split(",")
MEMORY = os.environ.get("MTD_BENCH_PIPELINE_MEMORY", "1GiB")
WORKERS = os.environ.get("MTD_BENCH_PIPELINE_WORKERS", "2")
CHUNK_SIZE = os.environ.get("MTD_BENCH_PIPELINE_CHUNK", "16MiB")
ROWS: list[str] = []
CHECK = "check"
"""The case of a run with timing off: a store of :func:`_dataset` ``(2, 8, "1MiB")``."""


def _run_measured(command: list[str]) -> tuple[float, int]:
    """Run ``command``; its wall time and the peak summed RSS of it and its children."""
    start = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    watched = psutil.Process(process.pid)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                peak = max(peak, tree_rss(watched))
            except psutil.NoSuchProcess:
                return
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = process.communicate()
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    assert process.returncode == 0, err
    return elapsed, peak


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    yield tmp_path_factory.mktemp("pipeline-memory")
    if ROWS:
        print(f"\nLocalCluster: {WORKERS} workers x {MEMORY}; chunks {CHUNK_SIZE}")
        print("| data | stored | wall time | peak RSS (all processes) |")
        print("|---|---|---|---|")
        print("\n".join(ROWS))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every size of :data:`SIZES` with timing on; :data:`CHECK` alone with timing off."""
    config = metafunc.config
    timed = config.getoption("benchmark_enable") or not config.getoption("benchmark_disable")
    if "size" in metafunc.fixturenames:
        metafunc.parametrize("size", SIZES if timed else [CHECK])


def _dataset(size: str) -> tuple[int, int, str]:
    """Systems, atoms per system and chunk size of the store of the case ``size``."""
    if size == CHECK:
        return 2, 8, "1MiB"
    return systems_for_size(size), 48, CHUNK_SIZE


def test_pipeline_memory(benchmark, workdir, size):
    source = workdir / f"x-{size}.zarr"
    systems, atoms, chunk_size = _dataset(size)
    with dask.config.set({"metatensor_dask.chunk-size": chunk_size}):
        tensor = featomic_like(systems, atoms)
        nbytes = sum(int(a.nbytes) for a in tensor._arrays())
        tensor.to_zarr(str(source))
    output = workdir / f"out-{size}.zarr"
    pipeline = workdir / f"pipeline-{size}.yaml"
    pipeline.write_text(PIPELINE.format(input=source.name, output=output.name, name=pipeline.name))
    command = [
        sys.executable,
        "-m",
        "metatensor_dask",
        "run",
        str(pipeline),
        "--quiet",
        "--cluster",
        "local",
        "--workers",
        WORKERS,
        "--memory-limit",
        MEMORY,
    ]

    def run() -> tuple[float, int]:
        if output.exists():
            import shutil

            shutil.rmtree(output)
        return _run_measured(command)

    elapsed, peak = benchmark.pedantic(run, rounds=1, iterations=1)
    check_against_numpy(
        mtd.open_zarr(str(source)), mtd.open_zarr(str(output)), max_blocks=2, max_rows=2
    )
    benchmark.extra_info.update({"data_bytes": nbytes, "wall_s": elapsed, "peak_rss_bytes": peak})
    stored = sum(f.stat().st_size for f in source.rglob("*") if f.is_file())
    ROWS.append(
        f"| {format_bytes(nbytes)} | {format_bytes(stored)} | {elapsed:.1f} s "
        f"| {format_bytes(peak)} |"
    )
    assert peak > parse_bytes("10MiB")  # the sampler saw the processes
