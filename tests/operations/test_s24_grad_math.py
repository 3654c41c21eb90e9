"""Gradients of the element-wise operations, the reductions and the linear algebra,
on generated maps (see ``test_s24_grad_support``): checked by finite differences of
real perturbations of the inputs, and against metatensor-operations on the same data
(where metatensor-operations 0.5.0 is wrong, on the data it gets right)."""

from __future__ import annotations

import warnings
from pathlib import Path

import metatensor
import numpy as np
import pytest
from oracle2 import densified
from test_s24_grad_support import (
    Check,
    check_finite_differences,
    check_together,
    chunked,
    generated,
    labels,
    stored,
    structure,
)

import metatensor_dask as mtd
from metatensor_dask.operations import _value_rows

#: Two random structures: one block with two components (0), two blocks with one (1);
#: the third seed once drawn here (2) gave one block with two components again.
SEEDS = [0, 1]


def _pair(seed: int, zeros: float = 0.2):
    """Two metatensor maps of the same metadata (the first with a fraction ``zeros`` of
    zero values, the second positive), and their chunked metatensor-dask copies."""
    rng = np.random.default_rng(seed)
    meta = structure(rng)
    first = generated(rng, meta, zeros=zeros)
    second = generated(rng, meta, positive=True, zeros=0.0)
    return (first, second), (chunked(rng, first), chunked(rng, second))


@pytest.mark.parametrize("operation", ["add", "subtract", "multiply", "divide"])
def test_binary_operations(operation):
    ours = getattr(mtd, operation)
    checks = []
    for seed in SEEDS:
        (first, second), (a, b) = _pair(seed)
        expected = getattr(metatensor, operation)(first, second)
        checks.append(Check(ours, [a, b], expected))
        checks.append(Check(lambda x: ours(x, -1.75), [a]))
    check_together(checks)


def test_the_same_map_on_both_sides():
    checks = []
    for seed in SEEDS:
        (first, _), (a, _) = _pair(seed)
        for operation in ["multiply", "subtract"]:
            ours = getattr(mtd, operation)
            expected = getattr(metatensor, operation)(first, first)
            checks.append(Check(lambda x, f=ours: f(x, x), [a], expected))
    check_together(checks)


def test_divide_by_values_near_zero():
    checks = []
    for seed in SEEDS:
        _, (a, b) = _pair(seed)
        near_zero = mtd.multiply(b, 1e-3)
        checks.append(Check(mtd.divide, [a, near_zero], differences={"eps": 1e-9, "rtol": 1e-4}))
    check_together(checks)


@pytest.mark.parametrize("seed", SEEDS)
def test_pow(seed):
    (_, second), (_, b) = _pair(seed)
    check_together(
        [
            Check(lambda x, e=exponent: mtd.pow(x, e), [b], metatensor.pow(second, exponent))
            for exponent in [2, 3, -1, 0.5, -1.5, 0, 1]
        ]
    )


