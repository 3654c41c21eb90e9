"""Ingestion: ``write_batches`` of featomic batches against the featomic computations alone.

Each measurement runs in its own Python process, on a 2-worker ``LocalCluster``
(processes, one thread each, and ``RAYON_NUM_THREADS=1``: featomic computes with a pool
of threads of its own, as many as the machine's cores by default, so that two workers on
two cores would run four threads, whose waits inflate the CPU time of every case by
different amounts: measured with the measuring script, three runs of each in turn,
``write_batches`` took 15.19 s of CPU with one thread per worker and 18.19 s without,
featomic alone 11.15 and 12.68 s), and reports its wall time, the peak resident memory
of the process and its workers together (sampled every 20 ms) and each one's own peak
(the process: client and scheduler; the largest worker), and the CPU seconds of the
process (client and scheduler) and of its workers, which a loaded machine inflates
much less than wall times.
The batches are featomic's SOAP power spectrum with positions gradients of rattled
silicon supercells (64 atoms each), ``BATCH`` structures per batch (with
``MTD_BENCH_INGEST_SYSTEMS=molecules``: small molecules of H, C, N and O, 3 to 8 atoms,
with a smaller basis, whose spectrum has 30 keys, so that each batch appends a few
rows to 150 arrays: the cost per array of an append, rather than per byte):

* ``featomic alone``: every batch computed on the cluster and dropped;
* ``featomic alone, no huge pages``: the same with numpy's huge-page advice off in the
  workers (``NUMPY_MADVISE_HUGEPAGE=0``), as metatensor-dask's ``huge-pages`` setting
  leaves it in the workers of ``write_batches`` on a virtual machine that reports free
  memory to its host: featomic's results are numpy arrays, cheaper to allocate there
  without it, so this is the baseline of the same work without ingestion;
* ``featomic + raw files``: every batch computed, its arrays written to files by the
  worker (the floor of any ingestion: the bytes written, nothing else);
* ``featomic + raw files, drop-behind``: the same, each file's write-back started once
  written and the oldest dropped from the page cache as appends do (the ``drop-behind``
  setting);
* ``featomic + raw files, direct``: the same, each file written past the page cache
  (``O_DIRECT``) by the writer that the ``direct-writes`` setting gives the chunk files
  of 1 MiB or more (off by default): on a virtual machine that takes free memory back
  from its guest, each new page of the page cache costs a fault in the host, but a
  direct write waits for the disk;
* ``write_batches, drop-behind off``: the same batches computed and committed to a Zarr
  store, their pages left in the page cache;
* ``write_batches``: the same with the default ``drop-behind``.

Both run at two dataset sizes, ``ITEMS`` and ``4 * ITEMS`` structures: the overhead
target is at most 25% of the featomic time, with the same peak memory at both sizes.
Sizes come from environment variables, so that CI runs this quickly (the defaults, 2
structures in batches of 2, only check that everything runs). With timing off (CI's
run), the cases sharing an environment run one after the other in one process, on one
cluster: that checks every case at the cost of two clusters, not nine. The figures of
``docs/ingestion.md`` and ``docs/ingestion-measurements.md`` come from::

    MTD_BENCH_INGEST_ITEMS=128 MTD_BENCH_INGEST_BATCH=16 \\
        .venv/bin/python -m pytest benchmarks/bench_ingestion.py --benchmark-enable -s

Batches of 16 structures are what a user would choose: featomic computes each in about
0.7 s on one core (50 MiB of values and gradients), so its cost dominates the per-batch
bookkeeping of any scheduler; 128 and 512 structures make 8 and 32 batches, both more
than the window of batches in flight (twice the 2 workers' threads), so that the peak
memory is that of a full window at both sizes; the whole runs in a few minutes.
``-s`` shows the summary table.
"""

from __future__ import annotations

import compileall
import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# LocalClusters of worker processes: one such test at a time (2 cores)
pytestmark = pytest.mark.xdist_group("clusters")

ITEMS = int(os.environ.get("MTD_BENCH_INGEST_ITEMS", "2"))
MEASURING = "MTD_BENCH_INGEST_ITEMS" in os.environ
"""Whether this run measures (its sizes given), or only checks that every case runs."""
BATCH = int(os.environ.get("MTD_BENCH_INGEST_BATCH", "2"))
SYSTEMS = os.environ.get("MTD_BENCH_INGEST_SYSTEMS", "silicon")

_RESULTS: dict[tuple[str, int], dict[str, float]] = {}

