"""Operations I and the reductions on blocks in several row chunks, against
metatensor-operations 0.5.0: irregular dask chunks, and maps opened from a Zarr store
written in chunks of two rows; gradient rows co-partitioned with the value rows (zero,
one or many per value row, chunks without any), or in any order; several gradients
with gradient-specific components; an empty block and a block without positions rows
among the others (``chunked_arithmetic_maps.py``). Finite differences decide where metatensor is
wrong (docs/operations-ii.md)."""

import hashlib
import tempfile
import warnings

import dask
import metatensor
import numpy as np
import pytest
from chunked_arithmetic_maps import (
    entry_finite_differences,
    entry_finite_differences_together,
    featomic_like,
    irregular,
    stored,
)
from hypothesis import given
from hypothesis import strategies as st
from metatensor_compare import with_new_arrays

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes, strategies

LAYOUTS = ["irregular", "zarr"]
REDUCTIONS = ["sum", "mean", "var", "std"]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """The Zarr stores written in this module, by the bytes of the map each holds (the
    tests only read them), and the folder of new ones."""
    return {}, tmp_path_factory.mktemp("stores")


@pytest.fixture(params=LAYOUTS)
def chunked(request, stores):
    """A function giving the metatensor-dask copy of a metatensor map in the layout of
    the parameter (a map already stored by an earlier test is opened again from its
    store: each call gets its own lazy map)."""
    written, folder = stores

    def make(theirs):
        if request.param == "irregular":
            return irregular(theirs)
        key = hashlib.sha256(metatensor.io.save_buffer(theirs)).hexdigest()
        if key not in written:
            written[key] = folder / f"{len(written)}.zarr"
            return stored(theirs, written[key])
        return mtd.open_zarr(written[key])

    return make


def _arrays(tensor):
    for block in tensor.blocks():
        yield block.values
        for _, gradient in block.gradients():
            yield gradient.values


def assert_declared_dtypes(result):
    """The dtypes computed are the dtypes the lazy arrays declare."""
    (computed,) = assert_declared_dtypes_together([result])
    return computed


def assert_declared_dtypes_together(results):
    """:func:`assert_declared_dtypes` of each map of ``results``, computed together."""
    computed = dask.compute(*results)
    for result, values in zip(results, computed, strict=True):
        declared = [array.dtype for array in _arrays(result)]
        assert [np.asarray(a).dtype for a in _arrays(values)] == declared
    return computed


def assert_each_equal_to_metatensor(cases, results, expected):
    """Each of ``results`` equals metatensor's map of ``expected``, a failure naming its
    case of ``cases``."""
    for case, result, theirs in zip(cases, results, expected, strict=True):
        try:
            assert_equal_to_metatensor(result, theirs)
        except AssertionError as error:
            raise AssertionError(f"{case!r}: {error}") from error


def test_the_maps_are_chunked_as_described(chunked):
    ours = chunked(featomic_like(grouped=True))
    block = ours.block(0)
    assert len(block.values.chunks[0]) >= 4
    positions = block.gradient("positions").values.chunks[0]
    assert 0 in positions, positions  # a values chunk without gradient rows
    assert len(ours.block(1).samples) == 0
    assert len(ours.block(2).gradient("positions").samples) == 0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("grouped", [True, False])
def test_binary_operations_are_metatensors(chunked, grouped, dtype):
    """Every binary operation, computed together."""
    first = featomic_like(dtype, 0, grouped)
    second = featomic_like(dtype, 1, grouped)
    ours = chunked(first), chunked(second)
    operations = ["add", "subtract", "multiply", "divide"]
    with raise_if_dask_computes():
        results = [getattr(mtd, operation)(*ours) for operation in operations]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 0 / 0 in both
        computed = dask.compute(*results)
        for operation, result in zip(operations, computed, strict=True):
            expected = getattr(metatensor, operation)(first, second)
            assert_equal_to_metatensor(result, expected)


SCALARS = [2, -0.5, 0, 0.0, np.float64(3.5)]


