"""write_batches: many batches computed in parallel, committed in order into one store,
equal to metatensor's join of the renumbered batches, resumable."""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dask
import metatensor
import pytest
from forked_workers import forked_workers
from ingest_support import (
    RESTARTS_WAITED_FOR,
    Slow,
    closed_patiently,
    committed_batches,
    renumbered,
    soap,
    store_files,
)

import metatensor_dask as mtd
from metatensor_dask.io import ingest_progress
from metatensor_dask.io.ingest_schedule import Batches
from metatensor_dask.testing import assert_equal_to_metatensor

# LocalClusters of worker processes: one such test at a time (2 cores)
pytestmark = pytest.mark.xdist_group("clusters")

SCRIPT = Path(__file__).with_name("ingest_support.py")


@pytest.fixture(scope="module", autouse=True)
def _workers_forked() -> Iterator[None]:
    """The worker processes of this module's clusters forked (see ``forked_workers``):
    each took seconds to start as a new interpreter."""
    with forked_workers():
        yield


def expected(n_items: int, batch_size: int) -> metatensor.TensorMap:
    batches = [
        renumbered(soap(list(range(start, min(start + batch_size, n_items)))), start)
        for start in range(0, n_items, batch_size)
    ]
    return metatensor.join(batches, axis="samples", different_keys="union")


def test_featomic_batches_equal_join(tmp_path):
    """Keys come and go (molecules without some species), systems are renumbered by
    the index of each batch's first item."""
    path = tmp_path / "soap.zarr"
    with dask.config.set(num_workers=2):
        mtd.write_batches(soap, list(range(9)), path, batch_size=2, quiet=True)
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), expected(9, 2))
    assert mtd.verify(path).ok
    root = json.loads((path / "zarr.json").read_text())["attributes"]["metatensor_dask"]
    assert root["complete"] is True and root["batches"]["committed"] == 5


def test_metatensor_dask_batches_and_progress(tmp_path, capfd):
    def function(items):
        return mtd.from_metatensor(soap(items))

    path = tmp_path / "t.zarr"
    with dask.config.set({"num_workers": 2, "metatensor_dask.progress": True}):
        mtd.write_batches(function, list(range(5)), path, batch_size=3)
    lines = capfd.readouterr().err.splitlines()
    # not a terminal: plain lines, the last one with every batch computed and committed
    assert lines and all(line.startswith("write_batches: ") for line in lines)
    assert "2/2 batches computed, 2/2 committed in " in lines[-1]
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), expected(5, 3))


@pytest.mark.parametrize(
    ("quiet", "setting"), [(True, True), (False, False)], ids=["quiet", "setting-off"]
)
def test_progress_off(tmp_path, capfd, quiet, setting):
    with dask.config.set({"num_workers": 2, "metatensor_dask.progress": setting}):
        mtd.write_batches(soap, list(range(3)), tmp_path / "t.zarr", quiet=quiet)
    assert capfd.readouterr().err == ""


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_on_a_terminal_is_one_line_redrawn(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(ingest_progress.time, "monotonic", lambda: clock[0])
    out = Terminal()
    progress = ingest_progress.BatchProgress(4, show=True, out=out)
    progress.update(1, 0)
    progress.update(2, 0)  # within REDRAW of the last drawing: skipped
    clock[0] = 1.0
    progress.update(3, 1)
    clock[0] = 1.01
    progress.update(4, 4)  # the last one is always drawn
    progress.close()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    drawn = text[:-1].split("\r")[1:]
    assert [d.strip() for d in drawn] == [
        "write_batches: 1/4 batches computed, 0/4 committed in 0.0 s",
        "write_batches: 3/4 batches computed, 1/4 committed in 1.0 s",
        "write_batches: 4/4 batches computed, 4/4 committed in 1.0 s",
    ]
    # a shorter line blanks the end of a longer one
    assert all(len(d) >= len(drawn[0]) for d in drawn)


def test_progress_in_a_log_is_a_line_per_tenth():
    out = io.StringIO()
    progress = ingest_progress.BatchProgress(20, show=True, out=out)
    for committed in range(21):
        progress.update(min(committed + 3, 20), committed)
    progress.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 11  # at 0, 2, 4, ... 20 batches committed
    assert lines[1].startswith("write_batches: 5/20 batches computed, 2/20 committed")
    assert lines[-1].startswith("write_batches: 20/20 batches computed, 20/20 committed")
    assert "\r" not in out.getvalue()


def test_progress_shown_from_a_cluster(tmp_path, capfd, two_worker_processes):
    from distributed import Client

    with (
        Client(two_worker_processes),
        dask.config.set({"metatensor_dask.progress": True}),
    ):
        mtd.write_batches(soap, list(range(4)), tmp_path / "t.zarr", batch_size=1, window=2)
    lines = capfd.readouterr().err.splitlines()
    ours = [line for line in lines if line.startswith("write_batches: ")]
    assert "4/4 batches computed, 4/4 committed" in ours[-1]
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "t.zarr").compute(), expected(4, 1))


