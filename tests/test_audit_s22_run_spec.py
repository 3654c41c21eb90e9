"""Operations computed one after another on a stored map give each task the same
definition in every graph: distributed keeps the first definition it got for a key it
still knows and warns ("Detected different `run_spec`") that the second may then
deadlock or fail.

dask's optimisation fuses chains of tasks under new keys and leaves an alias at the
key that ends each chain; which chains are fused depends on the whole graph, so a chunk
of a map read with chunks other than the stored ones (``rechunk-merge``, ``mts-load``)
was an alias to one fused task in ``multiply(t, t)`` and a task of its own in
``pow(abs(t), 0.5)``.
"""

import logging

import dask
import metatensor
import pytest
from distributed import Client

import metatensor_dask as mtd
from metatensor_dask.datasets import tutorial_file

OPERATIONS = {
    "add": lambda t: mtd.add(t, t),
    "multiply": lambda t: mtd.multiply(t, t),
    "divide": lambda t: mtd.divide(t, mtd.add(mtd.abs(t), 1.0)),
    "pow": lambda t: mtd.pow(mtd.add(mtd.abs(t), 1.0), 0.5),
    "sum_over_samples": lambda t: mtd.sum_over_samples(t, "atom"),
    "keys_to_properties": lambda t: t.keys_to_properties(t.keys.names[-1]),
    "slice": lambda t: mtd.slice(t, "samples", mtd.Labels(["system"], [[0], [2]])),
    "sort": lambda t: mtd.sort(t, descending=True),
}


@pytest.fixture(params=["zarr", "mts", "zarr-big-blocks"])
def stored(request, tmp_path):
    """A map read from a store in chunks of 3 rows, stored in one chunk a block (Zarr)
    or read from a metatensor file: the tutorial's spherical expansion (blocks of a few
    samples, computed by groups) or a map shaped like featomic's output (blocks too
    large to be read by groups: 144 gradient rows of 180 properties, computed chunk by
    chunk)."""
    if request.param == "zarr-big-blocks":
        tensor = mtd.datasets.featomic_like(n_systems=2, atoms_per_system=12, chunks=10**6)
        tensor.to_zarr(tmp_path / "map.zarr", chunks=10**6)
        return mtd.open_zarr(tmp_path / "map.zarr", chunks=3)
    tensor = mtd.from_metatensor(metatensor.load(tutorial_file("spherical-expansion.npz")))
    if request.param == "zarr":
        tensor.to_zarr(tmp_path / "map.zarr", chunks=10**6)
        return mtd.open_zarr(tmp_path / "map.zarr", chunks=3)
    mtd.save(tmp_path / "map.mts", tensor)
    return mtd.load(tmp_path / "map.mts", chunks=3)


def _dependencies(collection) -> dict:
    """The names of the dependencies of each task that computing ``collection`` runs."""
    graph = collection.__dask_optimize__(collection.__dask_graph__(), collection.__dask_keys__())
    return {key: set(node.dependencies) for key, node in dict(graph).items()}


def test_shared_tasks_have_the_same_dependencies_in_every_graph(stored):
    graphs = {name: _dependencies(build(stored)) for name, build in OPERATIONS.items()}
    seen: dict = {}
    for name, graph in graphs.items():
        for key, dependencies in graph.items():
            first = seen.setdefault(key, (name, dependencies))
            assert first[1] == dependencies, (key, first[0], name)
    # the graphs do share the tasks that read the store
    shared = [key for key, (name, _) in seen.items() if name != "add"]
    assert len(seen) > len(shared) > 0


class _RunSpecWarnings(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        if "Detected different `run_spec`" in record.getMessage():
            self.messages.append(record.getMessage())


def test_operations_submitted_one_after_another_on_a_cluster(stored, two_worker_processes):
    warnings = _RunSpecWarnings()
    logger = logging.getLogger("distributed.scheduler")
    logger.addHandler(warnings)
    try:
        with Client(two_worker_processes) as client:
            # each compute is its own graph; the scheduler still knows the tasks of
            # the ones before when the next arrives
            futures = [client.compute(build(stored)) for build in OPERATIONS.values()]
            results = client.gather(futures)
    finally:
        logger.removeHandler(warnings)
    assert warnings.messages == []
    # the references, on threads in one compute (their shared reads once)
    references = dask.compute(*[build(stored) for build in OPERATIONS.values()])
    for result, expected in zip(results, references, strict=True):
        assert mtd.equal(result, expected)
