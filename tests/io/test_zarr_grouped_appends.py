"""Appends of maps of tiny blocks read (or computed) by groups: the storing tasks take
each array from its group's result, a few small chunks a task, so the tasks of an
append grow with the groups, not with the blocks, and an append never gives
distributed a task it knows another way."""

from __future__ import annotations

from pathlib import Path

import dask
import metatensor
import numpy as np
import pytest
from test_zarr_append import assert_equal_to_join, shifted
from test_zarr_grouped_writes import (
    LARGE,
    SOURCES,
    _scheduler_log,
    storing_keys,
    tasks_run,
    tiny_stores,
)
from test_zarr_tiny_reads import CODECS, tiny_map

import metatensor_dask as mtd
from metatensor_dask.testing import raise_if_dask_computes

RENUMBER = {"s": "next"}


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[int, Path]:
    return tiny_stores(tmp_path_factory.mktemp("grouped-appends"))


def _first(n: int, keys: int | None = None) -> metatensor.TensorMap:
    """The map stored before the append: ``n`` tiny blocks, or their first ``keys``."""
    theirs = tiny_map(n, seed=1)
    if keys is None:
        return theirs
    labels = metatensor.Labels(["k"], np.arange(keys, dtype=np.int32).reshape(-1, 1))
    return metatensor.TensorMap(labels, [block.copy() for block in theirs.blocks()[:keys]])


def _assert_appended(
    path: Path, first: metatensor.TensorMap, added: metatensor.TensorMap, verify: bool = True
):
    """The store at ``path`` holds ``first`` joined with ``added`` renumbered after it
    (values and gradients), and (``verify``) its checksums match."""
    largest = max(int(max(block.samples.column("s"), default=-1)) for block in first)
    assert_equal_to_join(mtd.open_zarr(path), [first, shifted(added, largest + 1, "s")])
    if verify:
        report = mtd.verify(path)
        assert report.ok, report.problems


def _append(tensor: mtd.TensorMap, path: Path, **kwargs):
    return tensor.to_zarr(path, append_dim="samples", renumber=RENUMBER, **kwargs)


# -- tasks -----------------------------------------------------------------------------


#: Each source of groups with one kind of append: the storing tasks take the groups'
#: items the same way whatever the groups come from, so each kind of append is tried
#: with groups read (from a store, from a file) and computed (once, twice over).
APPENDS = [("opened", "all"), ("loaded", "half"), ("multiply", "half"), ("chain", "all")]