@pytest.mark.parametrize("operation", ["add", "subtract", "multiply", "divide"])
def test_scalar_operations_are_metatensors(chunked, operation):
    """Every scalar of :data:`SCALARS`, computed together."""
    theirs = featomic_like(np.float32, 2, grouped=False)
    ours = chunked(theirs)
    with raise_if_dask_computes():
        results = [getattr(mtd, operation)(ours, scalar) for scalar in SCALARS]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = [getattr(metatensor, operation)(theirs, scalar) for scalar in SCALARS]
        assert_each_equal_to_metatensor(SCALARS, dask.compute(*results), expected)


def test_scalars_on_the_left_are_refused_as_by_metatensor(chunked):
    theirs = featomic_like()
    ours = chunked(theirs)
    for tensor in (theirs, ours):
        with pytest.raises(TypeError, match="unsupported operand"):
            2 * tensor
        with pytest.raises(TypeError, match="unsupported operand"):
            1.0 - tensor


@pytest.mark.parametrize("exponent", [2, 3, -1, -2, 0.5, 1.5, -0.5, np.float64(2.0)], ids=repr)
def test_pow_is_metatensors_on_zeros_and_negatives(chunked, exponent):
    theirs = featomic_like(seed=3, grouped=False)
    ours = chunked(theirs)
    with raise_if_dask_computes():
        result = mtd.pow(ours, exponent)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 0 ** -1, (-1) ** 0.5
        assert_equal_to_metatensor(result, metatensor.pow(theirs, exponent))


def test_abs_is_metatensors_with_zeros(chunked):
    theirs = featomic_like(np.float32, 4)
    assert_equal_to_metatensor(mtd.abs(chunked(theirs)), metatensor.abs(theirs))


@pytest.mark.parametrize("order", ["float64, float32", "float32, float64"])
@pytest.mark.parametrize("operation", ["add", "multiply", "divide"])
def test_mixed_dtypes_promote_as_metatensor(chunked, operation, order):
    first, second = (
        featomic_like(np.dtype(name.strip()).type, seed)
        for seed, name in enumerate(order.split(","))
    )
    result = getattr(mtd, operation)(chunked(first), chunked(second))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 0 / 0 in both
        computed = assert_declared_dtypes(result)
        assert_equal_to_metatensor(computed, getattr(metatensor, operation)(first, second))


def _with_nan_and_inf(theirs):
    blocks = []
    for block in theirs.blocks():
        values = np.array(block.values)
        values.reshape(-1)[1::7] = np.nan
        values.reshape(-1)[3::11] = np.inf
        values.reshape(-1)[5::13] = -np.inf
        new = metatensor.TensorBlock(values, block.samples, block.components, block.properties)
        for parameter, gradient in block.gradients():
            rows = np.array(gradient.values)
            rows.reshape(-1)[2::17] = np.nan
            new.add_gradient(
                parameter,
                metatensor.TensorBlock(
                    rows, gradient.samples, gradient.components, gradient.properties
                ),
            )
        blocks.append(new)
    return metatensor.TensorMap(theirs.keys, blocks)


