"""write_batches refuses a bad argument or a store it can not write before any batch is
computed: no task reaches a cluster, the function is not called, and every file in and
around the store keeps its bytes."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from pathlib import Path

import metatensor
import numpy as np
import pytest
from read_only_mounts import unwritable

import metatensor_dask as mtd
from metatensor_dask.errors import MetatensorDaskError
from metatensor_dask.testing import assert_equal_to_metatensor


def rows(items: list[int]) -> metatensor.TensorMap:
    """A map of two blocks, one row per item (systems numbered from 0 in each call)."""
    n = len(items)
    blocks = [
        metatensor.TensorBlock(
            values=np.array(items, dtype=np.float64)[:, None] * np.arange(1, 4) + shift,
            samples=metatensor.Labels(["system"], np.arange(n, dtype=np.int32)[:, None]),
            components=[],
            properties=metatensor.Labels.range("p", 3),
        )
        for shift in (0.0, 0.5)
    ]
    return metatensor.TensorMap(metatensor.Labels.range("k", 2), blocks)


def failing_from_two(items: list[int]) -> metatensor.TensorMap:
    """:func:`rows`, failing for the batches from item 2 on."""
    if items[0] >= 2:
        raise ValueError("stop here")
    return rows(items)


class Counted:
    """:func:`rows`, counting its calls (on threads)."""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, items: list[int]) -> metatensor.TensorMap:
        with self.lock:
            self.calls += 1
        return rows(items)


def hashes(folder: Path) -> dict[str, str]:
    """Every entry under ``folder`` by its relative name: a file's hash, a link's
    target, or "folder"."""
    found = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if path.is_symlink():
            found[name] = f"-> {os.readlink(path)}"
        elif path.is_file():
            found[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            found[name] = "folder"
    return found


def interrupted(path: Path) -> None:
    """A run of 6 items in batches of 2 that committed its first batch and failed."""
    with pytest.raises(MetatensorDaskError, match="batch 1"):
        mtd.write_batches(failing_from_two, list(range(6)), path, batch_size=2, quiet=True)


def test_a_resume_into_a_node_linked_to_a_read_only_folder_computes_nothing(tmp_path):
    """The node's folder is found unwritable from the store, before the first batch:
    the refusal names the node and the folder, not a batch that failed to store."""
    store = tmp_path / "s.zarr"
    interrupted(store)
    shared = tmp_path / "shared"
    shared.mkdir()
    shutil.move(store / "blocks" / "1", shared / "node")
    counted = Counted()
    with unwritable(shared) as view:
        os.symlink(view / "node", store / "blocks" / "1")
        before = hashes(tmp_path)
        with pytest.raises(OSError, match=r"Read-only file system|Permission denied") as refused:
            mtd.write_batches(counted, list(range(6)), store, 2, resume=True, quiet=True)
        message = str(refused.value)
        assert "'blocks/1'" in message and str(view / "node") in message, message
        assert "nothing was written" in message and "batch" not in message, message
        assert hashes(tmp_path) == before
        assert counted.calls == 0
        os.remove(store / "blocks" / "1")
    shutil.move(shared / "node", store / "blocks" / "1")
    mtd.write_batches(rows, list(range(6)), store, batch_size=2, resume=True, quiet=True)
    expected = rows(list(range(6)))
    assert_equal_to_metatensor(mtd.open_zarr(store), expected)


BAD = {
    "not callable": ({"function": rows([0])}, r"`function` must be callable.*not its result"),
    "resume not a bool": ({"resume": "yes"}, r"`resume` must be True or False, got str"),
    "quiet not a bool": ({"quiet": 1}, r"`quiet` must be True or False, got int"),
    "a metatensor file": ({"store": "t.mts"}, r"names a metatensor file.*'\.zarr'"),
    "in another store": ({"store": "outer.zarr/inner.zarr"}, r"inside the Zarr store"),
    "a store of to_zarr": ({"store": "plain.zarr"}, r"not written by write_batches: (?!.*resume)"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_refused_before_any_batch_and_leaves_no_trace(tmp_path, case):
    mtd.write_batches(rows, [0, 1], tmp_path / "outer.zarr", quiet=True)
    mtd.from_metatensor(rows([0, 1])).to_zarr(tmp_path / "plain.zarr")
    before = hashes(tmp_path)
    arguments, match = BAD[case]
    counted = Counted()
    call = {"function": counted, "store": "new.zarr", "resume": False, "quiet": True, **arguments}
    with pytest.raises(MetatensorDaskError, match=match):
        mtd.write_batches(
            call["function"],
            list(range(4)),
            tmp_path / call["store"],
            batch_size=2,
            resume=call["resume"],
            quiet=call["quiet"],
        )
    assert hashes(tmp_path) == before
    assert counted.calls == 0


def _prefixes(client) -> list[str]:
    """The names of every task the scheduler was ever given."""
    return client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))


@pytest.mark.xdist_group("serial")
def test_refusals_on_a_cluster_send_no_task(tmp_path):
    """A read-only folder, a read-only parent, an existing store, a store held by
    another run: each refused before the function or a batch reaches the workers."""
    from distributed import Client, LocalCluster

    done = tmp_path / "done.zarr"
    mtd.write_batches(rows, list(range(4)), done, batch_size=2, quiet=True)
    other = tmp_path / "other.zarr"
    interrupted(other)
    folder = tmp_path / "folder"
    folder.mkdir()
    with (
        unwritable(folder) as view,
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster) as client,
    ):
        before = hashes(tmp_path)
        refusals = [
            (view / "new.zarr", {}, OSError, r"can not write to .*nothing was written"),
            (view / "a" / "b.zarr", {}, OSError, r"can not write to .*nothing was written"),
            (done, {}, MetatensorDaskError, r"already exists.*resume=True"),
            (other, {"resume": True, "batch_size": 3}, MetatensorDaskError, r"its batch_size"),
        ]
        for store, arguments, error, match in refusals:
            with pytest.raises(error, match=match):
                mtd.write_batches(
                    rows, list(range(6)), store, **{"batch_size": 2, **arguments}, quiet=True
                )
            assert hashes(tmp_path) == before, store
            assert _prefixes(client) == [], store