@pytest.mark.parametrize("chunks", [None, 3], ids=["default-chunks", "3-rows"])
def test_local_cluster_writes_the_same_bytes_as_threads(tmp_path, chunks, two_worker_processes):
    """With 3 rows per chunk, batches span whole chunks; on a cluster, each batch is
    computed by one task (named after the function) and appended (planned, stored,
    committed) by one more."""
    from distributed import Client, get_task_stream

    size = 1 if chunks is None else 3
    threads = tmp_path / "threads.zarr"
    with dask.config.set(num_workers=2):
        mtd.write_batches(
            soap, list(range(8)), threads, batch_size=size, window=3, chunks=chunks, quiet=True
        )
    cluster = tmp_path / "cluster.zarr"
    with Client(two_worker_processes), get_task_stream() as stream:
        mtd.write_batches(soap, list(range(8)), cluster, batch_size=size, chunks=chunks, quiet=True)
    names = sorted(task["key"].split("-")[0] for task in stream.data)
    batches = -(-8 // size)
    # and one task holding the function, which every batch takes
    assert names == ["append_batch"] * batches + ["soap"] * batches + ["write_batches"]
    assert store_files(threads) == store_files(cluster)
    assert_equal_to_metatensor(mtd.open_zarr(cluster).compute(), expected(8, size))
    assert mtd.verify(cluster).ok


def test_each_worker_computes_its_share_of_the_window():
    """Computations go to the worker of the batch before while it holds less than its
    share of the window (per thread), then to the one holding the fewest batches not
    committed, so that none holds more than its share, however long the run: the peak
    memory does not grow with the number of batches. Consecutive batches on one worker
    are committed there one after the other, without waiting for another worker."""

    def sent_to(batches, workers):
        sent = []
        while batches.wanted(sum(workers.values())):
            sent.append(batches.next_worker(workers))
            batches.started(concurrent.futures.Future(), sent[-1])
        return sent

    batches = Batches(soap, list(range(10)), 1, 0, 4)
    workers = {"tcp://b": 1, "tcp://a": 1}
    assert sent_to(batches, workers) == ["tcp://a", "tcp://a", "tcp://b", "tcp://b"]
    batches.finished()  # the first batch, on a, committed: a computes the next one
    assert sent_to(batches, workers) == ["tcp://a"]
    batches.finished()  # a holds the next one only: it computes the one after too
    assert batches.next_worker(workers) == "tcp://a"
    # a worker with 3 threads takes 3 times the batches of a worker with one
    batches = Batches(soap, list(range(10)), 1, 0, None)
    assert sent_to(batches, {"tcp://a": 1, "tcp://b": 3}) == ["tcp://a"] * 2 + ["tcp://b"] * 6
    # batches sent to a worker that left do not count; no worker, no choice
    assert batches.next_worker({"tcp://c": 1, "tcp://a": 1}) == "tcp://c"
    assert batches.next_worker({}) is None


def test_a_batch_computed_again_counts_once():
    """The progress counts a batch computed again (its worker left) once, whether its
    first computation had finished, finishes later after all, or never does."""
    batches = Batches(soap, list(range(6)), 2, 0, None)
    first, second = concurrent.futures.Future(), concurrent.futures.Future()
    batches.started(first, "tcp://a")
    batches.started(second, "tcp://a")
    first.set_result(None)
    assert batches.computed == 1
    again, second_again = concurrent.futures.Future(), concurrent.futures.Future()
    batches.replace(0, again, "tcp://b")  # finished before its worker left
    batches.replace(1, second_again, "tcp://b")  # still running there
    assert batches.computed == 0
    second.set_result(None)  # the first computation finishes after all
    assert batches.computed == 0
    again.set_result(None)
    second_again.set_exception(RuntimeError("failed"))  # a failed batch is done too
    assert batches.computed == 2
    batches.finished()
    assert (batches.committed, batches.computed) == (1, 2)
    third = concurrent.futures.Future()
    batches.started(third, "tcp://b")
    third.cancel()  # released by a stopped run: not computed
    assert batches.computed == 2


def test_no_batch_outlives_its_commit_on_a_cluster(tmp_path, two_worker_processes):
    """The futures of a run are released as soon as their batch is committed, not by
    Python's garbage collector (disabled here): a batch kept in a reference cycle stays
    in a worker's memory after its commit, beyond the window."""
    import gc

    from distributed import Client

    with Client(two_worker_processes) as client:
        gc.collect()
        gc.disable()
        try:
            # each batch waited for over several redraws of the progress
            mtd.write_batches(Slow(0.3), list(range(6)), tmp_path / "t.zarr", quiet=True)
            held = [str(key) for key, count in client.refcount.items() if count > 0]
        finally:
            gc.enable()
    assert held == []
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "t.zarr").compute(), expected(6, 1))


