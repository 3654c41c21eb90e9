"""Writing a store on a cluster by windows of tasks."""

import operator
import os
import sys

import dask
import metatensor
import numpy as np
import pytest
from distributed.diagnostics.plugin import SchedulerPlugin

import metatensor_dask as mtd
from metatensor_dask.datasets import featomic_like
from metatensor_dask.execution.demo import PIPELINE
from metatensor_dask.execution.pipeline import Pipeline
from metatensor_dask.execution.progress import _Bar, compute
from metatensor_dask.execution.windows import compute_windowed, split
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes

# LocalClusters of worker processes: one such test at a time (2 cores)
pytestmark = pytest.mark.xdist_group("clusters")


def _blocks_graph(blocks=6, rows=4):
    """Blocks of ``rows`` tasks sharing one input per block (one independent part each),
    and a final task adding everything."""
    graph = {}
    for b in range(blocks):
        graph[("x", b)] = (operator.add, b, 1)
        for i in range(rows):
            graph[("y", b, i)] = (operator.mul, ("x", b), i)
    roots = [("y", b, i) for b in range(blocks) for i in range(rows)]
    graph["final"] = (sum, roots)
    return graph, roots


def _closed(window):
    return all(
        dependency in window.graph
        for key in window.graph
        for dependency in dask.core.get_dependencies(window.graph, key)
    )


def test_windows_take_whole_independent_parts():
    graph, roots = _blocks_graph()
    windows = split(graph, roots, 10)  # a block is 5 tasks: two blocks per window
    assert [len(w.graph) for w in windows] == [10, 10, 10]
    assert [k for w in windows for k in w.keys] == roots
    for window in windows:
        assert _closed(window)
        assert sum(window.weights) == len(window.graph)
        assert {key[1] for key in window.keys} == {key[1] for key in window.graph}


def test_a_part_larger_than_a_window_is_cut_in_order():
    graph, roots = _blocks_graph(blocks=2, rows=6)  # 7 tasks per block
    windows = split(graph, roots, 3)
    assert [k for w in windows for k in w.keys] == roots
    assert all(_closed(w) for w in windows)
    # the shared input goes with every window that needs it
    for window in windows:
        assert sum(window.weights) == len(window.graph) <= 4
        assert all(("x", key[1]) in window.graph for key in window.keys)
    assert len(windows) == 6


def test_split_refuses_empty_windows():
    graph, roots = _blocks_graph()
    with pytest.raises(ValueError, match="at least one task"):
        split(graph, roots, 0)


class _MostTasks(SchedulerPlugin):
    """The largest number of tasks the scheduler held at once."""

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.most = 0

    def transition(self, key, start, finish, *args, **kwargs):
        self.most = max(self.most, len(self.scheduler.tasks))


def test_the_scheduler_holds_a_window_or_two(client):
    graph, _ = _blocks_graph(blocks=40)
    scheduler = client.cluster.scheduler
    plugin = _MostTasks(scheduler)
    scheduler.add_plugin(plugin, name="most-tasks")
    try:
        seen = []
        result = compute_windowed(
            client, graph, "final", size=10, progress=lambda d, t: seen.append((d, t))
        )
    finally:
        scheduler.remove_plugin(name="most-tasks")
    assert result == sum((b + 1) * i for b in range(40) for i in range(4))
    # two windows in flight, and a third submitted while the scheduler still forgets
    # the one done (its release is a message: under load it lags), against 201 in all
    assert 10 < plugin.most <= 3 * 10 + 10, plugin.most
    assert seen[-1] == (len(graph), len(graph))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_a_failed_task_raises_and_stops_the_windows(client):
    def fail(x):
        raise RuntimeError("broken task")

    graph, _ = _blocks_graph(blocks=20)
    graph[("y", 3, 2)] = (fail, ("x", 3))
    with pytest.raises(RuntimeError, match="broken task"):
        compute_windowed(client, graph, "final", size=10)


def _files(path):
    found = {}
    for root, _, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            with open(full, "rb") as file:
                found[os.path.relpath(full, path)] = file.read()
    return found


