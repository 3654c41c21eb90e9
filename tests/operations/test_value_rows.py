"""Gradient kernels on every layout of gradient rows: regular (the same number of rows
per sample, in order; value rows seen as a broadcasting view), grouped with varying
counts, in any order, empty. Each gives the bits of metatensor's whole-array
expression, whatever the block size, and the operations equal metatensor's on maps
whose gradients have each layout, in memory and read from a store."""

import metatensor
import numpy as np
import pytest
from oracle import lazily, rechunked

import metatensor_dask as mtd
from metatensor_dask.operations import _value_rows
from metatensor_dask.operations._abs import _abs_gradient
from metatensor_dask.operations._divide import _divide_gradient
from metatensor_dask.operations._multiply import _multiply_gradient
from metatensor_dask.operations._pow import _power_gradient
from metatensor_dask.operations._value_rows import ValueRows
from metatensor_dask.testing import assert_equal_to_metatensor

ROWS = 7


def _index(layout: str, rng: np.random.Generator) -> np.ndarray:
    if layout == "regular":
        return np.repeat(np.arange(ROWS), 3)
    if layout == "one per sample":
        return np.arange(ROWS)
    if layout == "varying counts":
        return np.repeat(np.arange(ROWS), [2, 0, 3, 1, 1, 0, 4])
    if layout == "any order":
        return rng.permutation(np.repeat(np.arange(ROWS), 3))
    if layout == "a row unused":
        return np.repeat(np.arange(ROWS - 1), 3)
    assert layout == "empty"
    return np.zeros(0, np.int64)


LAYOUTS = ["regular", "one per sample", "varying counts", "any order", "a row unused", "empty"]


def _arrays(layout, dtype_values, dtype_gradients, properties=5, seed=0):
    rng = np.random.default_rng(seed)
    index = _index(layout, rng)
    # positive values: fractional powers of them are defined
    a, b = (rng.uniform(0.5, 2.0, size=(ROWS, 2, properties)) for _ in range(2))
    shape = (len(index), 3, 2, properties)
    ga, gb = (rng.normal(size=shape).astype(dtype_gradients) for _ in range(2))
    return a.astype(dtype_values), b.astype(dtype_values), ga, gb, index


def _metatensor_rows(values, index):
    # as metatensor builds them: gathered, with an axis for the gradient's component
    return values[index].reshape([-1, 1, *values.shape[1:]])


DTYPES = [
    (np.float64, np.float64),
    (np.float32, np.float32),
    (np.float32, np.float64),
    (np.float64, np.float32),
]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("block_bytes", [1, 200, 2**19])
@pytest.mark.parametrize("dtypes", DTYPES)
def test_kernels_give_metatensor_bits(monkeypatch, layout, block_bytes, dtypes):
    monkeypatch.setattr(_value_rows, "ROW_BLOCK_BYTES", block_bytes)
    a, b, ga, gb, index = _arrays(layout, *dtypes)
    a_rows, b_rows = _metatensor_rows(a, index), _metatensor_rows(b, index)
    signed = a * np.where(np.arange(ROWS) % 2, -1, 1).astype(a.dtype)[:, None, None]
    signed[1, 0, :1] = 0.0
    expected = {
        "multiply": (_multiply_gradient(a, b, ga, gb, index), a_rows * gb + ga * b_rows),
        "square": (_multiply_gradient(a, a, ga, ga, index), a_rows * ga + ga * a_rows),
        "divide": (
            _divide_gradient(a, b, ga, gb, index),
            -a_rows * gb / b_rows**2 + ga / b_rows,
        ),
        "abs": (_abs_gradient(signed, ga, index), ga * _metatensor_rows(np.sign(signed), index)),
    }
    for exponent in (2, 3, 0.5, -1.5):
        expected[f"pow {exponent}"] = (
            _power_gradient(a, ga, index, exponent),
            exponent * ga * a_rows ** (exponent - 1),
        )
    for name, (found, wanted) in expected.items():
        assert found.dtype == wanted.dtype, name
        assert found.shape == wanted.shape, name
        np.testing.assert_array_equal(found, wanted, err_msg=name)


@pytest.mark.parametrize("layout", ["regular", "varying counts", "empty"])
def test_kernels_with_no_properties(layout):
    a, b, ga, gb, index = _arrays(layout, np.float64, np.float64, properties=0)
    assert _multiply_gradient(a, b, ga, gb, index).shape == ga.shape
    assert _power_gradient(a, ga, index, 3.0).shape == ga.shape