def test_the_views_of_a_committed_batch_are_freed_without_the_garbage_collector(tmp_path):
    """Views of the arrays of a featomic result (Rust memory, through DLPack) hold it in
    reference cycles: the tasks appending a batch free them before they end, or the
    batch would stay in memory after its commit until Python's cyclic garbage collector
    ran (disabled here)."""
    import gc

    def views() -> int:
        return sum(type(o).__name__ == "LP_DLManagedTensorVersioned" for o in gc.get_objects())

    gc.collect()
    gc.disable()
    try:
        before = views()
        with dask.config.set(num_workers=1):
            mtd.write_batches(soap, list(range(4)), tmp_path / "t.zarr", batch_size=2, quiet=True)
        left = views() - before
    finally:
        gc.enable()
        gc.collect()
    assert left == 0
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "t.zarr").compute(), expected(4, 2))


def _sizes(items):
    """dask's size of a metatensor-core batch, and the bytes of its arrays."""
    from dask.sizeof import sizeof

    tensor = soap(items)
    blocks = [b for block in tensor.blocks() for b in (block, *dict(block.gradients()).values())]
    return sizeof(tensor), sum(block.values.nbytes for block in blocks)


def test_workers_know_the_size_of_batches_computed_before_the_run(tmp_path):
    """A worker that measured a metatensor-core TensorMap before its first batch (dask
    then cached the size of any object for the type) learns its real size: taking a
    batch for a few bytes, distributed's scheduler would copy it to idle workers."""
    from distributed import Client, LocalCluster

    # a new interpreter: a worker forked from a server that imported metatensor-dask's
    # ingestion (another module's preload) would register the sizes before measuring
    with (
        dask.config.set({"distributed.worker.multiprocessing-method": "spawn"}),
        LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address="127.0.0.1:0") as local,
        Client(local) as client,
    ):
        client.run(soap, [0])  # a result measured, as when warming the workers up
        mtd.write_batches(soap, list(range(2)), tmp_path / "t.zarr", quiet=True)
        ((found, arrays),) = client.run(_sizes, [0, 1]).values()
    assert found == arrays > 1000


def failing(items):
    if 5 in items:
        raise RuntimeError("no structure 5")
    return soap(items)


