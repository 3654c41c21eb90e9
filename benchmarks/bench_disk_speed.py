"""Reading a store from disk: the library next to a raw read of the same files.

A featomic-like store (:func:`metatensor_dask.datasets.featomic_like`, ~99% gradients)
of ``MTD_BENCH_DISK_GIB`` GiB is written once; then, in one run, with the page cache
dropped before each step (``sync; echo 3 > /proc/sys/vm/drop_caches``):

a. **raw read**: one thread reads every file of the store in order, 16 MiB ``readinto``
   calls into one buffer (the floor: the disk, nothing else);
b. **read every array**: the sum of every values and gradient array, in one
   ``dask.compute`` on the threaded scheduler (checksums verified, as on every read);
c. **pipeline**: the demo pipeline (:data:`metatensor_dask.execution.demo.PIPELINE`,
   ``sum_over_samples(pow(x, 2) * x, "atom")`` with gradients) from store to store, on
   threads and on a ``LocalCluster`` of ``MTD_BENCH_DISK_WORKERS`` workers (default 2)
   limited to ``MTD_BENCH_DISK_MEMORY`` each (default 2 GiB), as ``metatensor-dask run``
   computes it (on the cluster by windows of tasks, the ``metatensor_dask.window-tasks``
   setting);
   ``MTD_BENCH_DISK_SKIP`` (e.g. ``read,threads``) leaves steps out;
d. the peak resident memory of this process and its children (the workers), sampled
   every 50 ms during each step, and their CPU time.

Run it with::

    MTD_BENCH_DISK_GIB=4 .venv/bin/python -m pytest benchmarks/bench_disk_speed.py \\
        --benchmark-enable -s

``-s`` shows the table of times and their ratios to the raw read (copied to
``docs/performance.md`` and ``docs/performance-measurements.md``). Dropping the page
cache needs root: where it cannot be done, the timed run is skipped with a message.
In the normal test run (timing disabled) a tiny store (:func:`write_check_store`: two
systems of 8 atoms, 4.5 MiB in chunks of 1 MiB, several chunks per array) is read
warm, without dropping the machine's page cache, which only checks that every step
works and gives the right result.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import math
import os
import shutil
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager, nullcontext
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import dask
import numpy as np
import psutil
import pytest
import zarr
from bench_support import tree_rss
from dask.utils import format_bytes
from distributed import default_client

import metatensor_dask as mtd
from metatensor_dask.datasets import featomic_like, systems_for_size
from metatensor_dask.execution.cluster import execution
from metatensor_dask.execution.demo import PIPELINE, check_against_numpy
from metatensor_dask.execution.pipeline import Pipeline
from metatensor_dask.execution.progress import compute

pytestmark = [
    # the demo pipeline's graph grows with the store (about 1.3 MB per GiB, the sum over
    # samples' row targets): distributed warns from 10 MB on, which is not a failure here
    pytest.mark.filterwarnings("ignore:Sending large graph:UserWarning"),
    # a LocalCluster, and disk speeds measured: one such test at a time
    pytest.mark.xdist_group("serial"),
]

GIB = float(os.environ.get("MTD_BENCH_DISK_GIB", "0.03"))
WORKERS = int(os.environ.get("MTD_BENCH_DISK_WORKERS", "2"))
MEMORY = os.environ.get("MTD_BENCH_DISK_MEMORY", "2GiB")
SKIP = {name for name in os.environ.get("MTD_BENCH_DISK_SKIP", "").split(",") if name}
"""Steps left out (``read``: b, ``threads`` and ``local``: c), for stores too large to
time every step in one sitting."""
if SKIP - {"read", "threads", "local"}:
    raise ValueError(f"MTD_BENCH_DISK_SKIP: unknown steps {sorted(SKIP)}; use read, threads, local")
READ_SIZE = 16 * 2**20
CHECKED_ARRAYS = 6
"""Arrays whose sums are checked against zarr-python (the first ones: all of a block)."""


def drop_page_cache() -> None:
    """Write dirty pages, then drop the page cache (root only).

    Raises
    ------
    PermissionError
        When this process may not drop the page cache.
    """
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as file:
        file.write("3\n")


def raw_read(path: Path) -> int:
    """Read every file under ``path``, in order, with 16 MiB calls; the bytes read."""
    view = memoryview(bytearray(READ_SIZE))
    total = 0
    for root, folders, files in os.walk(path):
        folders.sort()
        for name in sorted(files):
            with open(os.path.join(root, name), "rb", buffering=0) as file:
                while count := file.readinto(view):
                    total += count
    return total


def _arrays(block: Any) -> list[Any]:
    """The values of ``block`` and of its gradients (nested ones too)."""
    return [block.values, *(a for _, gradient in block.gradients() for a in _arrays(gradient))]


def _paths(block: Any, prefix: str) -> list[str]:
    """The store paths of the arrays of :func:`_arrays`, in the same order."""
    found = [prefix + "values"]
    for name, gradient in block.gradients():
        found.extend(_paths(gradient, f"{prefix}gradients/{name}/"))
    return found


def sum_every_array(path: Path) -> list[float]:
    """The sum of every values and gradient array of the store, in one compute."""
    tensor = mtd.open_zarr(str(path))
    arrays = [a for block in tensor.blocks() for a in _arrays(block)]
    return [float(s) for s in dask.compute(*[a.sum() for a in arrays])]


def run_pipeline(source: Path, output: Path, client: Any = None) -> None:
    """The demo pipeline from ``source`` to ``output``, as the command line runs it: on
    the threaded scheduler, or on ``client``'s cluster by windows of tasks."""
    if output.exists():
        shutil.rmtree(output)
    text = PIPELINE.format(input=source.name, output=output.name, name="bench")
    pipeline = Pipeline.from_text(text, base=str(source.parent))
    compute(pipeline.write(pipeline.build()), client=client, quiet=True)


