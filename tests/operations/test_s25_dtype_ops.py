"""Operations on maps of every dtype, in memory and in several row chunks per block,
next to metatensor, or to numpy and finite differences where metatensor is wrong:
the linear algebra of integers and bools, the modulus of complex values, and the
reductions of bools and of integers whose sums overflow their dtype."""

from __future__ import annotations

import metatensor
import numpy as np
import pytest
from chunked_arithmetic_maps import irregular

import metatensor_dask as mtd

INTEGERS = ["bool", "int8", "uint8", "int16", "int32", "uint32", "int64", "uint64"]


def _labels(names: list[str], rows: list[list[int]]) -> metatensor.Labels:
    return metatensor.Labels(names, np.array(rows, dtype=np.int32).reshape(-1, len(names)))


def _random(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    kind = np.dtype(dtype).kind
    if kind == "b":
        return rng.integers(0, 2, shape).astype(bool)
    if kind in "iu":
        return rng.integers(0 if kind == "u" else -4, 5, shape).astype(dtype)
    values = rng.uniform(-2, 2, shape)
    if kind == "c":
        values = values + 1j * rng.uniform(-2, 2, shape)
    return values.astype(dtype)


def _tensor(dtype: str, seed: int, gradients: bool = True) -> metatensor.TensorMap:
    """Two blocks of 9 and 6 samples (3 per system), a component, 3 properties, and
    position gradients of 0 to 2 rows per sample, all of ``dtype``."""
    rng = np.random.default_rng(seed)
    blocks = []
    for n in (9, 6):
        component = _labels(["c"], [[0], [1]])
        properties = _labels(["p"], [[0], [1], [2]])
        block = metatensor.TensorBlock(
            _random(rng, (n, 2, 3), dtype),
            _labels(["system", "atom"], [[i // 3, i % 3] for i in range(n)]),
            [component],
            properties,
        )
        if gradients:
            rows = [[s, s // 3, a] for s in range(n) for a in range(s % 3)]
            xyz = _labels(["xyz"], [[0], [1], [2]])
            gradient = metatensor.TensorBlock(
                _random(rng, (len(rows), 3, 2, 3), dtype),
                _labels(["sample", "system", "atom"], rows),
                [xyz, component],
                properties,
            )
            block.add_gradient("positions", gradient)
        blocks.append(block)
    return metatensor.TensorMap(_labels(["k"], [[0], [1]]), blocks)


def _ours(tensor: metatensor.TensorMap, chunked: bool) -> mtd.TensorMap:
    return irregular(tensor) if chunked else mtd.from_metatensor(tensor)


def _arrays(block: mtd.TensorBlock) -> list[tuple[object, np.ndarray]]:
    """(lazy dtype, computed array) of the values and every gradient of ``block``."""
    arrays = [(block.values.dtype, block.values.compute())]
    for _, gradient in block.gradients():
        arrays.append((gradient.values.dtype, gradient.values.compute()))
    return arrays


def _assert_same(ours: mtd.TensorMap, theirs: metatensor.TensorMap) -> None:
    """Same dtypes (declared lazily and computed) and values as metatensor's."""
    for our_block, their_block in zip(ours.blocks(), theirs.blocks(), strict=True):
        expected = [np.asarray(their_block.values)]
        expected += [np.asarray(g.values) for _, g in their_block.gradients()]
        arrays = _arrays(our_block)
        assert len(arrays) == len(expected)
        for (lazy, computed), wanted in zip(arrays, expected, strict=True):
            assert lazy == computed.dtype == wanted.dtype
            np.testing.assert_allclose(computed, wanted, rtol=1e-6)


def _square(dtype: str, seed: int) -> metatensor.TensorMap:
    """A map of one block of 3 x 3 values, whose diagonal dominates."""
    values = _random(np.random.default_rng(seed), (3, 3), dtype) + np.eye(3, dtype=dtype) * 9
    block = metatensor.TensorBlock(
        values, _labels(["s"], [[0], [1], [2]]), [], _labels(["p"], [[0], [1], [2]])
    )
    return metatensor.TensorMap(_labels(["k"], [[0]]), [block])


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("int8", "int8"),
        ("bool", "bool"),
        ("uint16", "int64"),
        ("float32", "int16"),
        ("complex64", "uint8"),
        ("float32", "float32"),
        ("complex64", "float64"),
    ],
)
def test_lstsq_and_solve_have_numpys_dtype(first, second, chunked):
    X, Y = _tensor(first, 1), _tensor(second, 2)
    theirs = metatensor.lstsq(X, Y, rcond=1e-10)
    _assert_same(mtd.lstsq(_ours(X, chunked), _ours(Y, chunked), rcond=1e-10), theirs)
    X, Y = _square(first, 3), _square(second, 4)
    _assert_same(mtd.solve(_ours(X, chunked), _ours(Y, chunked)), metatensor.solve(X, Y))


@pytest.mark.parametrize("operation", ["lstsq", "solve"])
def test_linear_algebra_of_float16_is_refused_as_numpy_refuses_it(operation):
    X = mtd.from_metatensor(_square("float16", 1))
    with pytest.raises(TypeError, match="array type float16 is unsupported in linalg"):
        if operation == "lstsq":
            mtd.lstsq(X, X, rcond=1e-10)
        else:
            mtd.solve(X, X)


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
def test_abs_of_complex_values(dtype, chunked):
    """Values as metatensor's (the modulus, in the complex dtype); gradients the
    derivative of the modulus, by finite differences (metatensor's are not)."""
    tensor = _tensor(dtype, 5)
    ours = mtd.abs(_ours(tensor, chunked))
    theirs = metatensor.abs(tensor)
    step = 1e-3 if dtype == "complex64" else 1e-6
    for our_block, block, their_block in zip(
        ours.blocks(), tensor.blocks(), theirs.blocks(), strict=True
    ):
        (lazy, values), (lazy_gradient, gradient) = _arrays(our_block)
        assert lazy == values.dtype == lazy_gradient == gradient.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(values, np.asarray(their_block.values))
        # each gradient row is the derivative of the values of its sample along a real
        # parameter r: z(r) = z + r dz
        rows = np.asarray(block.gradient("positions").samples.column("sample"))
        z = np.asarray(block.values)[rows][:, np.newaxis]
        dz = np.asarray(block.gradient("positions").values)
        expected = (np.abs(z + step * dz) - np.abs(z - step * dz)) / (2 * step)
        np.testing.assert_allclose(gradient.real, expected, atol=5e-3 if step == 1e-3 else 1e-7)
        np.testing.assert_array_equal(gradient.imag, 0)
    # the result is a valid metatensor map, with one dtype
    assert mtd.to_metatensor(ours).block(0).values.dtype == np.dtype(dtype)


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("dtype", ["int8", "uint8", "float32", "float64"])
def test_abs_of_real_values_is_metatensors(dtype, chunked):
    tensor = _tensor(dtype, 6)
    _assert_same(mtd.abs(_ours(tensor, chunked)), metatensor.abs(tensor))


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("over", ["samples", "properties"])
def test_sums_of_bools_are_metatensors(over, chunked):
    """A bool is true where any of the values summed is, as metatensor adds bools."""
    tensor = _tensor("bool", 7)
    dimension = "atom" if over == "samples" else "p"
    theirs = getattr(metatensor, f"sum_over_{over}")(tensor, dimension)
    ours = getattr(mtd, f"sum_over_{over}")(_ours(tensor, chunked), dimension)
    _assert_same(ours, theirs)


def _overflowing(dtype: str) -> np.ndarray:
    """Values whose sums over a group of three overflow ``dtype``."""
    rng = np.random.default_rng(8)
    if dtype == "bool":
        return rng.integers(0, 2, (9, 2, 3)).astype(bool)
    info = np.iinfo(dtype)
    return rng.integers(info.max // 2, info.max, (9, 2, 3), dtype=dtype, endpoint=True)


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "var", "std"])
@pytest.mark.parametrize("dtype", INTEGERS)
def test_reductions_of_integers_and_bools_are_numpys(dtype, reduction, chunked):
    values = _overflowing(dtype)
    block = metatensor.TensorBlock(
        values,
        _labels(["system", "atom"], [[i // 3, i % 3] for i in range(9)]),
        [_labels(["c"], [[0], [1]])],
        _labels(["p", "q"], [[0, 0], [0, 1], [0, 2]]),
    )
    tensor = _ours(metatensor.TensorMap(_labels(["k"], [[0]]), [block]), chunked)
    function = getattr(np, reduction)
    over_samples = getattr(mtd, f"{reduction}_over_samples")(tensor, "atom").block(0).values
    expected = function(values.reshape(3, 3, 2, 3), axis=1)
    assert over_samples.dtype == np.float64
    np.testing.assert_allclose(over_samples.compute(), expected, rtol=1e-12)
    over_properties = getattr(mtd, f"{reduction}_over_properties")(tensor, "q").block(0).values
    assert over_properties.dtype == np.float64
    np.testing.assert_allclose(
        over_properties.compute(), function(values, axis=-1, keepdims=True), rtol=1e-12
    )


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "var", "std"])
def test_reductions_of_float16_are_made_in_float32(reduction, chunked):
    """Values near 30,000 whose sums over a group of three overflow float16 (65504):
    reduced in float32 and given as float16, with gradients, as numpy does."""
    rng = np.random.default_rng(9)
    values = rng.uniform(29_900, 30_100, (9, 2, 3)).astype(np.float16)
    block = metatensor.TensorBlock(
        values,
        _labels(["system", "atom"], [[i // 3, i % 3] for i in range(9)]),
        [_labels(["c"], [[0], [1]])],
        _labels(["p", "q"], [[0, 0], [0, 1], [0, 2]]),
    )
    rows = [[s, s // 3, 0] for s in range(9)]
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            rng.uniform(-1, 1, (9, 3, 2, 3)).astype(np.float16),
            _labels(["sample", "system", "atom"], rows),
            [_labels(["xyz"], [[0], [1], [2]]), _labels(["c"], [[0], [1]])],
            block.properties,
        ),
    )
    tensor = metatensor.TensorMap(_labels(["k"], [[0]]), [block])
    in_float32 = tensor.to(dtype=np.float32)
    for over, dimension in [("samples", "atom"), ("properties", "q")]:
        name = f"{reduction}_over_{over}"
        ours = getattr(mtd, name)(_ours(tensor, chunked), dimension).block(0)
        expected = getattr(mtd, name)(mtd.from_metatensor(in_float32), dimension).block(0)
        pairs = [(ours.values, expected.values)]
        pairs.append((ours.gradient("positions").values, expected.gradient("positions").values))
        for array, wanted in pairs:
            assert array.dtype == np.float16
            computed = array.compute()
            assert computed.dtype == np.float16
            assert np.all(np.isfinite(computed))
            np.testing.assert_array_equal(computed, wanted.compute().astype(np.float16))