def test_a_failing_batch_stops_the_run_and_resume_continues(tmp_path):
    path = tmp_path / "t.zarr"
    with (
        dask.config.set(num_workers=2),
        pytest.raises(
            mtd.MetatensorDaskError,
            match=r"batch 2 \(items 4 to 5, first item 4\) failed: RuntimeError: no structure "
            r"5; the 2 batches before it are committed",
        ),
    ):
        mtd.write_batches(failing, list(range(8)), path, batch_size=2, quiet=True)
    with pytest.raises(mtd.IncompleteStoreError):
        mtd.open_zarr(path)
    root = json.loads((path / "zarr.json").read_text())["attributes"]["metatensor_dask"]
    assert root["batches"]["committed"] == 2
    for kwargs, wrong in [
        ({"batch_size": 3}, "batch_size was 2, here it is 3"),
        ({"batch_size": 2, "run_id": "x"}, "run_id was None, here it is 'x'"),
    ]:
        with pytest.raises(mtd.MetatensorDaskError, match=wrong):
            mtd.write_batches(soap, list(range(8)), path, resume=True, quiet=True, **kwargs)
    with pytest.raises(mtd.MetatensorDaskError, match="n_items was 8, here it is 9"):
        mtd.write_batches(soap, list(range(9)), path, batch_size=2, resume=True, quiet=True)
    with pytest.raises(mtd.MetatensorDaskError, match=r"already exists.*resume=True"):
        mtd.write_batches(soap, list(range(8)), path, batch_size=2, quiet=True)
    mtd.write_batches(soap, list(range(8)), path, batch_size=2, resume=True, quiet=True)
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), expected(8, 2))
    # a finished run is left as it is
    before = store_files(path)
    mtd.write_batches(soap, list(range(8)), path, batch_size=2, resume=True, quiet=True)
    assert store_files(path) == before


def test_a_failing_batch_on_a_cluster_stops_the_run_and_resume_continues(
    tmp_path, two_worker_processes
):
    from distributed import Client

    path = tmp_path / "t.zarr"
    with Client(two_worker_processes):
        with pytest.raises(
            mtd.MetatensorDaskError,
            match=r"batch 2 \(items 4 to 5, first item 4\) failed: RuntimeError: no structure "
            r"5; the 2 batches before it are committed",
        ):
            mtd.write_batches(failing, list(range(8)), path, batch_size=2, chunks=2, quiet=True)
        root = json.loads((path / "zarr.json").read_text())["attributes"]["metatensor_dask"]
        assert root["batches"]["committed"] == 2
        mtd.write_batches(soap, list(range(8)), path, batch_size=2, chunks=2, resume=True)
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), expected(8, 2))
    assert mtd.verify(path).ok


def dying_once(marker: str, items):
    """The batches of ``soap``, but the worker computing item 4 dies the first time."""
    if 4 in items and not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)
    return soap(items)


def test_a_worker_dying_mid_run_loses_nothing(tmp_path):
    """A worker process that dies (a batch job ending, a node lost) takes the batches
    it held with it; distributed computes them again elsewhere and the run completes
    with the store it would have written otherwise."""
    import functools

    from distributed import Client, LocalCluster

    path = tmp_path / "t.zarr"
    marker = tmp_path / "died"
    # the run may end on the other worker while the dead one's nanny restarts it, which
    # under load outlasts the 5 s a close or a lost-worker-timeout gives it to stop
    with (
        dask.config.set(RESTARTS_WAITED_FOR),
        closed_patiently(
            LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0")
        ) as local,
        Client(local),
    ):
        function = functools.partial(dying_once, str(marker))
        mtd.write_batches(function, list(range(8)), path, batch_size=2, chunks=2, quiet=True)
    assert marker.exists()
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), expected(8, 2))
    assert mtd.verify(path).ok


def held_until(marker: str, items):
    """The batches of ``soap``, the first one computed once ``marker`` exists."""
    while items[0] == 0 and not os.path.exists(marker):
        time.sleep(0.01)
    return soap(items)


