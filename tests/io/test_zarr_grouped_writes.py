"""Writes of maps of tiny blocks read (or computed) by groups: the storing tasks take
each array from its group's result, so the tasks of a write grow with the groups, not
with the blocks, and a write never gives distributed a task it knows another way."""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

import dask
import metatensor
import pytest
from dask.callbacks import Callback
from test_zarr_tiny_reads import tiny_map

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes

SOURCES = {
    "opened": (lambda path: mtd.open_zarr(path), lambda theirs: theirs),
    "loaded": (lambda path: mtd.load(path.with_suffix(".mts")), lambda theirs: theirs),
    "multiply": (
        lambda path: mtd.multiply(mtd.open_zarr(path), 2.5),
        lambda theirs: metatensor.multiply(theirs, 2.5),
    ),
    "add": (
        lambda path: mtd.add(mtd.load(path.with_suffix(".mts")), mtd.open_zarr(path)),
        lambda theirs: metatensor.add(theirs, theirs),
    ),
    # groups computed from groups computed from the reads
    "chain": (
        lambda path: mtd.add(mtd.multiply(mtd.open_zarr(path), 2.5), 1.0),
        lambda theirs: metatensor.add(metatensor.multiply(theirs, 2.5), 1.0),
    ),
}


#: Blocks of the larger map: 200 arrays (values and gradients), far more than the tasks
#: that store them by groups, and still one group of reads.
LARGE = 100


def tiny_stores(directory: Path) -> dict[int, Path]:
    """A store and a metatensor file of ``n`` tiny blocks in ``directory``, for 50 and
    :data:`LARGE` blocks."""
    paths = {}
    for n in (50, LARGE):
        paths[n] = directory / f"t{n}.zarr"
        theirs = tiny_map(n, seed=n)
        mtd.from_metatensor(theirs).to_zarr(paths[n])
        metatensor.save(paths[n].with_suffix(".mts"), theirs)
    return paths


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[int, Path]:
    return tiny_stores(tmp_path_factory.mktemp("grouped-writes"))


def tasks_run(call) -> int:
    """The tasks that ``call()`` runs (dask's synchronous scheduler)."""
    run = []
    with dask.config.set(scheduler="sync"), Callback(pretask=lambda key, *_: run.append(key)):
        call()
    return len(run)


def _assert_written(path: Path, theirs: metatensor.TensorMap, verify: bool = True) -> None:
    """The store at ``path`` holds ``theirs``, and (``verify``) its checksums match."""
    assert_equal_to_metatensor(mtd.open_zarr(path), theirs)
    if verify:
        report = mtd.verify(path)
        assert report.ok, report.problems


# -- tasks -----------------------------------------------------------------------------


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_the_tasks_of_a_write_grow_with_groups_not_blocks(stores, tmp_path, source):
    """Building each write computes nothing, its tasks grow with the groups, and it
    stores metatensor's result (the write of 50 blocks of each source checks building
    and storing as a test of its own did)."""
    ours, oracle = SOURCES[source]
    counts = []
    for n, path in stores.items():
        tensor = ours(path)
        with raise_if_dask_computes():
            written = tensor.to_zarr(tmp_path / f"w{n}.zarr", compute=False)
        counts.append(tasks_run(written.compute))
        _assert_written(tmp_path / f"w{n}.zarr", oracle(tiny_map(n, seed=n)), verify=n < LARGE)
    # a task per array ran 628 tasks for 400 blocks (800 arrays), as many as the arrays
    assert counts[1] <= counts[0] + 4, counts
    assert counts[1] < 40, counts


def test_a_persisted_map_is_written_from_its_persisted_groups(stores, tmp_path):
    path = stores[50]
    persisted = mtd.multiply(mtd.open_zarr(path), 2.5).persist()
    written = persisted.to_zarr(tmp_path / "w.zarr", compute=False)
    # the storing tasks and the completion: nothing is read or computed again (a task
    # an array would be 100)
    assert tasks_run(written.compute) < 10
    _assert_written(tmp_path / "w.zarr", metatensor.multiply(tiny_map(50, seed=50), 2.5), False)


def test_arrays_rechunked_for_the_write_are_stored_from_their_own_tasks(stores, tmp_path):
    # 5 samples in chunks of 2 rows: no array is one item of a group any more
    path = stores[50]
    mtd.multiply(mtd.open_zarr(path), 2.5).to_zarr(tmp_path / "w.zarr", chunks=2)
    _assert_written(tmp_path / "w.zarr", metatensor.multiply(tiny_map(50, seed=50), 2.5))
    stored = mtd.open_zarr(tmp_path / "w.zarr")
    assert stored.block(0).values.chunks[0] == (2, 2, 1)


def storing_keys(delayed, prefix: str = "zarr-write-") -> list:
    """The keys of the storing tasks of ``delayed`` (a write, or an append's prefix)."""
    return sorted(
        key
        for key in dict(delayed.__dask_graph__())
        if isinstance(key, tuple) and str(key[0]).startswith(prefix)
    )


def test_an_interrupted_write_of_groups_resumes_with_the_groups_left(stores, tmp_path):
    path, out = stores[50], tmp_path / "w.zarr"
    tensor = mtd.multiply(mtd.open_zarr(path), 2.5)
    with dask.config.set({"metatensor_dask.chunk-size": "16KiB"}):
        delayed = tensor.to_zarr(out, compute=False)
        keys = storing_keys(delayed)
        assert len(keys) > 4
        # the first storing tasks run, then the writer stops
        dask.get(dict(delayed.__dask_graph__()), keys[:2])
        with pytest.raises(mtd.MetatensorDaskError, match="resume=True"):
            mtd.open_zarr(out)
        resumed = mtd.multiply(mtd.open_zarr(path), 2.5).to_zarr(out, resume=True, compute=False)
        assert len(storing_keys(resumed)) == len(keys) - 2
        resumed.compute()
    _assert_written(out, metatensor.multiply(tiny_map(50, seed=50), 2.5))


