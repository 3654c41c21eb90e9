"""What each batch of a long ``write_batches`` run costs, against the batches before it.

Run from the repository root::

    PYTHONPATH=$PWD/src python benchmarks/ingestion_per_batch.py \\
        {sync|local|slurm} STORE N_ITEMS BATCH_SIZE

Featomic's SOAP power spectrum (with positions gradients) of small molecules of 2 to 5
atoms (H, C, N, O), the molecule changing every 137 items so that keys come and go
between batches, written by ``write_batches``:

* ``sync``: in this process (dask's synchronous scheduler); for each append, the CPU
  and wall time of the thread, the bytes it read and wrote, and the size of the root;
* ``local``: on a ``LocalCluster`` of two one-thread workers; ``slurm``: on two
  one-core batch jobs of a dask-jobqueue ``SLURMCluster`` (the single-machine SLURM of
  ``bash .ci/slurm.sh start``); for each, the duration of every append task (from
  distributed's task stream), and every 2 s the root's size, the tasks the scheduler
  holds and the resident memory of each process.

Printed: the median of each figure per tenth of the run (batch index), so that a cost
growing with the batches already stored shows as a trend; and the resident memory at
five moments of the run.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

MOLECULES = ["H2O", "NH3", "CO", "HCN", "H2", "N2", "CH4", "O2", "NO", "C2H2"]


def frame(item: int) -> Any:
    import ase.build

    found = ase.build.molecule(MOLECULES[(item // 137) % len(MOLECULES)])
    found.rattle(0.05, seed=item % 100_000)
    return found


@functools.cache
def calculator() -> Any:
    import featomic

    return featomic.SoapPowerSpectrum(
        cutoff={"radius": 3.0, "smoothing": {"type": "ShiftedCosine", "width": 0.5}},
        density={"type": "Gaussian", "width": 0.3},
        basis={
            "type": "TensorProduct",
            "max_angular": 1,
            "radial": {"type": "Gto", "max_radial": 1},
        },
    )


def soap(items: list[int]) -> Any:
    """The SOAP power spectrum of ``items`` (systems numbered from 0)."""
    return calculator().compute([frame(i) for i in items], gradients=["positions"])


def _tenths(values: list[float]) -> list[float]:
    """The median of each tenth of ``values``, in order (of each value, below 10)."""
    n, parts = len(values), min(10, len(values))
    return [
        round(statistics.median(values[i * n // parts : (i + 1) * n // parts]), 2)
        for i in range(parts)
    ]


def _io() -> tuple[int, int]:
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(fields["rchar"]), int(fields["wchar"])


def in_this_process(store: str, n_items: int, batch_size: int) -> dict[str, Any]:
    """``write_batches`` with the synchronous scheduler, each append timed."""
    import dask

    import metatensor_dask as mtd
    from metatensor_dask.io import ingest_threads

    appended = ingest_threads.append_batch
    rows = []

    def timed(*arguments: Any) -> bytes:
        cpu, wall, (read, written) = time.thread_time(), time.perf_counter(), _io()
        root = appended(*arguments)
        after = _io()
        rows.append(
            (
                1e3 * (time.thread_time() - cpu),
                1e3 * (time.perf_counter() - wall),
                (after[0] - read) / 1e3,
                (after[1] - written) / 1e3,
                len(root) / 1e3,
            )
        )
        return root

    ingest_threads.append_batch = timed
    with dask.config.set(scheduler="synchronous"):
        mtd.write_batches(soap, list(range(n_items)), store, batch_size=batch_size, quiet=True)
    names = ["CPU (ms)", "wall (ms)", "read (kB)", "written (kB)", "root (kB)"]
    figures = {name: _tenths([row[i] for row in rows]) for i, name in enumerate(names)}
    figures["peak RSS (MiB)"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return figures


def _cluster(kind: str, store: str) -> Any:
    import dask
    import distributed

    one_thread = {"distributed.nanny.pre-spawn-environ": {"RAYON_NUM_THREADS": "1"}}
    if kind == "local":
        with dask.config.set(one_thread):
            return distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
            )
    import dask_jobqueue

    here = str(Path(store).resolve().parent)
    path = [str(Path(__file__).resolve().parent), *os.environ.get("PYTHONPATH", "").split(":")]
    # the jobs are written when the cluster starts them, after this function: what
    # they need is passed as arguments, not as settings of this call
    settings = {
        "jobqueue.slurm.interface": "lo",
        "jobqueue.slurm.scheduler-options": {"interface": "lo", "dashboard_address": ":0"},
    }
    with dask.config.set(settings):
        cluster = dask_jobqueue.SLURMCluster(
            cores=1, processes=1, memory="3GiB", walltime="00:30:00", job_name="per-batch",
            log_directory=os.path.join(here, "per-batch-logs"), local_directory=here,
            worker_extra_args=["--dashboard-address", ":0"],
            job_script_prologue=[
                f"export PYTHONPATH={':'.join(p for p in path if p)}",
                "export RAYON_NUM_THREADS=1",  # featomic on the job's one core
            ],
        )  # fmt: skip
    cluster.scale(2)
    return cluster


def _own_rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _sample(client: Any, store: str, samples: list[dict[str, Any]], stop: threading.Event) -> None:
    """Every 2 s: the root's size and batches, the scheduler's tasks, each process's RSS."""
    while not stop.wait(2.0):
        try:
            raw = (Path(store) / "zarr.json").read_bytes()
            run = json.loads(raw)["attributes"]["metatensor_dask"].get("batches", {})
        except (OSError, ValueError):
            continue
        memory = {"client": _own_rss(), **client.run(_own_rss)}
        samples.append(
            {
                "committed": run.get("committed", 0),
                "root (kB)": round(len(raw) / 1e3, 1),
                "scheduler tasks": client.run_on_scheduler(
                    lambda dask_scheduler: len(dask_scheduler.tasks)
                ),
                "RSS (MiB)": sorted(round(v / 2**20) for v in memory.values()),
            }
        )


