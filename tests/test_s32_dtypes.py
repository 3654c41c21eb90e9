"""Dtypes as metatensor sees them: the kind and the size of the values (its arrays are
DLPack's), not their byte order; and kinds that are not numbers (objects, strings,
dates, raw bytes) refused where metatensor refuses them."""

from __future__ import annotations

import metatensor
import numpy as np
import pytest
from metatensor_compare import assert_same_error_of

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def _labels(module, names: list[str], rows: list[list[int]]):
    return module.Labels(names, np.array(rows, dtype=np.int32).reshape(-1, len(names)))


def _block(module, values: np.ndarray, gradient: np.ndarray | None = None):
    """A block of 3 samples, a component of 2 and 2 properties; with ``gradient``, a
    positions gradient of one row per sample and an xyz component."""
    component = _labels(module, ["c"], [[0], [1]])
    properties = _labels(module, ["p"], [[0], [1]])
    block = module.TensorBlock(
        values,
        _labels(module, ["system", "atom"], [[0, 0], [0, 1], [1, 0]]),
        [component],
        properties,
    )
    if gradient is not None:
        block.add_gradient(
            "positions",
            module.TensorBlock(
                gradient,
                _labels(module, ["sample", "system", "atom"], [[0, 0, 0], [1, 0, 1], [2, 1, 0]]),
                [_labels(module, ["xyz"], [[0], [1], [2]]), component],
                properties,
            ),
        )
    return block


