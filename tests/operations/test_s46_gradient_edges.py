"""Gradients at the edges of their rules' domains: zero and negative bases of ``pow``,
division by zero, groups of equal values in ``var``/``std``, rank-deficient ``lstsq``,
complex values, float32, and chains of operations on stores opened in chunks of 3 rows.

Each result is compared with metatensor-operations on the same data and, where the
function is differentiable, with central finite differences: every gradient entry (a
gradient sample without its ``"sample"``: one atom, one strain) is a parameter, moved
along a random direction over its own components; each value row moves by its gradient
rows contracted with that direction.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import metatensor
import numpy as np
import pytest
from test_audit_s21_gradients_of_gradients import _tensor as nested_gradients

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

Function = Callable[..., mtd.TensorMap]


def _labels(names: list[str], rows: object) -> metatensor.Labels:
    return metatensor.Labels(names, np.array(rows, dtype=np.int32).reshape(-1, len(names)))


XYZ = _labels(["xyz"], [[0], [1], [2]])
STRAIN = [_labels(["xyz_1"], [[0], [1], [2]]), _labels(["xyz_2"], [[0], [1], [2]])]


def _tensor(
    values: np.ndarray,
    samples: list[list[int]],
    properties: metatensor.Labels,
    rng: np.random.Generator,
    shuffled: bool = False,
) -> metatensor.TensorMap:
    """One block of ``values`` (samples ``system, atom``, an ``o3_mu`` component of 2
    entries when ``values`` has 3 axes), with a ``positions`` gradient (a row for every
    atom of the sample's system, in random order if ``shuffled``) and a ``strain``
    gradient (3 x 3 components of its own, a row per sample)."""
    components = [_labels(["o3_mu"], [[-1], [1]])] if values.ndim == 3 else []
    block = metatensor.TensorBlock(
        values, _labels(["system", "atom"], samples), components, properties
    )
    atoms: dict[int, list[int]] = {}
    for system, atom in samples:
        atoms.setdefault(system, []).append(atom)
    rows = [[s, system, a] for s, (system, _) in enumerate(samples) for a in atoms[system]]
    if shuffled:
        rows = [rows[i] for i in rng.permutation(len(rows))]
    shape = values.shape[1:]
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            rng.uniform(-1, 1, (len(rows), 3, *shape)).astype(values.dtype),
            _labels(["sample", "system", "atom"], rows),
            [XYZ, *components],
            properties,
        ),
    )
    block.add_gradient(
        "strain",
        metatensor.TensorBlock(
            rng.uniform(-1, 1, (len(samples), 3, 3, *shape)).astype(values.dtype),
            _labels(["sample"], [[s] for s in range(len(samples))]),
            [*STRAIN, *components],
            properties,
        ),
    )
    return metatensor.TensorMap(_labels(["k"], [[0]]), [block])


def _stored(theirs: metatensor.TensorMap, path: Path) -> mtd.TensorMap:
    """``theirs`` written to a Zarr store at ``path``, opened in chunks of 3 rows."""
    mtd.to_zarr(mtd.from_metatensor(theirs), path, mode="w")
    return mtd.open_zarr(path, chunks=3)


# system 0 (rows 2 to 4) spans the first two chunks of 3 rows
SAMPLES = [[1, 0], [1, 1], [0, 0], [0, 1], [0, 2], [2, 0], [2, 1], [2, 2], [2, 3]]
PROPERTIES = _labels(["g", "n"], [[0, 0], [1, 0], [0, 1], [1, 1], [0, 2]])


# finite differences -------------------------------------------------------------------


def _entry(names: list[str], row: np.ndarray) -> tuple[int, ...]:
    return tuple(int(v) for n, v in zip(names, row, strict=True) if n != "sample")


def _own_components(block: metatensor.TensorBlock, parameter: str) -> int:
    return len(block.gradient(parameter).components) - len(block.components)


def _derivative(block: metatensor.TensorBlock, parameter: str, direction: dict) -> np.ndarray:
    """The change of ``block``'s values along ``direction`` (a vector over the
    gradient's own components per entry), from its ``parameter`` gradient."""
    gradient = block.gradient(parameter)
    own = _own_components(block, parameter)
    rows = np.asarray(gradient.values)
    result = np.zeros(np.asarray(block.values).shape, np.result_type(rows, np.float64))
    for r, row in enumerate(np.asarray(gradient.samples.values)):
        weights = direction[_entry(gradient.samples.names, row)]
        weights = weights.reshape(*weights.shape, *[1] * (rows.ndim - 1 - own))
        result[row[0]] += (weights * rows[r]).sum(axis=tuple(range(own)))
    return result


def _moved(tensor: metatensor.TensorMap, parameter: str, direction: dict, step: float):
    blocks = []
    for block in tensor.blocks():
        values = np.asarray(block.values) + step * _derivative(block, parameter, direction)
        blocks.append(
            metatensor.TensorBlock(
                values.astype(block.values.dtype), block.samples, block.components, block.properties
            )
        )
    return mtd.from_metatensor(metatensor.TensorMap(tensor.keys, blocks))


def _check_finite_differences(
    function: Function,
    inputs: list[metatensor.TensorMap],
    result: metatensor.TensorMap,
    eps: float = 1e-6,
    rtol: float = 1e-6,
    atol: float = 1e-8,
) -> None:
    """The gradients of ``result = function(*inputs)`` against the central differences
    of ``function`` when every input moves along one random direction per parameter."""
    rng = np.random.default_rng(17)
    for parameter in result.block(0).gradients_list():
        direction: dict[tuple[int, ...], np.ndarray] = {}
        for block in (b for t in inputs for b in t.blocks()):
            shape = [len(c) for c in block.gradient(parameter).components]
            for row in np.asarray(block.gradient(parameter).samples.values):
                entry = _entry(block.gradient(parameter).samples.names, row)
                own = _own_components(block, parameter)
                direction.setdefault(entry, rng.uniform(-1, 1, shape[:own]))
        up = function(*[_moved(t, parameter, direction, eps) for t in inputs])
        down = function(*[_moved(t, parameter, direction, -eps) for t in inputs])
        for block, after, before in zip(result.blocks(), up.blocks(), down.blocks(), strict=True):
            np.testing.assert_allclose(
                _derivative(block, parameter, direction),
                (np.asarray(after.values.compute()) - np.asarray(before.values.compute()))
                / (2 * eps),
                rtol=rtol,
                atol=atol,
                err_msg=f"gradient '{parameter}'",
            )


# var and std of equal values ----------------------------------------------------------


def _equal_groups(rng: np.random.Generator, axis: str) -> np.ndarray:
    """Values where every group of the reduction over ``axis`` (``atom`` for samples,
    ``n`` for properties) of system 0 and of property ``g=0`` holds one value three
    times, 0.1 or 0.7 (whose rounded means are not 0.1 or 0.7), the others random;
    without components for properties (metatensor-operations fails on them there)."""
    if axis == "samples":
        values = rng.uniform(-2, 2, (len(SAMPLES), 2, len(PROPERTIES)))
        values[2:5, 0], values[2:5, 1] = 0.1, 0.7
    else:
        values = rng.uniform(-2, 2, (len(SAMPLES), len(PROPERTIES)))
        g = np.asarray(PROPERTIES.column("g")) == 0
        values[::2, g], values[1::2, g] = 0.1, 0.7
    return values


@pytest.mark.parametrize("axis", ["samples", "properties"])
def test_std_gradient_of_a_group_of_equal_values_is_zero(axis, tmp_path):
    """A group of equal values has no spread: its variance is minimal (gradient 0) and
    its standard deviation not differentiable (gradient 0, as for a spread of 0). The
    mean of three 0.1 rounds to 0.1 + 1.4e-17, which made the deviations 1.4e-17 each:
    the standard deviation gradient was then -mean(dx) (metatensor-operations: the same,
    -2 for gradients 1, 2 and 4), where finite differences give 0."""
    rng = np.random.default_rng(0)
    theirs = _tensor(_equal_groups(rng, axis), SAMPLES, PROPERTIES, rng, shuffled=True)
    # in chunks of 3 rows, and whole (a tiny block: computed by other functions)
    inputs = [_stored(theirs, tmp_path / "a.zarr"), mtd.from_metatensor(theirs)]
    name = "atom" if axis == "samples" else "n"
    for reduction, ours in itertools.product(("var", "std"), inputs):
        function = getattr(mtd, f"{reduction}_over_{axis}")
        result = mtd.to_metatensor(function(ours, name))
        expected = getattr(metatensor, f"{reduction}_over_{axis}")(theirs, name)
        np.testing.assert_array_equal(result.block().values, expected.block().values)
        for parameter, gradient in result.block().gradients():
            column = np.asarray(gradient.samples.column("sample"))
            rows = np.asarray(gradient.values)
            # system 0 is the first output sample; g=0 the first output property
            equal = rows[column == 0] if axis == "samples" else rows[..., 0]
            np.testing.assert_array_equal(equal, 0.0, err_msg=f"{reduction} '{parameter}'")
        _check_finite_differences(lambda x, f=function: f(x, name), [theirs], result)


# pow and divide at the edges of their domains ---------------------------------------


def _edge_values(rng: np.random.Generator) -> np.ndarray:
    """Values of both signs, with 0.0 and -0.0 among them."""
    values = rng.uniform(-2, 2, (len(SAMPLES), 2, len(PROPERTIES)))
    values[rng.random(values.shape) < 0.25] = 0.0
    values[rng.random(values.shape) < 0.1] = -0.0
    return values


def _rows_of(gradient: metatensor.TensorBlock, where: np.ndarray) -> np.ndarray:
    """The entries of ``gradient`` whose value entry ``where`` (a mask over the
    values) holds, broadcast over the gradient's own components."""
    column = np.asarray(gradient.samples.column("sample"))
    rows = where[column]
    extra = gradient.values.ndim - rows.ndim
    rows = rows.reshape(rows.shape[0], *[1] * extra, *rows.shape[1:])
    return np.broadcast_to(rows, gradient.values.shape)


def _assert_not_finite_where(result: metatensor.TensorMap, where: np.ndarray) -> None:
    """NaN or infinite values and gradient entries wherever ``where`` holds: never a
    finite number where the math has none."""
    block = result.block()
    assert not np.isfinite(np.asarray(block.values)[where]).any()
    for parameter, gradient in block.gradients():
        entries = np.asarray(gradient.values)[_rows_of(gradient, where)]
        assert not np.isfinite(entries).any(), parameter


@pytest.mark.parametrize("exponent", [1, 2, 3, -1, -2, 0.5, 1.5, -0.5])
def test_pow_of_zero_and_negative_bases(exponent, tmp_path):
    """Values and gradients are metatensor's bit for bit (NaN, inf and signed zeros in
    the same places), NaN exactly where numpy's power is (a negative base and a
    non-integer exponent), with NaN gradients there; integer exponents are checked by
    finite differences on negative bases too (and on zeros for positive exponents)."""
    rng = np.random.default_rng(1)
    values = _edge_values(rng)
    if exponent < 0 and float(exponent).is_integer():
        values[values == 0] = -0.75  # differentiable everywhere but at 0
    theirs = _tensor(values, SAMPLES, PROPERTIES, rng, shuffled=True)
    ours = _stored(theirs, tmp_path / "a.zarr")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 0 ** -0.5, (-1) ** 0.5
        expected = metatensor.pow(theirs, exponent)
        result = mtd.to_metatensor(mtd.pow(ours, exponent))
        undefined = np.isnan(np.power(values, exponent))
    assert_equal_to_metatensor(mtd.from_metatensor(result), expected)
    np.testing.assert_array_equal(np.isnan(result.block().values), undefined)
    _assert_not_finite_where(result, undefined)
    if float(exponent).is_integer():
        _check_finite_differences(lambda x: mtd.pow(x, exponent), [theirs], result)


def test_divide_by_exact_and_near_zeros(tmp_path):
    """Quotients by +0.0, -0.0 and a subnormal divisor are metatensor's bit for bit,
    values NaN and infinite where numpy's quotient is, and gradients never finite where
    the divisor is zero; by divisors of 1e-4 the gradients pass finite differences."""
    rng = np.random.default_rng(2)
    numerator = _edge_values(rng)
    divisor = rng.uniform(-2, 2, numerator.shape)
    divisor[rng.random(divisor.shape) < 0.3] = 0.0
    divisor[rng.random(divisor.shape) < 0.1] = -0.0
    divisor[rng.random(divisor.shape) < 0.1] = 5e-324
    A = _tensor(numerator, SAMPLES, PROPERTIES, rng, shuffled=True)
    B = _tensor(divisor, SAMPLES, PROPERTIES, rng)
    B = metatensor.TensorMap(B.keys, [_with_gradient_rows_of(B.block(), A.block())])
    a, b = _stored(A, tmp_path / "a.zarr"), _stored(B, tmp_path / "b.zarr")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # x / 0
        expected = metatensor.divide(A, B)
        result = mtd.to_metatensor(mtd.divide(a, b))
        quotient = numerator / divisor
    assert_equal_to_metatensor(mtd.from_metatensor(result), expected)
    values = np.asarray(result.block().values)
    np.testing.assert_array_equal(np.isnan(values), np.isnan(quotient))
    np.testing.assert_array_equal(np.isinf(values), np.isinf(quotient))
    _assert_not_finite_where(result, divisor == 0)

    small = metatensor.multiply(metatensor.abs(B), 1e-4)
    small = metatensor.add(small, 1e-4)  # 1e-4 to 3e-4, away from 0 by its own size
    near = mtd.to_metatensor(mtd.divide(a, mtd.from_metatensor(small)))
    assert_equal_to_metatensor(mtd.from_metatensor(near), metatensor.divide(A, small))
    _check_finite_differences(mtd.divide, [A, small], near, eps=1e-10, rtol=1e-5, atol=1e-2)


def _with_gradient_rows_of(
    block: metatensor.TensorBlock, other: metatensor.TensorBlock
) -> metatensor.TensorBlock:
    """``block`` with new random gradients on the gradient samples of ``other`` (binary
    operations need the same gradient samples on both sides)."""
    rng = np.random.default_rng(3)
    new = metatensor.TensorBlock(
        np.asarray(block.values), block.samples, block.components, block.properties
    )
    for parameter, gradient in other.gradients():
        new.add_gradient(
            parameter,
            metatensor.TensorBlock(
                rng.uniform(-1, 1, gradient.values.shape).astype(block.values.dtype),
                gradient.samples,
                gradient.components,
                gradient.properties,
            ),
        )
    return new


# chains, float32, linear algebra, complex values ---------------------------------------


def _summed(module: Any, a: Any, b: Any) -> Any:
    """``sqrt(a / b)`` summed over atoms, in the library ``module`` (metatensor or
    metatensor-dask)."""
    return module.sum_over_samples(module.pow(module.divide(a, b), 0.5), "atom")


def _spread(module: Any, a: Any, b: Any) -> Any:
    """The standard deviation over ``n`` of the mean over atoms of ``sqrt(a / b)``."""
    root = module.pow(module.divide(a, b), 0.5)
    return module.std_over_properties(module.mean_over_samples(root, "atom"), "n")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_chains_from_stores_in_chunks_of_three_rows(dtype, tmp_path):
    """Groups of atoms across chunk boundaries and gradient rows not grouped by sample,
    through an element-wise chain and two reductions: metatensor's values and gradients
    (for float32, in float32 to float32's precision, where metatensor's mean and
    standard deviation fail), and finite differences."""
    rng = np.random.default_rng(4)
    shape = (len(SAMPLES), len(PROPERTIES))
    A = _tensor(rng.uniform(0.5, 2, shape).astype(dtype), SAMPLES, PROPERTIES, rng, shuffled=True)
    B = _tensor(rng.uniform(0.5, 2, shape).astype(dtype), SAMPLES, PROPERTIES, rng)
    B = metatensor.TensorMap(B.keys, [_with_gradient_rows_of(B.block(), A.block())])
    a, b = _stored(A, tmp_path / "a.zarr"), _stored(B, tmp_path / "b.zarr")
    wide = [t.to(dtype=np.float64) for t in (A, B)]
    if dtype is np.float64:
        tolerance = {"rtol": 1e-12, "atol": 1e-14}
    else:
        tolerance = {"rtol": 2e-5, "atol": 2e-6}
    for chain in (_summed, _spread):
        result = mtd.to_metatensor(chain(mtd, a, b))
        assert result.block().values.dtype == dtype
        assert_equal_to_metatensor(
            mtd.from_metatensor(result).to(dtype=np.float64), chain(metatensor, *wide), **tolerance
        )
        if dtype is np.float64:
            _check_finite_differences(lambda x, y, c=chain: c(mtd, x, y), [A, B], result)
    # metatensor's float32 sums (its float32 mean and standard deviation fail)
    result = mtd.to_metatensor(_summed(mtd, a, b))
    assert_equal_to_metatensor(mtd.from_metatensor(result), _summed(metatensor, A, B), rtol=1e-6)


def _with_arrays(
    tensor: metatensor.TensorMap,
    values: Callable[[np.ndarray], np.ndarray],
    gradients: Callable[[np.ndarray], np.ndarray],
) -> metatensor.TensorMap:
    """``tensor`` with ``values(...)`` of its values and ``gradients(...)`` of its
    gradients' values, its metadata kept."""
    blocks = []
    for block in tensor.blocks():
        new = metatensor.TensorBlock(
            values(np.array(block.values)), block.samples, block.components, block.properties
        )
        for parameter, gradient in block.gradients():
            new.add_gradient(
                parameter,
                metatensor.TensorBlock(
                    gradients(np.array(gradient.values)),
                    gradient.samples,
                    gradient.components,
                    gradient.properties,
                ),
            )
        blocks.append(new)
    return metatensor.TensorMap(tensor.keys, blocks)


def _twice_the_first_column(tensor: metatensor.TensorMap) -> metatensor.TensorMap:
    """``tensor`` whose last property is twice the first, in values and gradients."""

    def twice(array: np.ndarray) -> np.ndarray:
        array[..., -1] = 2 * array[..., 0]
        return array

    return _with_arrays(tensor, twice, twice)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lstsq_of_a_rank_deficient_x_with_gradient_equations(dtype, tmp_path):
    """``X`` of two proportional columns (values and gradients, whose rows are more
    equations), in chunks of 3 rows: numpy's minimum-norm weights with a cut-off
    ``rcond`` above the rounding, in metatensor's dtype."""
    rng = np.random.default_rng(5)
    shape = (len(SAMPLES), 2, len(PROPERTIES))
    X = _twice_the_first_column(_tensor(rng.uniform(-1, 1, shape), SAMPLES, PROPERTIES, rng))
    Y = _tensor(rng.uniform(-1, 1, shape), SAMPLES, PROPERTIES, rng)
    Y = metatensor.TensorMap(Y.keys, [_with_gradient_rows_of(Y.block(), X.block())])
    X, Y = X.to(dtype=dtype), Y.to(dtype=dtype)
    x, y = _stored(X, tmp_path / "x.zarr"), _stored(Y, tmp_path / "y.zarr")
    rcond = 1e-6 if dtype is np.float64 else 1e-4
    expected = metatensor.lstsq(X, Y, rcond=rcond)
    tolerance = (
        {"rtol": 1e-9, "atol": 1e-12} if dtype is np.float64 else {"rtol": 1e-3, "atol": 1e-5}
    )
    assert_equal_to_metatensor(mtd.lstsq(x, y, rcond=rcond), expected, **tolerance)


def test_lstsq_of_gradients_that_have_gradients_of_their_own():
    """The only operation metatensor-operations lets gradients of gradients through:
    ``lstsq`` takes the gradient rows as equations and the gradients of gradients as
    nothing, as metatensor does (``Y`` without them)."""
    X = nested_gradients(metatensor)
    rng = np.random.default_rng(7)
    Y = metatensor.TensorMap(
        X.keys, [_with_gradient_rows_of(_revalued(block, rng), block) for block in X.blocks()]
    )
    expected = metatensor.lstsq(X, Y, rcond=1e-10)
    result = mtd.lstsq(mtd.from_metatensor(X), mtd.from_metatensor(Y), rcond=1e-10)
    assert_equal_to_metatensor(result, expected, rtol=1e-10, atol=1e-12)


def _revalued(block: metatensor.TensorBlock, rng: np.random.Generator) -> metatensor.TensorBlock:
    """``block``'s metadata with random values and no gradient."""
    values = rng.uniform(-1, 1, block.values.shape)
    return metatensor.TensorBlock(values, block.samples, block.components, block.properties)


def _complex(tensor: metatensor.TensorMap, rng: np.random.Generator) -> metatensor.TensorMap:
    """``tensor`` with random imaginary parts added to its values and gradients."""
    return _with_arrays(
        tensor,
        lambda values: values + 1j * rng.uniform(0.5, 1, values.shape),
        lambda rows: rows + 1j * rng.uniform(-1, 1, rows.shape),
    )


def test_complex_values_follow_the_derivatives_of_their_functions(tmp_path):
    """The rules hold for complex values, whose functions are differentiable where
    their real parts are not special: powers of any exponent (values off the negative
    real axis, where the principal power is cut), quotients, and the variance
    (metatensor's, the mean of the squared complex deviations) by finite differences of
    a real parameter."""
    rng = np.random.default_rng(6)
    shape = (len(SAMPLES), 2, len(PROPERTIES))
    A = _complex(_tensor(rng.uniform(-2, 2, shape), SAMPLES, PROPERTIES, rng, True), rng)
    B = _tensor(rng.uniform(-2, 2, shape), SAMPLES, PROPERTIES, rng)
    B = _complex(metatensor.TensorMap(B.keys, [_with_gradient_rows_of(B.block(), A.block())]), rng)
    a, b = _stored(A, tmp_path / "a.zarr"), _stored(B, tmp_path / "b.zarr")
    functions: list[Function] = [
        lambda x, y: mtd.pow(x, 3),
        lambda x, y: mtd.pow(x, -1.5),
        mtd.divide,
        lambda x, y: mtd.var_over_samples(mtd.multiply(x, y), "atom"),
    ]
    for function in functions:
        result = mtd.to_metatensor(function(a, b))
        _check_finite_differences(function, [A, B], result, rtol=1e-5, atol=1e-7)


def _two_samples(values: list[float], gradients: list[float]) -> metatensor.TensorMap:
    """One group of two samples of one property, with an ``x`` gradient row each."""
    block = metatensor.TensorBlock(
        np.array(values).reshape(-1, 1),
        _labels(["system", "atom"], [[0, 0], [0, 1]]),
        [],
        _labels(["n"], [[0]]),
    )
    block.add_gradient(
        "x",
        metatensor.TensorBlock(
            np.array(gradients).reshape(-1, 1),
            _labels(["sample"], [[0], [1]]),
            [],
            _labels(["n"], [[0]]),
        ),
    )
    return metatensor.TensorMap(_labels(["k"], [[0]]), [block])


@pytest.mark.xfail(
    strict=True,
    reason="the squared deviations under- or overflow (numpy's and metatensor's std are "
    "0 and inf there, with gradient 0); proposed fix: where the plain sum of squares "
    "under- or overflows, take the variance from deviations divided by their mean "
    "absolute value (two more sums over the values), for values and gradients, keeping "
    "numpy's bits elsewhere",
)
@pytest.mark.parametrize(("values", "std"), [([1e-200, 3e-200], 1e-200), ([1e200, -1e200], 1e200)])
def test_std_of_deviations_whose_squares_leave_the_float_range(values, std):
    """The standard deviation of [1e-200, 3e-200] is 1e-200, and its gradient along
    gradients [1, -1] is -1 (and 1 for [1e200, -1e200])."""
    result = mtd.std_over_samples(mtd.from_metatensor(_two_samples(values, [1.0, -1.0])), "atom")
    block = mtd.to_metatensor(result).block()
    np.testing.assert_allclose(block.values, std, rtol=1e-12)
    np.testing.assert_allclose(block.gradient("x").values, np.sign(values[0] - values[1]))