@pytest.mark.parametrize(
    ("layout", "regular"),
    [
        ("regular", True),
        ("one per sample", True),
        ("varying counts", False),
        ("any order", False),
        ("a row unused", False),
        ("empty", False),
    ],
)
def test_layout_detected(layout, regular):
    index = _index(layout, np.random.default_rng(0))
    rows = ValueRows(index, ROWS, (len(index), 3, 5), 8)
    assert rows.regular == regular


def test_regular_blocks_hold_whole_samples(monkeypatch):
    monkeypatch.setattr(_value_rows, "ROW_BLOCK_BYTES", 100)
    index = np.repeat(np.arange(ROWS), 3)  # 3 rows of 8 bytes a sample: 4 samples a block
    rows = ValueRows(index, ROWS, (len(index), 1), 8)
    assert rows.blocks() == [slice(0, 4), slice(4, 7)]
    gradient = np.arange(len(index), dtype=np.float64).reshape(-1, 1)
    assert rows.shaped(gradient).shape == (ROWS, 3, 1)
    values = np.arange(ROWS, dtype=np.float64).reshape(-1, 1)
    # a view of the values: nothing gathered
    assert np.shares_memory(rows.rows(values, slice(4, 7)), values)


def test_row_blocks_cover_the_rows(monkeypatch):
    monkeypatch.setattr(_value_rows, "ROW_BLOCK_BYTES", 100)
    array = np.zeros((23, 3), np.float64)  # 24 bytes a row: 4 rows a block
    blocks = _value_rows.row_blocks(array)
    assert blocks[0] == slice(0, 4) and blocks[-1] == slice(20, 23) and len(blocks) == 6
    assert _value_rows.row_blocks(array[:0]) == []


def _tensor(layout: str, seed: int) -> metatensor.TensorMap:
    index = _index(layout, np.random.default_rng(0))  # the same rows in every map
    rng = np.random.default_rng(seed)
    properties = metatensor.Labels.range("p", 4)
    block = metatensor.TensorBlock(
        rng.uniform(0.5, 2.0, size=(ROWS, 2, 4)),
        metatensor.Labels.range("s", ROWS),
        [metatensor.Labels.range("c", 2)],
        properties,
    )
    neighbours = np.arange(len(index))
    samples = np.stack([index, neighbours], axis=1).astype(np.int32)
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            rng.normal(size=(len(index), 3, 2, 4)),
            metatensor.Labels(["sample", "atom"], samples),
            [metatensor.Labels.range("xyz", 3), metatensor.Labels.range("c", 2)],
            properties,
        ),
    )
    return metatensor.TensorMap(metatensor.Labels.range("key", 1), [block])


OPERATIONS = {
    "multiply": (lambda t, u: mtd.multiply(t, u), lambda t, u: metatensor.multiply(t, u)),
    "square": (lambda t, u: mtd.multiply(t, t), lambda t, u: metatensor.multiply(t, t)),
    "divide": (lambda t, u: mtd.divide(t, u), lambda t, u: metatensor.divide(t, u)),
    "pow": (lambda t, u: mtd.pow(t, 3), lambda t, u: metatensor.pow(t, 3)),
    "sqrt": (lambda t, u: mtd.pow(t, 0.5), lambda t, u: metatensor.pow(t, 0.5)),
    "abs": (lambda t, u: mtd.abs(t), lambda t, u: metatensor.abs(t)),
}


@pytest.mark.parametrize("layout", ["regular", "one per sample", "varying counts", "empty"])
@pytest.mark.parametrize("stored", [False, True])
def test_operations_on_each_layout(tmp_path, layout, stored):
    theirs = [_tensor(layout, seed) for seed in (0, 1)]
    ours = [rechunked(mtd.from_metatensor(t), 3) for t in theirs]
    if stored:
        for i, tensor in enumerate(ours):
            tensor.to_zarr(tmp_path / f"{i}.zarr")
        ours = [mtd.open_zarr(tmp_path / f"{i}.zarr") for i in range(2)]
    for mine, reference in OPERATIONS.values():
        result = lazily(mine, *ours)
        assert_equal_to_metatensor(result, reference(*theirs))


@pytest.mark.parametrize("layout", ["regular", "varying counts", "any order"])
def test_operations_on_rows_in_any_order(layout):
    # the gradient rows shuffled: each chunk's rows gathered from several values chunks
    theirs = [_tensor(layout, seed) for seed in (0, 1)]
    ours = [rechunked(mtd.from_metatensor(t), 2, arbitrary=4) for t in theirs]
    for mine, reference in OPERATIONS.values():
        result = lazily(mine, *ours)
        assert_equal_to_metatensor(result, reference(*theirs))