def _arrays(dtype: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    values = rng.integers(-3, 4, (3, 2, 2)).astype(dtype)
    return values, rng.integers(-3, 4, (3, 3, 2, 2)).astype(dtype)


def _map(module, dtypes: list[str]):
    """A map of one block per dtype, each with its positions gradient of that dtype."""
    blocks = [_block(module, *_arrays(dtype, seed)) for seed, dtype in enumerate(dtypes)]
    return module.TensorMap(_labels(module, ["k"], [[i] for i in range(len(dtypes))]), blocks)


SWAPPED = [">f8", ">f4", ">i4", ">c16"]


def _with_scalar(module, tensor, dtype: np.dtype):
    """``tensor + 3`` (metatensor refuses it on integers with gradients: times 3)."""
    if dtype.kind in "iu":
        return module.multiply(tensor, 3)
    return module.add(tensor, 3)


@pytest.mark.parametrize("swapped", SWAPPED)
def test_values_of_the_other_byte_order_are_the_same_dtype(swapped):
    """metatensor compares dtypes by kind and size: big-endian values hold gradients
    and share a map with little-endian ones. Ours hold them too, in the machine's
    byte order (as stores and files give them), and compute as metatensor does."""
    native = np.dtype(swapped).newbyteorder("=")
    dtypes = [swapped, native.str]
    theirs = _map(metatensor, dtypes)
    # a block of one byte order with a gradient of the other
    values, gradient = _arrays(swapped, 3)
    mixed = [_block(module, values, gradient.astype(native)) for module in (metatensor, mtd)]
    ours = _map(mtd, dtypes)
    for block in ours.blocks():
        for array in (block.values, block.gradient("positions").values):
            assert array.dtype == native
            assert array.compute().dtype == native
    np.testing.assert_array_equal(mixed[1].values.compute(), mixed[0].values)
    assert mixed[1].dtype == native
    for operation in (
        lambda m, t: _with_scalar(m, t, native),
        lambda m, t: m.subtract(t, t),
        lambda m, t: m.multiply(t, t),
        lambda m, t: m.sum_over_samples(t, "atom"),
    ):
        expected = operation(metatensor, theirs)
        result = mtd.to_metatensor(operation(mtd, ours))
        for our_block, their_block in zip(result.blocks(), expected.blocks(), strict=True):
            for array, wanted in [
                (our_block.values, their_block.values),
                (our_block.gradient("positions").values, their_block.gradient("positions").values),
            ]:
                assert array.dtype == np.dtype(wanted.dtype).newbyteorder("=")
                np.testing.assert_array_equal(array, wanted)


@pytest.mark.parametrize("swapped", SWAPPED)
def test_a_cast_to_the_other_byte_order_keeps_the_dtype_usable(swapped):
    """``to(dtype='>f8')`` gives values of that kind and size, in the machine's byte
    order: adding a scalar to them keeps their gradients' dtype."""
    native = np.dtype(swapped).newbyteorder("=")
    ours = _map(mtd, [native.str]).to(dtype=swapped)
    assert ours.block(0).values.dtype == native
    result = mtd.to_metatensor(_with_scalar(mtd, ours, native))
    theirs = _with_scalar(metatensor, _map(metatensor, [native.str]), native)
    assert result.block(0).gradient("positions").values.dtype == theirs.block(0).values.dtype
    np.testing.assert_array_equal(result.block(0).values, theirs.block(0).values)


NOT_NUMBERS = [
    np.dtype(object),
    np.dtype("U3"),
    np.dtype("S2"),
    np.dtype("datetime64[s]"),
    np.dtype("timedelta64[s]"),
    np.dtype("V8"),
    np.dtype([("a", "<f4"), ("b", "<f4")]),
]


def _of(dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


@pytest.mark.parametrize("dtype", NOT_NUMBERS, ids=str)
def test_values_that_are_not_numbers_are_refused_as_metatensor_refuses_them(dtype):
    """A block holds them (as in metatensor), a map or a gradient refuses them with
    metatensor's ValueError naming the dtype, before comparing dtypes."""
    for module in (metatensor, mtd):
        assert _block(module, _of(dtype, (3, 2, 2))).values.dtype == dtype
    assert_same_error_of(
        lambda m: m.TensorMap(_labels(m, ["k"], [[0]]), [_block(m, _of(dtype, (3, 2, 2)))])
    )
    assert_same_error_of(
        lambda m: m.TensorMap(
            _labels(m, ["k"], [[0], [1]]),
            [_block(m, np.zeros((3, 2, 2))), _block(m, _of(dtype, (3, 2, 2)))],
        )
    )
    # the gradient's dtype is read first, then the block's
    assert_same_error_of(lambda m: _block(m, np.zeros((3, 2, 2)), _of(dtype, (3, 3, 2, 2))))
    assert_same_error_of(lambda m: _block(m, _of(dtype, (3, 2, 2)), np.zeros((3, 3, 2, 2))))
    assert_same_error_of(
        lambda m: _block(m, _of(dtype, (3, 2, 2)), _of(np.dtype("U1"), (3, 3, 2, 2)))
    )


@pytest.mark.parametrize(
    ("dtype", "stored"), [("int32", False), ("int64", True), ("uint8", False), ("bool", True)]
)
@pytest.mark.parametrize(
    "operation",
    [lambda m, t: m.add(t, 2), lambda m, t: m.add(t, 2.5), lambda m, t: m.subtract(t, 2)],
)
def test_a_scalar_added_to_integers_with_gradients_gives_float64_gradients(
    operation, dtype, stored, tmp_path
):
    """metatensor adds the scalar as a float: float64 values, and the gradients, which
    adding a constant leaves as they are, in their integer dtype: it refuses its own
    block ("the gradient values have dtype 'i32' but the block values have dtype
    'f64'"). Ours are its values, with the gradients in float64, the values' dtype."""
    theirs = _map(metatensor, [dtype, dtype])
    ours = mtd.from_metatensor(theirs)
    if stored:
        mtd.to_zarr(ours, tmp_path / "map.zarr", chunks=2)
        ours = mtd.open_zarr(tmp_path / "map.zarr")
    with pytest.raises(metatensor.MetatensorError, match="the gradient values have dtype"):
        operation(metatensor, theirs)
    result = operation(mtd, ours)
    # metatensor's values, and the gradients of the same map in float64
    assert_equal_to_metatensor(
        mtd.remove_gradients(result), operation(metatensor, metatensor.remove_gradients(theirs))
    )
    assert_equal_to_metatensor(result, operation(metatensor, theirs.to(dtype=np.float64)))


def _files(path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("dtype", ["float32", "int64", "complex128"])
def test_blocks_of_another_dtype_added_to_a_store_are_refused_naming_the_dtypes(dtype, tmp_path):
    """``mode="a"`` adds blocks of new keys: of another dtype than the stored ones, the
    store would not be a TensorMap. Refused before anything is written, naming both
    dtypes and the remedy (before: "the store is damaged", which it is not)."""
    store = tmp_path / "map.zarr"
    mtd.to_zarr(_map(mtd, ["float64", "float64"]), store)
    before = _files(store)
    other = _map(metatensor, [dtype, dtype, dtype])
    added = metatensor.TensorMap(_labels(metatensor, ["k"], [[2]]), [other.block(2).copy()])
    with pytest.raises(mtd.MetatensorDaskError) as refused:
        mtd.to_zarr(mtd.from_metatensor(added), store, mode="a")
    message = str(refused.value)
    assert f"the tensor has the dtype {dtype}, the store float64" in message
    assert "tensor.to(dtype='float64')" in message
    assert "nothing was written" in message
    assert "damaged" not in message
    assert _files(store) == before
    assert mtd.verify(store).problems == []
