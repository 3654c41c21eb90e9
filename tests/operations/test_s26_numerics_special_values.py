"""Special floating-point values through the operations, side by side with
metatensor-operations on the same data.

Values and gradients hold NaN, ±inf, -0.0, subnormal, tiny and huge numbers at random
places. The element-wise operations must give metatensor's bits (NaN at the same
places, the same sign of every zero and infinity) whatever the chunking; reductions the
same NaN and infinities; comparisons and linear algebra the same answers and errors.
Where metatensor-operations 0.5.0 is wrong (complex ``subtract``, the gradients of
complex ``abs``, of ``var_over_*``, of ``std_over_*`` and of ``pow(A, 0)``), the
mathematics decides.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dask
import dask.array as da
import metatensor
import numpy as np
import pytest
from metatensor_compare import with_new_arrays

import metatensor_dask as mtd

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

SPECIAL = [np.nan, -np.nan, np.inf, -np.inf, -0.0, 0.0, 5e-324, -5e-324, 1e300, -1e300, 1e-300]
# moderate specials for the reductions: huge ones overflow sums in an order-dependent
# way; infinite gradients make metatensor's variance gradients NaN (inf - inf)
REDUCIBLE = [np.nan, np.inf, -np.inf, -0.0, 5e-324, 1e-300]
FINITE_OR_NAN = [np.nan, -0.0, 5e-324, 1e-300]
FINITE = [-0.0, 5e-324, 1e-300]


def _labels(names: list[str], rows: Any) -> metatensor.Labels:
    return metatensor.Labels(names, np.asarray(rows, dtype=np.int32).reshape(-1, len(names)))


def _sprinkled(
    rng: np.random.Generator, shape: tuple[int, ...], dtype: Any, special: list[float]
) -> np.ndarray:
    """Uniform values in [-2, 2] with about a third replaced by ``special`` ones (real
    and imaginary parts drawn apart for complex dtypes)."""
    dtype = np.dtype(dtype)
    parts = []
    for _ in range(2 if dtype.kind == "c" else 1):
        part = rng.uniform(-2, 2, shape)
        chosen = rng.random(shape) < 0.35
        part[chosen] = rng.choice(np.array(special), size=int(chosen.sum()))
        parts.append(part)
    array = parts[0] + 1j * parts[1] if dtype.kind == "c" else parts[0]
    with np.errstate(over="ignore"):
        return array.astype(dtype)


def _reference(
    seed: int,
    dtype: Any = np.float64,
    components: bool = True,
    special: list[float] = SPECIAL,
    shuffled: bool = False,
    gradient_special: list[float] | None = None,
) -> metatensor.TensorMap:
    """Three blocks of 1 to 8 samples ``(system, atom)``, 4 properties, a ``positions``
    gradient with two rows per sample (dense: every sample of a system has the same
    gradient entries)."""
    rng = np.random.default_rng(seed)
    component_labels = [metatensor.Labels.range("o3_mu", 3)] if components else []
    shape = (*(len(c) for c in component_labels), 4)
    blocks = []
    for _ in range(3):
        n = int(rng.integers(1, 9))
        block = metatensor.TensorBlock(
            _sprinkled(rng, (n, *shape), dtype, special),
            _labels(["system", "atom"], [[i // 2, i % 2] for i in range(n)]),
            component_labels,
            metatensor.Labels.range("n", 4),
        )
        rows = np.array([[s, s // 2, a] for s in range(n) for a in range(2)])
        if shuffled:
            rows = rows[rng.permutation(len(rows))]
        block.add_gradient(
            "positions",
            metatensor.TensorBlock(
                _sprinkled(rng, (len(rows), 3, *shape), dtype, gradient_special or special),
                _labels(["sample", "system", "atom"], rows),
                [metatensor.Labels.range("xyz", 3), *component_labels],
                block.properties,
            ),
        )
        blocks.append(block)
    return metatensor.TensorMap(_labels(["k"], [[0], [1], [2]]), blocks)


def _revalued(tensor: metatensor.TensorMap, seed: int) -> metatensor.TensorMap:
    """``tensor``'s metadata with other values (and specials)."""
    rng = np.random.default_rng(seed)
    return with_new_arrays(tensor, lambda array: _sprinkled(rng, array.shape, array.dtype, SPECIAL))