def _rss(processes: list[psutil.Process]) -> int:
    """The summed resident memory of ``processes`` (those that have exited count 0)."""
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


@contextmanager
def peak_rss() -> Any:
    """Sample the summed RSS of this process and its children every 50 ms; yields a
    dict whose ``"peak"`` is the largest sum seen and ``"own"`` the largest RSS of this
    process alone (the client, and a ``LocalCluster``'s scheduler), filled in on exit."""
    me, found = psutil.Process(), {"peak": 0, "own": 0}
    done = threading.Event()

    def sample() -> None:
        # finding the children scans every process of the machine: once a second only
        # (each scan cost as much CPU as a worker's reads, every 50 ms)
        processes: list[psutil.Process] = []
        found_at = -math.inf
        while not done.is_set():
            if time.monotonic() - found_at > 1.0:
                processes, found_at = [me, *me.children(recursive=True)], time.monotonic()
            found["peak"] = max(found["peak"], _rss(processes))
            found["own"] = max(found["own"], _rss([me]))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield found
    finally:
        done.set()
        sampler.join()
        found["peak"] = max(found["peak"], tree_rss(me))
        found["own"] = max(found["own"], _rss([me]))


@contextmanager
def local_cluster() -> Any:
    """A LocalCluster of ``WORKERS`` workers limited to ``MEMORY``, active, whose workers
    have imported the library (a fixed cost of a few seconds, not reading)."""
    with execution("local", workers=WORKERS, memory_limit=MEMORY) as where:
        where.client.run(import_everything)
        yield where


def import_everything() -> None:
    """Import every public name of the package and its Zarr reader (the package
    imports its modules on first use; here, before the clock starts)."""
    package = importlib.import_module("metatensor_dask")
    for name in package.__all__:
        getattr(package, name)
    importlib.import_module("metatensor_dask.io.zarr_read")


Step = tuple[Callable[[], AbstractContextManager[Any]], Callable[[], Any]]
"""A context to run a step in (set up before the clock starts) and the step itself."""


def cpu_time() -> float:
    """CPU time (user and system) of this process and of its children so far, in s."""
    total = 0.0
    for process in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def measure(steps: dict[str, Step], cold: bool) -> dict[str, tuple[float, int, float, int]]:
    """Wall time, peak RSS and CPU time (this process and the workers), and peak RSS of
    this process alone, of each step, run in order, the page cache dropped just before
    each when ``cold``."""
    results = {}
    for name, (context, step) in steps.items():
        with context():
            if cold:
                drop_page_cache()
            with peak_rss() as rss:
                cpu = cpu_time()
                start = time.perf_counter()
                step()
                elapsed = time.perf_counter() - start
                cpu = cpu_time() - cpu
        results[name] = (elapsed, rss["peak"], cpu, rss["own"])
    return results


def check_output(source: Path, output: Path) -> None:
    """Check the demo pipeline's ``output`` against numpy on a sample, then remove it."""
    check_against_numpy(
        mtd.open_zarr(str(source)), mtd.open_zarr(str(output)), max_blocks=2, max_rows=2
    )
    shutil.rmtree(output)