def test_pow_of_zero_and_negative_values_is_metatensors():
    checks = []
    for seed in SEEDS:
        (first, _), (a, _) = _pair(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # 0 ** -1, (-1) ** 0.5
            checks.extend(
                Check(
                    lambda x, e=exponent: mtd.pow(x, e),
                    [a],
                    metatensor.pow(first, exponent),
                    differences=None,
                )
                for exponent in [2, 3, -1, 0.5, -1.5, 1]
            )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        check_together(checks)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
@pytest.mark.parametrize("exponent", [0, 0.0])
def test_pow_zero_has_zero_gradients_at_zero_values(dtype, exponent):
    """``A ** 0`` is 1 everywhere: its gradients are zeros, also where ``A`` is 0
    (metatensor-operations gives 0 * inf = nan there), in metatensor's dtype."""
    rng = np.random.default_rng(5)
    meta = structure(rng, n_components=1)
    theirs = generated(rng, meta, zeros=0.5)
    ours = chunked(rng, theirs)
    if dtype is not np.float64:
        ours = ours.to(dtype=dtype)
        theirs = theirs.to(dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 0 ** -1 in metatensor
        expected = metatensor.pow(theirs, exponent)
    result = mtd.to_metatensor(mtd.pow(ours, exponent))  # warns nowhere: no A ** -1
    for block, other in zip(result.blocks(), expected.blocks(), strict=True):
        np.testing.assert_array_equal(block.values, other.values)
        for parameter, gradient in block.gradients():
            assert gradient.values.dtype == other.gradient(parameter).values.dtype
            np.testing.assert_array_equal(gradient.values, 0)
    if dtype is np.float64:
        check_finite_differences(lambda x: mtd.pow(x, exponent), [ours])


def test_abs_with_zero_values():
    checks = []
    for seed in SEEDS:
        (first, _), (a, _) = _pair(seed)
        # |x| moves by |eps| both ways at 0: the central difference is 0, as sign(0) is
        checks.append(Check(mtd.abs, [a], metatensor.abs(first)))
    check_together(checks)


TIGHT = {"rtol": 1e-12, "atol": 1e-14}


@pytest.mark.parametrize("reduction", ["sum", "mean", "var", "std"])
def test_reductions_over_samples(reduction):
    """Every seed and every group of sample names, in one computation."""
    ours = getattr(mtd, f"{reduction}_over_samples")
    checks = []
    for seed in SEEDS:
        (first, _), (a, _) = _pair(seed, zeros=0.0)
        for names in [["atom"], ["system"], ["system", "atom"]]:
            # metatensor normalizes sparse gradients by the merged rows: give it
            # explicit zeros
            theirs = first if reduction == "sum" else densified(first, names)
            expected = getattr(metatensor, f"{reduction}_over_samples")(theirs, names)
            checks.append(Check(lambda x, n=names: ours(x, n), [a], expected, TIGHT))
    check_together(checks)


@pytest.mark.parametrize("reduction", ["sum", "mean", "var", "std"])
def test_reductions_over_properties(reduction):
    """Every seed and every group of property names, in one computation."""
    ours = getattr(mtd, f"{reduction}_over_properties")
    checks = []
    for seed in SEEDS:
        (first, _), (a, _) = _pair(seed, zeros=0.0)
        for names in [["p"], ["q"], ["p", "q"]]:
            expected = None
            if reduction == "sum" or not first.block(0).components:
                # metatensor-operations 0.5.0 fails on blocks with components for the
                # others
                expected = getattr(metatensor, f"{reduction}_over_properties")(first, names)
            checks.append(Check(lambda x, n=names: ours(x, n), [a], expected, TIGHT))
    check_together(checks)


@pytest.mark.parametrize("reduction", ["var", "std"])
def test_var_and_std_of_one_sample_or_one_property_have_zero_gradients(reduction):
    """A group of one entry has a variance of 0 whatever the parameters."""
    rng = np.random.default_rng(8)
    meta = structure(rng, n_components=1)
    a = chunked(rng, generated(rng, meta, zeros=0.0))
    for result in [
        getattr(mtd, f"{reduction}_over_samples")(a, []),
        getattr(mtd, f"{reduction}_over_properties")(a, []),
    ]:
        for block in result.compute().blocks():
            for _, gradient in block.gradients():
                np.testing.assert_array_equal(np.asarray(gradient.values), 0.0)
        check_finite_differences(lambda x, r=result: r, [a])


def _dot_check(seed: int) -> Check:
    rng = np.random.default_rng(seed)
    first = generated(rng, structure(rng))
    properties = first.block(0).properties
    weights = metatensor.TensorMap(
        first.keys,
        [
            metatensor.TensorBlock(
                rng.uniform(-1, 1, (3, len(properties))), labels(["w"], [0, 1, 2]), [], properties
            )
            for _ in first.keys
        ],
    )
    a, w = chunked(rng, first), chunked(rng, weights)
    expected = metatensor.dot(first, weights)
    return Check(mtd.dot, [a, w], expected, TIGHT, {"differentiable": [True, False]})


def test_dot():
    check_together([_dot_check(seed) for seed in SEEDS])


def test_lstsq_with_gradient_equations():
    checks = []
    for seed in SEEDS:
        (first, second), (a, b) = _pair(seed)
        expected = metatensor.lstsq(first, second, rcond=1e-10)
        lstsq = lambda x, y: mtd.lstsq(x, y, rcond=1e-10)  # noqa: E731
        checks.append(Check(lstsq, [a, b], expected, {"rtol": 1e-8, "atol": 1e-10}, None))
    check_together(checks)


def _float32_and_stored_checks(seed: int, kind: str, path: Path) -> list[Check]:
    rng = np.random.default_rng(seed)
    meta = structure(rng)
    dtype = np.float32 if kind == "float32" else np.float64
    first = generated(rng, meta, dtype=dtype)
    second = generated(rng, meta, dtype=dtype, positive=True, zeros=0.0)
    if kind == "zarr":
        a, b = stored(rng, first, path / "a.zarr"), stored(rng, second, path / "b.zarr")
    else:
        a, b = chunked(rng, first), chunked(rng, second)
    # the finite differences of stored inputs: of multiply, and std below
    differences = {} if kind == "zarr" else None
    checks = [
        Check(mtd.add, [a, b], metatensor.add(first, second), differences=None),
        Check(mtd.multiply, [a, b], metatensor.multiply(first, second), differences=differences),
        Check(mtd.divide, [a, b], metatensor.divide(first, second), differences=None),
        Check(lambda x: mtd.pow(x, -1.5), [b], metatensor.pow(second, -1.5), differences=None),
        Check(mtd.abs, [a], metatensor.abs(first), differences=None),
    ]
    tolerance = {"rtol": 1e-5, "atol": 1e-6} if kind == "float32" else {}
    expected = metatensor.sum_over_samples(first, "atom")
    sums = lambda x: mtd.sum_over_samples(x, "atom")  # noqa: E731
    checks.append(Check(sums, [a], expected, tolerance, None))
    if kind == "zarr":
        checks.append(Check(lambda x: mtd.std_over_samples(x, "atom"), [a]))
    return checks


@pytest.mark.parametrize("kind", ["float32", "zarr"])
def test_float32_and_stored_inputs(kind, tmp_path):
    checks = []
    for seed in SEEDS:
        (tmp_path / str(seed)).mkdir()
        checks.extend(_float32_and_stored_checks(seed, kind, tmp_path / str(seed)))
    check_together(checks)


def _regular(meta: dict, rows_per_sample: int) -> dict:
    """``meta`` with ``rows_per_sample`` gradient rows for every sample, in order (one
    for ``strain``): the layout the kernels see as ``(samples, rows, ...)``."""
    blocks = []
    for samples, _ in meta["blocks"]:
        n, k = len(samples), rows_per_sample
        gradients = {
            "positions": [[s, samples[s][0], a] for s in range(n) for a in range(k)],
            "strain": [[s] for s in range(n)],
            "alpha": [[s, f] for s in range(n) for f in range(k)],
        }
        blocks.append((samples, gradients))
    return {**meta, "blocks": blocks}


@pytest.mark.parametrize("layout", ["any", "regular"])
def test_kernels_working_block_by_block(monkeypatch, layout):
    """Gradients of more than a block of rows are computed block by block: with blocks
    of a few rows, every kernel takes that path."""
    monkeypatch.setattr(_value_rows, "ROW_BLOCK_BYTES", 100)
    checks = []
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        meta = structure(rng)
        if layout == "regular":
            meta = _regular(meta, 1 + seed % 2)
        first = generated(rng, meta)
        second = generated(rng, meta, positive=True, zeros=0.0)
        a, b = chunked(rng, first), chunked(rng, second)
        for name in ["multiply", "square", "divide", "pow", "abs"]:
            expected = _kernel(metatensor, name, first, second)
            function = lambda x, y, n=name: _kernel(mtd, n, x, y)  # noqa: E731
            checks.append(Check(function, [a, b], expected))
    check_together(checks)


def _kernel(module, name: str, x, y):
    """The operation ``name`` of ``module`` (metatensor or metatensor_dask) on x, y."""
    if name == "square":
        return module.multiply(x, x)
    if name == "pow":
        return module.pow(y, -1.5)
    if name == "abs":
        return module.abs(x)
    return getattr(module, name)(x, y)


@pytest.mark.parametrize("reduction", ["mean", "var", "std"])
def test_reductions_over_properties_where_metatensor_divides_along_components(reduction):
    """Two components and two groups of properties of different sizes: metatensor
    divides by the group sizes along the components, without an error when the block
    has no gradients."""
    rng = np.random.default_rng(4)
    values = rng.uniform(-1, 1, (3, 2, 3))
    properties = labels(["p", "q"], [[0, 0], [0, 1], [1, 0]])
    block = metatensor.TensorBlock(
        values, labels(["s"], [0, 1, 2]), [labels(["c"], [0, 1])], properties
    )
    gradient = rng.uniform(-1, 1, (2, 2, 3))
    block.add_gradient(
        "alpha",
        metatensor.TensorBlock(
            gradient, labels(["sample", "field"], [[2, 0], [0, 1]]), block.components, properties
        ),
    )
    theirs = metatensor.TensorMap(labels(["k"], [0]), [block])
    ours = mtd.from_metatensor(theirs)
    result = getattr(mtd, f"{reduction}_over_properties")(ours, "q").compute().block(0)
    groups = [values[..., :2], values[..., 2:]]
    expected = np.stack([getattr(np, reduction)(g, axis=-1) for g in groups], axis=-1)
    np.testing.assert_allclose(np.asarray(result.values), expected, rtol=1e-14)
    # without gradients (with them, the shapes of its gradient rows do not broadcast)
    without = metatensor.remove_gradients(theirs)
    wrong = getattr(metatensor, f"{reduction}_over_properties")(without, "q").block(0)
    assert not np.allclose(np.asarray(wrong.values), expected)
    check_finite_differences(lambda x: getattr(mtd, f"{reduction}_over_properties")(x, "q"), [ours])