@contextlib.contextmanager
def held_run(tmp_path: Path, cluster: Any, n_items: int) -> Iterator[tuple[Any, Path]]:
    """``write_batches`` of ``n_items`` in batches of 2 on ``cluster``, in a thread, its
    first batch held until the block ends; yields the client and the store."""
    import functools
    import threading

    from distributed import Client

    path = tmp_path / "t.zarr"
    marker = tmp_path / "go"
    function = functools.partial(held_until, str(marker))
    with Client(cluster) as client:
        run = threading.Thread(
            target=mtd.write_batches,
            args=(function, list(range(n_items)), path),
            kwargs={"batch_size": 2, "chunks": 2, "quiet": True},
        )
        run.start()
        try:
            yield client, path
        finally:
            marker.touch()
            run.join()


def _until(found: Callable[[], Any], what: str) -> Any:
    """What ``found`` returns once it is true (a minute at most)."""
    deadline = time.monotonic() + 60
    while not (value := found()):
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
    return value


def test_a_commit_is_submitted_with_its_batch(tmp_path):
    """The task appending a batch reaches the scheduler with the batch, before the batch
    is computed: the worker gets it as soon as it may run, without a round trip through
    the calling process (during which it would start its next batch)."""

    def tasks(dask_scheduler) -> list[str]:
        return [str(key) for key in dask_scheduler.tasks]

    from distributed import LocalCluster

    with (
        LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address="127.0.0.1:0") as local,
        held_run(tmp_path, local, 6) as (client, path),
    ):
        # the batch and its commit are two submissions: the commit may reach the
        # scheduler a while after the batch on a loaded machine (half a second was once
        # assumed); while the first batch is held on the only worker thread, no batch is
        # computed, so a commit known then was sent with its batch, not after a round trip
        _until(
            lambda: any(k.startswith("append_batch-") for k in client.run_on_scheduler(tasks)),
            "no commit reached the scheduler while the first batch was held",
        )
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), expected(6, 2))


def test_batches_may_run_on_their_worker_only(tmp_path, two_worker_processes):
    """Each computation is pinned to the worker it is sent to, strictly: work stealing
    would move it to an idle worker, and the task appending it (pinned to the first)
    would then fetch the whole batch from there. Consecutive batches go to one worker,
    up to its share of the window (two batches each here)."""
    import collections

    def restrictions(dask_scheduler) -> dict[str, tuple[list[str], bool]]:
        return {
            str(key): (sorted(ts.worker_restrictions or ()), ts.loose_restrictions)
            for key, ts in dask_scheduler.tasks.items()
            if str(key).startswith("partial-")
        }

    with held_run(tmp_path, two_worker_processes, 8) as (client, path):

        def four_batches() -> dict[str, tuple[list[str], bool]] | None:
            seen = client.run_on_scheduler(restrictions)
            return seen if len(seen) >= 4 else None

        found = _until(four_batches, "the batches never reached the scheduler")
    assert all(len(workers) == 1 and not loose for workers, loose in found.values()), found
    per_worker = collections.Counter(workers[0] for workers, _ in found.values())
    assert sorted(per_worker.values()) == [2, 2], found
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), expected(8, 2))


def test_arguments_checked(tmp_path):
    path = tmp_path / "t.zarr"
    with pytest.raises(mtd.MetatensorDaskError, match="`batch_size` must be a positive int"):
        mtd.write_batches(soap, [1], path, batch_size=0)
    with pytest.raises(mtd.MetatensorDaskError, match="`items` is empty"):
        mtd.write_batches(soap, [], path)
    with pytest.raises(mtd.MetatensorDaskError, match="returned a list for batch 0"):
        mtd.write_batches(lambda items: [], [1], path, quiet=True)


def test_killed_run_resumes(tmp_path):
    path = tmp_path / "killed.zarr"
    log = tmp_path / "run.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, str(SCRIPT), str(path), "10", "1", "0.3"],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the run made no progress"
            if committed_batches(path) >= 3:
                break
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    with pytest.raises(mtd.IncompleteStoreError):
        mtd.open_zarr(path)
    with dask.config.set(num_workers=2):
        mtd.write_batches(Slow(0.0), list(range(10)), path, batch_size=1, resume=True, quiet=True)
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), expected(10, 1))
    assert mtd.verify(path).ok
