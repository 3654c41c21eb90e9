"""Wide blocks: thousands of properties, few samples, components on values and
gradients, so that one value row is larger than the ``chunk-size`` setting.

Read from a ``.mts`` file and from a Zarr store with a small chunk target, such blocks
are cut into chunks of one value row (the gradients co-partitioned), and every
operation acting along properties gives metatensor's result on the same data, values
and gradients."""

from __future__ import annotations

import dask
import dask.array
import metatensor
import metatensor.operations  # (the operations on metatensor.TensorMap)
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask._partition import gradient_row_chunks, row_pointer
from metatensor_dask.testing import assert_equal_to_metatensor

PROPERTIES = 6000
"""Properties of the first block (one fewer in the next): a value row of three
components is 141 KiB, a gradient row of 3 x 3 components 422 KiB."""

TARGET = "64KiB"


def _labels(names: list[str], values: np.ndarray) -> metatensor.Labels:
    return metatensor.Labels(names, np.asarray(values, dtype=np.int32).reshape(-1, len(names)))


def _block(rng: np.random.Generator, n_samples: int, n_properties: int) -> metatensor.TensorBlock:
    """Samples ``(system, atom)``, components ``c`` (3), properties ``(n, l)``, and a
    ``positions`` gradient of 0 to 2 rows per sample with components ``xyz`` and ``c``."""
    index = np.arange(n_samples)
    samples = _labels(["system", "atom"], np.stack([index, rng.integers(0, 3, n_samples)], 1))
    components = [_labels(["c"], np.arange(3))]
    columns = np.arange(n_properties)
    properties = _labels(["n", "l"], np.stack([columns // 7, columns % 7], 1))
    values = rng.normal(size=(n_samples, 3, n_properties))
    block = metatensor.TensorBlock(values, samples, components, properties)
    rows = [(s, 0, a) for s in range(n_samples) for a in range(int(rng.integers(0, 3)))]
    gradient_samples = _labels(["sample", "system", "atom"], np.array(rows).reshape(-1, 3))
    gradient = rng.normal(size=(len(rows), 3, 3, n_properties))
    xyz = _labels(["xyz"], np.arange(3))
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(gradient, gradient_samples, [xyz, *components], properties),
    )
    return block


@pytest.fixture(scope="module")
def theirs() -> metatensor.TensorMap:
    rng = np.random.default_rng(27)
    blocks = [_block(rng, n, PROPERTIES - i) for i, n in enumerate((5, 3))]
    return metatensor.TensorMap(_labels(["k"], [0, 1]), blocks)


@pytest.fixture(scope="module")
def sources(theirs: metatensor.TensorMap, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The map read back from a ``.mts`` file and a Zarr store, chunked for
    ``TARGET``."""
    where = tmp_path_factory.mktemp("wide")
    theirs.save(str(where / "wide.mts"))
    mtd.from_metatensor(theirs).to_zarr(where / "wide.zarr", chunks=TARGET)
    return {
        "mts": lambda: mtd.load(where / "wide.mts", chunks=TARGET),
        "zarr": lambda: mtd.open_zarr(where / "wide.zarr"),
        "zarr-rechunked": lambda: mtd.open_zarr(where / "wide.zarr", chunks=TARGET),
    }


SOURCES = ["mts", "zarr", "zarr-rechunked"]


@pytest.mark.parametrize("source", SOURCES)
def test_a_row_larger_than_the_target_is_a_chunk_of_its_own(sources, source):
    tensor = sources[source]()
    for block in tensor.blocks():
        values = block.values
        gradient = block.gradient("positions")
        assert values.chunks[0] == (1,) * len(block.samples)
        pointer = row_pointer(gradient.samples.column("sample"), len(block.samples))
        expected = gradient_row_chunks(pointer, values.chunks[0])
        assert tuple(n for n in gradient.values.chunks[0] if n) == tuple(n for n in expected if n)
        # the other axes are never cut
        assert values.chunks[1:] == tuple((n,) for n in values.shape[1:])


def _labels_of(module, names, values):
    return module.Labels(names, np.asarray(values, dtype=np.int32).reshape(-1, len(names)))


def _joined(module, tensor):
    first = module.insert_dimension(tensor, "properties", 0, "t", 0)
    second = module.insert_dimension(tensor, "properties", 0, "t", 1)
    return module.join([first, second], axis="properties")


OPERATIONS = {
    "sum_over_properties": lambda m, t: m.sum_over_properties(t, ["l"]),
    "slice": lambda m, t: m.slice(
        t, "properties", _labels_of(m, ["n"], np.arange(0, PROPERTIES // 7, 5))
    ),
    "split": lambda m, t: m.split(
        t, "properties", [_labels_of(m, ["l"], [0, 6]), _labels_of(m, ["l"], [3])]
    ),
    "sort": lambda m, t: m.sort(t, axes="properties", descending=True),
    "unique_metadata": lambda m, t: m.unique_metadata(t, "properties", ["n"]),
    "join": _joined,
    "keys_to_properties": lambda m, t: t.keys_to_properties("k"),
    "components_to_properties": lambda m, t: t.components_to_properties("c"),
    "insert_dimension": lambda m, t: m.insert_dimension(t, "properties", 1, "extra", 4),
    "permute_dimensions": lambda m, t: m.permute_dimensions(t, "properties", [1, 0]),
    "multiply": lambda m, t: m.multiply(t, t),
    "equal": lambda m, t: m.equal(t, m.multiply(t, 1.0 + 1e-12)),
    "allclose": lambda m, t: m.allclose(t, m.multiply(t, 1.0 + 1e-12)),
}


def _assert_same(ours, theirs):
    if isinstance(theirs, list):
        assert len(ours) == len(theirs)
        for mine, reference in zip(ours, theirs, strict=True):
            _assert_same(mine, reference)
    elif isinstance(theirs, (bool, np.bool_)):
        assert ours == theirs
    else:
        # sums are taken in another order than metatensor's: equal to rounding
        assert_equal_to_metatensor(ours, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_operations_along_properties_as_metatensor(theirs, sources, source, operation):
    build = OPERATIONS[operation]
    with dask.config.set({"metatensor_dask.chunk-size": TARGET}):
        _assert_same(build(mtd, sources[source]()), build(metatensor, theirs))


def _one_component(block: metatensor.TensorBlock, index: int) -> metatensor.TensorBlock:
    """The entries of component ``index`` of ``block``, as a block without components
    (metatensor reduces those correctly)."""
    part = metatensor.TensorBlock(
        np.ascontiguousarray(block.values[:, index]), block.samples, [], block.properties
    )
    gradient = block.gradient("positions")
    part.add_gradient(
        "positions",
        metatensor.TensorBlock(
            np.ascontiguousarray(gradient.values[:, :, index]),
            gradient.samples,
            gradient.components[:1],
            gradient.properties,
        ),
    )
    return part


@pytest.mark.parametrize("reduction", ["mean", "var", "std"])
def test_reductions_over_properties_of_wide_blocks_with_components(theirs, sources, reduction):
    """metatensor-operations 0.5.0 is wrong for blocks with components: each component
    is compared with metatensor's reduction of that component alone."""
    ours = getattr(mtd, f"{reduction}_over_properties")(sources["mts"](), ["l"])
    reduce_block = getattr(metatensor, f"{reduction}_over_properties_block")
    computed = mtd.to_metatensor(ours)
    for block, reduced in zip(theirs.blocks(), computed.blocks(), strict=True):
        for index in range(3):
            expected = reduce_block(_one_component(block, index), ["l"])
            assert reduced.properties == expected.properties
            np.testing.assert_allclose(
                reduced.values[:, index], expected.values, rtol=1e-12, atol=1e-12
            )
            np.testing.assert_allclose(
                reduced.gradient("positions").values[:, :, index],
                expected.gradient("positions").values,
                rtol=1e-12,
                atol=1e-12,
            )


@pytest.mark.parametrize("source", SOURCES)
def test_dot_and_lstsq_contract_wide_properties_as_metatensor(theirs, sources, source):
    rng = np.random.default_rng(5)
    weights = metatensor.TensorMap(
        theirs.keys,
        [
            metatensor.TensorBlock(
                rng.normal(size=(2, len(block.properties))),
                _labels(["w"], [0, 1]),
                [],
                block.properties,
            )
            for block in theirs.blocks()
        ],
    )
    tensor = sources[source]()
    ours = mtd.dot(tensor, mtd.from_metatensor(weights))
    expected = metatensor.dot(theirs, weights)
    assert_equal_to_metatensor(ours, expected, rtol=1e-12, atol=1e-12)

    # the weights fitted back from the products (values only, as equations)
    fitted = mtd.lstsq(mtd.remove_gradients(tensor), mtd.remove_gradients(ours), rcond=1e-10)
    reference = metatensor.lstsq(
        metatensor.remove_gradients(theirs), metatensor.remove_gradients(expected), rcond=1e-10
    )
    assert_equal_to_metatensor(fitted, reference, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("ranges", [[(0, 40)], [(3, 4), (7, 9)], [(0, PROPERTIES // 7)]])
def test_slices_of_neighbouring_properties_as_metatensor(theirs, ranges):
    """Properties kept side by side (one range of ``n``: read as a slice) or in
    several ranges (gathered) in row chunks of one row."""
    n = np.concatenate([np.arange(start, stop) for start, stop in ranges])
    block = theirs.block(0)
    ours = mtd.TensorBlock(
        dask.array.from_array(block.values, chunks=(1, *block.values.shape[1:])),
        mtd.from_metatensor(block.samples),
        [mtd.from_metatensor(c) for c in block.components],
        mtd.from_metatensor(block.properties),
    )
    sliced = mtd.slice_block(ours, "properties", _labels_of(mtd, ["n"], n))
    expected = metatensor.slice_block(
        metatensor.remove_gradients_block(block), "properties", _labels_of(metatensor, ["n"], n)
    )
    assert_equal_to_metatensor(sliced, expected)