def _chunked(theirs: metatensor.TensorMap, chunking: str) -> mtd.TensorMap:
    """``theirs`` as metatensor-dask: ``"tiny"`` one chunk per array (tiny blocks,
    grouped tasks), ``"rows"`` values one sample per chunk and gradients two rows per
    chunk."""
    ours = mtd.from_metatensor(theirs)
    if chunking == "tiny":
        return ours
    blocks = []
    for block in ours.blocks():
        new = mtd.TensorBlock(
            da.asarray(block.values).rechunk({0: 1}),
            block.samples,
            block.components,
            block.properties,
        )
        for parameter, gradient in block.gradients():
            new.add_gradient(
                parameter,
                mtd.TensorBlock(
                    da.asarray(gradient.values).rechunk({0: 2}),
                    gradient.samples,
                    gradient.components,
                    gradient.properties,
                ),
            )
        blocks.append(new)
    return mtd.TensorMap(ours.keys, blocks)


def _real_parts(array: np.ndarray) -> list[np.ndarray]:
    return [array.real, array.imag] if np.iscomplexobj(array) else [array]


def _assert_same_bits(ours: np.ndarray, theirs: np.ndarray, where: str) -> None:
    """NaN at the same places, every other number equal with the same sign."""
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, where
    for a, b in zip(_real_parts(ours), _real_parts(theirs), strict=True):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=where)
        kept = ~np.isnan(b)
        np.testing.assert_array_equal(a[kept], b[kept], err_msg=where)
        np.testing.assert_array_equal(np.signbit(a[kept]), np.signbit(b[kept]), err_msg=where)


def _assert_same_specials(ours: np.ndarray, theirs: np.ndarray, where: str) -> None:
    """NaN and infinities at the same places with the same signs, the rest equal to
    rounding (the sign of a zero aside)."""
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, where
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs), err_msg=where)
    np.testing.assert_array_equal(ours[np.isinf(ours)], theirs[np.isinf(ours)], err_msg=where)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0, err_msg=where)


def _compare_maps(
    ours: mtd.TensorMap,
    theirs: metatensor.TensorMap,
    check: Callable[[np.ndarray, np.ndarray, str], None],
    label: str,
) -> None:
    computed = mtd.to_metatensor(ours)
    assert metatensor.equal_metadata(computed, theirs), label
    for key, block in theirs.items():
        mine = computed.block(key)
        check(np.asarray(mine.values), block.values, f"{label} {key.print()} values")
        for parameter, gradient in block.gradients():
            check(
                np.asarray(mine.gradient(parameter).values),
                gradient.values,
                f"{label} {key.print()} gradient {parameter}",
            )


SCALARS = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-320, -3, 2.5]
EXPONENTS = [0.5, -0.5, 1.5, -1, 2, 3, -2, np.nan, np.inf, -np.inf, 1e-320]


def _elementwise_cases(A: metatensor.TensorMap, B: metatensor.TensorMap) -> list[tuple]:
    """(label, operation, its arguments after ``A`` or None for ``B``) for every
    element-wise operation."""
    real = A.block(0).values.dtype.kind != "c"
    cases: list[tuple] = [(f"{op}(A, B)", op, None) for op in ("add", "multiply", "divide")]
    if real:
        cases += [("subtract(A, B)", "subtract", None), ("abs(A)", "abs", ())]
    for op in ("add", "subtract", "multiply", "divide"):
        cases += [(f"{op}(A, {s})", op, (s,)) for s in SCALARS]
    cases += [(f"pow(A, {e})", "pow", (e,)) for e in EXPONENTS]
    return cases


@pytest.mark.parametrize("chunking", ["tiny", "rows"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.complex128])
@pytest.mark.parametrize("shuffled", [False, True])
def test_elementwise_operations_give_metatensor_bits(
    dtype: Any, chunking: str, shuffled: bool
) -> None:
    theirs_A = _reference(3, dtype, shuffled=shuffled)
    theirs_B = _revalued(theirs_A, 4)
    ours_A, ours_B = _chunked(theirs_A, chunking), _chunked(theirs_B, chunking)
    cases = _elementwise_cases(theirs_A, theirs_B)
    results = [
        getattr(mtd, op)(ours_A, *((ours_B,) if arguments is None else arguments))
        for _, op, arguments in cases
    ]
    (computed,) = dask.compute(results)  # every case at once: the same bits, one graph
    for (label, op, arguments), result in zip(cases, computed, strict=True):
        expected = getattr(metatensor, op)(
            theirs_A, *((theirs_B,) if arguments is None else arguments)
        )
        _compare_maps(result, expected, _assert_same_bits, label)


