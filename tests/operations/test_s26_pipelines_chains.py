"""Long chains of operations: the cost of one more operation does not grow with the
chain, and random chains mixing every kind of operation, on maps from memory, from
``.mts`` files and from Zarr stores, with gradients, equal metatensor's same chain.

Each random chain starts from one of the three sources in turn;
``MTD_CHAINS_FROM_EVERY_SOURCE=1`` runs every chain from every source (three times as
many)."""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Callable
from typing import Any

import metatensor
import numpy as np
import pytest
from chunked_maps import chunked, reference

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def _step(module: Any, tensor: Any) -> Any:
    return module.add(tensor, module.multiply(tensor, 0.5))


def _python_calls(build: Callable[[], Any]) -> int:
    """The Python function calls that ``build()`` makes (deterministic, unlike time)."""
    calls = 0

    def count(frame: Any, event: str, argument: Any) -> None:
        nonlocal calls
        calls += event == "call"

    sys.setprofile(count)
    try:
        build()
    finally:
        sys.setprofile(None)
    return calls


def _chain(tensor: Any, length: int) -> Any:
    for _ in range(length):
        tensor = _step(mtd, tensor)
    return tensor


def test_one_more_operation_costs_the_same_after_a_long_chain():
    ours = chunked(reference(same_properties=True))
    short, long = _chain(ours, 5), _chain(ours, 80)
    calls_short = _python_calls(lambda: _step(mtd, short))
    calls_long = _python_calls(lambda: _step(mtd, long))
    # building each array merged the graphs below it layer by layer, in Python: the
    # cost of one operation grew with the operations before it
    assert calls_long < 1.1 * calls_short, (calls_short, calls_long)


def _labels(module: Any, name: str, values: list[int]) -> Any:
    return module.Labels([name], np.asarray(values, dtype=np.int32).reshape(-1, 1))


def _gradients(tensor: Any) -> list[str]:
    return sorted(tensor.block(0).gradients_list()) if len(tensor) else []


def _no_empty_gradient(tensor: Any) -> bool:
    """metatensor's ``sort`` fails on a gradient of no rows (a bug of metatensor)."""
    return all(len(g) for block in tensor for _, g in block.gradients())


def _kept(rng: random.Random, tensor: Any, axis: str, name: str) -> list[int]:
    """About 80 % of the values of ``name`` in the ``axis`` labels of ``tensor``."""
    values = sorted({int(v) for b in tensor for v in getattr(b, axis).column(name)})
    return [v for v in values if rng.random() < 0.8] or values[:1]


def _slice(axis: str) -> Callable:
    def run(m: Any, t: Any, r: dict) -> Any:
        return m.slice(t, axis, _labels(m, r["name"], r["kept"]))

    return run


def _mean_over_properties(m: Any, t: Any, r: dict) -> Any:
    # metatensor's mean over properties is wrong on blocks with components (its bug)
    reduce = m.sum_over_properties if t.component_names else m.mean_over_properties
    return reduce(t, t.property_names[-1])


#: name: (whether it applies to a metatensor map, the operation of module ``m``)
OPERATIONS: dict[str, tuple[Callable, Callable]] = {
    "add": (lambda t: True, lambda m, t, r: _step(m, t)),
    "scale": (lambda t: True, lambda m, t, r: m.multiply(t, r["factor"])),
    "subtract": (lambda t: True, lambda m, t, r: m.subtract(t, m.multiply(t, 0.25))),
    "divide": (lambda t: True, lambda m, t, r: m.divide(t, m.add(m.abs(t), 1.0))),
    "pow": (
        lambda t: True,
        lambda m, t, r: m.divide(m.pow(t, 2.0), m.add(m.pow(t, 2.0), 1.0)),
    ),
    "sort": (_no_empty_gradient, lambda m, t, r: m.sort(t)),
    "sort-descending": (
        _no_empty_gradient,
        lambda m, t, r: m.sort(t, axes="samples", descending=True),
    ),
    "slice-samples": (lambda t: True, _slice("samples")),
    "slice-properties": (lambda t: True, _slice("properties")),
    "join-samples": (
        lambda t: "joined" not in t.sample_names,
        lambda m, t, r: m.sum_over_samples(
            m.join([t, m.multiply(t, 2.0)], axis="samples", add_dimension="joined"), "joined"
        ),
    ),
    "join-properties": (
        lambda t: "joined" not in t.property_names,
        lambda m, t, r: m.sum_over_properties(
            m.join([t, t], axis="properties", add_dimension="joined"), "joined"
        ),
    ),
    "keys-to-properties": (
        lambda t: t.keys.names != ["_"],
        lambda m, t, r: t.keys_to_properties(t.keys.names[-1]),
    ),
    "keys-to-samples": (
        lambda t: t.keys.names != ["_"],
        lambda m, t, r: t.keys_to_samples(t.keys.names[-1]),
    ),
    "rename": (
        lambda t: True,
        lambda m, t, r: m.rename_dimension(t, "samples", t.sample_names[-1], f"s{r['step']}"),
    ),
    "insert-remove": (
        lambda t: "extra" not in t.property_names,
        lambda m, t, r: m.remove_dimension(
            m.insert_dimension(t, "properties", 0, "extra", 3), "properties", "extra"
        ),
    ),
    "append": (
        lambda t: "extra" not in t.sample_names,
        lambda m, t, r: m.append_dimension(t, "samples", "extra", 3),
    ),
    "sum-over-samples": (
        lambda t: len(t.sample_names) > 1,
        lambda m, t, r: m.sum_over_samples(t, t.sample_names[-1]),
    ),
    "mean-over-properties": (lambda t: len(t.property_names) > 1, _mean_over_properties),
    "remove-gradients": (
        lambda t: len(_gradients(t)) > 1,
        lambda m, t, r: m.remove_gradients(t, _gradients(t)[:1]),
    ),
    "components-to-properties": (
        lambda t: len(t.component_names) > 0,
        lambda m, t, r: t.components_to_properties(t.component_names[0]),
    ),
}


