"""Maps of hundreds of blocks that mix every unusual shape at once, through the grouped
paths of operations and files, checked against metatensor on the same data.

One map of 240 blocks, keys ``(a, b)`` in random order: in each group of four keys of
one ``a`` the blocks share one components Labels object (of 1 to 3 entries, other
groups other ones) and their properties (0 to 3 entries, in random order; the map of
float32 blocks gives each block its own); blocks of up to 6 samples (or none) in random
order, one of 4,000 (above the 256 KiB of a tiny block); ``positions`` gradients of 1
or 2 rows per sample, or of none. Each result is built under a scheduler that raises,
compared with metatensor (values, every gradient, labels, keys in order), and its graph
holds a few layers, not one per block.

metatensor-operations 0.5.0 fails on a block without properties for ``multiply``,
``divide``, ``pow``, ``abs`` and the reductions over properties (see the differences in
the documentation); their expected result is metatensor's on the other blocks, those
blocks unchanged but for the names of their properties.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import dask
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes

#: layers a result of an operation on 240 blocks read from a file may hold
MAX_LAYERS = 16
#: the group whose block of b = 1 has 4,000 samples (values of 288 KiB)
LARGE_GROUP = 11


def _labels(module: Any, names: list[str], rows: Any) -> Any:
    return module.Labels(names, np.asarray(rows, dtype=np.int32).reshape(-1, len(names)))


def _samples(rng: np.random.Generator, n_samples: int, b: int) -> metatensor.Labels:
    """``n_samples`` distinct ``(system, atom)`` entries in random order."""
    systems = rng.permutation(n_samples) // 3 + b
    rows = np.unique(np.stack([systems, np.arange(n_samples) % 3], 1), axis=0)
    return _labels(metatensor, ["system", "atom"], rows[rng.permutation(len(rows))])


def _block(
    rng: np.random.Generator, samples, components, properties, with_gradient_rows: bool, dtype
) -> metatensor.TensorBlock:
    shape = (len(samples), len(components[0]), len(properties))
    block = metatensor.TensorBlock(
        rng.uniform(0.5, 2.0, shape).astype(dtype), samples, components, properties
    )
    rows = []
    if with_gradient_rows:
        rows = [[s, samples.values[s, 0], k] for s in range(len(samples)) for k in range(1 + s % 2)]
    gradient_samples = _labels(metatensor, ["sample", "system", "atom"], rows)
    xyz = _labels(metatensor, ["xyz"], [0, 1, 2])
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            rng.uniform(-1.0, 1.0, (len(rows), 3, *shape[1:])).astype(dtype),
            gradient_samples,
            [xyz, *components],
            properties,
        ),
    )
    return block


def unusual(n_groups: int = 60, own_properties: bool = False, dtype=np.float64, large: bool = True):
    """The map of the module's docstring, of ``4 * n_groups`` blocks (without its
    large block unless ``large``)."""
    rng = np.random.default_rng(n_groups)
    blocks, keys = [], []
    for a in range(n_groups):
        components = [_labels(metatensor, ["c"], rng.permutation(1 + a % 3))]
        properties = _labels(metatensor, ["n"], rng.permutation(5)[: a % 4])
        for b in range(4):
            if own_properties:
                properties = _labels(metatensor, ["n"], rng.permutation(5)[: 1 + (a + b) % 3])
            n_samples = 4000 if large and (a, b) == (LARGE_GROUP, 1) else [0, 1, 3, 6][(a + b) % 4]
            rows = (a + b) % 5 != 4 and len(properties) > 0
            samples = _samples(rng, n_samples, b)
            blocks.append(_block(rng, samples, components, properties, rows, dtype))
            keys.append([a, b])
    order = rng.permutation(len(keys))
    return metatensor.TensorMap(
        _labels(metatensor, ["a", "b"], np.asarray(keys)[order]), [blocks[i] for i in order]
    )


def some_blocks(theirs: metatensor.TensorMap, positions) -> metatensor.TensorMap:
    """The blocks of ``theirs`` at ``positions``, in that order (copies)."""
    positions = [int(i) for i in positions]
    keys = metatensor.Labels(theirs.keys.names, theirs.keys.values[positions])
    return metatensor.TensorMap(keys, [theirs.block(i).copy() for i in positions])


def with_systems_shifted(theirs: metatensor.TensorMap, shift: int) -> metatensor.TensorMap:
    """``theirs`` with ``shift`` added to the ``system`` of every sample and gradient
    sample (new samples of the same blocks)."""

    def shifted(labels, column):
        rows = labels.values.copy()
        rows[:, column] += shift
        return metatensor.Labels(labels.names, rows)

    blocks = []
    for block in theirs.blocks():
        new = metatensor.TensorBlock(
            block.values.copy(), shifted(block.samples, 0), block.components, block.properties
        )
        for parameter, gradient in block.gradients():
            new.add_gradient(
                parameter,
                metatensor.TensorBlock(
                    gradient.values.copy(),
                    shifted(gradient.samples, 1),
                    gradient.components,
                    gradient.properties,
                ),
            )
        blocks.append(new)
    return metatensor.TensorMap(theirs.keys, blocks)


def _without_properties(block: metatensor.TensorBlock, names: list[str]):
    """``block`` (of no property) with properties of no entry named ``names``."""
    properties = metatensor.Labels(names, np.zeros((0, len(names)), dtype=np.int32))
    new = metatensor.TensorBlock(block.values, block.samples, block.components, properties)
    for parameter, gradient in block.gradients():
        new.add_gradient(parameter, _without_properties(gradient, names))
    return new


def on_blocks_with_properties(operation: Callable, theirs: metatensor.TensorMap):
    """metatensor's ``operation`` on the blocks that have properties; the others kept
    as they are but for the names of their properties, those of the results
    (metatensor-operations fails on them)."""
    kept = [i for i, block in enumerate(theirs.blocks()) if len(block.properties) > 0]
    done = operation(some_blocks(theirs, kept))
    names = done.property_names
    results = iter(done.blocks())
    blocks = [
        next(results).copy() if len(block.properties) > 0 else _without_properties(block, names)
        for block in theirs.blocks()
    ]
    return metatensor.TensorMap(theirs.keys, blocks)


@pytest.fixture(scope="module")
def theirs() -> metatensor.TensorMap:
    return unusual()


@pytest.fixture(scope="module")
def sources(tmp_path_factory, theirs) -> dict[str, Callable[[], mtd.TensorMap]]:
    """The map loaded lazily from metatensor's file in chunks of 100 rows, and opened
    from a Zarr store of chunks of 50 rows, compressed and sharded,
    written from that lazy load."""
    directory = tmp_path_factory.mktemp("unusual")
    metatensor.save(directory / "theirs.mts", theirs)
    settings = {"metatensor_dask.compressor": "zstd", "metatensor_dask.shard-chunks": 2}
    with dask.config.set(settings):
        mtd.load(directory / "theirs.mts").to_zarr(directory / "ours.zarr", chunks=50)
    return {
        "mts": lambda: mtd.load(directory / "theirs.mts", chunks=100),
        "zarr": lambda: mtd.open_zarr(directory / "ours.zarr", chunks=50),
    }


def _selection(module: Any, name: str, entries: list[int]) -> Any:
    return _labels(module, [name], entries)


#: (operation of metatensor or mtd, whether metatensor fails on blocks of no property)
OPERATIONS: dict[str, tuple[Callable[[Any, Any, Any], Any], bool]] = {
    "add": (lambda m, t, other: m.add(t, other), False),
    "subtract-scalar": (lambda m, t, other: m.subtract(t, 2.5), False),
    "multiply": (lambda m, t, other: m.multiply(t, other), True),
    "divide": (lambda m, t, other: m.divide(t, other), True),
    "pow": (lambda m, t, other: m.pow(t, 2), True),
    "abs": (lambda m, t, other: m.abs(t), True),
    "sum_over_samples": (lambda m, t, other: m.sum_over_samples(t, "atom"), False),
    "sum_over_properties": (lambda m, t, other: m.sum_over_properties(t, "n"), True),
    "slice-samples": (
        lambda m, t, other: m.slice(t, "samples", _selection(m, "atom", [2, 0])),
        False,
    ),
    "slice-properties": (
        lambda m, t, other: m.slice(t, "properties", _selection(m, "n", [3, 1])),
        False,
    ),
    "join-samples": (lambda m, t, other: m.join([t, other], "samples", add_dimension="j"), False),
    "join-properties": (
        lambda m, t, other: m.join([t, other], "properties", add_dimension="j"),
        False,
    ),
    "keys_to_samples": (lambda m, t, other: t.keys_to_samples("b"), False),
    "keys_to_properties": (lambda m, t, other: t.keys_to_properties("b"), False),
}


@pytest.fixture(scope="module")
def expected(theirs) -> dict[str, metatensor.TensorMap]:
    """metatensor's result of each of :data:`OPERATIONS`."""
    other = some_blocks(theirs, np.random.default_rng(1).permutation(len(theirs)))
    results = {}
    for name, (operation, fails_without_properties) in OPERATIONS.items():
        if fails_without_properties:
            results[name] = on_blocks_with_properties(
                lambda t, operation=operation: operation(metatensor, t, t), theirs
            )
        else:
            results[name] = operation(metatensor, theirs, other)
    return results


