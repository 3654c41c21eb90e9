"""``lstsq`` of blocks whose rows span several chunks: a tree of QR factorisations of
the rows of ``[X | Y]`` gives metatensor's weights without any task holding all the rows
of a block (which killed workers with a memory limit on featomic-sized blocks).

Tolerances: both solutions are backward stable, so they differ by rounding times the
condition number of ``X`` (at most a few hundred for the random data here): 1e-10 in
float64. numpy solves float32 systems in float64 and rounds the solution to float32, as
the tree does: the two roundings agree to one unit in the last place (1e-6)."""

import tracemalloc
import warnings

import dask
import dask.array as da
import metatensor
import numpy as np
import pytest
from chunked_maps import chunked, reference
from dask.core import flatten, get_dependencies
from hypothesis import given
from hypothesis import strategies as st
from oracle import lazily

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def _fitted(
    rows: metatensor.TensorBlock, weights: np.ndarray, rng: np.random.Generator
) -> metatensor.TensorBlock:
    """``rows @ weights`` plus noise, with the metadata of ``rows``."""
    n_y = weights.shape[1]
    noise = rng.normal(size=(*rows.values.shape[:-1], n_y))
    return metatensor.TensorBlock(
        rows.values @ weights + 0.1 * noise,
        rows.samples,
        rows.components,
        metatensor.Labels.range("target", n_y),
    )


def _target(x: metatensor.TensorMap, seed: int, n_y: int = 2) -> metatensor.TensorMap:
    """Targets with the samples, components and gradient rows of ``x``: a linear
    function of ``x`` plus noise (a non-zero residual), in float64."""
    rng = np.random.default_rng(seed)
    blocks = []
    for block in x.blocks():
        weights = rng.uniform(-1, 1, (len(block.properties), n_y))
        new = _fitted(block, weights, rng)
        for parameter, gradient in block.gradients():
            new.add_gradient(parameter, _fitted(gradient, weights, rng))
        blocks.append(new)
    return metatensor.TensorMap(x.keys, blocks)


def _duplicated_column(x: metatensor.TensorMap) -> metatensor.TensorMap:
    """``x`` whose last property is twice its first, in values and gradients: rank
    deficient, with a minimum-norm solution."""

    def duplicated(rows: metatensor.TensorBlock) -> metatensor.TensorBlock:
        values = rows.values.copy()
        values[..., -1] = 2 * values[..., 0]
        return metatensor.TensorBlock(values, rows.samples, rows.components, rows.properties)

    blocks = []
    for block in x.blocks():
        new = duplicated(block)
        for parameter, gradient in block.gradients():
            new.add_gradient(parameter, duplicated(gradient))
        blocks.append(new)
    return metatensor.TensorMap(x.keys, blocks)


def _solved(ours: tuple, theirs: tuple, rcond: float | None) -> tuple:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        expected = metatensor.lstsq(*theirs, rcond=rcond)
        result = lazily(mtd.lstsq, *ours, rcond)
    return result, expected