@pytest.mark.parametrize(("source", "stored_keys"), APPENDS)
def test_the_tasks_of_an_append_grow_with_groups_not_blocks(stores, tmp_path, source, stored_keys):
    """Building each append computes nothing, its tasks grow with the groups, and it
    stores metatensor's join (the appends of 50 blocks check building and storing as a
    test of its own did). "all": every key appended is stored; "half": the second half
    are new blocks, stored whole."""
    ours, oracle = SOURCES[source]
    counts = []
    for n, path in stores.items():
        out = tmp_path / f"a{n}.zarr"
        # "half": the second half of the keys are new blocks, stored whole
        first = _first(n, None if stored_keys == "all" else n // 2)
        mtd.from_metatensor(first).to_zarr(out)
        tensor = ours(path)
        with raise_if_dask_computes():
            appended = _append(tensor, out, compute=False)
        counts.append(tasks_run(appended.compute))
        _assert_appended(out, first, oracle(tiny_map(n, seed=n)), verify=n < LARGE)
    # a task per array ran 1,249 tasks for 400 blocks (800 arrays), more than the arrays
    assert counts[1] <= counts[0] + 4, counts
    assert counts[1] < 40, counts


@pytest.mark.parametrize("codecs", ["default", "sharded-zstd"])
def test_items_appended_into_partial_chunks_keep_their_stored_rows(stores, tmp_path, codecs):
    """The store made by an append with 16 rows a chunk: the 5 rows of each block
    appended go into its partial last chunk (or shard), each item picked from its
    group's result and merged with the stored rows."""
    out = tmp_path / "a.zarr"
    with dask.config.set(CODECS[codecs]):
        mtd.from_metatensor(_first(50)).to_zarr(out, append_dim="samples", chunks=16)
        appended = _append(mtd.multiply(mtd.open_zarr(stores[50]), 2.5), out, compute=False)
        assert tasks_run(appended.compute) < 10
    _assert_appended(out, _first(50), metatensor.multiply(tiny_map(50, seed=50), 2.5))


def test_a_persisted_map_is_appended_from_its_persisted_groups(stores, tmp_path):
    out = tmp_path / "a.zarr"
    mtd.from_metatensor(_first(50)).to_zarr(out)
    persisted = mtd.multiply(mtd.open_zarr(stores[50]), 2.5).persist()
    appended = _append(persisted, out, compute=False)
    # the storing tasks and the commit: nothing is read or computed again (a task an
    # array would be 100)
    assert tasks_run(appended.compute) < 10
    _assert_appended(out, _first(50), metatensor.multiply(tiny_map(50, seed=50), 2.5))


def test_an_interrupted_append_of_groups_resumes_with_the_chunks_left(stores, tmp_path):
    path, out = stores[50], tmp_path / "a.zarr"
    mtd.from_metatensor(_first(50)).to_zarr(out)
    with dask.config.set({"metatensor_dask.chunk-size": "16KiB"}):
        delayed = _append(mtd.multiply(mtd.open_zarr(path), 2.5), out, compute=False)
        keys = storing_keys(delayed, "zarr-append-")
        assert len(keys) > 4
        # the first storing tasks run (partial chunks rewritten), then the writer stops
        dask.get(dict(delayed.__dask_graph__()), keys[:2])
        with pytest.raises(mtd.MetatensorDaskError, match="interrupted"):
            _append(mtd.multiply(mtd.open_zarr(path), 2.5), out)
        resumed = _append(mtd.multiply(mtd.open_zarr(path), 2.5), out, resume=True, compute=False)
        assert len(storing_keys(resumed, "zarr-append-")) == len(keys) - 2
        resumed.compute()
    _assert_appended(out, _first(50), metatensor.multiply(tiny_map(50, seed=50), 2.5))


# -- the store read --------------------------------------------------------------------


@pytest.mark.parametrize("source", ["opened", "multiply"])
def test_a_map_of_groups_read_from_the_store_appends_to_it(tmp_path, source):
    """The groups read the stored chunks whose partial last ones the append rewrites:
    each is read by the group whose items the task rewriting it stores."""
    ours, oracle = SOURCES[source]
    first = tiny_map(60, seed=3)
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(first).to_zarr(path)
    _append(ours(path), path)
    _assert_appended(path, first, oracle(first))


# -- distributed -----------------------------------------------------------------------


def _persist_then_append_lazily(client, make, out):
    persisted = make().persist()
    future = client.compute(_append(make(), out, compute=False))
    future.result()
    return [persisted, future]


def _write_then_append_persisted(client, make, out):
    """A write's future held (the groups under the write's own keys), then the map
    persisted and appended."""
    future = client.compute(make().to_zarr(out.with_name("w.zarr"), compute=False))
    future.result()
    persisted = make().persist()
    _append(persisted, out)
    return [future, persisted]


ORDERS = {
    "persist-then-append-lazily": _persist_then_append_lazily,
    "write-then-append-persisted": _write_then_append_persisted,
}


@pytest.mark.parametrize("order", sorted(ORDERS))
@pytest.mark.parametrize("source", ["loaded", "chain"])
def test_appends_on_a_distributed_client_reuse_no_key_with_another_task(
    stores, tmp_path, source, order
):
    ours, oracle = SOURCES[source]
    out = tmp_path / "a.zarr"
    mtd.from_metatensor(_first(50)).to_zarr(out)
    log = _scheduler_log(lambda client: ORDERS[order](client, lambda: ours(stores[50]), out))
    assert "run_spec" not in log
    _assert_appended(out, _first(50), oracle(tiny_map(50, seed=50)))
