"""On a cluster, ``write_batches`` chains at most ``CHAIN`` appends one after the
other: the scheduler keeps every task that a task it holds depends on, so a single
chain of all the appends of a run kept every one of them, with the computations of
their batches, until the run ended."""

from __future__ import annotations

import threading

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.io import ingest_cluster
from metatensor_dask.testing import assert_equal_to_metatensor

# LocalClusters: one such test at a time (2 cores)
pytestmark = pytest.mark.xdist_group("clusters")

ITEMS = 60
BATCH = 2


def rows(items: list[int]) -> metatensor.TensorMap:
    """One row per item, its systems numbered from 0 (as featomic numbers them)."""
    systems = np.arange(len(items), dtype=np.int32).reshape(-1, 1)
    block = metatensor.TensorBlock(
        np.array(items, dtype=np.float64).reshape(-1, 1) * [1.0, 2.0],
        metatensor.Labels(["system"], systems),
        [],
        metatensor.Labels.range("p", 2),
    )
    return metatensor.TensorMap(metatensor.Labels.range("key", 1), [block])


def _most_tasks_held(path, monkeypatch, chain: int) -> int:
    """The most tasks the scheduler held while ``write_batches`` ran with chains of
    ``chain`` appends."""
    from distributed import Client, LocalCluster

    monkeypatch.setattr(ingest_cluster, "CHAIN", chain)
    most = 0
    with (
        LocalCluster(
            processes=False, n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster),
    ):
        scheduler = cluster.scheduler
        stop = threading.Event()

        def watch() -> None:
            nonlocal most
            while not stop.wait(0.002):
                most = max(most, len(scheduler.tasks))

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            mtd.write_batches(rows, list(range(ITEMS)), path, batch_size=BATCH, quiet=True)
        finally:
            stop.set()
            watcher.join()
    return most


def test_the_scheduler_forgets_the_appends_of_finished_chains(tmp_path, monkeypatch):
    most = _most_tasks_held(tmp_path / "chains.zarr", monkeypatch, chain=3)
    # a chain of 3 appends and their computations, the window of computations ahead,
    # the task holding the function: about a dozen, whatever the number of batches
    assert most <= 16, most
    expected = rows(list(range(ITEMS)))
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "chains.zarr").compute(), expected)


def test_one_chain_of_every_append_holds_every_task(tmp_path, monkeypatch):
    """What the chains prevent: 30 batches in one chain, two tasks each held."""
    most = _most_tasks_held(tmp_path / "one.zarr", monkeypatch, chain=10**9)
    assert most >= ITEMS // BATCH, most