def _complex_map(values: list[complex], gradients: list[complex]) -> metatensor.TensorMap:
    """One block of one property, a gradient row per sample."""
    block = metatensor.TensorBlock(
        np.array(values, dtype=np.complex128).reshape(-1, 1),
        _labels(["s"], [[i] for i in range(len(values))]),
        [],
        metatensor.Labels.range("p", 1),
    )
    block.add_gradient(
        "g",
        metatensor.TensorBlock(
            np.array(gradients, dtype=np.complex128).reshape(-1, 1),
            _labels(["sample"], [[i] for i in range(len(values))]),
            [],
            block.properties,
        ),
    )
    return metatensor.TensorMap(_labels(["k"], [[0]]), [block])


def test_complex_subtract_is_the_ieee_difference() -> None:
    inf = np.inf
    a = [1 + 1j, complex(-0.0, -0.0), 2 + 2j, 3 - 1j]
    b = [complex(inf, 1), complex(0.0, 0.0), complex(1, -inf), complex(np.nan, 2)]
    A, B = _complex_map(a, a[::-1]), _complex_map(b, b[::-1])
    result = mtd.to_metatensor(mtd.subtract(mtd.from_metatensor(A), mtd.from_metatensor(B)))
    for ours, x, y in (
        (result.block(0).values, a, b),
        (result.block(0).gradient("g").values, a[::-1], b[::-1]),
    ):
        expected = np.subtract(np.array(x), np.array(y)).reshape(-1, 1)
        _assert_same_bits(ours, expected, "A - B")
    # (1 + 1j) - (inf + 1j) is -inf + 0j; metatensor's A + B * -1 gives NaN there
    assert result.block(0).values[0, 0].imag == 0.0
    theirs = metatensor.subtract(A, B).block(0).values
    assert np.isnan(theirs[0, 0].imag) and np.isnan(theirs[2, 0].real)


def test_complex_abs_gradient_has_a_direction_at_special_values() -> None:
    # |z| along a real parameter: Re(conj(d) dz) with the direction d = z / |z|, taken
    # as 0 at z = 0 (as sign(0) for real values) and as its limit elsewhere
    values = [0j, complex(5e-324, 0), complex(np.inf, 1), 3 + 4j, complex(0, -1e-320)]
    directions = np.array([0, 1, 1, (3 + 4j) / 5, -1j])
    gradients = [1 + 2j, 2 - 1j, -3 + 1j, 1 + 1j, 2 + 5j]
    A = _complex_map(values, gradients)
    result = mtd.to_metatensor(mtd.abs(mtd.from_metatensor(A)))
    expected = (np.conj(directions) * np.array(gradients)).real.astype(np.complex128)
    np.testing.assert_allclose(
        result.block(0).gradient("g").values.ravel(), expected, rtol=1e-15, atol=0
    )
    np.testing.assert_array_equal(result.block(0).values, metatensor.abs(A).block(0).values)
    # metatensor's gradient is NaN or infinite at the first three
    theirs = metatensor.abs(A).block(0).gradient("g").values.ravel()
    assert not np.isfinite(theirs[:3]).any()


@pytest.mark.parametrize("chunking", ["tiny", "rows"])
def test_pow_zero_has_zero_gradients_at_special_values(chunking: str) -> None:
    theirs = _reference(5)
    result = mtd.to_metatensor(mtd.pow(_chunked(theirs, chunking), 0))
    expected = metatensor.pow(theirs, 0)
    for key, block in expected.items():
        _assert_same_bits(result.block(key).values, block.values, "A ** 0")
        gradient = result.block(key).gradient("positions").values
        assert not np.signbit(gradient).any() and not gradient.any()
    # metatensor's 0 * ∇A * A ** -1 is NaN at zero, NaN or infinite A and ∇A
    assert any(np.isnan(block.gradient("positions").values).any() for block in expected.blocks())


REDUCTIONS = ["sum", "mean", "var", "std"]