_PRELUDE = """
import functools, json, os, sys, threading, time
import psutil
from distributed import Client, LocalCluster
import metatensor_dask as mtd

SYSTEMS = os.environ.get("MTD_BENCH_INGEST_SYSTEMS", "silicon")
MOLECULES = ["H2O", "CH4", "NH3", "C2H4", "CH3OH", "HCN", "CO2", "C2H6"]

def frame(item):
    import ase.build
    if SYSTEMS == "molecules":
        found = ase.build.molecule(MOLECULES[item % len(MOLECULES)])
        found.rattle(0.05, seed=item)
        return found
    found = ase.build.bulk("Si", cubic=True) * (2, 2, 2)
    found.rattle(0.05, seed=item)
    return found

def soap(items):
    import featomic
    frames = [frame(item) for item in items]
    small = SYSTEMS == "molecules"
    calculator = featomic.SoapPowerSpectrum(
        cutoff={"radius": 3.0 if small else 4.0,
                "smoothing": {"type": "ShiftedCosine", "width": 0.5}},
        density={"type": "Gaussian", "width": 0.3},
        basis={"type": "TensorProduct", "max_angular": 2 if small else 4,
               "radial": {"type": "Gto", "max_radial": 2 if small else 4}},
    )
    return calculator.compute(frames, gradients=["positions"])

def dropped(items):
    soap(items)

def written(items, folder, drop_behind=None):
    # the floor of any ingestion: the bytes of values and gradients written to files
    # (with drop_behind, dropped from the page cache as appends do)
    import os
    import numpy as np
    from metatensor_dask.io import _page_cache
    for i, block in enumerate(soap(items).blocks()):
        arrays = [block.values, *(g.values for _, g in block.gradients())]
        for j, array in enumerate(arrays):
            path = os.path.join(folder, f"{items[0]}-{i}-{j}.bin")
            with open(path, "wb") as file:
                np.asarray(array).tofile(file)
                file.flush()
                if drop_behind is not None:
                    _page_cache.start_write_back(file.fileno(), array.nbytes, path)
            if drop_behind is not None:
                _page_cache.written(path, array.nbytes, drop_behind)

def written_direct(items, folder):
    # the bytes of values and gradients written to files past the page cache, by the
    # writer of metatensor-dask's chunk files (O_DIRECT, from an aligned buffer reused)
    import os
    import numpy as np
    from metatensor_dask.io._direct_writes import write_new_file
    for i, block in enumerate(soap(items).blocks()):
        arrays = [block.values, *(g.values for _, g in block.gradients())]
        for j, array in enumerate(arrays):
            path = os.path.join(folder, f"{items[0]}-{i}-{j}.bin")
            data = memoryview(np.ascontiguousarray(array)).cast("B")
            assert write_new_file(path, [data]) == data.nbytes

def cpu_seconds():
    # CPU seconds (user + system) of this process and of each live child (the
    # workers), by pid: comparable under load, when wall times are not
    me = psutil.Process()
    found = {}
    for process in [me, *me.children(recursive=True)]:
        try:
            found[process.pid] = sum(process.cpu_times()[:2])
        except psutil.Error:
            pass
    return found

def measured(run):
    # run() timed: its wall time, the CPU seconds of this process (client and
    # scheduler) and of its workers, the peak resident memory of them all, sampled every
    # 20 ms, and each one's own peak, by pid: the peak of the sum also depends on
    # whether the workers' highs (a batch computed while another is appended) fall on
    # the same sample, which is likelier the longer the run; each one's own peak tells
    # which process grows
    me = psutil.Process()
    peak, peaks = [0], {}
    stop = threading.Event()
    def sample():
        # the processes are listed once a second: listing a process's children reads
        # every process of the machine, which cost this (client) process more CPU than
        # the run measured, in proportion to its wall time
        processes, listed = [], 0.0
        while not stop.wait(0.02):
            if time.monotonic() - listed > 1.0:
                processes, listed = [me, *me.children(recursive=True)], time.monotonic()
            total = 0
            for process in processes:
                try:
                    rss = process.memory_info().rss
                except psutil.Error:
                    continue
                total += rss
                peaks[process.pid] = max(peaks.get(process.pid, 0), rss)
            peak[0] = max(peak[0], total)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cpu_start = cpu_seconds()
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    cpu_end = cpu_seconds()
    stop.set()
    sampler.join()
    used = {pid: cpu - cpu_start.get(pid, 0.0) for pid, cpu in cpu_end.items()}
    client_cpu = used.pop(me.pid)
    workers_cpu = sum(used.values())
    client_peak = peaks.pop(me.pid, 0)
    return {
        "seconds": seconds, "peak_mib": peak[0] / 2**20, "cpu_s": client_cpu + workers_cpu,
        "client_cpu_s": client_cpu, "workers_cpu_s": workers_cpu,
        "client_peak_mib": client_peak / 2**20,
        "worker_peak_mib": max(peaks.values(), default=0) / 2**20,
    }
"""

