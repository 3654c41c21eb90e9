"""Batches for the write_batches tests: featomic SOAP power spectra of small molecules,
a process that writes them (to be killed), the batches renumbered as ``write_batches``
renumbers them (for metatensor's join), and the files of a store by content.

``python ingest_support.py STORE N_ITEMS BATCH_SIZE DELAY [--resume] [--chunks ROWS]
[--go FILE] [--slurm NAME]`` runs ``write_batches(soap, range(N_ITEMS), STORE,
batch_size=BATCH_SIZE)`` on threads (with ``--slurm``: on two one-core batch jobs of the
test SLURM named ``NAME``, see :func:`slurm_client`), each batch sleeping ``DELAY``
seconds first; it prints ``ready`` before the run starts (with ``--go``: then waits for
``FILE`` to exist) and ``done`` after it.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shlex
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import metatensor
import numpy as np

#: Small molecules (ase's names), cycled through by the items.
MOLECULES = ("H2O", "CH4", "NH3", "C2H4", "CH3OH", "HCN", "CO2")


_TEMPLATES: dict = {}
_TEMPLATES_LOCK = threading.Lock()


def _molecule(name: str):
    """A copy of ase's molecule ``name``: ase reads its collection on first use, which
    batches computed on threads at once can see half-read (a KeyError)."""
    with _TEMPLATES_LOCK:
        if name not in _TEMPLATES:
            import ase.build

            _TEMPLATES[name] = ase.build.molecule(name)
        return _TEMPLATES[name].copy()


def structures(items: list[int]) -> list:
    frames = []
    for item in items:
        frame = _molecule(MOLECULES[item % len(MOLECULES)])
        frame.rattle(0.01, seed=item)  # each item its own numbers
        frames.append(frame)
    return frames


def soap(items: list[int]):
    """featomic's SOAP power spectrum of ``items`` with positions gradients (systems
    numbered from 0 in every call)."""
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
    return calculator.compute(structures(items), gradients=["positions"])


def renumbered(
    tensor: metatensor.TensorMap, offset: int, name: str = "system"
) -> metatensor.TensorMap:
    """``tensor`` with ``offset`` added to the sample dimension ``name`` of its blocks
    and gradients, nested ones included (what ``renumber`` does), built with metatensor."""

    def shift(labels: metatensor.Labels) -> metatensor.Labels:
        if name not in labels.names:
            return labels
        values = np.array(labels.values)
        values[:, list(labels.names).index(name)] += offset
        return metatensor.Labels(labels.names, values)

    def block(b: metatensor.TensorBlock) -> metatensor.TensorBlock:
        new = metatensor.TensorBlock(
            np.array(b.values), shift(b.samples), b.components, b.properties
        )
        for parameter, gradient in b.gradients():
            new.add_gradient(parameter, block(gradient))
        return new

    return metatensor.TensorMap(tensor.keys, [block(b) for b in tensor.blocks()])


def committed_batches(path: Path) -> int:
    """The batches of a run of ``write_batches`` that the root of the store at ``path``
    records committed (0 before it has a root, or while its root is being replaced)."""
    try:
        root = json.loads((path / "zarr.json").read_text())
    except (FileNotFoundError, ValueError):
        return 0
    return int(root["attributes"]["metatensor_dask"].get("batches", {}).get("committed", 0))


def store_files(path: Path) -> dict[str, str]:
    """Every file of the store at ``path`` (relative path), with a hash of its bytes."""
    found = {}
    for folder, _, names in os.walk(path):
        for name in names:
            full = Path(folder) / name
            found[str(full.relative_to(path))] = hashlib.sha1(full.read_bytes()).hexdigest()
    return found


class Logged:
    """``soap``, each batch's items written first as a line of ``path`` (workers of a
    cluster on this machine append to the same file)."""

    def __init__(self, path: str):
        self.path = path

    def __call__(self, items: list[int]):
        with open(self.path, "a") as log:
            log.write(" ".join(str(item) for item in items) + "\n")
        return soap(items)


class Slow:
    """``soap`` after ``delay`` seconds."""

    def __init__(self, delay: float):
        self.delay = delay

    def __call__(self, items: list[int]):
        time.sleep(self.delay)
        return soap(items)


#: distributed's ``lost-worker-timeout`` after a worker is lost, its cluster closes the
#: worker's nanny for good (with 5 s for its worker to stop) if no worker of its name is
#: connected at that moment, even one lost again later and still restarting. With the
#: default 15 s a restart under load was closed so, and with both workers closed a
#: computation waited forever; with 120 s, a worker killed by a test of a module's shared
#: cluster was closed so 120 s later while a later test's kill of it restarted, and the
#: TimeoutError of that close, kept by the cluster, failed its close at the end of the
#: module. Longer than any cluster of the tests lives: the tests that kill workers wait
#: for their restarts themselves, for a bounded time.
RESTARTS_WAITED_FOR = {"distributed.deploy.lost-worker-timeout": "1 day"}


@contextlib.contextmanager
def closed_patiently(cluster: Any, seconds: float = 120) -> Iterator[Any]:
    """``cluster``, closed once its nannies have stopped their workers, given
    ``seconds`` each: distributed gives them 5 s, from which a worker being restarted
    (killed by the test, or taken for dead) first spends the rest of its start; under
    load the close of the cluster then failed with a bare ``TimeoutError``, after a
    passed test or in place of the error of a failed one."""
    try:
        yield cluster
    finally:
        for nanny in list(cluster.workers.values()):
            cluster.sync(nanny.close, timeout=seconds)
        cluster.close()


@contextlib.contextmanager
def slurm_client(folder: Path, name: str) -> Iterator[Any]:
    """A distributed client of two one-core batch jobs named ``name`` on the test SLURM
    (``bash .ci/slurm.sh start``), their logs and scratch in ``folder``; the workers
    import this module and the package from this process's ``PYTHONPATH``."""
    import dask
    import dask_jobqueue
    from distributed import Client

    settings = {
        "jobqueue.slurm.interface": "lo",
        "jobqueue.slurm.scheduler-options": {
            "interface": "lo",
            "dashboard_address": "127.0.0.1:0",
        },
        "jobqueue.slurm.worker-extra-args": ["--dashboard-address", "127.0.0.1:0"],
        "jobqueue.slurm.log-directory": str(folder / "logs"),
        "jobqueue.slurm.local-directory": str(folder),
    }
    path = [str(Path(__file__).parent)]
    path += [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(":") if p]
    with (
        dask.config.set(settings),
        dask_jobqueue.SLURMCluster(
            cores=1,
            processes=1,
            memory="2GiB",
            walltime="00:10:00",
            job_name=name,
            job_script_prologue=[f"export PYTHONPATH={shlex.quote(':'.join(path))}"],
        ) as cluster,
        Client(cluster) as client,
    ):
        cluster.scale(2)
        client.wait_for_workers(2, timeout=180)
        yield client


def main() -> None:
    import dask

    import metatensor_dask as mtd

    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("n_items", type=int)
    parser.add_argument("batch_size", type=int)
    parser.add_argument("delay", type=float)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--chunks", type=int)
    parser.add_argument("--go")
    parser.add_argument("--slurm")
    args = parser.parse_args()
    print("ready", flush=True)
    while args.go is not None and not os.path.exists(args.go):
        time.sleep(0.001)
    where = (
        slurm_client(Path(args.store).parent, args.slurm)
        if args.slurm
        else dask.config.set(num_workers=2)
    )
    # this module by its name (not ``__main__``, which the workers of a cluster could
    # only get pickled by value, with its locks)
    import ingest_support

    with where:
        mtd.write_batches(
            ingest_support.Slow(args.delay),
            list(range(args.n_items)),
            args.store,
            batch_size=args.batch_size,
            resume=args.resume,
            chunks=args.chunks,
            quiet=True,
        )
    print("done", flush=True)


if __name__ == "__main__":
    main()
