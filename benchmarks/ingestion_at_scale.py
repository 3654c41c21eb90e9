"""``write_batches`` of many small molecules on a SLURM allocation, killed and resumed.

Run from the repository root, with a SLURM whose batch jobs run on this machine (the
single-machine one of ``bash .ci/slurm.sh start``; the workers reach the scheduler
through the loopback interface)::

    PYTHONPATH=$PWD/src .venv/bin/python benchmarks/ingestion_at_scale.py STORE \\
        [N_ITEMS] [BATCH_SIZE] [JOBS] [KILLED_AT]

(defaults: 100000 structures in batches of 500, 2 one-core batch jobs, killed at 0.4).
Featomic's SOAP power spectrum with positions gradients of small molecules (H, C, N, O;
3 to 8 atoms; 30 keys) is written by ``write_batches(..., renumber="system",
resume=True)`` in four steps, each timed and printed:

1. the run, in a process of its own, on ``JOBS`` batch jobs of a dask-jobqueue
   ``SLURMCluster``; that process is killed (SIGKILL) once ``KILLED_AT`` of the batches
   are committed, and its jobs cancelled (``scancel``), as when an allocation ends;
2. the same call in a new process, on new jobs, which continues after the last
   committed batch;
3. ``mtd.verify`` of the store (every chunk read and checked);
4. the store compared with the batches computed again here, renumbered: the rows of
   each key must be those of the batches that have the key, in item order, values and
   gradients (what ``metatensor.join(batches, axis="samples",
   different_keys="union")`` gives, without holding the whole dataset in memory).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np

MOLECULES = ["H2O", "CH4", "NH3", "C2H4", "CH3OH", "HCN", "CO2", "C2H6"]


def frame(item: int):
    import ase.build

    found = ase.build.molecule(MOLECULES[item % len(MOLECULES)])
    found.rattle(0.05, seed=item)
    return found


def soap(items: list[int]):
    """The SOAP power spectrum of ``items`` (systems numbered from 0)."""
    import featomic

    calculator = featomic.SoapPowerSpectrum(
        cutoff={"radius": 3.0, "smoothing": {"type": "ShiftedCosine", "width": 0.5}},
        density={"type": "Gaussian", "width": 0.3},
        basis={
            "type": "TensorProduct",
            "max_angular": 2,
            "radial": {"type": "Gto", "max_radial": 2},
        },
    )
    return calculator.compute([frame(item) for item in items], gradients=["positions"])


def _run(store: str, n_items: int, batch_size: int, jobs: int, name: str) -> None:
    """The child process: ``write_batches`` on ``jobs`` batch jobs named ``name``."""
    import dask
    import dask_jobqueue
    import ingestion_at_scale  # by name: the workers import it, not ``__main__``
    from distributed import Client

    import metatensor_dask as mtd

    here = Path(store).resolve().parent
    path = [str(Path(__file__).resolve().parent), *os.environ.get("PYTHONPATH", "").split(":")]
    settings = {
        "jobqueue.slurm.interface": "lo",
        "jobqueue.slurm.scheduler-options": {"interface": "lo", "dashboard_address": ":0"},
        "jobqueue.slurm.worker-extra-args": ["--dashboard-address", ":0"],
        "jobqueue.slurm.log-directory": str(here / f"{name}-logs"),
        "jobqueue.slurm.local-directory": str(here),
    }
    prologue = [
        f"export PYTHONPATH={shlex.quote(':'.join(p for p in path if p))}",
        # featomic on the job's one core (the batch job's worker does not read this
        # process's settings, such as distributed.nanny.pre-spawn-environ)
        "export RAYON_NUM_THREADS=1",
    ]
    with (
        dask.config.set(settings),
        dask_jobqueue.SLURMCluster(
            cores=1, processes=1, memory="4GiB", walltime="01:00:00", job_name=name,
            job_script_prologue=prologue,
        ) as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        cluster.scale(jobs)
        client.wait_for_workers(jobs, timeout=300)
        print("started", flush=True)
        mtd.write_batches(
            ingestion_at_scale.soap, list(range(n_items)), store, batch_size=batch_size,
            renumber="system", resume=True, run_id="ingestion-at-scale", quiet=True,
        )  # fmt: skip
    print("done", flush=True)


def _committed(store: Path) -> int:
    try:
        root = json.loads((store / "zarr.json").read_text())
    except (FileNotFoundError, ValueError):
        return 0
    return int(root["attributes"]["metatensor_dask"].get("batches", {}).get("committed", 0))


def _child(arguments: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as output:
        return subprocess.Popen(
            [sys.executable, __file__, "--child", *arguments], stdout=output, stderr=output
        )


def _cancel(name: str) -> None:
    subprocess.run(["scancel", "--name", name], check=True)
    while subprocess.run(
        ["squeue", "--noheader", "--name", name, "--format=%i"], capture_output=True, text=True
    ).stdout.split():
        time.sleep(0.5)


def _written(store: Path, n_items: int, batch_size: int, jobs: int, killed_at: float) -> dict:
    """Steps 1 and 2: the run killed, then resumed; their wall times."""
    batches = -(-n_items // batch_size)
    log = store.with_suffix(".log")
    arguments = [str(store), str(n_items), str(batch_size), str(jobs)]
    name = f"scale-{uuid.uuid4().hex[:6]}"
    start = time.monotonic()
    process = _child([*arguments, name], log)
    while _committed(store) < killed_at * batches:
        if process.poll() is not None:
            raise SystemExit(f"the run stopped before it was killed: see {log}")
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed = time.monotonic() - start
    committed = _committed(store)
    _cancel(name)
    start = time.monotonic()
    process = _child([*arguments, f"scale-{uuid.uuid4().hex[:6]}"], log)
    if process.wait() != 0:
        raise SystemExit(f"the resumed run failed: see {log}")
    return {
        "killed after (s)": round(killed, 1),
        "batches committed when killed": f"{committed}/{batches}",
        "resumed run (s)": round(time.monotonic() - start, 1),
    }


def _renumbered_rows(block, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """The sample labels of metatensor-core ``block``, ``"system"`` shifted by ``offset``,
    and its values."""
    samples = np.array(block.samples.values)
    samples[:, list(block.samples.names).index("system")] += offset
    return samples, np.asarray(block.values)


def _compared(store: Path, n_items: int, batch_size: int) -> dict:
    """Step 4: each batch computed again and compared with its rows in the store."""
    import metatensor_dask as mtd

    tensor = mtd.open_zarr(store)
    keys = [tuple(int(v) for v in key) for key in tensor.keys.values]
    values_at = dict.fromkeys(keys, 0)
    gradients_at = dict.fromkeys(keys, 0)
    rows = 0
    for start in range(0, n_items, batch_size):
        batch = soap(list(range(start, min(start + batch_size, n_items))))
        for key, block in batch.items():
            key = tuple(int(v) for v in key.values)
            stored = tensor.block(keys.index(key))
            first, n = values_at[key], len(block.samples)
            samples, values = _renumbered_rows(block, start)
            np.testing.assert_array_equal(stored.samples.values[first : first + n], samples)
            np.testing.assert_array_equal(stored.values[first : first + n].compute(), values)
            gradient = block.gradient("positions")
            stored_gradient = stored.gradient("positions")
            at, m = gradients_at[key], len(gradient.samples)
            expected = np.array(gradient.samples.values)
            expected[:, 0] += first  # the row of the value, in the store's block
            expected[:, 1] += start  # the system, renumbered
            np.testing.assert_array_equal(stored_gradient.samples.values[at : at + m], expected)
            np.testing.assert_array_equal(
                stored_gradient.values[at : at + m].compute(), np.asarray(gradient.values)
            )
            values_at[key], gradients_at[key] = first + n, at + m
            rows += n
    for key in keys:  # nothing stored beyond the batches' rows
        block = tensor.block(keys.index(key))
        assert len(block.samples) == values_at[key], key
        assert len(block.gradient("positions").samples) == gradients_at[key], key
    return {"keys": len(keys), "value rows compared": rows}


def main() -> None:
    if sys.argv[1] == "--child":
        store, n_items, batch_size, jobs, name = sys.argv[2:7]
        _run(store, int(n_items), int(batch_size), int(jobs), name)
        return
    store = Path(sys.argv[1]).resolve()
    n_items, batch_size, jobs = (
        int(a) for a in (sys.argv[2:5] + ["100000", "500", "2"][len(sys.argv[2:5]) :])
    )
    killed_at = float(sys.argv[5]) if len(sys.argv) > 5 else 0.4
    if store.exists():
        shutil.rmtree(store)
    figures = _written(store, n_items, batch_size, jobs, killed_at)
    import metatensor_dask as mtd

    start = time.monotonic()
    report = mtd.verify(store)
    figures["verify (s)"] = round(time.monotonic() - start, 1)
    if not report.ok:
        raise SystemExit(f"verify found problems: {report}")
    start = time.monotonic()
    figures.update(_compared(store, n_items, batch_size))
    figures["compared (s)"] = round(time.monotonic() - start, 1)
    files = [f.stat() for f in store.rglob("*") if f.is_file()]
    on_disk = sum(f.st_blocks * 512 for f in files)  # without the holes of padded chunks
    figures.update(
        {"structures": n_items, "store on disk (GB)": round(on_disk / 1e9, 2), "files": len(files)}
    )
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