@pytest.mark.parametrize(
    "operation",
    [
        lambda m, a, b: m.multiply(a, b),
        lambda m, a, b: m.divide(a, b),
        lambda m, a, b: m.subtract(b, a),
        lambda m, a, b: m.pow(a, 3),
        lambda m, a, b: m.pow(a, -0.5),
        lambda m, a, b: m.abs(a),
        lambda m, a, b: m.sum_over_samples(a, "atom"),
        lambda m, a, b: m.sum_over_properties(a, "n"),
    ],
    ids=["multiply", "divide", "subtract", "pow3", "pow-0.5", "abs", "sum_samples", "sum_props"],
)
def test_nan_and_inf_go_through_as_in_metatensor(chunked, operation):
    first = _with_nan_and_inf(featomic_like(seed=5))
    second = featomic_like(seed=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = operation(metatensor, first, second)
        result = operation(mtd, chunked(first), chunked(second))
        assert_equal_to_metatensor(result, expected, rtol=1e-12, atol=1e-12)


def _without_empty_block(tensor):
    """metatensor 0.5.0 gives the empty block no sample names when every name is
    reduced (an invalid map, docs/operations-ii.md): compare the other blocks."""
    keep = [i for i, block in enumerate(tensor.blocks()) if len(block.samples)]
    return keep


@pytest.mark.parametrize("names", ["atom", ["system"], ["system", "atom"]], ids=str)
@pytest.mark.parametrize("grouped", [True, False])
def test_sum_over_samples_is_metatensors(chunked, grouped, names):
    theirs = featomic_like(seed=8, grouped=grouped)
    ours = chunked(theirs)
    with raise_if_dask_computes():
        result = mtd.sum_over_samples(ours, names)
    for i in _without_empty_block(theirs):
        assert_equal_to_metatensor(
            result.block(i),
            metatensor.sum_over_samples_block(theirs.block(i), names),
            rtol=1e-13,
            atol=1e-14,
        )
    reduced = [names] if isinstance(names, str) else names
    remaining = [n for n in ("system", "atom") if n not in reduced]
    assert result.block(1).samples.names == (remaining or ["_"])


@pytest.mark.parametrize("names", ["atom", ["system"], ["atom", "system"]], ids=str)
@pytest.mark.parametrize("reduction", ["mean", "var", "std"])
def test_mean_var_std_over_samples_values_are_metatensors(chunked, reduction, names):
    theirs = featomic_like(seed=9, grouped=False)
    ours = chunked(theirs)
    with raise_if_dask_computes():
        result = getattr(mtd, f"{reduction}_over_samples")(ours, names)
    for i in _without_empty_block(theirs):
        expected = getattr(metatensor, f"{reduction}_over_samples_block")(theirs.block(i), names)
        assert_equal_to_metatensor(
            mtd.remove_gradients_block(result.block(i)),
            metatensor.remove_gradients_block(expected),
            rtol=1e-13,
            atol=1e-14,
        )


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradients_over_samples_by_finite_differences(chunked, reduction):
    """Every gradient (alone in its map) and every group of names, in one computation."""
    checks = []
    for parameter in ["positions", "strain", "cell"]:
        theirs = metatensor.remove_gradients(
            featomic_like(seed=10, grouped=False),
            [p for p in ("positions", "strain", "cell") if p != parameter],
        )
        ours = chunked(theirs)
        for names in ["atom", ["system"], ["atom", "system"]]:
            function = getattr(mtd, f"{reduction}_over_samples")
            checks.append((lambda t, f=function, n=names: f(t, n), ours, parameter))
    entry_finite_differences_together(checks)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("axis", ["samples", "properties"])
def test_reductions_keep_the_float_dtype_they_declare(chunked, axis, dtype):
    """Every reduction of :data:`REDUCTIONS`, computed together."""
    ours = chunked(featomic_like(dtype, seed=11))
    name = "atom" if axis == "samples" else "n"
    results = [getattr(mtd, f"{reduction}_over_{axis}")(ours, name) for reduction in REDUCTIONS]
    assert_declared_dtypes_together(results)
    for reduction, result in zip(REDUCTIONS, results, strict=True):
        assert {array.dtype for array in _arrays(result)} == {np.dtype(dtype)}, reduction


@pytest.mark.parametrize("components", [True, False])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_reductions_over_properties_are_metatensors(chunked, reduction, components):
    theirs = featomic_like(seed=12, grouped=False, components=components, n_properties=5)
    theirs = metatensor.rename_dimension(theirs, "properties", "n", "p")
    theirs = metatensor.insert_dimension(theirs, "properties", 1, "q", np.array([0, 1, 0, 1, 1]))
    ours = chunked(theirs)
    with raise_if_dask_computes():
        result = getattr(mtd, f"{reduction}_over_properties")(ours, "p")
    if components and reduction != "sum":
        # metatensor 0.5.0 fails on blocks with components (docs/operations-ii.md)
        entry_finite_differences(
            lambda t: getattr(mtd, f"{reduction}_over_properties")(t, "p"), ours, "positions"
        )
        return
    expected = getattr(metatensor, f"{reduction}_over_properties")(theirs, "p")
    assert_equal_to_metatensor(result, expected, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_reductions_of_tiny_blocks_keep_their_dtype(reduction, dtype):
    """The same on single-chunk blocks (reduced by groups of blocks in a few tasks);
    integers give float64 means, variances and deviations, as in metatensor."""
    theirs = _integers(featomic_like(seed=11), dtype)
    ours = mtd.from_metatensor(theirs)
    float64 = reduction != "sum" and dtype == np.int32
    for axis, name in (("samples", "atom"), ("properties", "n")):
        result = getattr(mtd, f"{reduction}_over_{axis}")(ours, name)
        assert_declared_dtypes(result)
        expected = np.dtype(np.float64 if float64 else dtype)
        assert {array.dtype for array in _arrays(result)} == {expected}


@pytest.mark.parametrize("reduction", ["mean", "var", "std"])
@pytest.mark.parametrize("axis", ["samples", "properties"])
def test_float32_reductions_with_gradients_where_metatensor_fails(chunked, axis, reduction):
    """metatensor 0.5.0 makes float64 gradients for float32 values, then refuses them;
    the values are its values, the gradients those of the float64 data, in float32."""
    theirs = featomic_like(np.float32, seed=13, components=False)
    name = "atom" if axis == "samples" else "n"
    function = f"{reduction}_over_{axis}"
    with pytest.raises(metatensor.MetatensorError, match="gradient values have dtype 'f64'"):
        getattr(metatensor, function)(theirs, name)
    result = getattr(mtd, function)(chunked(theirs), name).compute()
    expected = getattr(metatensor, function)(metatensor.remove_gradients(theirs), name)
    assert_equal_to_metatensor(mtd.remove_gradients(result), expected, rtol=1e-6, atol=1e-6)
    in_float64 = getattr(mtd, function)(irregular(theirs.to(dtype=np.float64)), name).compute()
    for ours, exact in zip(result.blocks(), in_float64.blocks(), strict=True):
        assert sorted(ours.gradients_list()) == sorted(exact.gradients_list())
        for parameter, gradient in ours.gradients():
            assert gradient.values.dtype == np.float32
            expected_rows = exact.gradient(parameter).values
            np.testing.assert_allclose(gradient.values, expected_rows, rtol=1e-4, atol=1e-5)


def _weights(theirs, dtype, n=3):
    rng = np.random.default_rng(14)
    blocks = [
        metatensor.TensorBlock(
            rng.uniform(-1, 1, (n, len(block.properties))).astype(dtype),
            metatensor.Labels.range("weight", n),
            [],
            block.properties,
        )
        for block in theirs.blocks()
    ]
    return metatensor.TensorMap(theirs.keys, blocks)


@pytest.mark.parametrize("weights_dtype", [np.float64, np.float32])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("components", [True, False])
def test_dot_is_metatensors(chunked, components, dtype, weights_dtype):
    theirs = featomic_like(dtype, seed=15, grouped=False, components=components, n_properties=17)
    weights = _weights(theirs, weights_dtype)
    ours = chunked(theirs), irregular(weights)
    with raise_if_dask_computes():
        result = mtd.dot(*ours)
    # BLAS rounds a product of a few rows (one row: a matrix-vector product) otherwise
    # than the product of the whole block: equal to rounding (docs/operations.md)
    tolerance = 1e-13 if np.result_type(dtype, weights_dtype) == np.float64 else 1e-5
    computed = assert_declared_dtypes(result)
    assert_equal_to_metatensor(
        computed, metatensor.dot(theirs, weights), rtol=tolerance, atol=tolerance
    )


def _linear_system(dtype, seed, properties=4):
    """X (no components, positions gradient in any order) and Y of the same samples."""
    x = featomic_like(dtype, seed, grouped=False, components=False, gradients=("positions",))
    y = featomic_like(dtype, seed + 1, grouped=False, components=False, n_properties=2)
    y = metatensor.remove_gradients(y, ["strain", "cell"])
    y = metatensor.rename_dimension(y, "properties", "n", "target")
    return x, y


@pytest.mark.parametrize("rcond", [1e-10, 0.5])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lstsq_with_gradients_is_metatensors(chunked, dtype, rcond):
    x, y = _linear_system(dtype, 16)
    # the empty block and the block without positions rows give no equation: drop them
    keys = metatensor.Labels(["center_type"], np.array([[1], [8]], dtype=np.int32))
    x, y = metatensor.filter_blocks(x, keys), metatensor.filter_blocks(y, keys)
    ours = chunked(x), chunked(y)
    with raise_if_dask_computes():
        result = mtd.lstsq(*ours, rcond=rcond)
    tolerance = 1e-10 if dtype == np.float64 else 1e-4
    expected = metatensor.lstsq(x, y, rcond=rcond)
    assert_equal_to_metatensor(result, expected, rtol=tolerance, atol=tolerance)


def test_lstsq_without_rcond_warns_as_metatensor(chunked):
    x, y = _linear_system(np.float64, 17)
    keys = metatensor.Labels(["center_type"], np.array([[1]], dtype=np.int32))
    x, y = metatensor.filter_blocks(x, keys), metatensor.filter_blocks(y, keys)
    with pytest.warns(UserWarning) as theirs:
        expected = metatensor.lstsq(x, y, rcond=None)
    ours = chunked(x), chunked(y)
    with pytest.warns(UserWarning) as warned:
        result = mtd.lstsq(*ours, rcond=None)
    assert [str(w.message) for w in warned] == [str(w.message) for w in theirs]
    assert_equal_to_metatensor(result, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_solve_is_metatensors(chunked, dtype):
    rng = np.random.default_rng(18)
    blocks_x, blocks_y = [], []
    for n in (7, 11):
        samples = metatensor.Labels.range("s", n)
        matrix = rng.uniform(-1, 1, (n, n)) + n * np.eye(n)
        blocks_x.append(
            metatensor.TensorBlock(
                matrix.astype(dtype), samples, [], metatensor.Labels.range("p", n)
            )
        )
        blocks_y.append(
            metatensor.TensorBlock(
                rng.uniform(-1, 1, (n, 2)).astype(dtype),
                samples,
                [],
                metatensor.Labels.range("q", 2),
            )
        )
    keys = metatensor.Labels.range("k", 2)
    x, y = metatensor.TensorMap(keys, blocks_x), metatensor.TensorMap(keys, blocks_y)
    ours = chunked(x), chunked(y)
    with raise_if_dask_computes():
        result = mtd.solve(*ours)
    tolerance = 1e-12 if dtype == np.float64 else 1e-5
    assert_equal_to_metatensor(result, metatensor.solve(x, y), rtol=tolerance, atol=tolerance)


LIKE_GRADIENTS = [None, ["strain"], "cell", []]


@pytest.mark.parametrize("function", ["zeros_like", "ones_like"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_zeros_and_ones_like_are_metatensors(chunked, dtype, function):
    """Every choice of gradients of :data:`LIKE_GRADIENTS`, computed together."""
    theirs = featomic_like(dtype, seed=19, grouped=False)
    ours = chunked(theirs)
    with raise_if_dask_computes():
        results = [getattr(mtd, function)(ours, gradients) for gradients in LIKE_GRADIENTS]
    computed = assert_declared_dtypes_together(results)
    expected = [getattr(metatensor, function)(theirs, gradients) for gradients in LIKE_GRADIENTS]
    assert_each_equal_to_metatensor(LIKE_GRADIENTS, computed, expected)


@pytest.mark.parametrize("gradients", [None, ["positions", "cell"], []], ids=str)
@pytest.mark.parametrize("function", ["empty_like", "random_uniform_like"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_empty_and_random_like_have_metatensors_metadata(chunked, dtype, function, gradients):
    theirs = featomic_like(dtype, seed=20)
    ours = chunked(theirs)
    with raise_if_dask_computes():
        result = getattr(mtd, function)(ours, gradients)
    computed = assert_declared_dtypes(result)
    expected = getattr(metatensor, function)(theirs, gradients)
    converted = mtd.to_metatensor(computed)
    assert metatensor.equal_metadata(converted, expected)
    for mine, other in zip(converted.blocks(), expected.blocks(), strict=True):
        assert sorted(mine.gradients_list()) == sorted(other.gradients_list())
        assert mine.values.dtype == other.values.dtype == dtype
    # the values of each array keep the chunks of the input's
    for block, source in zip(result.blocks(), ours.blocks(), strict=True):
        assert block.values.chunks == source.values.chunks
    if function == "random_uniform_like":
        drawn = np.concatenate([np.ravel(a) for a in _arrays(computed)])
        assert drawn.min() >= 0 and drawn.max() < 1
        assert len(np.unique(drawn)) > 0.99 * len(drawn), "chunks drew the same numbers"


@pytest.mark.parametrize("remove", [None, ["positions"], ["strain", "cell"], []], ids=str)
def test_remove_gradients_and_detach_are_metatensors(chunked, remove):
    theirs = featomic_like(np.float32, seed=21, grouped=False)
    ours = chunked(theirs)
    with raise_if_dask_computes():
        removed = mtd.remove_gradients(ours, remove)
        detached = mtd.detach(ours)
    assert_equal_to_metatensor(removed, metatensor.remove_gradients(theirs, remove))
    assert_equal_to_metatensor(detached, metatensor.detach(theirs))


def test_one_hot_of_stored_samples_is_metatensors(tmp_path):
    theirs = featomic_like(seed=22)
    ours = stored(theirs, tmp_path / "stored.zarr")
    dimension = [[2], [0], [1]]
    for block, other in zip(ours.blocks(), theirs.blocks(), strict=True):
        result = mtd.one_hot(block.samples, mtd.Labels(["atom"], np.array(dimension)))
        expected = metatensor.one_hot(
            other.samples, metatensor.Labels(["atom"], np.array(dimension, dtype=np.int32))
        )
        assert result.dtype == expected.dtype
        np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("reduction", ["mean", "var", "std"])
def test_nan_and_inf_through_mean_var_std_over_samples(chunked, reduction):
    """With dense gradients (strain), metatensor's rule is right: same values and
    gradients, but where a group holds an infinite value the variance is NaN and so is
    its gradient here, metatensor's ``E[x∇x] - E[x]E[∇x]`` gives ±inf or NaN; and the
    gradients of the standard deviation keep the NaN and infinities that metatensor
    turns into 0."""
    theirs = _with_nan_and_inf(featomic_like(seed=23, gradients=("strain",)))
    function = f"{reduction}_over_samples"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = getattr(metatensor, function)(theirs, "atom")
        result = getattr(mtd, function)(chunked(theirs), "atom").compute()
    if reduction == "mean":
        assert_equal_to_metatensor(result, expected, rtol=1e-12, atol=1e-12)
        return
    assert_equal_to_metatensor(
        mtd.remove_gradients(result), metatensor.remove_gradients(expected), rtol=1e-12
    )
    kept = 0
    for block, other in zip(result.blocks(), expected.blocks(), strict=True):
        ours, theirs_rows = block.gradient("strain").values, other.gradient("strain").values
        if reduction == "var":
            finite = np.isfinite(theirs_rows)
            assert np.isnan(ours[~finite]).all()
        else:
            finite = np.isfinite(ours)
            np.testing.assert_array_equal(theirs_rows[~finite], 0)
            kept += int((~finite).sum())
        np.testing.assert_allclose(ours[finite], theirs_rows[finite], rtol=1e-12, atol=1e-12)
    assert reduction == "var" or kept > 0


def _times_three(array, dtype):
    array = np.asarray(array) * 3
    return (array if np.issubdtype(dtype, np.floating) else np.round(array)).astype(dtype)


def _integers(theirs, dtype):
    """``theirs`` with values and gradients times 3 in ``dtype`` (rounded to integers
    for integer dtypes)."""
    return with_new_arrays(theirs, lambda array: _times_three(array, dtype))


INTEGER_OPERATIONS = {
    "add": lambda m, a, b: m.add(a, b),
    "multiply": lambda m, a, b: m.multiply(a, 3),
    "divide": lambda m, a, b: m.divide(a, b),
    "pow": lambda m, a, b: m.pow(a, 2),
    "abs": lambda m, a, b: m.abs(a),
    "sum_samples": lambda m, a, b: m.sum_over_samples(a, "atom"),
    "sum_props": lambda m, a, b: m.sum_over_properties(a, "n"),
    "zeros_like": lambda m, a, b: m.zeros_like(a),
}


@pytest.mark.parametrize(
    "dtypes", [(np.int32, np.int32), (np.int32, np.int64)], ids=["int32,int32", "int32,int64"]
)
def test_integer_maps_keep_metatensors_dtypes(chunked, dtypes):
    """Every operation of ``INTEGER_OPERATIONS``, computed together."""
    first = _integers(featomic_like(seed=24), dtypes[0])
    second = _integers(featomic_like(seed=25), dtypes[1])
    a, b = chunked(first), chunked(second)
    results = {name: operation(mtd, a, b) for name, operation in INTEGER_OPERATIONS.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 0 / 0 in both
        (computed,) = dask.compute(results)
        for name, operation in INTEGER_OPERATIONS.items():
            declared = [array.dtype for array in _arrays(results[name])]
            assert [np.asarray(x).dtype for x in _arrays(computed[name])] == declared, name
            expected = operation(metatensor, first, second)
            assert_equal_to_metatensor(computed[name], expected)


def _with_a_block_without_properties(theirs):
    """``theirs`` with the properties of its last block sliced away."""
    blocks = [block.copy() for block in theirs.blocks()]
    empty = metatensor.Labels(["n"], np.zeros((0, 1), dtype=np.int32))
    blocks[-1] = metatensor.slice_block(blocks[-1], "properties", empty)
    return metatensor.TensorMap(theirs.keys, blocks)


@pytest.mark.parametrize("reduction", ["mean", "var", "std"])
@pytest.mark.parametrize("axis", ["samples", "properties"])
def test_integer_means_are_float64_in_every_block(chunked, axis, reduction):
    """Blocks without samples (or without properties) and gradients without rows have
    nothing to reduce, and still take the float64 of the others: metatensor-core
    refuses a map (or a block) of several dtypes. metatensor 0.5.0 fails here."""
    theirs = featomic_like(seed=26, components=False)
    theirs = _with_a_block_without_properties(_integers(theirs, np.int32))
    name = "atom" if axis == "samples" else "n"
    function = f"{reduction}_over_{axis}"
    with pytest.raises(metatensor.MetatensorError):
        getattr(metatensor, function)(theirs, name)
    result = getattr(mtd, function)(chunked(theirs), name)
    computed = assert_declared_dtypes(result)
    assert {array.dtype for array in _arrays(result)} == {np.dtype(np.float64)}
    mtd.to_metatensor(computed)  # a valid metatensor map
    # the values of the blocks with something to reduce are those of the float64 data
    as_floats = metatensor.remove_gradients(theirs.to(dtype=np.float64))
    for i, block in enumerate(as_floats.blocks()):
        if len(block.samples) and len(block.properties):
            expected = getattr(metatensor, f"{function}_block")(block, name)
            assert_equal_to_metatensor(
                mtd.remove_gradients_block(computed.block(i)), expected, rtol=1e-12, atol=1e-12
            )


@given(
    pair=strategies.tensor_pairs(
        max_samples=6, dtypes=(np.float64, np.float32), positive=(False, True), grouped=False
    ),
    rows=st.integers(1, 3),
)
def test_random_maps_through_a_store(pair, rows):
    """Random maps (gradient rows shuffled) written in chunks of ``rows`` and opened."""
    first, second = pair
    with tempfile.TemporaryDirectory() as directory:
        mtd.to_zarr(first, f"{directory}/first.zarr", chunks=rows)
        opened = mtd.open_zarr(f"{directory}/first.zarr")
        with raise_if_dask_computes():
            lazy = [
                mtd.multiply(opened, second),
                mtd.divide(opened, second),
                mtd.sum_over_samples(opened, "atom"),
            ]
        # the inputs and every result in one computation
        *results, first_computed, second_computed = dask.compute(*lazy, first, second)
        theirs = mtd.to_metatensor(first_computed), mtd.to_metatensor(second_computed)
        expected = [
            metatensor.multiply(*theirs),
            metatensor.divide(*theirs),
            metatensor.sum_over_samples(theirs[0], "atom"),
        ]
        for result, other, tolerance in zip(results, expected, [0, 0, 1e-5], strict=True):
            assert_equal_to_metatensor(result, other, rtol=tolerance, atol=tolerance)
