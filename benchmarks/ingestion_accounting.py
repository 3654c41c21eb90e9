"""Where the CPU of ``write_batches`` goes on a 2-worker ``LocalCluster``, thread by thread.

Run from the repository root (one worker thread each, featomic on one thread)::

    RAYON_NUM_THREADS=1 PYTHONPATH=$PWD/src python benchmarks/ingestion_accounting.py \\
        {alone|write|tiny-alone|tiny-write} 2048 16 [window]

``alone`` computes featomic's SOAP power spectrum (with positions gradients) of the
rattled 64-atom silicon cells of ``bench_ingestion.py``, in batches, and drops each
batch; ``write`` gives the same batches to ``write_batches``. ``tiny-alone`` and
``tiny-write`` do the same with a map of one row per item instead (the cost of a batch
to the scheduler and the workers, whatever its size). Printed as one JSON line:
the wall time, the CPU seconds of this process (the client and the scheduler, also by
thread: ``IO loop`` runs both, ``MainThread`` is ``write_batches``) and of
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


def tiny(items):
    """A metatensor map of one row (of 8 values) per item."""
    import metatensor
    import numpy as np

    samples = metatensor.Labels(["system"], np.array(items, dtype=np.int32).reshape(-1, 1))
    block = metatensor.TensorBlock(
        np.ones((len(items), 8)), samples, [], metatensor.Labels.range("property", 8)
    )
    return metatensor.TensorMap(metatensor.Labels.range("key", 1), [block])


def dropped(items):
    soap(items)


def tiny_dropped(items):
    tiny(items)


def thread_cpu(dask_worker=None):
    """CPU seconds of each thread of this process (by native id, with its name)."""
    import threading

    names = {thread.native_id: thread.name for thread in threading.enumerate()}
    found = {
        t.id: (names.get(t.id, "?"), t.user_time + t.system_time)
        for t in psutil.Process().threads()
    }
    return found, getattr(dask_worker, "featomic_cpu", 0.0)


def _by_name(before, after) -> dict[str, float]:
    """CPU seconds of the threads between two :func:`thread_cpu`, added by name (the
    threads running tasks as ``tasks``)."""
    found: dict[str, float] = {}
    for tid, (name, seconds) in after[0].items():
        name = "tasks" if "Dask-Default-Threads" in name else name
        found[name] = found.get(name, 0.0) + seconds - before[0].get(tid, (name, 0.0))[1]
    return found


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
            function = tiny if mode.startswith("tiny") else soap
            client.run(function, [0])  # imported, a first batch computed
            before = client.run(thread_cpu)
            me = psutil.Process()
            client_cpu = sum(me.cpu_times()[:2])
            client_before = thread_cpu()
            start = time.perf_counter()
            with get_task_stream(client) as stream:
                if mode.endswith("alone"):
                    batches = [items[i : i + batch] for i in range(0, n_items, batch)]
                    drop = tiny_dropped if function is tiny else dropped
                    client.gather(client.map(drop, batches, pure=False))
                else:
                    mtd.write_batches(
                        function,
                        items,
                        folder / "store.zarr",
                        batch_size=batch,
                        quiet=True,
                        window=window,
                    )
            wall = time.perf_counter() - start
            client_cpu = sum(me.cpu_times()[:2]) - client_cpu
            client_threads = _by_name(client_before, thread_cpu())
            after = client.run(thread_cpu)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    threads: dict[str, float] = {}
    featomic = 0.0
    for worker, (cpu, featomic_after) in after.items():
        cpu_before, featomic_before = before[worker]
        featomic += featomic_after - featomic_before
        for name, seconds in _by_name((cpu_before, 0.0), (cpu, 0.0)).items():
            threads[name] = threads.get(name, 0.0) + seconds
    return {
        "mode": mode,
        "wall": round(wall, 2),
        "client": round(client_cpu, 2),
        "client_threads": {name: round(s, 2) for name, s in client_threads.items() if s > 0.01},
        "workers": round(sum(threads.values()), 2),
        "featomic": round(featomic, 2),
        "threads": {name: round(s, 2) for name, s in threads.items() if s > 0.05},
        "stream": gaps(stream.data),
    }


if __name__ == "__main__":
    arguments = sys.argv[1:]
    window = int(arguments[3]) if len(arguments) > 3 else None
    print(json.dumps(main(arguments[0], int(arguments[1]), int(arguments[2]), window)))