# -- the store read --------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["w", "r+"])
@pytest.mark.parametrize("source", ["opened", "multiply"])
def test_a_write_onto_the_store_its_groups_read_is_refused(tmp_path, mode, source):
    theirs = tiny_map(30, seed=7)
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(theirs).to_zarr(path)
    tensor = SOURCES[source][0](path)
    with pytest.raises(mtd.MetatensorDaskError, match="reads the store it would overwrite"):
        tensor.to_zarr(path, mode=mode)
    _assert_written(path, theirs)
    # computed first, it overwrites the store
    tensor.compute().to_zarr(path, mode="w")
    _assert_written(path, SOURCES[source][1](theirs))


# -- distributed -----------------------------------------------------------------------


def _write_then_persist(client, make, tmp_path):
    """The case that gave 'different run_spec' when the storing tasks took their
    items from the groups' results as the operations compute them: a write computed
    (its future held), the same map persisted, then written."""
    future = client.compute(mtd.to_zarr(make(), tmp_path / "a.zarr", compute=False))
    future.result()
    persisted = make().persist()
    mtd.to_zarr(persisted, tmp_path / "b.zarr")
    return [future, persisted]


def _persist_values_then_write(client, make, tmp_path):
    """Arrays of the map persisted alone (their own tasks, fused by dask), then the
    map written: a write of each array's own task gave their keys another task."""
    tensor = make()
    held = [tensor.block(1).values.persist(), tensor.block(2).gradient("positions").values]
    held[1] = held[1].persist()
    mtd.to_zarr(make(), tmp_path / "b.zarr")
    return held


def _write_then_persist_values(client, make, tmp_path):
    future = client.compute(mtd.to_zarr(make(), tmp_path / "b.zarr", compute=False))
    future.result()
    tensor = make()
    return [future, tensor.block(1).values.persist(), tensor.block(4).values.persist()]


def _persist_then_write_lazily(client, make, tmp_path):
    persisted = make().persist()
    future = client.compute(mtd.to_zarr(make(), tmp_path / "b.zarr", compute=False))
    future.result()
    return [persisted, future]


def _write_then_compute(client, make, tmp_path):
    future = client.compute(mtd.to_zarr(make(), tmp_path / "b.zarr", compute=False))
    future.result()
    computed = client.compute(make())
    computed.result()
    return [future, computed]


ORDERS = {
    "write-then-compute": _write_then_compute,
    "write-then-persist": _write_then_persist,
    "persist-values-then-write": _persist_values_then_write,
    "write-then-persist-values": _write_then_persist_values,
    "persist-then-write-lazily": _persist_then_write_lazily,
}


def _scheduler_log(run) -> str:
    """What distributed's scheduler logged while ``run(client)`` ran on a
    ``LocalCluster`` of one worker (in this process); a warning raises."""
    distributed = pytest.importorskip("distributed")
    messages = io.StringIO()
    handler = logging.StreamHandler(messages)
    logger = logging.getLogger("distributed.scheduler")
    logger.addHandler(handler)
    try:
        with (
            warnings.catch_warnings(),
            distributed.LocalCluster(
                n_workers=1, processes=False, dashboard_address="127.0.0.1:0"
            ) as c,
            distributed.Client(c) as client,
        ):
            warnings.simplefilter("error")
            held = run(client)
            del held
    finally:
        logger.removeHandler(handler)
    return messages.getvalue()


@pytest.mark.parametrize("order", sorted(ORDERS))
@pytest.mark.parametrize("source", ["loaded", "multiply", "chain"])
def test_writes_on_a_distributed_client_reuse_no_key_with_another_task(
    stores, tmp_path, source, order
):
    ours, oracle = SOURCES[source]
    log = _scheduler_log(lambda client: ORDERS[order](client, lambda: ours(stores[50]), tmp_path))
    assert "run_spec" not in log
    _assert_written(tmp_path / "b.zarr", oracle(tiny_map(50, seed=50)))


def test_a_save_on_a_distributed_client_reuses_no_key_with_another_task(stores, tmp_path):
    # the .mts save takes the groups' results too: a map persisted, then saved lazily
    path = stores[50].with_suffix(".mts")

    def run(client):
        persisted = mtd.multiply(mtd.load(path), 2.5).persist()
        mtd.save(tmp_path / "s.mts", mtd.multiply(mtd.load(path), 2.5))
        return persisted

    assert "run_spec" not in _scheduler_log(run)
    theirs = metatensor.multiply(tiny_map(50, seed=50), 2.5)
    assert_equal_to_metatensor(mtd.load(tmp_path / "s.mts"), theirs)


def test_the_group_tasks_of_a_write_are_its_own(stores, tmp_path):
    """A group computed from others is given to the scheduler under a key of the
    write's own (dask gives the group's key other tasks when it computes or persists
    the map); a group read from the store keeps its key."""
    opened = mtd.open_zarr(stores[50])
    tensor = mtd.multiply(opened, 2.5)
    graph = dict(tensor.to_zarr(tmp_path / "w.zarr", compute=False).__dask_graph__())
    shared = set(graph) & set(dict(tensor.__dask_graph__()))
    assert shared
    assert shared <= set(dict(opened.__dask_graph__()))