@contextmanager
def checked_first(
    source: Path, output: Path, context: Callable[[], AbstractContextManager[Any]]
) -> Any:
    """``context``, entered once the previous step's ``output`` (of ``source``) has been
    checked and removed: the disk holds one output at a time, next to a store of 2x RAM."""
    check_output(source, output)
    with context() as entered:
        yield entered


def write_store(path: Path) -> None:
    """Write the featomic-like store of ``GIB`` GiB at ``path``."""
    featomic_like(systems_for_size(f"{GIB}GiB")).to_zarr(str(path))


def write_check_store(path: Path) -> None:
    """Write the featomic-like store of a run with timing off at ``path``: two systems of
    8 atoms in chunks of 1 MiB (the smallest default store, ``GIB``, is one system of 48
    atoms, 46 MiB: ten times the bytes for the same steps)."""
    featomic_like(2, 8, chunks="1MiB").to_zarr(str(path))


@pytest.fixture(scope="module")
def store(request, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("disk-speed")
    path = workdir / "x.zarr"
    config = request.config
    if config.getoption("benchmark_enable") or not config.getoption("benchmark_disable"):
        # in a process of its own: the memory that writing it leaves in this process's
        # heap would count in the peak of every step
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            pool.submit(write_store, path).result()
    else:
        # timing off (CI's check that every step works): no peak to keep clean, and a
        # new interpreter importing the library took seconds
        given = "MTD_BENCH_DISK_GIB" in os.environ
        (write_store if given else write_check_store)(path)
    yield path
    shutil.rmtree(workdir)


def test_disk_speed(benchmark, store):
    cold = benchmark.enabled
    if cold:
        try:
            drop_page_cache()
        except OSError as error:
            pytest.skip(
                f"the page cache can not be dropped here ({error}): run as root to time "
                "reads from disk"
            )
    stored = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
    outputs = {kind: store.parent / f"out-{kind}.zarr" for kind in ("threads", "local")}
    found: dict[str, Any] = {}
    local_context = (
        local_cluster
        if "threads" in SKIP
        else lambda: checked_first(store, outputs["threads"], local_cluster)
    )
    steps: dict[str, Step] = {
        "raw read": (nullcontext, lambda: found.setdefault("raw", raw_read(store))),
        "read every array": (
            lambda: execution("threads"),
            lambda: found.setdefault("sums", sum_every_array(store)),
        ),
        "pipeline, threads": (
            lambda: execution("threads"),
            lambda: run_pipeline(store, outputs["threads"]),
        ),
        f"pipeline, LocalCluster {WORKERS} x {MEMORY}": (
            local_context,
            lambda: run_pipeline(store, outputs["local"], default_client()),
        ),
    }
    kinds = ["raw", "read", "threads", "local"]
    chosen = zip(kinds, steps.items(), strict=True)
    steps = {name: step for kind, (name, step) in chosen if kind not in SKIP}
    results = benchmark.pedantic(measure, (steps, cold), rounds=1, iterations=1)

    assert found["raw"] == stored
    if "read" not in SKIP:
        # the sums against zarr-python's own reading of the same arrays
        group = zarr.open_group(str(store), mode="r")
        source = mtd.open_zarr(str(store))
        blocks = enumerate(source.blocks())
        paths = [p for i, block in blocks for p in _paths(block, f"blocks/{i}/")]
        assert len(paths) == len(found["sums"])
        for path, total in list(zip(paths, found["sums"], strict=True))[:CHECKED_ARRAYS]:
            np.testing.assert_allclose(total, np.sum(group[path][...]), rtol=1e-10, atol=1e-8)
    last = next((kind for kind in ("local", "threads") if kind not in SKIP), None)
    if last is not None:
        check_output(store, outputs[last])

    raw = results["raw read"][0]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\n{format_bytes(stored)} stored, page cache {'dropped' if cold else 'warm'} "
        f"before each step, load average {load}, {os.cpu_count()} cores"
    )
    print(
        "| step | time | GB/s | / raw read | CPU time (all processes) | peak RSS (all processes) "
        "| peak RSS (this process) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, (elapsed, peak, cpu, own) in results.items():
        print(
            f"| {name} | {elapsed:.2f} s | {stored / elapsed / 1e9:.2f} | {elapsed / raw:.2f}x "
            f"| {cpu:.1f} s | {format_bytes(peak)} | {format_bytes(own)} |"
        )
    benchmark.extra_info.update(
        {"stored_bytes": stored, **{name: t for name, (t, _, _, _) in results.items()}}
    )