@pytest.mark.parametrize("chunking", ["tiny", "rows"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_reductions_put_nan_and_inf_where_metatensor_does(
    reduction: str, dtype: Any, chunking: str
) -> None:
    # values are of order 1: tolerances of rounding (float32 is compared with
    # metatensor's float64 result)
    tolerance = 1e-12 if dtype == np.float64 else 1e-5

    def check(ours: np.ndarray, theirs: np.ndarray, where: str) -> None:
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs), err_msg=where)
        infinite = np.isinf(theirs)
        np.testing.assert_array_equal(ours[infinite], theirs[infinite], err_msg=where)
        np.testing.assert_allclose(ours, theirs, rtol=tolerance, atol=tolerance, err_msg=where)

    # an infinite value makes the variance NaN, and its gradient here; metatensor's
    # gradient is then ±inf or NaN; metatensor's standard deviation gradients are 0
    # where NaN and infinities make them NaN here (see the tests below)
    special = {"var": FINITE_OR_NAN, "std": FINITE}.get(reduction, REDUCIBLE)
    gradient_special = FINITE if reduction == "std" else FINITE_OR_NAN
    for seed in range(3):
        # float32 means and variances with gradients fail in metatensor: compare
        # with its float64 result, cast
        theirs = _reference(seed, special=special, gradient_special=gradient_special)
        ours = _chunked(theirs.to(dtype=dtype), chunking)
        # over "atom": the samples of a group have the same gradient entries, where
        # metatensor's normalization of mean/var/std gradients is right
        expected = getattr(metatensor, f"{reduction}_over_samples")(theirs, "atom")
        result = getattr(mtd, f"{reduction}_over_samples")(ours, "atom")
        _compare_maps(result, expected.to(dtype=dtype), check, f"{reduction} samples")
        flat = _reference(
            seed, components=False, special=special, gradient_special=gradient_special
        )
        expected = getattr(metatensor, f"{reduction}_over_properties")(flat, "n")
        result = getattr(mtd, f"{reduction}_over_properties")(
            _chunked(flat.to(dtype=dtype), chunking), "n"
        )
        _compare_maps(result, expected.to(dtype=dtype), check, f"{reduction} properties")


def _two_samples(values: list[float], gradients: list[float]) -> metatensor.TensorMap:
    """One block of two samples of one system, two properties holding the same
    numbers, a gradient row per sample."""
    block = metatensor.TensorBlock(
        np.repeat(np.array(values, dtype=np.float64).reshape(-1, 1), 2, axis=1),
        _labels(["system", "atom"], [[0, 0], [0, 1]]),
        [],
        _labels(["n"], [[0], [1]]),
    )
    block.add_gradient(
        "g",
        metatensor.TensorBlock(
            np.repeat(np.array(gradients, dtype=np.float64).reshape(-1, 1), 2, axis=1),
            _labels(["sample"], [[0], [1]]),
            [],
            block.properties,
        ),
    )
    return metatensor.TensorMap(_labels(["k"], [[0]]), [block])


@pytest.mark.parametrize(
    ("values", "gradients", "derivative", "metatensor_derivative"),
    [
        ([1.0, 2.0], [np.inf, 1.0], -np.inf, np.nan),
        ([1e200, 1e200], [1e200, 1.0], 0.0, np.nan),
        ([1.0, np.inf], [2.0, -1.0], np.nan, -np.inf),
    ],
)
def test_var_gradient_follows_the_centered_formula(
    values: list[float], gradients: list[float], derivative: float, metatensor_derivative: float
) -> None:
    # d Var = 2/n sum (x_i - mean) dx_i: -0.5 * inf + 0.5 * 1 is -inf; equal values
    # have no deviation; an infinite value makes the variance NaN, and its gradient.
    # metatensor's 2 (E[x dx] - E[x] E[dx]) is inf - inf in the first two, -inf - inf
    # in the last
    tensor = _two_samples(values, gradients)
    expected = np.full(2, derivative)
    over_samples = mtd.var_over_samples(mtd.from_metatensor(tensor), "atom")
    gradient = over_samples.block(0).gradient("g").values.compute().ravel()
    np.testing.assert_array_equal(gradient, expected)
    over_properties = mtd.var_over_properties(mtd.from_metatensor(_transposed(tensor)), "n")
    gradient = over_properties.block(0).gradient("g").values.compute().ravel()
    np.testing.assert_array_equal(gradient, expected)
    theirs = metatensor.var_over_samples(tensor, "atom").block(0).gradient("g").values
    np.testing.assert_array_equal(theirs.ravel(), np.full(2, metatensor_derivative))