@pytest.fixture(scope="module")
def featomic(tmp_path_factory):
    """A featomic-like store whose write takes many tasks (small chunks) in four
    independent parts (four windows), and the demo pipeline's result computed by
    metatensor. Written once: the tests only read it, and write their results next to
    it under names of their own. One system of 12 atoms with few neighbours: the
    pipeline's graph has about 1,200 tasks, still many windows of 50 (2,500 for 24
    atoms, 5,000 for the 1 MiB of the default 48, which took 2 and 4 times as long on a
    cluster for no other path)."""
    tmp_path = tmp_path_factory.mktemp("featomic")
    with dask.config.set({"metatensor_dask.chunk-size": "32KiB"}):
        featomic_like(1, atoms_per_system=12, neighbors=(10, 14)).to_zarr(str(tmp_path / "x.zarr"))
        x = mtd.to_metatensor(mtd.open_zarr(tmp_path / "x.zarr").compute())
        expected = metatensor.sum_over_samples(metatensor.multiply(metatensor.pow(x, 2), x), "atom")
        yield tmp_path, expected


def _demo(directory, output):
    text = PIPELINE.format(input="x.zarr", output=output, name="test")
    return Pipeline.from_text(text, base=str(directory))


def test_windowed_write_gives_the_same_store(featomic, client):
    tmp_path, expected = featomic
    whole = _demo(tmp_path, "whole.zarr")
    dask.compute(whole.write(whole.build()), scheduler="threads")
    windowed = _demo(tmp_path, "win.zarr")
    delayed = windowed.write(windowed.build())
    graph = dict(delayed.__dask_graph__())
    with raise_if_dask_computes():
        roots = list(dask.core.get_dependencies(graph, delayed.key))
        assert len(split(graph, roots, 50)) > 3
    compute(delayed, client=client, quiet=True, window=50)
    assert _files(tmp_path / "win.zarr") == _files(tmp_path / "whole.zarr")
    assert_equal_to_metatensor(
        mtd.open_zarr(tmp_path / "win.zarr").compute(), expected, rtol=1e-10, atol=1e-10
    )


def test_resume_after_a_run_stopped_between_windows(featomic, client):
    tmp_path, expected = featomic
    pipeline = _demo(tmp_path, "out.zarr")
    delayed = pipeline.write(pipeline.build())

    class Stop(Exception):
        pass

    def stop_halfway(done, total):
        if done > total // 2:
            raise Stop

    with pytest.raises(Stop):
        compute_windowed(
            client, dict(delayed.__dask_graph__()), delayed.key, size=50, progress=stop_halfway
        )
    with pytest.raises(mtd.MetatensorDaskError, match="incomplete"):
        mtd.open_zarr(tmp_path / "out.zarr")
    resumed = pipeline.write(pipeline.build(), resume=True)
    # what the first run recorded is not computed again
    left = dask.core.get_dependencies(dict(resumed.__dask_graph__()), resumed.key)
    first = dask.core.get_dependencies(dict(delayed.__dask_graph__()), delayed.key)
    assert 0 < len(left) < len(first)
    compute(resumed, client=client, quiet=True, window=50)
    assert_equal_to_metatensor(
        mtd.open_zarr(tmp_path / "out.zarr").compute(), expected, rtol=1e-10, atol=1e-10
    )


def test_progress_of_windows_in_a_log_and_in_a_terminal(capsys):
    bar = _Bar(sys.stderr, terminal=False)
    for done in range(0, 101, 5):
        bar.update(done, 100)
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 10
    assert lines[-1].startswith("progress: 100% (100/100 tasks) in ")
    bar = _Bar(sys.stderr, terminal=True, width=10)
    bar.update(5, 10)
    bar.update(10, 10)
    bar.close()
    err = capsys.readouterr().err
    assert err.startswith("\r[#####     ] |  50% Completed | ")
    assert "\r[##########] | 100% Completed | " in err
    assert err.endswith("\n")
    assert np.char.count(err, "\n") == 1
