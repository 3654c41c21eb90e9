"""Where the CPU of ``write_batches`` goes on a 2-worker ``LocalCluster``, thread by thread.

Run from the repository root (one worker thread each, featomic on one thread)::

    RAYON_NUM_THREADS=1 PYTHONPATH=$PWD/src python benchmarks/ingestion_accounting.py \\
        {alone|write} 2048 16 [window]

``alone`` computes featomic's SOAP power spectrum (with positions gradients) of the
rattled 64-atom silicon cells of ``bench_ingestion.py``, in batches, and drops each
batch; ``write`` gives the same batches to ``write_batches``. Printed as one JSON line:
the wall time, the CPU seconds of this process (the client and the scheduler) and of
the workers, the workers' CPU by thread name (``MainThread`` is a worker's event loop;
``tasks`` the threads running tasks, ``?`` the threads Python does not know:
featomic's), the CPU of featomic's
Python thread within the batches (``featomic``), and from distributed's task stream,
for each worker, the seconds its thread ran tasks (``busy``) and the seconds between
its first and last task when it ran none (``gaps``).
"""

from __future__ import annotations

import itertools
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil
from distributed import Client, LocalCluster, get_task_stream, get_worker

import metatensor_dask as mtd


def frame(item):
    import ase.build

    found = ase.build.bulk("Si", cubic=True) * (2, 2, 2)
    found.rattle(0.05, seed=item)
    return found


def soap(items):
    import featomic

    start = time.thread_time()
    calculator = featomic.SoapPowerSpectrum(
        cutoff={"radius": 4.0, "smoothing": {"type": "ShiftedCosine", "width": 0.5}},
        density={"type": "Gaussian", "width": 0.3},
        basis={
            "type": "TensorProduct",
            "max_angular": 4,
            "radial": {"type": "Gto", "max_radial": 4},
        },
    )
    result = calculator.compute([frame(item) for item in items], gradients=["positions"])
    try:
        worker = get_worker()
    except ValueError:  # not in a task
        return result
    worker.featomic_cpu = getattr(worker, "featomic_cpu", 0.0) + time.thread_time() - start
    return result


def dropped(items):
    soap(items)


def thread_cpu(dask_worker):
    """CPU seconds of each thread of this worker (by native id, with its name)."""
    import threading

    names = {thread.native_id: thread.name for thread in threading.enumerate()}
    found = {
        t.id: (names.get(t.id, "?"), t.user_time + t.system_time)
        for t in psutil.Process().threads()
    }
    return found, getattr(dask_worker, "featomic_cpu", 0.0)


def gaps(stream):
    """Per worker, the seconds its tasks ran and the idle seconds between them."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for task in stream:
        for part in task["startstops"]:
            if part["action"] == "compute":
                spans.setdefault(task["worker"], []).append((part["start"], part["stop"]))
    found = {}
    for worker, times in spans.items():
        times.sort()
        idle = sum(max(0.0, b[0] - a[1]) for a, b in itertools.pairwise(times))
        found[worker] = {"busy": round(sum(b - a for a, b in times), 2), "gaps": round(idle, 2)}
    return found


def main(mode: str, n_items: int, batch: int, window: int | None) -> dict:
    items = list(range(n_items))
    folder = Path(tempfile.mkdtemp(prefix="ingestion-accounting-"))
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0")
    try:
        with cluster, Client(cluster) as client:
            client.run(soap, [0])  # featomic imported, its first batch computed
            before = client.run(thread_cpu)
            me = psutil.Process()
            client_cpu = sum(me.cpu_times()[:2])
            start = time.perf_counter()
            with get_task_stream(client) as stream:
                if mode == "alone":
                    batches = [items[i : i + batch] for i in range(0, n_items, batch)]
                    client.gather(client.map(dropped, batches, pure=False))
                else:
                    mtd.write_batches(
                        soap,
                        items,
                        folder / "store.zarr",
                        batch_size=batch,
                        quiet=True,
                        window=window,
                    )
            wall = time.perf_counter() - start
            client_cpu = sum(me.cpu_times()[:2]) - client_cpu
            after = client.run(thread_cpu)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    threads: dict[str, float] = {}
    featomic = 0.0
    for worker, (cpu, featomic_after) in after.items():
        cpu_before, featomic_before = before[worker]
        featomic += featomic_after - featomic_before
        for tid, (name, seconds) in cpu.items():
            name = "tasks" if "Dask-Default-Threads" in name else name
            threads[name] = threads.get(name, 0.0) + seconds - cpu_before.get(tid, (name, 0.0))[1]
    return {
        "mode": mode,
        "wall": round(wall, 2),
        "client": round(client_cpu, 2),
        "workers": round(sum(threads.values()), 2),
        "featomic": round(featomic, 2),
        "threads": {name: round(s, 2) for name, s in threads.items() if s > 0.05},
        "stream": gaps(stream.data),
    }


if __name__ == "__main__":
    arguments = sys.argv[1:]
    window = int(arguments[3]) if len(arguments) > 3 else None
    print(json.dumps(main(arguments[0], int(arguments[1]), int(arguments[2]), window)))