_MAIN = """
# each case (an index of CASES, its number of items, its target) measured in turn on
# one cluster; a line of JSON each
batch, cases = int(sys.argv[1]), json.loads(sys.argv[2])
with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0") as cluster, \\
        Client(cluster) as client:
    client.run(soap, [0])  # warm up: imports in the workers
    for case, n_items, target in cases:
        run = functools.partial(CASES[case], client, list(range(n_items)), n_items, target)
        print(json.dumps(measured(run)), flush=True)
"""

_ALONE = """
    batches = [items[i : i + batch] for i in range(0, n_items, batch)]
    client.gather(client.map(dropped, batches, pure=False))
"""

SCRIPTS = {
    "featomic alone": _ALONE,
    "featomic alone, no huge pages": _ALONE,
    "featomic + raw files": """
        import os
        os.makedirs(target)
        batches = [items[i : i + batch] for i in range(0, n_items, batch)]
        client.gather(client.map(written, batches, folder=target, pure=False))
    """,
    "featomic + raw files, drop-behind": """
        import os
        from metatensor_dask.io import _page_cache
        os.makedirs(target)
        batches = [items[i : i + batch] for i in range(0, n_items, batch)]
        limit = _page_cache.budget()
        client.gather(client.map(written, batches, folder=target, drop_behind=limit, pure=False))
    """,
    "featomic + raw files, direct": """
        import os
        os.makedirs(target)
        batches = [items[i : i + batch] for i in range(0, n_items, batch)]
        client.gather(client.map(written_direct, batches, folder=target, pure=False))
    """,
    "write_batches, drop-behind off": """
        import dask
        with dask.config.set({"metatensor_dask.drop-behind": False}):
            mtd.write_batches(soap, items, target, batch_size=batch, quiet=True)
    """,
    "write_batches": """
        mtd.write_batches(soap, items, target, batch_size=batch, quiet=True)
    """,
}


ENVIRONMENT = {"featomic alone, no huge pages": {"NUMPY_MADVISE_HUGEPAGE": "0"}}
"""Environment variables of a case's process (and of its workers)."""


def _environment(name: str) -> dict[str, str]:
    """The environment of the case ``name``'s process: this one's, with modules compiled
    once and cached as in a user's installation (a shell that turns the cache off,
    ``PYTHONDONTWRITEBYTECODE``, makes every worker compile this package's modules
    again: 60 ms of CPU per process), featomic on one thread, and the case's own."""
    kept = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    return {**kept, "RAYON_NUM_THREADS": "1", **ENVIRONMENT.get(name, {})}


def _script(names: list[str]) -> str:
    """The script measuring the cases ``names``: its ``CASES``, in that order."""
    functions = [
        f"\ndef case_{i}(client, items, n_items, target):\n"
        + textwrap.indent(textwrap.dedent(SCRIPTS[name]), "    ")
        for i, name in enumerate(names)
    ]
    listed = ", ".join(f"case_{i}" for i in range(len(names)))
    return _PRELUDE + "".join(functions) + f"\nCASES = [{listed}]\n" + _MAIN


def _run(runs: list[tuple[str, int, Path]]) -> list[dict[str, float]]:
    """Measure each case ``(name, n_items, target)`` of ``runs`` in turn, in one new
    process on one cluster, with the environment of the first case; their figures."""
    # compiled before the first case, which would otherwise pay for compiling them
    package = importlib.util.find_spec("metatensor_dask").submodule_search_locations[0]
    compileall.compile_dir(package, quiet=1)
    names = [name for name, _, _ in runs]
    cases = [[i, n_items, str(target)] for i, (_, n_items, target) in enumerate(runs)]
    done = subprocess.run(
        [sys.executable, "-c", _script(names), str(BATCH), json.dumps(cases)],
        env=_environment(names[0]),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"the cases {names} failed:\n{done.stderr}"
    results = [json.loads(line) for line in done.stdout.strip().splitlines()[-len(runs) :]]
    for (name, n_items, _), result in zip(runs, results, strict=True):
        _RESULTS[(name, n_items)] = result
    return results


def _run_alone(name: str, n_items: int, target: Path) -> dict[str, float]:
    """The case ``name`` at ``n_items`` measured in a process of its own."""
    return _run([(name, n_items, target)])[0]


SUMMARISED_AT_BOTH_SIZES = ("featomic alone", "write_batches")
"""The cases whose peak memory the summary compares at both sizes."""

CASES = [
    (name, n_items)
    for n_items in (ITEMS, 4 * ITEMS)
    for name in SCRIPTS
    if MEASURING or n_items == ITEMS or name in SUMMARISED_AT_BOTH_SIZES
]
"""Every case at both sizes when measuring; in the quick check, the larger size only
for the cases the summary compares."""


@pytest.fixture(scope="module")
def checked_together(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, int], tuple[dict[str, float], Path]]:
    """With timing off (the check that every case runs, as in CI): every case of
    :data:`CASES` run at once, those of one environment in one process on one cluster
    (a process and a cluster of its own for each case took most of the check's time),
    by ``(name, n_items)``: its figures and its target. Empty with timing on: each case
    is then measured alone, in a process of its own."""
    config = request.config
    if not config.getoption("benchmark_disable") or config.getoption("benchmark_enable"):
        return {}
    folder = tmp_path_factory.mktemp("ingestion")
    by_environment: dict[tuple[tuple[str, str], ...], list[tuple[str, int, Path]]] = {}
    for i, (name, n_items) in enumerate(CASES):
        environment = tuple(sorted(ENVIRONMENT.get(name, {}).items()))
        by_environment.setdefault(environment, []).append((name, n_items, folder / f"{i}.zarr"))
    found = {}
    for runs in by_environment.values():
        for (name, n_items, target), result in zip(runs, _run(runs), strict=True):
            found[(name, n_items)] = (result, target)
    return found


