"""Writes and appends computed by windows of tasks on a cluster (the commands' way),
and lock files holding numbers out of range.

The storing tasks of a write or an append are chained for dask's static order (see
``_graph.in_order``); the end of those chains, a task the final one needs, needs every
storing task. Computed by windows, its window took the whole graph again: every chunk
stored twice, the scheduler holding every task, and an append's second store of a
partial chunk read the chunk its first one rewrote, refused as damage."""

from __future__ import annotations

import json
from collections import Counter

import dask
import metatensor
import numpy as np
import pytest
from dask.core import keys_in_tasks

import metatensor_dask as mtd
from metatensor_dask.execution.windows import compute_windowed, split


def _tensor(first: int, n: int) -> metatensor.TensorMap:
    rng = np.random.default_rng(first)
    blocks = [
        metatensor.TensorBlock(
            rng.normal(size=(n, 4)),
            metatensor.Labels(["system"], (first + np.arange(n, dtype=np.int32))[:, None]),
            [],
            metatensor.Labels(["n"], np.arange(4, dtype=np.int32)[:, None]),
        )
        for _ in range(4)
    ]
    return metatensor.TensorMap(
        metatensor.Labels(["k"], np.arange(4, dtype=np.int32)[:, None]), blocks
    )


def _storing_tasks_by_window(delayed) -> Counter:
    """How many windows of 20 tasks hold each storing task of ``delayed``."""
    graph = dict(delayed.__dask_graph__())
    final = graph[delayed.key]
    roots = list(dict.fromkeys(keys_in_tasks(graph, [final], as_list=True)))
    stored = Counter()
    for window in split(graph, roots, 20):
        for key in window.graph:
            name = str(key[0]) if isinstance(key, tuple) else ""
            if name.startswith(("zarr-write-", "zarr-append-")):
                stored[key] += 1
    return stored


def _windowed(client, delayed) -> None:
    """Compute ``delayed`` by windows of 20 tasks, as the commands do on a cluster."""
    compute_windowed(client, dict(delayed.__dask_graph__()), delayed.key, size=20)


def test_windowed_write_and_append_store_each_chunk_once(tmp_path, client):
    path = tmp_path / "t.zarr"
    first, second = _tensor(0, 45), _tensor(45, 40)
    # a task per chunk of 10 rows: a partial last chunk of 5 rows in each values array
    with dask.config.set({"metatensor_dask.chunk-size": "1KiB"}):
        write = mtd.from_metatensor(first).to_zarr(path, chunks=10, compute=False)
        stored = _storing_tasks_by_window(write)
        assert stored and set(stored.values()) == {1}, stored
        _windowed(client, write)
        append = mtd.from_metatensor(second).to_zarr(path, append_dim="samples", compute=False)
        stored = _storing_tasks_by_window(append)
        assert stored and set(stored.values()) == {1}, stored
        _windowed(client, append)
    read = mtd.to_metatensor(mtd.open_zarr(path))
    assert metatensor.equal(read, metatensor.join([first, second], "samples"))


@pytest.mark.parametrize(("field", "number"), [("pid", "1e400"), ("start", "1" + "0" * 400)])
def test_a_lock_file_of_numbers_out_of_range_is_unreadable(tmp_path, field, number):
    """JSON reads ``1e400`` as infinity, not a pid, and a 400-digit integer as an int,
    not a time (an ``OverflowError`` escaped the lock's parse): such a lock file is one
    that can not be read, refused while fresh."""
    path = tmp_path / "t.zarr"
    tensor = mtd.from_metatensor(_tensor(0, 5))
    tensor.to_zarr(path)
    fields = {"owner": "a", "host": "h", "pid": 1, "start": 1.0, "heartbeat": 1.0, "write_id": "w"}
    text = json.dumps({**fields, field: "NUMBER"}).replace('"NUMBER"', number)
    (path / ".lock").write_text(text)
    with pytest.raises(mtd.StoreLockedError, match="can not be read"):
        tensor.to_zarr(path, mode="w")
