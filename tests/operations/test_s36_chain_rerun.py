"""Reductions over samples run again task by task, as distributed runs a task again
when it lost track of it (a worker lost, a batch job cancelled) on a worker that may
still hold the task's inputs as the first run left them.

An output chunk fed by few input chunks (a group split by a chunk boundary) is summed
along a chain of tasks, each adding its input chunk into the array of the task before
it, in place. Run again on that array, a task added its input chunk a second time: a
SLURM pipeline whose worker job was cancelled wrote a sum over atoms with one system's
row wrong, and exited 0."""

import numpy as np
import pytest
from dask._task_spec import convert_legacy_graph
from dask.core import flatten, toposort

import metatensor_dask as mtd
from metatensor_dask.datasets import featomic_like


def _chains(tensor):
    """Each array of ``tensor`` whose graph sums along a chain."""
    for block in tensor.blocks():
        for array in [block.values, *(gradient.values for _, gradient in block.gradients())]:
            graph = dict(array.__dask_graph__())
            keys = [key for key in graph if isinstance(key, tuple)]
            if any(str(key[0]).startswith("accumulate-") for key in keys):
                yield array, graph


def _run(tasks, key, results):
    return tasks[key]({dependency: results[dependency] for dependency in tasks[key].dependencies})


@pytest.mark.parametrize("again", ["last", "every"])
def test_a_sum_along_a_chain_run_again_adds_each_chunk_once(again):
    tensor = featomic_like(2, 10, neighbors=(3, 5), chunks=4)
    reduced = mtd.sum_over_samples(tensor, "atom")
    checked = 0
    for array, graph in _chains(reduced):
        tasks = convert_legacy_graph(graph)
        results = {}
        for key in toposort(tasks):
            results[key] = _run(tasks, key, results)
        outputs = list(flatten(array.__dask_keys__()))
        first = [np.array(results[key]) for key in outputs]
        # the tasks run again on the inputs as their first runs left them in memory
        rerun = [k for k in toposort(tasks) if str(k[0]).startswith("accumulate-")]
        rerun = outputs if again == "last" else [*rerun, *outputs]
        for key in rerun:
            results[key] = _run(tasks, key, results)
        for key, expected in zip(outputs, first, strict=True):
            np.testing.assert_array_equal(results[key], expected)
        np.testing.assert_allclose(np.concatenate(first), array.compute())
        checked += 1
    assert checked