@pytest.mark.parametrize("source", ["mts", "zarr"])
def test_grouped_operations_on_unusual_blocks_equal_metatensor(theirs, sources, expected, source):
    """Every grouped operation, the other operand with its keys in another order; the
    results computed together (the files read once)."""
    ours = sources[source]()
    other = mtd.from_metatensor(
        some_blocks(theirs, np.random.default_rng(1).permutation(len(theirs)))
    )
    results = {}
    with raise_if_dask_computes():
        for name, (operation, fails_without_properties) in OPERATIONS.items():
            results[name] = operation(mtd, ours, ours if fails_without_properties else other)
    layers = {name: len(result.__dask_layers__()) for name, result in results.items()}
    assert max(layers.values()) <= MAX_LAYERS, layers
    computed = dict(zip(results, dask.compute(*results.values()), strict=True))
    for name, result in computed.items():
        assert_equal_to_metatensor(result, expected[name], rtol=1e-12, atol=1e-12)


def _changed(theirs: metatensor.TensorMap, gradient: bool) -> metatensor.TensorMap:
    """A copy of ``theirs`` with one entry of a tiny block (or of its gradient) 1e-3
    larger."""
    changed = some_blocks(theirs, range(len(theirs)))
    for block in changed.blocks():
        array = block.gradient("positions").values if gradient else block.values
        if 0 < array.size and len(block.samples) < 10:
            array[0, ...] += 1e-3
            return changed
    raise AssertionError("no tiny block with entries")


