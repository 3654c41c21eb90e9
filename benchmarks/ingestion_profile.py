"""On what the calling process and the workers' event loops spend their CPU during
``write_batches``, by kind of work: the profile behind the figures of
``ingestion_accounting.py``.

Run from the repository root, with `py-spy <https://github.com/benfred/py-spy>`_
installed (its path in ``PY_SPY``, else ``py-spy`` on the ``PATH``; it must be allowed to
attach to this process's children)::

    RAYON_NUM_THREADS=1 PYTHONPATH=$PWD/src python benchmarks/ingestion_profile.py \\
        {alone|write|tiny-alone|tiny-write} 1024 16 [folder]

The modes are those of ``ingestion_accounting.py`` (the same 2-worker ``LocalCluster``,
one thread each, featomic's batches or a map of one row per item). py-spy samples this
process (client, scheduler and the workers' nannies) and each worker, 200 times a second,
while the batches run; the raw profiles are kept in ``folder`` (a new temporary one by
default). Printed as one JSON line: for the calling process's event loop (``IO loop``),
its ``MainThread`` (``write_batches``), the workers' event loops (their ``MainThread``) and
their task threads, the samples of each kind of work (see :data:`KINDS`), and the
functions most sampled in each. Samples whose innermost frame waits (a ``select``, a
lock, a queue) are left out: py-spy does not tell idle threads apart in every container.
Samples are shares, not seconds: py-spy counts a thread waiting for the GIL as running.
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from distributed import Client, LocalCluster
from ingestion_accounting import dropped, soap, tiny, tiny_dropped

import metatensor_dask as mtd

#: Innermost frames of a thread that waits.
WAITING = (
    "EpollSelector.select",
    "Condition.wait",
    "_worker (concurrent/futures/thread.py",
    "Popen.poll",
    "Queue.get",
    "Event.wait",
    "sleep",
    "Connection._recv",
    "_wait_for_tstate_lock",
)

#: Kinds of work, by a frame found in the stack (the first kind that matches).
KINDS = (
    ("imports", ("_find_and_load",)),
    ("batches freed", ("TensorMap.__del__",)),
    ("the batches' function", ("ingestion_accounting.py",)),
    ("write_batches (and what it calls)", ("metatensor_dask/",)),
    (
        "periodic (heartbeats, monitors, profiler)",
        ("PeriodicCallback._run", "SystemMonitor", "heartbeat", "distributed/profile.py"),
    ),
    (
        "messages and tasks",
        (
            "TCP.read",
            "TCP.write",
            "BatchedSend",
            "WorkerState.",
            "distributed/worker.py",
            "distributed/scheduler.py",
            "distributed/client.py",
            "distributed/protocol/",
        ),
    ),
)

#: The threads reported, by name (the task threads' names hold ``Dask-Default-Threads``).
THREADS = {"IO loop": "IO loop", "MainThread": "MainThread", "Dask-Default-Threads": "tasks"}


def record(pid: int, output: Path) -> subprocess.Popen:
    """py-spy recording process ``pid`` into ``output`` (raw stacks, by thread) until
    interrupted."""
    spy = os.environ.get("PY_SPY", "py-spy")
    command = [spy, "record", "-r", "200", "-t", "-f", "raw", "-o", str(output), "--pid"]
    return subprocess.Popen(
        [*command, str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def run(mode: str, n_items: int, batch: int, folder: Path) -> float:
    """Run ``mode`` with py-spy on this process and each worker; its wall time."""
    items = list(range(n_items))
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0")
    with cluster, Client(cluster) as client:
        function = tiny if mode.startswith("tiny") else soap
        client.run(function, [0])  # imported, a first batch computed
        mtd.write_batches  # noqa: B018 (imported before the profile)
        pids = {"calling": os.getpid()}
        for index, pid in enumerate(client.run(os.getpid).values()):
            pids[f"worker {index}"] = pid
        spies = [record(pid, folder / name) for name, pid in pids.items()]
        time.sleep(1.0)  # py-spy attached
        start = time.perf_counter()
        if mode.endswith("alone"):
            batches = [items[i : i + batch] for i in range(0, n_items, batch)]
            drop = tiny_dropped if function is tiny else dropped
            client.gather(client.map(drop, batches, pure=False))
        else:
            mtd.write_batches(function, items, folder / "store.zarr", batch_size=batch, quiet=True)
        wall = time.perf_counter() - start
        for process in spies:
            process.send_signal(signal.SIGINT)
        for process in spies:
            process.wait()
    shutil.rmtree(folder / "store.zarr", ignore_errors=True)
    return wall


def kind(frames: list[str]) -> str:
    """The kind of work of a stack (innermost frame last)."""
    for name, keys in KINDS:
        if any(key in frame for frame in frames for key in keys):
            return name
    return "the event loop itself (asyncio, tornado)"


def summary(path: Path, top: int = 8) -> dict[str, dict]:
    """The samples of a raw py-spy profile, by thread and kind of work, and its
    functions most sampled (innermost frames)."""
    kinds: dict[str, collections.Counter] = {}
    inner: dict[str, collections.Counter] = {}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        thread = next((v for k, v in THREADS.items() if k in frames[0]), None)
        if thread is None or any(w in frames[-1] for w in WAITING):
            continue
        kinds.setdefault(thread, collections.Counter())[kind(frames[1:])] += int(count)
        function = re.sub(r":\d+\)$", ")", frames[-1])
        inner.setdefault(thread, collections.Counter())[function] += int(count)
    return {
        thread: {
            "samples": sum(found.values()),
            "kinds": dict(found.most_common()),
            "top": dict(inner[thread].most_common(top)),
        }
        for thread, found in kinds.items()
    }


def main(mode: str, n_items: int, batch: int, folder: Path) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    wall = run(mode, n_items, batch, folder)
    found: dict = {"mode": mode, "wall": round(wall, 2), "folder": str(folder)}
    for path in sorted(folder.iterdir()):
        if path.is_file():
            found[path.name] = summary(path)
    return found


if __name__ == "__main__":
    arguments = sys.argv[1:]
    where = Path(arguments[3]) if len(arguments) > 3 else Path(tempfile.mkdtemp())
    print(json.dumps(main(arguments[0], int(arguments[1]), int(arguments[2]), where)))
