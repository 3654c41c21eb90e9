"""Maps of many tiny blocks that differ from each other (integer values, blocks
grouped next to blocks in several chunks): the grouped paths and the chunk-by-chunk
paths give metatensor's results, with the dtypes they declare."""

import dask
import metatensor
import numpy as np
import pytest
from metatensor_compare import assert_same_error_of
from oracle import rechunked

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes


def integer_map(n_blocks: int) -> metatensor.TensorMap:
    """``n_blocks`` blocks of int64 values ``(4, 3)`` (2 systems of 2 atoms, properties
    in 2 groups of ``q``) with an
    int64 ``positions`` gradient of one row per sample."""
    rng = np.random.default_rng(0)
    samples = metatensor.Labels(["system", "atom"], np.array([[0, 0], [0, 1], [1, 0], [1, 1]]))
    properties = metatensor.Labels(["p", "q"], np.array([[0, 0], [1, 0], [0, 1]]))
    gradient_samples = metatensor.Labels(
        ["sample", "atom"], np.array([[0, 0], [1, 1], [2, 0], [3, 1]])
    )
    blocks = []
    for _ in range(n_blocks):
        block = metatensor.TensorBlock(rng.integers(-5, 6, (4, 3)), samples, [], properties)
        block.add_gradient(
            "positions",
            metatensor.TensorBlock(
                rng.integers(-5, 6, (4, 3, 3)),
                gradient_samples,
                [metatensor.Labels.range("xyz", 3)],
                properties,
            ),
        )
        blocks.append(block)
    return metatensor.TensorMap(metatensor.Labels.range("k", n_blocks), blocks)


def tiny_and_chunked(theirs: metatensor.TensorMap) -> mtd.TensorMap:
    """``theirs`` as metatensor-dask, every other block in chunks of 2 rows (not
    grouped), the others tiny single chunks (grouped)."""
    tiny = mtd.from_metatensor(theirs)
    chunked = rechunked(tiny, 2)
    blocks = [(chunked if i % 2 else tiny).block(i).copy() for i in range(len(tiny.keys))]
    return mtd.TensorMap(tiny.keys, blocks)


def _arrays(block):
    yield block.values
    for _, gradient in block.gradients():
        yield gradient.values


@pytest.mark.parametrize("reduction", ["mean", "var", "std"])
@pytest.mark.parametrize("axis", ["samples", "properties"])
def test_reductions_of_integers_declare_the_dtype_they_compute(tmp_path, axis, reduction):
    theirs = integer_map(6)
    ours = tiny_and_chunked(theirs)
    name = "atom" if axis == "samples" else "p"
    result = getattr(mtd, f"{reduction}_over_{axis}")(ours, name)
    declared = [array.dtype for block in result.blocks() for array in _arrays(block)]
    (computed,) = dask.compute(result)
    assert [a.dtype for b in computed.blocks() for a in _arrays(b)] == declared
    assert set(declared) == {np.dtype(np.float64)}
    # on the values in float64: metatensor-operations 0.5.0 adds the squared deviations
    # of integers into an integer array (truncated), and its sparse-gradient rule
    # differs (see docs/operations-ii.md)
    floats = metatensor.remove_gradients(theirs).to(dtype=np.float64)
    expected = getattr(metatensor, f"{reduction}_over_{axis}")(floats, name)
    assert_equal_to_metatensor(mtd.remove_gradients(computed), expected, rtol=1e-12)
    mtd.to_zarr(result, tmp_path / "reduced.zarr")
    assert mtd.equal(mtd.open_zarr(tmp_path / "reduced.zarr"), computed)


def with_gradients_of_gradients(module, n_blocks: int):
    """``n_blocks`` blocks with components ``a`` and ``c`` and a ``positions``
    gradient that has a ``positions`` gradient of its own (metatensor allows them)."""
    rng = np.random.default_rng(1)

    def labels(name, count):
        return module.Labels([name], np.arange(count, dtype=np.int32).reshape(-1, 1))

    components = [labels("a", 2), labels("c", 3)]
    blocks = []
    for _ in range(n_blocks):
        block = module.TensorBlock(
            rng.random((2, 2, 3, 4)), labels("s", 2), components, labels("p", 4)
        )
        gradient = module.TensorBlock(
            rng.random((2, 3, 2, 3, 4)),
            labels("sample", 2),
            [labels("xyz", 3), *components],
            labels("p", 4),
        )
        gradient.add_gradient(
            "positions",
            module.TensorBlock(
                rng.random((1, 3, 3, 2, 3, 4)),
                labels("sample", 1),
                [labels("xyz_2", 3), labels("xyz", 3), *components],
                labels("p", 4),
            ),
        )
        block.add_gradient("positions", gradient)
        blocks.append(block)
    return module.TensorMap(labels("k", n_blocks), blocks)


@pytest.mark.parametrize("dimensions", ["c", "a", ["c", "a"]])
def test_components_to_properties_moves_them_in_gradients_of_gradients(dimensions):
    theirs = with_gradients_of_gradients(metatensor, 3).components_to_properties(dimensions)
    ours = with_gradients_of_gradients(mtd, 3).components_to_properties(dimensions)
    assert_equal_to_metatensor(ours, theirs)


@pytest.mark.parametrize("axis", ["samples", "properties"])
def test_join_refuses_gradients_of_gradients_with_metatensors_message(axis):
    def join(module):
        tensor = with_gradients_of_gradients(module, 3)
        operations = metatensor if module is metatensor else mtd
        return operations.join([tensor, tensor], axis, add_dimension="tensor")

    assert_same_error_of(join)


def test_subtracting_integers_gives_metatensors_float64(tmp_path):
    """metatensor subtracts by adding ``B * -1.0``: float64 values and gradients."""
    theirs = integer_map(4)
    other = metatensor.multiply(theirs, 3)
    other = metatensor.TensorMap(other.keys, [b.to(dtype=np.int64) for b in other.blocks()])
    expected = metatensor.subtract(theirs, other)
    ours = tiny_and_chunked(theirs)
    with raise_if_dask_computes():
        result = mtd.subtract(ours, mtd.from_metatensor(other))
    assert {array.dtype for block in result.blocks() for array in _arrays(block)} == {
        np.dtype(np.float64)
    }
    assert_equal_to_metatensor(result, expected)