def test_equal_and_allclose_on_unusual_blocks_equal_metatensor(theirs, sources):
    """Keys in another order, one value or one gradient entry of a tiny block changed:
    the answer of metatensor, from one computation at most."""
    others = {
        "reordered": some_blocks(theirs, np.random.default_rng(2).permutation(len(theirs))),
        "value": _changed(theirs, gradient=False),
        "gradient": _changed(theirs, gradient=True),
    }
    ours = sources["mts"]()
    for name, other in others.items():
        for function, arguments in (("equal", {}), ("allclose", {"rtol": 1e-6})):
            with raise_if_dask_computes(max_computes=1):
                answer = getattr(mtd, function)(ours, mtd.from_metatensor(other), **arguments)
            assert answer == getattr(metatensor, function)(theirs, other, **arguments), (
                name,
                function,
            )


def test_float32_blocks_of_their_own_properties_round_trip(tmp_path):
    """A lazy ``.mts`` load in chunks of 2 rows, saved again byte for byte; a Zarr store
    written from it in chunks of 3 rows with gzip, opened in its chunks and in one chunk
    per tiny block (``"auto"``)."""
    theirs = unusual(own_properties=True, dtype=np.float32, large=False)
    metatensor.save(tmp_path / "theirs.mts", theirs)
    with raise_if_dask_computes():
        loaded = mtd.load(tmp_path / "theirs.mts", chunks=2)
    mtd.save(tmp_path / "ours.mts", loaded)
    assert (tmp_path / "ours.mts").read_bytes() == (tmp_path / "theirs.mts").read_bytes()
    with dask.config.set({"metatensor_dask.compressor": "gzip"}):
        loaded.to_zarr(tmp_path / "ours.zarr", chunks=3)
    for chunks in (None, "auto"):
        with raise_if_dask_computes():
            opened = mtd.open_zarr(tmp_path / "ours.zarr", chunks=chunks)
        assert_equal_to_metatensor(opened, theirs)