def _transposed(tensor: metatensor.TensorMap) -> metatensor.TensorMap:
    """The two samples of ``tensor`` as two properties of two samples."""
    block = tensor.block(0)
    new = metatensor.TensorBlock(
        block.values.T.copy(), _labels(["s"], [[0], [1]]), [], _labels(["n"], [[0], [1]])
    )
    gradient = block.gradient("g").values.T.copy()
    new.add_gradient(
        "g",
        metatensor.TensorBlock(
            gradient, _labels(["sample"], [[0], [1]]), [], _labels(["n"], [[0], [1]])
        ),
    )
    return metatensor.TensorMap(tensor.keys, [new])


@pytest.mark.parametrize(
    ("values", "gradients", "derivative"),
    [
        ([1.0, 3.0], [2.0, 4.0], 1.0),
        ([1.0, 3.0], [np.nan, 1.0], np.nan),
        ([1.0, 3.0], [np.inf, 1.0], -np.inf),
        ([np.nan, 1.0], [1.0, 1.0], np.nan),
        ([2.0, 2.0], [np.nan, 1.0], 0.0),
        ([2.0, 2.0], [1.0, 3.0], 0.0),
    ],
)
@pytest.mark.parametrize("chunking", ["tiny", "rows"])
@pytest.mark.parametrize("axis", ["properties", "samples"])
def test_std_gradient_keeps_nan_and_inf(
    axis: str, chunking: str, values: list[float], gradients: list[float], derivative: float
) -> None:
    # d std = d Var / (2 std) with d Var = 2/n sum (x_i - mean) dx_i: the NaN gradient
    # of a failed structure makes the result NaN where std > 0; where std = 0 (not
    # differentiable) it is 0. metatensor turns every NaN and infinity into 0
    tensor = _two_samples(values, gradients)
    if axis == "properties":
        result = mtd.std_over_properties(_chunked(_transposed(tensor), chunking), "n")
    else:
        result = mtd.std_over_samples(_chunked(tensor, chunking), "atom")
    gradient = result.block(0).gradient("g").values.compute().ravel()
    np.testing.assert_array_equal(gradient, np.full(2, derivative))
    theirs = metatensor.std_over_samples(tensor, "atom").block(0).gradient("g").values
    assert np.isfinite(theirs).all()