def _arguments(rng: random.Random, theirs: Any, name: str, step: int) -> dict[str, Any]:
    arguments: dict[str, Any] = {"factor": rng.choice([0.5, 1.5, -1.0]), "step": step}
    if name.startswith("slice-"):
        axis = name.removeprefix("slice-")
        names = theirs.sample_names if axis == "samples" else theirs.property_names
        arguments["name"] = rng.choice(names)
        arguments["kept"] = _kept(rng, theirs, axis, arguments["name"])
    return arguments


def random_chain(seed: int, length: int, ours: Any, theirs: Any) -> tuple[Any, Any, list[str]]:
    """``length`` operations drawn at random (among those that apply to the map at
    each step), applied to ``ours`` and to ``theirs`` alike."""
    rng = random.Random(seed)
    names = []
    for step in range(length):
        name = rng.choice([n for n, (applies, _) in OPERATIONS.items() if applies(theirs)])
        arguments = _arguments(rng, theirs, name, step)
        operation = OPERATIONS[name][1]
        theirs = operation(metatensor, theirs, arguments)
        ours = operation(mtd, ours, arguments)
        names.append(name)
    return ours, theirs, names


def _source(kind: str, theirs: Any, directory: Any) -> Any:
    if kind == "memory":
        return chunked(theirs)
    if kind == "mts":
        metatensor.save(str(directory / "source.mts"), theirs)
        return mtd.load(str(directory / "source.mts"), chunks=7)
    mtd.to_zarr(chunked(theirs), str(directory / "source.zarr"), chunks=6)
    return mtd.open_zarr(str(directory / "source.zarr"))


SOURCES = ["memory", "mts", "zarr"]


def _chains() -> list[tuple[str, int]]:
    """The source and seed of each random chain: the chains of seeds 1 to 3, each from
    one source in turn (every chain and every source once); with
    ``MTD_CHAINS_FROM_EVERY_SOURCE=1``, every chain from every source."""
    if os.environ.get("MTD_CHAINS_FROM_EVERY_SOURCE") == "1":
        return [(kind, seed) for kind in SOURCES for seed in (1, 2, 3)]
    return [(kind, seed) for seed, kind in enumerate(SOURCES, start=1)]


@pytest.mark.parametrize(("kind", "seed"), _chains())
def test_random_chains_equal_metatensor(tmp_path, kind, seed):
    theirs = reference(seed=seed, same_properties=True)
    ours, theirs, _ = random_chain(seed, 15, _source(kind, theirs, tmp_path), theirs)
    assert_equal_to_metatensor(ours.compute(), theirs, rtol=1e-10, atol=1e-13)


def _first_key(module: Any, tensor: Any) -> Any:
    keys = tensor.keys
    return module.Labels(keys.names, np.asarray(keys.values)[:1])


@pytest.mark.xdist_group("serial")
def test_chain_on_a_cluster_persisted_midway_then_partly_written(tmp_path):
    from distributed import Client, LocalCluster

    theirs = reference(seed=4, same_properties=True)
    ours, theirs, _ = random_chain(4, 10, _source("zarr", theirs, tmp_path), theirs)
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=2, processes=True, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster),
    ):
        ours, theirs, _ = random_chain(5, 10, ours.persist(), theirs)
        assert_equal_to_metatensor(ours.compute(), theirs, rtol=1e-10, atol=1e-13)
        part = mtd.filter_blocks(ours, _first_key(mtd, ours))
        mtd.to_zarr(part, str(tmp_path / "part.zarr"))
    written = mtd.open_zarr(str(tmp_path / "part.zarr")).compute()
    expected = metatensor.filter_blocks(theirs, _first_key(metatensor, theirs))
    assert_equal_to_metatensor(written, expected, rtol=1e-10, atol=1e-13)