def _in_order_of(ours: mtd.TensorMap, keys: metatensor.Labels) -> mtd.TensorMap:
    """The blocks of ``ours`` in the order of ``keys`` (the same keys)."""
    stored = [tuple(entry) for entry in np.asarray(ours.keys.values)]
    assert sorted(stored) == sorted(tuple(entry) for entry in keys.values)
    found = {entry: i for i, entry in enumerate(stored)}
    return mtd.TensorMap(
        mtd.from_metatensor(keys),
        [ours.block(found[tuple(entry)]) for entry in keys.values],
    )


def test_appends_of_rows_to_some_blocks_and_of_new_keys(tmp_path, theirs):
    """Rows appended to every third stored block (tiny, empty, without properties or
    the large one) and new keys, into a store of the chunks of the first write, sharded
    and compressed:
    metatensor's join of both (new keys after the stored ones)."""
    n_stored = 2 * len(theirs) // 3
    stored = some_blocks(theirs, range(n_stored))
    grown = with_systems_shifted(some_blocks(theirs, range(1, n_stored, 3)), 10_000)
    new = some_blocks(theirs, range(n_stored, len(theirs)))
    appended = metatensor.join([grown, new], "samples", different_keys="union")
    path = tmp_path / "grown.zarr"
    settings = {"metatensor_dask.compressor": "zstd", "metatensor_dask.shard-chunks": 3}
    with dask.config.set(settings):
        mtd.from_metatensor(stored).to_zarr(path)
        mtd.from_metatensor(appended).to_zarr(path, append_dim="samples")
    expected = metatensor.join([stored, appended], "samples", different_keys="union")
    opened = mtd.open_zarr(path, chunks="auto")
    assert [tuple(k) for k in np.asarray(opened.keys.values)[:n_stored]] == [
        tuple(k) for k in stored.keys.values
    ]
    assert_equal_to_metatensor(_in_order_of(opened, expected.keys), expected)


def test_write_batches_of_keys_that_come_and_go(tmp_path):
    """Batches of two items giving a changing part of the blocks, one giving no block,
    one only new keys: metatensor's join of the batches, new keys where they come."""
    base = unusual(n_groups=30)
    nothing = metatensor.TensorMap(
        metatensor.Labels(base.keys.names, np.zeros((0, 2), dtype=np.int32)), []
    )

    def batch(items: list[int]) -> metatensor.TensorMap:
        first = items[0]
        if first == 2:
            return nothing
        if first == 4:
            return with_systems_shifted(some_blocks(base, range(100, 120)), 1000 * first)
        kept = [i for i in range(100) if (i + first) % 3 != 0]
        return with_systems_shifted(some_blocks(base, kept), 1000 * first)

    path = os.fspath(tmp_path / "batches.zarr")
    with dask.config.set({"metatensor_dask.shard-chunks": 2}):
        mtd.write_batches(batch, list(range(8)), path, batch_size=2, renumber=None, quiet=True)
    parts = [batch([first]) for first in (0, 4, 6)]
    expected = metatensor.join(parts, "samples", different_keys="union")
    opened = mtd.open_zarr(path, chunks="auto")
    assert_equal_to_metatensor(_in_order_of(opened, expected.keys), expected)