def on_cluster(kind: str, store: str, n_items: int, batch_size: int) -> dict[str, Any]:
    """``write_batches`` on two workers; each append task's duration, memory sampled."""
    import distributed
    import ingestion_per_batch  # by name: the workers import it, not ``__main__``

    import metatensor_dask as mtd

    samples: list[dict[str, Any]] = []
    stop = threading.Event()
    with _cluster(kind, store) as cluster, distributed.Client(cluster) as client:
        client.wait_for_workers(2, timeout=300)
        sampler = threading.Thread(target=_sample, args=(client, store, samples, stop))
        sampler.start()
        start = time.monotonic()
        with distributed.get_task_stream(client) as stream:
            mtd.write_batches(
                ingestion_per_batch.soap, list(range(n_items)), store, batch_size=batch_size,
                quiet=True,
            )  # fmt: skip
        wall = time.monotonic() - start
        stop.set()
        sampler.join()
    durations = {}
    for task in stream.data:
        kind_of = str(task["key"]).split("-")[0]  # append_batch, or soap: the batches
        if kind_of not in ("append_batch", "soap"):
            continue
        for part in task["startstops"]:
            if part["action"] == "compute":
                durations.setdefault(kind_of, []).append((part["start"], part["stop"]))
    figures: dict[str, Any] = {"wall (s)": round(wall, 1)}
    for name, spans in durations.items():
        figures[f"{name} task (ms)"] = _tenths([1e3 * (b - a) for a, b in sorted(spans)])
    figures["samples"] = (
        [samples[int(i * (len(samples) - 1) / 4)] for i in range(5)] if samples else []
    )
    return figures


def main() -> None:
    kind, store, n_items, batch_size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    load = os.getloadavg()[0]
    if kind == "sync":
        figures = in_this_process(store, n_items, batch_size)
    else:
        figures = on_cluster(kind, store, n_items, batch_size)
    figures["load average (start, end)"] = [round(load, 1), round(os.getloadavg()[0], 1)]
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