@pytest.mark.parametrize(
    ("dtype", "rcond", "seed"),
    [
        (np.float64, 1e-10, 0),
        (np.float32, None, 3),
        (np.int32, 0.3, 4),
    ],
)
def test_chunked_maps_with_gradients_equal_metatensor(dtype, rcond, seed):
    """Six blocks (one without samples), values in irregular chunks, three gradients
    (co-partitioned or shuffled and chunked at random); ``Y`` chunked otherwise."""
    x = reference(seed=seed, dtype=dtype, same_properties=True, components=seed % 2 == 0)
    y = _target(x, seed + 10)
    result, expected = _solved((chunked(x, seed), chunked(y, seed + 20)), (x, y), rcond)
    tolerance = 1e-6 if dtype == np.float32 else 1e-10
    assert_equal_to_metatensor(result, expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("rcond", [1e-10, None])
def test_rank_deficient_blocks_give_the_minimum_norm_solution(rcond):
    x = _duplicated_column(reference(seed=5, same_properties=True))
    y = _target(x, 15, n_y=3)
    result, expected = _solved((chunked(x, 5), chunked(y, 6)), (x, y), rcond)
    assert_equal_to_metatensor(result, expected, rtol=1e-10, atol=1e-10)


def _stored(tensor: metatensor.TensorMap, path, rows: int) -> mtd.TensorMap:
    mtd.to_zarr(mtd.from_metatensor(tensor), path, mode="w", chunks=rows)
    return mtd.open_zarr(path)


def test_stored_maps_in_small_chunks_equal_metatensor(tmp_path):
    """Two blocks (the second with its gradient rows shuffled), stored in chunks of 5
    and 7 rows."""
    x = reference(seed=7, same_properties=True)
    x = metatensor.filter_blocks(x, metatensor.Labels(x.keys.names, x.keys.values[:2]))
    y = _target(x, 17)
    ours = _stored(x, tmp_path / "x.zarr", 5), _stored(y, tmp_path / "y.zarr", 7)
    assert ours[0].block(0).values.numblocks[0] > 1
    with pytest.warns(UserWarning, match="rcond is set to None"):
        result = lazily(mtd.lstsq, *ours, None)
    with pytest.warns(UserWarning, match="rcond is set to None"):
        expected = metatensor.lstsq(x, y, rcond=None)
    assert_equal_to_metatensor(result, expected, rtol=1e-10, atol=1e-10)


def _one_block(values: np.ndarray, gradient: np.ndarray | None) -> metatensor.TensorMap:
    n_samples, n_properties = values.shape
    block = metatensor.TensorBlock(
        values,
        metatensor.Labels.range("sample", n_samples),
        [],
        metatensor.Labels.range("p", n_properties),
    )
    if gradient is not None:
        rows = np.arange(len(gradient))
        samples = np.stack([rows % max(n_samples, 1), rows], axis=1).astype(np.int32)
        block.add_gradient(
            "g",
            metatensor.TensorBlock(
                gradient, metatensor.Labels(["sample", "d"], samples), [], block.properties
            ),
        )
    return metatensor.TensorMap(metatensor.Labels.range("key", 1), [block])


def _in_chunks(tensor: metatensor.TensorMap, rows: int) -> mtd.TensorMap:
    block = mtd.from_metatensor(tensor).block(0)
    new = mtd.TensorBlock(
        da.asarray(block.values).rechunk({0: rows}), block.samples, [], block.properties
    )
    for parameter, gradient in block.gradients():
        new.add_gradient(
            parameter,
            mtd.TensorBlock(
                da.asarray(gradient.values).rechunk({0: rows}),
                gradient.samples,
                [],
                gradient.properties,
            ),
        )
    return mtd.TensorMap(mtd.from_metatensor(tensor.keys), [new])


@pytest.mark.parametrize(
    ("samples", "unknowns", "gradient_rows"),
    [(5, 30, 4), (0, 3, 0), (4, 1, 60)],
    ids=["more-unknowns-than-rows", "no-rows", "gradients-100x-values"],
)
def test_systems_of_any_shape_equal_metatensor(samples, unknowns, gradient_rows):
    rng = np.random.default_rng(samples + unknowns)
    n_gradient = gradient_rows if samples else 0
    x = _one_block(rng.normal(size=(samples, unknowns)), rng.normal(size=(n_gradient, unknowns)))
    y = _one_block(rng.normal(size=(samples, 2)), rng.normal(size=(n_gradient, 2)))
    for rcond in (1e-10, None):
        result, expected = _solved((_in_chunks(x, 2), _in_chunks(y, 3)), (x, y), rcond)
        assert_equal_to_metatensor(result, expected, rtol=1e-10, atol=1e-12)


def test_blocks_without_properties_give_numpys_weights():
    """metatensor cannot reshape blocks without properties; numpy's ``lstsq`` of the
    flattened rows is the reference."""
    rng = np.random.default_rng(8)
    x = _one_block(rng.normal(size=(7, 3)), rng.normal(size=(9, 3)))
    empty = _one_block(np.zeros((7, 0)), np.zeros((9, 0)))
    for first, second in ((x, empty), (empty, x)):
        result = lazily(mtd.lstsq, _in_chunks(first, 2), _in_chunks(second, 3), 1e-10)
        blocks = (first.block(0), second.block(0))
        rows = [np.concatenate([b.values, b.gradient("g").values]) for b in blocks]
        expected = np.linalg.lstsq(*rows, rcond=1e-10)[0].T
        np.testing.assert_array_equal(result.block(0).values.compute(), expected)


def _input_keys(tensor: mtd.TensorMap) -> set:
    keys = set()
    for block in tensor.blocks():
        keys.update(flatten(block.values.__dask_keys__()))
        for _, gradient in block.gradients():
            keys.update(flatten(gradient.values.__dask_keys__()))
    return keys


def test_no_task_gathers_the_rows_of_a_block():
    """Each task takes at most one chunk of ``X`` and one of ``Y``, or a few (at most
    eight) factors."""
    rng = np.random.default_rng(9)
    x = _one_block(rng.normal(size=(60, 5)), rng.normal(size=(180, 5)))
    y = _one_block(rng.normal(size=(60, 2)), rng.normal(size=(180, 2)))
    ours = _in_chunks(x, 5), _in_chunks(y, 7)
    inputs = _input_keys(ours[0]) | _input_keys(ours[1])
    assert len(inputs) > 60
    graph = dict(mtd.lstsq(*ours, rcond=1e-10).block(0).values.__dask_graph__())
    tasks = [key for key in graph if key not in inputs]
    assert max(len(get_dependencies(graph, key) & inputs) for key in tasks) <= 2
    assert max(len(get_dependencies(graph, key)) for key in tasks) <= 8


def test_memory_while_solving_a_stored_block_stays_below_its_size(tmp_path):
    """The most memory allocated at any time (``tracemalloc``, which counts numpy's
    arrays, and dask's bookkeeping) while solving a block stored in 16 chunks of values
    and 16 of gradients is under half of the block's bytes: gathering its rows holds
    them all, then numpy's copy of them."""
    rng = np.random.default_rng(10)
    x = _one_block(rng.normal(size=(16000, 8)), rng.normal(size=(48000, 8)))
    y = _target(x, 19, n_y=1)
    X, Y = _stored(x, tmp_path / "x.zarr", 1000), _in_chunks(y, 1000)
    block = X.block(0)
    assert block.values.numblocks[0] == 16
    size = block.values.nbytes + block.gradient("g").values.nbytes
    result = mtd.lstsq(X, Y, rcond=1e-10)
    # a first computation, not measured: first calls fill caches and import modules
    dask.compute(result, scheduler="sync")
    tracemalloc.start()
    try:
        (computed,) = dask.compute(result, scheduler="sync")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < size / 2
    assert_equal_to_metatensor(
        computed, metatensor.lstsq(x, y, rcond=1e-10), rtol=1e-10, atol=1e-12
    )


def _split(n: int, draw) -> tuple[int, ...]:
    """Random chunk sizes summing to ``n`` (one chunk of zero rows when ``n`` is 0)."""
    sizes = []
    while sum(sizes) < n:
        sizes.append(min(draw(st.integers(1, 8)), n - sum(sizes)))
    return tuple(sizes) or (0,)


def _drawn_chunks(tensor: metatensor.TensorMap, draw) -> mtd.TensorMap:
    block = mtd.from_metatensor(tensor).block(0)
    values = da.asarray(block.values).rechunk({0: _split(len(block.samples), draw)})
    new = mtd.TensorBlock(values, block.samples, [], block.properties)
    gradient = block.gradient("g")
    rows = _split(len(gradient.samples), draw)
    new.add_gradient(
        "g",
        mtd.TensorBlock(
            da.asarray(gradient.values).rechunk({0: rows}),
            gradient.samples,
            [],
            gradient.properties,
        ),
    )
    return mtd.TensorMap(mtd.from_metatensor(tensor.keys), [new])


@given(data=st.data())
def test_any_chunking_of_any_system_equals_numpys_weights(data):
    """Random sizes (rows, unknowns, targets, gradient rows, any of them zero) and
    random row chunks of each array of ``X`` and ``Y``; numpy's ``lstsq`` of the stacked
    rows (metatensor's computation, which cannot reshape blocks without properties)."""
    draw = data.draw
    samples, n_x, n_y = draw(st.integers(0, 20)), draw(st.integers(0, 6)), draw(st.integers(0, 3))
    gradient_rows = draw(st.integers(0, 40)) if samples else 0
    rcond = draw(st.sampled_from([1e-10, None, 0.1]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = _one_block(rng.normal(size=(samples, n_x)), rng.normal(size=(gradient_rows, n_x)))
    y = _one_block(rng.normal(size=(samples, n_y)), rng.normal(size=(gradient_rows, n_y)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = lazily(mtd.lstsq, _drawn_chunks(x, draw), _drawn_chunks(y, draw), rcond)
    rows = [np.concatenate([b.values, b.gradient("g").values]) for b in (x.block(0), y.block(0))]
    expected = np.linalg.lstsq(*rows, rcond=rcond)[0].T
    np.testing.assert_allclose(result.block(0).values.compute(), expected, rtol=1e-9, atol=1e-11)