@pytest.mark.parametrize("chunking", ["tiny", "rows"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("axis", ["properties", "samples"])
def test_reductions_of_negative_zeros_are_positive_zeros(
    axis: str, reduction: str, chunking: str
) -> None:
    # metatensor adds into zeros: -0.0 + -0.0 added to +0.0 is +0.0, whatever the
    # number of chunks
    tensor = _two_samples([-0.0, -0.0], [-0.0, -0.0])
    name = "atom" if axis == "samples" else "n"
    result = getattr(mtd, f"{reduction}_over_{axis}")(_chunked(tensor, chunking), name)
    expected = getattr(metatensor, f"{reduction}_over_{axis}")(tensor, name)
    _compare_maps(result, expected, _assert_same_bits, f"{reduction}_over_{axis}")
    assert not np.signbit(expected.block(0).values).any()


def _comparison_cases(
    A: Any, same: Any, other: Any, module: Any
) -> list[tuple[str, Callable[[], Any]]]:
    options = [
        {},
        {"equal_nan": True},
        {"rtol": 0.0, "atol": 0.0, "equal_nan": True},
        {"rtol": np.inf, "atol": 0.0},
        {"rtol": 0.0, "atol": np.inf, "equal_nan": True},
        {"rtol": np.nan, "atol": np.nan, "equal_nan": True},
        {"rtol": -1.0, "atol": 0.0, "equal_nan": True},
        {"rtol": 0.0, "atol": 5e-324, "equal_nan": True},
    ]
    cases: list[tuple[str, Callable[[], Any]]] = []
    for name, B in (("same", same), ("other", other)):
        cases.append((f"equal {name}", lambda B=B: module.equal(A, B)))
        cases.append((f"equal_raise {name}", lambda B=B: module.equal_raise(A, B)))
        cases.append(
            (f"equal_block {name}", lambda B=B: module.equal_block(A.block(1), B.block(1)))
        )
        for kw in options:
            cases.append((f"allclose {name} {kw}", lambda B=B, kw=kw: module.allclose(A, B, **kw)))
            cases.append(
                (
                    f"allclose_raise {name} {kw}",
                    lambda B=B, kw=kw: module.allclose_raise(A, B, **kw),
                )
            )
            cases.append(
                (
                    f"allclose_block_raise {name} {kw}",
                    lambda B=B, kw=kw: module.allclose_block_raise(A.block(2), B.block(2), **kw),
                )
            )
    return cases


def _outcome(function: Callable[[], Any]) -> tuple[str, str]:
    try:
        return ("result", repr(function()))
    except Exception as error:  # the comparison is the test
        return (type(error).__name__, str(error))


@pytest.mark.parametrize("chunking", ["tiny", "rows"])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_comparisons_with_special_values_answer_as_metatensor(dtype: Any, chunking: str) -> None:
    theirs = _reference(7, dtype)
    # a copy whose NaNs and infinities are the same, and one where one infinity of
    # the last gradient changed sign
    copy = metatensor.TensorMap(theirs.keys, [block.copy() for block in theirs.blocks()])
    other = metatensor.TensorMap(theirs.keys, [block.copy() for block in theirs.blocks()])
    gradient = other.block(2).gradient("positions").values
    flat = gradient.reshape(-1)
    flat[np.flatnonzero(np.isinf(flat.real))[0]] *= -1
    ours = _chunked(theirs, chunking)
    ours_copy, ours_other = _chunked(copy, "tiny"), _chunked(other, "rows")
    expected = _comparison_cases(theirs, copy, other, metatensor)
    actual = _comparison_cases(ours, ours_copy, ours_other, mtd)
    for (label, theirs_call), (_, ours_call) in zip(expected, actual, strict=True):
        assert _outcome(ours_call) == _outcome(theirs_call), label


def _square_map(x: list[list[float]]) -> metatensor.TensorMap:
    x_array = np.array(x, dtype=np.float64)
    block = metatensor.TensorBlock(
        x_array,
        _labels(["s"], [[i] for i in range(len(x_array))]),
        [],
        _labels(["p"], [[i] for i in range(x_array.shape[1])]),
    )
    return metatensor.TensorMap(_labels(["k"], [[0]]), [block])


IDENTITY = [[1.0, 0.0], [0.0, 1.0]]


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ([[1.0, 2.0], [2.0, 4.0]], IDENTITY),
        ([[0.0, 0.0], [0.0, 0.0]], IDENTITY),
        ([[np.nan, 2.0], [2.0, 4.0]], IDENTITY),
        ([[np.inf, 2.0], [2.0, 4.0]], IDENTITY),
        ([[1.0, 2.0], [3.0, 4.0]], [[np.nan, 0.0], [0.0, 1.0]]),
        ([[1e-320, 0.0], [0.0, 1e-320]], IDENTITY),
        ([[-0.0, 1.0], [1.0, -0.0]], [[-0.0, -0.0], [-0.0, -0.0]]),
    ],
    ids=["singular", "zeros", "nan", "inf", "nan_y", "subnormal", "negative_zeros"],
)
@pytest.mark.parametrize("rows", [None, 1])
def test_linear_algebra_of_singular_and_special_matrices(
    x: list[list[float]], y: list[list[float]], rows: int | None
) -> None:
    X, Y = _square_map(x), _square_map(y)
    ours_X = mtd.from_metatensor(X)
    if rows is not None:
        ours_X = mtd.TensorMap(
            ours_X.keys,
            [
                mtd.TensorBlock(
                    da.asarray(b.values).rechunk({0: rows}), b.samples, b.components, b.properties
                )
                for b in ours_X.blocks()
            ],
        )
    ours_Y = mtd.from_metatensor(Y)
    for name, arguments in (("solve", ()), ("lstsq", (1e-10,)), ("dot", ())):
        expected = _solved(getattr(metatensor, name), X, Y, arguments)
        actual = _solved(getattr(mtd, name), ours_X, ours_Y, arguments)
        if isinstance(expected, tuple) or isinstance(actual, tuple):
            assert actual == expected, name
            continue
        np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=name)
        np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=0, err_msg=name)


def _solved(function: Callable, X: Any, Y: Any, arguments: tuple) -> Any:
    """The values of ``function(X, Y, *arguments)``'s block, or its error as (type
    name, message)."""
    try:
        return np.asarray(function(X, Y, *arguments).block(0).values)
    except Exception as error:  # the comparison is the test
        return (type(error).__name__, str(error))
