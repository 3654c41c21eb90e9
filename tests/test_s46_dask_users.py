"""What a dask user expects of lazy maps, checked as such a user would use them.

No task key is shared by different data when maps are computed together: stores
rewritten, copied or replaced while a lazy map over them is held, one operation with
different parameters, and maps that differ only in their Labels (their arrays the same
dask arrays). Results computed together equal those computed alone, and metatensor's.
The collection protocol works with every scheduler dask offers (``synchronous``,
``threads``, ``processes``, a ``distributed`` cluster of worker processes, chosen by
argument or by ``dask.config``), ``dask.delayed``, ``dask.optimize``, progress bars,
and a lazy map pickled and computed in another process.
"""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import cloudpickle
import dask
import dask.array as da
import metatensor
import numpy as np
import pytest
from dask.base import tokenize

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes

# values and gradients compared to metatensor's up to rounding: dask's chunked sums and
# numpy's whole ones add in other orders
CLOSE = {"rtol": 1e-12, "atol": 1e-14}


def _reference(seed: int, n_samples: int = 6, gradient_rows: int = 2) -> metatensor.TensorMap:
    """A metatensor map of two blocks with positions gradients (``gradient_rows`` rows
    per sample) and samples ``(system, atom)``."""
    rng = np.random.default_rng(seed)
    samples = metatensor.Labels(
        ["system", "atom"], np.array([[i // 2, i % 2] for i in range(n_samples)], np.int32)
    )
    gradient_samples = metatensor.Labels(
        ["sample", "atom"],
        np.array([[i, j] for i in range(n_samples) for j in range(gradient_rows)], np.int32),
    )
    blocks = []
    for _ in range(2):
        block = metatensor.TensorBlock(
            rng.random((n_samples, 3)) + 0.5, samples, [], metatensor.Labels.range("p", 3)
        )
        block.add_gradient(
            "positions",
            metatensor.TensorBlock(
                rng.random((gradient_rows * n_samples, 3, 3)),
                gradient_samples,
                [metatensor.Labels.range("xyz", 3)],
                block.properties,
            ),
        )
        blocks.append(block)
    return metatensor.TensorMap(metatensor.Labels.range("k", 2), blocks)


def _stored(reference: metatensor.TensorMap, path: Path) -> Path:
    mtd.to_zarr(mtd.from_metatensor(reference), path)
    return path


def _keys(tensor: mtd.TensorMap) -> set:
    return set(tensor.__dask_graph__().keys())


def _labels(name: str, values: list[int]) -> mtd.Labels:
    return mtd.Labels([name], np.array(values, np.int32).reshape(-1, 1))


def _metatensor_labels(name: str, values: list[int]) -> metatensor.Labels:
    return metatensor.Labels([name], np.array(values, np.int32).reshape(-1, 1))


# -- task keys: stores rewritten, copied or replaced -------------------------------------


@pytest.mark.parametrize("mode", ["w", "r+"])
def test_a_store_rewritten_while_a_lazy_map_is_held_is_read_under_other_keys(tmp_path, mode):
    first_content, second_content = _reference(1), _reference(2)
    path = _stored(first_content, tmp_path / "map.zarr")
    held = mtd.open_zarr(path, chunks=2)
    mtd.to_zarr(mtd.from_metatensor(second_content), path, mode=mode)
    reopened = mtd.open_zarr(path, chunks=2)

    assert not _keys(held) & _keys(reopened)
    assert tokenize(held) != tokenize(reopened)
    assert_equal_to_metatensor(reopened.compute(), second_content)
    # the held map refuses to read other values than those it was opened with
    with pytest.raises(mtd.MetatensorDaskError, match="was overwritten"):
        dask.compute(held, reopened)


def test_a_copied_store_then_rewritten_gives_each_copy_its_own_values(tmp_path):
    first_content, second_content = _reference(1), _reference(2)
    original = _stored(first_content, tmp_path / "original.zarr")
    copy = tmp_path / "copy.zarr"
    shutil.copytree(original, copy)
    held = mtd.open_zarr(original)  # tiny blocks: read by grouped tasks
    mtd.to_zarr(mtd.from_metatensor(second_content), copy, mode="w")
    rewritten = mtd.open_zarr(copy)

    assert not _keys(held) & _keys(rewritten)
    computed_original, computed_copy = dask.compute(held, rewritten)
    assert_equal_to_metatensor(computed_original, first_content)
    assert_equal_to_metatensor(computed_copy, second_content)


def test_a_metatensor_file_replaced_between_two_loads_is_read_under_other_keys(tmp_path):
    first_content, second_content = _reference(1), _reference(2)
    path = tmp_path / "map.mts"
    metatensor.save(str(path), first_content)
    held = mtd.load(path, chunks=2)
    metatensor.save(str(path), second_content)  # the same size, another file
    loaded_again = mtd.load(path, chunks=2)

    assert not _keys(held) & _keys(loaded_again)
    assert_equal_to_metatensor(loaded_again.compute(), second_content)
    with pytest.raises(mtd.MetatensorDaskError, match="changed since it was loaded"):
        held.compute()


# -- task keys: one operation, other parameters ---------------------------------------------


def _lstsq(rcond: float) -> Callable:
    def solved(tensor, operations):
        without_gradients = operations.remove_gradients(tensor)
        return operations.lstsq(without_gradients, without_gradients, rcond=rcond)

    return solved


PARAMETERS: dict[str, Callable] = {
    "pow 2": lambda t, o: o.pow(t, 2),
    "pow 3": lambda t, o: o.pow(t, 3),
    "multiply 2": lambda t, o: o.multiply(t, 2.0),
    "multiply 3": lambda t, o: o.multiply(t, 3.0),
    "slice system 0": lambda t, o: o.slice(t, "samples", o.Labels(["system"], np.array([[0]]))),
    "slice system 2": lambda t, o: o.slice(t, "samples", o.Labels(["system"], np.array([[2]]))),
    "slice p 0": lambda t, o: o.slice(t, "properties", o.Labels(["p"], np.array([[0]]))),
    "slice p 2": lambda t, o: o.slice(t, "properties", o.Labels(["p"], np.array([[2]]))),
    "sum over atom": lambda t, o: o.sum_over_samples(t, "atom"),
    "sum over system": lambda t, o: o.sum_over_samples(t, "system"),
    "mean over atom": lambda t, o: o.mean_over_samples(t, "atom"),
    "var over atom": lambda t, o: o.var_over_samples(t, "atom"),
    "sort": lambda t, o: o.sort(t),
    "sort descending": lambda t, o: o.sort(t, descending=True),
    "lstsq rcond 1e-12": _lstsq(1e-12),
    "lstsq rcond 0.9": _lstsq(0.9),
}


@pytest.mark.parametrize("chunks", [None, 2], ids=["tiny blocks grouped", "row chunks"])
def test_one_operation_with_other_parameters_computed_together_gives_each_result(tmp_path, chunks):
    reference = _reference(3)
    tensor = mtd.open_zarr(_stored(reference, tmp_path / "map.zarr"), chunks=chunks)
    results = [operation(tensor, mtd) for operation in PARAMETERS.values()]

    together = dask.compute(*results)

    for name, operation, computed in zip(PARAMETERS, PARAMETERS.values(), together, strict=True):
        expected = operation(reference, metatensor)
        assert_equal_to_metatensor(computed, expected, **CLOSE), name
    # each alone as together: the same numbers, bit for bit
    alone = results[-1].compute()
    np.testing.assert_array_equal(alone.block(1).values, together[-1].block(1).values)


# -- task keys: maps that differ only in their Labels -------------------------------------

LABELLED: dict[str, Callable] = {
    "sum over atom": lambda t, o: o.sum_over_samples(t, "atom"),
    "sum over system": lambda t, o: o.sum_over_samples(t, "system"),
    "std over atom": lambda t, o: o.std_over_samples(t, "atom"),
    "slice system 1": lambda t, o: o.slice(t, "samples", o.Labels(["system"], np.array([[1]]))),
    "slice p 1": lambda t, o: o.slice(t, "properties", o.Labels(["p"], np.array([[1]]))),
    "sort": lambda t, o: o.sort(t),
    "keys to samples": lambda t, o: t.keys_to_samples("k"),
    "add itself": lambda t, o: o.add(t, t),
}


def _relabelled(reference: metatensor.TensorMap) -> metatensor.TensorMap:
    """``reference`` with the same values and gradients, other samples (systems in
    another order, atoms swapped) and properties (reversed)."""
    blocks = []
    for block in reference.blocks():
        n = len(block.samples)
        samples = metatensor.Labels(
            ["system", "atom"],
            np.array([[(n - 1 - i) // 2, 1 - i % 2] for i in range(n)], np.int32),
        )
        properties = metatensor.Labels(["p"], np.array([[2], [0], [1]], np.int32))
        relabelled = metatensor.TensorBlock(block.values, samples, [], properties)
        gradient = block.gradient("positions")
        relabelled.add_gradient(
            "positions",
            metatensor.TensorBlock(
                gradient.values, gradient.samples, gradient.components, properties
            ),
        )
        blocks.append(relabelled)
    return metatensor.TensorMap(reference.keys, blocks)


def _lazy_over(arrays: list[tuple[da.Array, da.Array]], reference) -> mtd.TensorMap:
    """A lazy map of ``reference``'s metadata holding the given dask arrays."""
    blocks = []
    for (values, gradient_values), block in zip(arrays, reference.blocks(), strict=True):
        lazy = mtd.from_metatensor(block)
        gradient = lazy.gradient("positions")
        built = mtd.TensorBlock(values, lazy.samples, [], lazy.properties)
        built.add_gradient(
            "positions",
            mtd.TensorBlock(
                gradient_values, gradient.samples, gradient.components, lazy.properties
            ),
        )
        blocks.append(built)
    return mtd.TensorMap(mtd.from_metatensor(reference.keys), blocks)


@pytest.mark.parametrize("rows", [None, 2], ids=["single chunks", "row chunks"])
def test_maps_of_the_same_arrays_and_other_labels_computed_together_follow_their_labels(rows):
    reference = _reference(4)
    other = _relabelled(reference)
    arrays = []
    for block in reference.blocks():
        values = da.from_array(block.values, chunks=(rows or -1, -1))
        gradient = da.from_array(
            block.gradient("positions").values, chunks=(2 * (rows or 6), -1, -1)
        )
        arrays.append((values, gradient))
    first, second = _lazy_over(arrays, reference), _lazy_over(arrays, other)
    assert tokenize(first) != tokenize(second)

    lazy = [op(t, mtd) for t in (first, second) for op in LABELLED.values()]
    expected = [op(t, metatensor) for t in (reference, other) for op in LABELLED.values()]
    for name, computed, wanted in zip(
        2 * list(LABELLED), dask.compute(*lazy), expected, strict=True
    ):
        assert_equal_to_metatensor(computed, wanted, **CLOSE), name


# -- the collection protocol -----------------------------------------------------------------


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Path:
    """A Zarr store of :func:`_reference` (seed 5)."""
    return _stored(_reference(5), tmp_path_factory.mktemp("stored") / "map.zarr")


# the "processes" scheduler starts a pool of new interpreters for each computation (a
# second or two): it computes once, in the test of pickled maps
SCHEDULERS = ["synchronous", "threads"]


def _through_protocol(tensor: mtd.TensorMap, scheduler: str) -> list:
    """``tensor`` squared, computed through each way dask offers to compute it."""
    squared = mtd.pow(tensor, 2)
    with dask.config.set(scheduler=scheduler):
        by_config = squared.compute()
    (optimized,) = dask.optimize(squared)
    (persisted,) = dask.persist(squared, scheduler=scheduler)
    return [
        by_config,
        squared.compute(scheduler=scheduler),
        dask.compute({"squared": [squared]}, scheduler=scheduler)[0]["squared"][0],
        optimized.compute(scheduler=scheduler),
        persisted.compute(),
        dask.delayed(lambda computed: computed)(squared).compute(scheduler=scheduler),
    ]


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_every_way_of_computing_gives_metatensor_s_result(stored, scheduler):
    expected = metatensor.pow(_reference(5), 2)
    opened = mtd.open_zarr(stored, chunks=2)
    for computed in _through_protocol(opened, scheduler):
        assert_equal_to_metatensor(computed, expected)


def test_lazy_maps_pickled_are_computed_by_processes_as_metatensor(stored):
    expected = metatensor.sum_over_samples(_reference(5), "atom")
    summed = mtd.sum_over_samples(mtd.open_zarr(stored, chunks=2), "atom")
    unpickled = [pickle.loads(dumps(summed)) for dumps in (pickle.dumps, cloudpickle.dumps)]
    assert {tokenize(tensor) for tensor in unpickled} == {tokenize(summed)}
    with dask.config.set(scheduler="processes"):
        computed = dask.compute(*unpickled, mtd.open_zarr(stored))
    for tensor in computed[:2]:
        assert_equal_to_metatensor(tensor, expected, **CLOSE)
    assert_equal_to_metatensor(computed[2], _reference(5))


def test_dask_s_progress_bar_sees_the_tasks_of_a_map(stored, capsys):
    from dask.diagnostics import ProgressBar

    with ProgressBar():
        mtd.open_zarr(stored, chunks=2).compute()
    assert "100% Completed" in capsys.readouterr().out


def test_what_a_dask_user_does_before_computing_computes_nothing(stored):
    opened = mtd.open_zarr(stored, chunks=2)
    with raise_if_dask_computes():
        squared = mtd.pow(opened, 2)
        assert bool(squared) and len(squared) == 2
        assert [block.values.shape for block in squared] == [(6, 3), (6, 3)]
        assert tokenize(squared) == tokenize(mtd.pow(mtd.open_zarr(stored, chunks=2), 2))
        assert tokenize(squared) != tokenize(mtd.pow(opened, 3))
        dask.delayed(len)(squared)
        dask.optimize(squared)
        dask.base.get_collection_names(squared)


# -- a cluster of worker processes ---------------------------------------------------------


def _computed_from_bytes(data: bytes) -> mtd.TensorMap:
    """On a worker: the map pickled in ``data``, computed there."""
    return pickle.loads(data).compute(scheduler="synchronous")


@pytest.mark.xdist_group("serial")
def test_a_cluster_of_processes_computes_persists_and_shows_progress(
    tmp_path, two_worker_processes, capsys
):
    from distributed import Client, progress, wait

    first_content, second_content = _reference(6), _reference(7)
    path = _stored(first_content, tmp_path / "map.zarr")
    with Client(two_worker_processes) as client:
        held = client.persist(mtd.open_zarr(path))
        progress(held)
        wait(held)
        squared = mtd.pow(mtd.open_zarr(path, chunks=2), 2)
        assert_equal_to_metatensor(
            client.compute(squared).result(), metatensor.pow(first_content, 2)
        )
        pickled = cloudpickle.dumps(squared)
        sent = client.submit(_computed_from_bytes, pickled).result()
        assert_equal_to_metatensor(sent, metatensor.pow(first_content, 2))

        # the store rewritten while the cluster holds its old values
        mtd.to_zarr(mtd.from_metatensor(second_content), path, mode="w")
        reopened = mtd.open_zarr(path)
        assert_equal_to_metatensor(client.compute(reopened).result(), second_content)
        assert_equal_to_metatensor(held.compute(), first_content)
    assert "100% Completed" in capsys.readouterr().out


def test_auto_chunks_follow_the_package_s_chunk_size_not_dask_s_array_chunk_size(stored):
    # each block: 6 rows of values (24 bytes each) and 12 gradient rows (72 bytes
    # each), so 144 gradient bytes per values row: 300 bytes give chunks of 2 rows
    with dask.config.set({"array.chunk-size": "100B", "metatensor_dask.chunk-size": "10MiB"}):
        assert mtd.open_zarr(stored, chunks="auto").block(0).values.chunks[0] == (6,)
    with dask.config.set({"array.chunk-size": "10MiB", "metatensor_dask.chunk-size": "300B"}):
        assert mtd.open_zarr(stored, chunks="auto").block(0).values.chunks[0] == (2, 2, 2)


@pytest.mark.parametrize("chunks", [None, 2], ids=["tiny blocks grouped", "row chunks"])
def test_a_clone_of_an_operation_on_a_store_is_computed_with_it_as_metatensor(stored, chunks):
    # dask's Layer.clone renames the keys of Task objects but not the references to
    # them: "Cannot fuse tasks with multiple outputs", or "Missing dependency"
    from dask import graph_manipulation

    summed = mtd.sum_over_samples(mtd.open_zarr(stored, chunks=chunks), "atom")
    cloned = graph_manipulation.clone(summed)

    assert not set(cloned.__dask_graph__()) & set(summed.__dask_graph__())
    expected = metatensor.sum_over_samples(_reference(5), "atom")
    for computed in [*dask.compute(summed, cloned), cloned.compute()]:
        assert_equal_to_metatensor(computed, expected, **CLOSE)


def test_an_operation_on_a_store_bound_to_another_computes_as_metatensor(tmp_path):
    from dask import graph_manipulation

    reference = _reference(8, gradient_rows=1)  # tasks read the stored sample column
    opened = mtd.open_zarr(_stored(reference, tmp_path / "map.zarr"), chunks=2)
    bound = graph_manipulation.bind(mtd.pow(opened, 2), opened)
    # alone: computed with the map it was made from, the tasks of that map stood for
    # the clones missing
    assert_equal_to_metatensor(bound.compute(), metatensor.pow(reference, 2))


@pytest.mark.parametrize("chunks", [None, 2], ids=["tiny blocks grouped", "row chunks"])
@pytest.mark.parametrize("how", ["clone", "bind"])
def test_clone_and_bind_keep_the_arrays_shared_with_an_omitted_map(stored, chunks, how):
    # `add` of a number passes the gradients of its input on: the result shares those
    # arrays with the omitted map, which keep their keys (dask renamed them to keys
    # missing from the new graph: "Missing dependency")
    from dask import graph_manipulation

    opened = mtd.open_zarr(stored, chunks=chunks)
    doubled = mtd.multiply(opened, 2.0)
    shifted = mtd.add(doubled, 1.0)
    if how == "clone":
        copied = graph_manipulation.clone(shifted, omit=doubled)
    else:
        copied = graph_manipulation.bind(shifted, mtd.pow(opened, 2), omit=doubled)

    graph = _keys(copied)
    assert _keys(doubled) <= graph
    assert not (_keys(shifted) - _keys(doubled)) & graph  # the values are new tasks
    expected = metatensor.add(metatensor.multiply(_reference(5), 2.0), 1.0)
    for computed in [copied.compute(), dask.compute(shifted, copied)[1]]:
        assert_equal_to_metatensor(computed, expected, **CLOSE)
