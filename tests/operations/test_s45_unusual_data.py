"""Operations on data of the shapes and labels users may have and other tests do not
use, from every source a user has: the map in memory, the same map in a Zarr store
opened with odd chunks (one row, three rows, a size below one row) and in ``.mts`` files
written by metatensor and by this package, read in chunks.

The maps have keys at both ends of the int32 range, samples out of order, a block of
no samples, components of 2 and 1 entries, gradients with components of their own and
rows not grouped by sample (as metatensor allows). Results are compared with
metatensor-operations on the same data: labels, dtypes, values and every gradient;
where metatensor raises, the same error and message, before anything is computed.
Building a result computes nothing (a scheduler that raises).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import metatensor
import numpy as np
import pytest
from test_chunked_metadata import assert_same

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes

# division by zero and square roots of negative values make inf and NaN on purpose
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

INT32 = np.iinfo(np.int32)
KEYS = [[-5], [INT32.max], [INT32.min]]


def _labels(module: Any, names: list[str], rows: Any) -> Any:
    return module.Labels(names, np.asarray(rows, dtype=np.int32).reshape(-1, len(names)))


def _block(rng: np.random.Generator, n_samples: int, n_properties: int, dtype: Any) -> Any:
    """A block of samples out of order, components of 2 and 1 entries, properties in
    descending order, and a gradient with an ``xyz`` component of its own whose rows
    visit the samples backwards, twice (not grouped by sample), for atoms 1 then 0:
    samples merged by a reduction merge their gradient rows of the same atom."""
    samples = [[(7 * i) % 5 - 2, i % 2] for i in range(n_samples)]
    components = [_labels(metatensor, ["c0"], [0, 1]), _labels(metatensor, ["c1"], [0])]
    properties = _labels(metatensor, ["p"], [3 * v - 1 for v in range(n_properties)][::-1])
    shape = (2, 1, n_properties)
    block = metatensor.TensorBlock(
        (rng.random((n_samples, *shape)) - 0.5).astype(dtype),
        _labels(metatensor, ["s", "a"], samples),
        components,
        properties,
    )
    rows = [[k % n_samples, k // n_samples] for k in range(2 * n_samples)][::-1]
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            (rng.random((len(rows), 3, *shape)) - 0.5).astype(dtype),
            _labels(metatensor, ["sample", "atom"], rows),
            [_labels(metatensor, ["xyz"], [0, 1, 2]), *components],
            properties,
        ),
    )
    return block


def _unusual(sizes: list[tuple[int, int]], dtype: Any = np.float64, seed: int = 0) -> Any:
    """A metatensor map of one block per ``(samples, properties)`` of ``sizes``, keyed
    by ``KEYS``."""
    rng = np.random.default_rng(seed)
    blocks = [_block(rng, n, p, dtype) for n, p in sizes]
    return metatensor.TensorMap(_labels(metatensor, ["k"], KEYS[: len(sizes)]), blocks)


def _sources(theirs: Any, folder: Path) -> dict[str, mtd.TensorMap]:
    """``theirs`` in memory, in a Zarr store opened in chunks of 1 row, 3 rows and a
    size below one row, and in ``.mts`` files of metatensor and of this package."""
    ours = mtd.from_metatensor(theirs)
    mtd.to_zarr(ours, folder / "map.zarr")
    metatensor.save(folder / "theirs.mts", theirs)
    mtd.save(folder / "ours.mts", ours)
    return {
        "memory": ours,
        "zarr-1": mtd.open_zarr(folder / "map.zarr", chunks=1),
        "zarr-3": mtd.open_zarr(folder / "map.zarr", chunks=3),
        "zarr-64B": mtd.open_zarr(folder / "map.zarr", chunks="64B"),
        "mts-2": mtd.load(folder / "theirs.mts", chunks=2),
        "mts-100B": mtd.load(folder / "ours.mts", chunks="100B"),
    }


@pytest.fixture(scope="module")
def with_empty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, mtd.TensorMap]]:
    """A map with a block of no samples and one of a single property."""
    theirs = _unusual([(4, 3), (0, 2), (3, 1)])
    return theirs, _sources(theirs, tmp_path_factory.mktemp("with_empty"))


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, mtd.TensorMap]]:
    """A float32 map without empty blocks (metatensor's ``sort`` fails on them)."""
    theirs = _unusual([(4, 3), (2, 2), (3, 1)], np.float32, seed=1)
    return theirs, _sources(theirs, tmp_path_factory.mktemp("full"))


def _matches_metatensor(operation: Callable, theirs: Any, sources: dict[str, Any]) -> None:
    """``operation(module, map)`` of every source equals metatensor's, built lazily."""
    expected = operation(metatensor, theirs)
    for name, ours in sources.items():
        with raise_if_dask_computes():
            result = operation(mtd, ours)
        try:
            assert_same(result, expected)
        except AssertionError as error:
            raise AssertionError(f"from {name}: {error}") from error


def _without(module: Any, tensor: Any, key: int) -> Any:
    return module.drop_blocks(tensor, _labels(module, ["k"], [key]))


#: operations and their less common arguments, on the map with a block of no samples
OPERATIONS: dict[str, Callable[[Any, Any], Any]] = {
    "multiply": lambda m, t: m.multiply(t, t),
    "divide-by-zero": lambda m, t: m.divide(t, 0.0),
    "pow-half": lambda m, t: m.pow(t, 0.5),
    "sum_over_samples": lambda m, t: m.sum_over_samples(t, "s"),
    "mean_over_samples": lambda m, t: m.mean_over_samples(t, ["s"]),
    "sum_over_properties": lambda m, t: m.sum_over_properties(t, "p"),
    "slice-nothing": lambda m, t: m.slice(t, "samples", _labels(m, ["s"], [99])),
    "slice-empty-selection": lambda m, t: m.slice(t, "samples", _labels(m, ["s"], [])),
    "slice-two-names": lambda m, t: m.slice(
        t, "samples", _labels(m, ["a", "s"], [[0, -2], [1, 0]])
    ),
    "slice-positions": lambda m, t: m.slice(t, "samples", np.array([], dtype=np.int64)),
    "split-empty-groups": lambda m, t: m.split(
        t,
        "samples",
        [_labels(m, ["a"], [0]), _labels(m, ["a"], []), _labels(m, ["s"], [2, -2])],
    ),
    "split-properties": lambda m, t: m.split(
        t, "properties", [_labels(m, ["p"], [-1]), _labels(m, ["p"], [77])]
    ),
    "keys_to_samples-unsorted": lambda m, t: t.keys_to_samples("k", sort_samples=False),
    "keys_to_properties-nan": lambda m, t: t.keys_to_properties("k", fill_value=np.nan),
    "keys_to_properties-unsorted": lambda m, t: t.keys_to_properties(["k"], sort_samples=False),
    "components_to_properties": lambda m, t: t.components_to_properties(["c0", "c1"]),
    "join-samples": lambda m, t: m.join([t, t], "samples", add_dimension="tensor"),
    "join-union": lambda m, t: m.join(
        [t, _without(m, t, -5)], "properties", different_keys="union", add_dimension="x"
    ),
    "join-union-first-missing": lambda m, t: m.join(
        [_without(m, t, INT32.max), t], "samples", different_keys="union", add_dimension="x"
    ),
    "join-intersection": lambda m, t: m.join(
        [t, _without(m, t, -5)], "samples", different_keys="intersection", add_dimension="x"
    ),
    "unique_metadata-gradient": lambda m, t: m.unique_metadata(
        t, "samples", ["atom", "sample"], gradient="positions"
    ),
    "filter_blocks": lambda m, t: m.filter_blocks(t, _labels(m, ["k"], [INT32.min, -5])),
    "drop_blocks-all": lambda m, t: m.drop_blocks(t, t.keys, copy=True),
    "insert_dimension": lambda m, t: m.insert_dimension(t, "properties", 0, "n", INT32.max),
    "zeros_like-named": lambda m, t: m.zeros_like(t, gradients="positions"),
    "one_hot": lambda m, t: m.one_hot(
        _labels(m, ["k"], [INT32.max, INT32.min, -5]), _labels(m, ["k"], KEYS)
    ),
}


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_operations_match_metatensor_from_every_source(with_empty, name):
    theirs, sources = with_empty
    _matches_metatensor(OPERATIONS[name], theirs, sources)


#: operations on the float32 map without empty blocks: sorting, and what depends on order
ORDERED: dict[str, Callable[[Any, Any], Any]] = {
    "sort": lambda m, t: m.sort(t),
    "sort-descending": lambda m, t: m.sort(t, descending=True),
    "sort-keys-descending": lambda m, t: m.sort(t, "keys", descending=True),
    "sort-properties-components": lambda m, t: m.sort(
        t, ["properties", "components"], descending=True
    ),
    "keys_to_properties": lambda m, t: t.keys_to_properties("k"),
    "equal_metadata-sorted": lambda m, t: np.array(m.equal_metadata(t, m.sort(t), ["samples"])),
    "add-scalar": lambda m, t: m.add(t, 1.5),
}


@pytest.mark.parametrize("name", list(ORDERED))
def test_sorting_and_float32_match_metatensor_from_every_source(full, name):
    theirs, sources = full
    _matches_metatensor(ORDERED[name], theirs, sources)


def _reversed_keys(module: Any, tensor: Any) -> Any:
    """``tensor`` with its blocks in the other order."""
    blocks = [tensor.block(i).copy() for i in reversed(range(len(tensor)))]
    keys = np.asarray(tensor.keys.values)[::-1].copy()
    return module.TensorMap(module.Labels(tensor.keys.names, keys), blocks)


@pytest.mark.parametrize("name", ["add", "subtract", "multiply", "divide"])
def test_maps_of_two_sources_and_key_orders_combine_as_metatensors(full, name):
    """The blocks of the second map are found by key, whatever its order, chunks and
    source."""
    theirs, sources = full
    expected = getattr(metatensor, name)(theirs, _reversed_keys(metatensor, theirs))
    for first, second in [("zarr-1", "mts-2"), ("mts-100B", "zarr-64B"), ("memory", "zarr-3")]:
        with raise_if_dask_computes():
            result = getattr(mtd, name)(sources[first], _reversed_keys(mtd, sources[second]))
        assert_equal_to_metatensor(result, expected)


#: calls metatensor refuses on these maps, with its message
REFUSED: dict[str, Callable[[Any, Any], Any]] = {
    "keys_to_samples-missing": lambda m, t: t.keys_to_samples(["zz"]),
    "components_to_properties-gradient-component": lambda m, t: t.components_to_properties("xyz"),
    "slice-two-dimensional": lambda m, t: m.slice(t, "samples", np.array([[0]])),
    "split-axis": lambda m, t: m.split(t, "keys", [[0]]),
    "join-bad-option": lambda m, t: m.join([t, t], "samples", different_keys="xx"),
    "join-other-sample-names": lambda m, t: m.join(
        [t, m.rename_dimension(t, "samples", "s", "q")], "samples"
    ),
    "join-add_dimension-other-property-names": lambda m, t: m.join(
        [t, m.rename_dimension(t, "properties", "p", "q")], "properties", add_dimension="x"
    ),
    "rename-existing": lambda m, t: m.rename_dimension(t, "samples", "s", "a"),
    "remove_dimension-repeats": lambda m, t: m.remove_dimension(t, "samples", "s"),
    "zeros_like-missing-gradient": lambda m, t: m.zeros_like(t, gradients=["cell"]),
    "unique_metadata-components": lambda m, t: m.unique_metadata(t, "components", "c0"),
    "one_hot-absent": lambda m, t: m.one_hot(
        _labels(m, ["k"], [INT32.max]), _labels(m, ["k"], [0])
    ),
    "equal_metadata-check": lambda m, t: m.equal_metadata(t, t, check=["keys"]),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_refused_as_metatensor_refuses_before_computing(full, name):
    theirs, sources = full
    with pytest.raises(Exception) as expected:
        REFUSED[name](metatensor, theirs)
    for ours in (sources["zarr-1"], sources["mts-2"]):
        with pytest.raises(Exception) as raised, raise_if_dask_computes():
            REFUSED[name](mtd, ours)
        assert type(raised.value).__name__ == type(expected.value).__name__
        assert str(raised.value) == str(expected.value)


def _first_sample_named(theirs: Any, name: str) -> Any:
    """``theirs`` with its first sample dimension named ``name``, gradients as they are."""
    blocks = []
    for block in theirs.blocks():
        samples = metatensor.Labels([name, "a"], np.asarray(block.samples.values))
        renamed = metatensor.TensorBlock(block.values, samples, block.components, block.properties)
        renamed.add_gradient("positions", block.gradient("positions").copy())
        blocks.append(renamed)
    return metatensor.TensorMap(theirs.keys, blocks)


def test_renaming_a_sample_dimension_named_sample_keeps_the_gradient_rows(tmp_path):
    """The gradients' ``"sample"`` dimension is the value row of each gradient row, not
    the values' dimension of that name. Renaming the latter (the remedy ``to_zarr``
    names for appending such samples) renamed the former too: the result failed later,
    in ``to_zarr``, ``multiply`` and the reductions ("'sample' not found in the
    dimensions of these Labels"). metatensor-operations renames it too, and fails on the
    gradient it built."""
    base = _unusual([(4, 3), (0, 2)])
    theirs, expected = _first_sample_named(base, "sample"), _first_sample_named(base, "x")
    sources = _sources(theirs, tmp_path)
    for ours in sources.values():
        with raise_if_dask_computes():
            renamed = mtd.rename_dimension(ours, "samples", "sample", "x")
        assert_equal_to_metatensor(renamed, expected)
        assert_equal_to_metatensor(
            mtd.multiply(renamed, renamed), metatensor.multiply(expected, expected)
        )
    # the remedy: appending with the renamed dimension renumbered
    renamed = mtd.rename_dimension(sources["zarr-3"], "samples", "sample", "x")
    store = tmp_path / "renamed.zarr"
    renamed.to_zarr(store)
    renamed.to_zarr(store, append_dim="samples", renumber={"x": "next"})
    appended = mtd.open_zarr(store).block(0)
    assert appended.samples.column("x").tolist() == [-2, 0, 2, -1, 1, 3, 5, 2]
    assert appended.gradient("positions").samples.names == ["sample", "atom"]
    assert len(appended.gradient("positions").samples) == 16


@pytest.mark.parametrize("different_keys", ["error", "union", "intersection"])
def test_join_of_other_key_dimensions_names_a_remedy_that_works(full, different_keys):
    """Keys of other dimensions can be neither joined by entry nor united: the error
    named ``different_keys="union"`` as the remedy, which fails the same way (or, with
    ``different_keys`` given, metatensor's error alone)."""
    theirs, sources = full
    renamed = metatensor.rename_dimension(theirs, "keys", "k", "key")
    with pytest.raises(Exception) as expected:
        metatensor.join([theirs, renamed], "samples", different_keys, add_dimension="x")
    ours = sources["zarr-3"]
    other = mtd.rename_dimension(ours, "keys", "k", "key")
    with raise_if_dask_computes(), pytest.raises(Exception) as raised:
        mtd.join([ours, other], "samples", different_keys, add_dimension="x")
    assert type(raised.value).__name__ == type(expected.value).__name__
    assert str(raised.value).startswith(f"{expected.value}: give the inputs the same key")
    assert "`rename_dimension`" in str(raised.value)
    assert "different_keys=" not in str(raised.value)
    fixed = mtd.rename_dimension(other, "keys", "key", "k")
    joined = mtd.join([ours, fixed], "samples", different_keys, add_dimension="x")
    expected_join = metatensor.join([theirs, theirs], "samples", different_keys, add_dimension="x")
    assert_equal_to_metatensor(joined, expected_join)