@pytest.mark.parametrize(("name", "n_items"), CASES)
def test_ingestion(benchmark, tmp_path, checked_together, name, n_items):
    checked = checked_together.get((name, n_items))
    target = tmp_path / "soap.zarr" if checked is None else checked[1]
    try:
        # (run already: the fixture gives its figures, as pytest-benchmark wants it used)
        measure = (
            (lambda: checked[0])
            if checked
            else functools.partial(_run_alone, name, n_items, target)
        )
        result = benchmark.pedantic(measure, rounds=1, iterations=1)
        benchmark.extra_info.update(result, n_items=n_items, batch=BATCH)
        if name.startswith("write_batches"):
            import metatensor_dask as mtd

            tensor = mtd.open_zarr(target)
            systems = {int(s) for b in tensor.blocks() for s in b.samples.column("system")}
            assert systems == set(range(n_items))
    finally:
        # 6 GiB per case at 2,048 structures: pytest keeps the folders of its last
        # three sessions, which a few runs of this benchmark filled a disk with
        shutil.rmtree(target, ignore_errors=True)


def test_summary():
    """Print the figures measured above (shown with ``pytest -s``): each case against
    featomic alone, and (``no-hp``) against featomic alone without huge pages."""
    what = "64-atom Si cells" if SYSTEMS == "silicon" else "small molecules (H, C, N, O)"
    print(f"\nSOAP power spectrum of {what}, batches of {BATCH}, 2-worker LocalCluster")
    peaks: list[tuple[float, float, float]] = []
    for n_items in (ITEMS, 4 * ITEMS):
        alone = _RESULTS.get(("featomic alone", n_items))
        if alone is None:
            continue
        plain = _RESULTS.get(("featomic alone, no huge pages", n_items), alone)
        print(f"{n_items:5d} structures:")
        for name in SCRIPTS:
            found = _RESULTS.get((name, n_items))
            if found is None:
                continue
            if name == "write_batches":
                own = (found["client_peak_mib"], found["worker_peak_mib"])
                peaks.append((found["peak_mib"], *own))
            wall = 100 * (found["seconds"] / alone["seconds"] - 1)
            cpu = 100 * (found["cpu_s"] / alone["cpu_s"] - 1)
            wall_plain = 100 * (found["seconds"] / plain["seconds"] - 1)
            cpu_plain = 100 * (found["cpu_s"] / plain["cpu_s"] - 1)
            print(
                f"  {name:34s} {found['seconds']:6.2f} s "
                f"({wall:+4.0f}%, no-hp {wall_plain:+4.0f}%), "
                f"cpu {found['cpu_s']:6.2f} s ({cpu:+4.0f}%, no-hp {cpu_plain:+4.0f}%; "
                f"client {found['client_cpu_s']:5.2f}, workers {found['workers_cpu_s']:6.2f}), "
                f"peak {found['peak_mib']:5.0f} MiB (own peaks: client process "
                f"{found['client_peak_mib']:4.0f}, largest worker {found['worker_peak_mib']:4.0f})"
            )
    if len(peaks) == 2:
        (small, large) = peaks
        print(
            f"write_batches peak memory at 4x the data: {large[0] - small[0]:+.0f} MiB "
            f"(the client process's own peak {large[1] - small[1]:+.0f} MiB, the largest "
            f"worker's {large[2] - small[2]:+.0f} MiB)"
        )
