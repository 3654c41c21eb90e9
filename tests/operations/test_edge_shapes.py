"""Every public operation on edge-case block shapes and chunkings, against metatensor.

dask 2026.8 mishandles axes of length 0 or 1 split into several chunks (``(0, 1)``),
empty chunks under fancy indexing and ``x[int_array, None, :]``. The maps below have
blocks with 0 or 1 sample, a component axis of length 1, 0 or 1 property, gradients
with 0 rows, and values (and gradients) chunked with empty and length-1 chunks. Every
operation is run lazily on each map and compared with metatensor-operations on the
same data: Labels, values and every gradient; each output array's declared shape and
chunks are checked against what its tasks really compute.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import dask
import dask.array as da
import metatensor
import numpy as np
import pytest
from dask.core import flatten
from oracle import lazily
from oracle2 import densified

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


class Layout(NamedTuple):
    """A block layout: sizes, gradient rows per sample, and the values chunks."""

    rows: list[int]  # gradient rows of each sample (so the number of samples too)
    components: list[int]
    properties: int
    chunks: tuple[tuple[int, ...], ...]
    # the second block's gradient rows per sample and sample chunks, when they differ
    second: tuple[list[int], tuple[int, ...]] | None = None


LAYOUTS = {
    "zero-samples": Layout([], [2], 3, ((0, 0), (1, 1), (2, 1))),
    "one-sample": Layout([2], [2], 3, ((0, 1), (2,), (1, 2))),
    "one-sample-no-rows": Layout([0], [], 2, ((1, 0), (0, 2))),
    "component-1": Layout([1, 0, 2, 1], [1], 3, ((2, 2), (0, 1), (3,))),
    "one-property": Layout([1, 1, 1], [], 1, ((1, 0, 2), (0, 1))),
    "zero-properties": Layout([1, 2, 0], [2], 0, ((3,), (1, 1), (0, 0))),
    "gradient-zero-rows": Layout([0, 0, 0], [2], 2, ((1, 2), (2,), (2,))),
    "empty-chunks": Layout([2, 0, 1, 1, 2, 1], [2], 3, ((0, 1, 2, 0, 3), (1, 1), (0, 3))),
    "length-1-chunks": Layout([1, 2, 1], [1], 1, ((1, 1, 1), (1,), (1,))),
    "split-length-1": Layout([1, 0, 2], [1, 2], 1, ((0, 3), (1, 0), (2,), (0, 1, 0))),
    "empty-and-full": Layout([], [2], 2, ((0, 0), (2,), (1, 1)), ([1, 3, 0], (1, 0, 2))),
}


def _split(n: int) -> tuple[int, ...]:
    """Chunks for ``n`` gradient rows with an empty chunk and uneven sizes."""
    return (0, n // 2, n - n // 2) if n else (0,)


def _maps(
    layout: Layout, seed: int, positive: bool = False, reverse: bool = False
) -> tuple[Any, mtd.TensorMap]:
    """(metatensor, metatensor-dask) maps of two blocks (keys ``k``, ``t``) with
    ``layout``; samples ``(s, a)`` are in decreasing order so that sorting moves rows.
    ``reverse`` reverses the chunks along every axis (another chunking, same shape)."""
    if reverse:
        layout = layout._replace(chunks=tuple(c[::-1] for c in layout.chunks))
    rng = np.random.default_rng(seed)
    shape = (*layout.components, layout.properties)
    theirs, ours = [], []
    for index in range(2):
        if index and layout.second:
            rows, row_chunks = layout.second
            chunks = (row_chunks[::-1] if reverse else row_chunks, *layout.chunks[1:])
        else:
            rows, chunks = layout.rows, layout.chunks
        n = len(rows)
        order = np.arange(n)[::-1]
        sample_values = np.stack([order // 2, order % 2], axis=1).astype(np.int32)
        gradient_samples = np.array(
            [(s, *sample_values[s][:1], r) for s, count in enumerate(rows) for r in range(count)],
            dtype=np.int32,
        ).reshape(-1, 3)
        values = rng.random((n, *shape)) + (0.5 if positive else -0.5)
        gradient = rng.random((len(gradient_samples), 3, *shape)) - 0.5
        parts = []
        for module in (metatensor, mtd):
            components = [
                module.Labels([f"c{i}"], np.arange(size, dtype=np.int32).reshape(-1, 1))
                for i, size in enumerate(layout.components)
            ]
            properties = module.Labels(
                ["p"], np.arange(layout.properties, dtype=np.int32).reshape(-1, 1) * 2
            )
            xyz = module.Labels(["xyz"], np.arange(3, dtype=np.int32).reshape(-1, 1))
            if module is mtd:
                block_values = da.from_array(values, chunks=chunks)
                gradient_values = da.from_array(
                    gradient, chunks=(_split(len(gradient)), (1, 2), *chunks[1:])
                )
            else:
                block_values, gradient_values = values, gradient
            block = module.TensorBlock(
                block_values, module.Labels(["s", "a"], sample_values), components, properties
            )
            block.add_gradient(
                "positions",
                module.TensorBlock(
                    gradient_values,
                    module.Labels(["sample", "s", "atom"], gradient_samples),
                    [xyz, *components],
                    properties,
                ),
            )
            parts.append(block)
        theirs.append(parts[0])
        ours.append(parts[1])
    keys = np.array([[0, 0], [0, 1]], dtype=np.int32)
    return (
        metatensor.TensorMap(metatensor.Labels(["k", "t"], keys), theirs),
        mtd.TensorMap(mtd.Labels(["k", "t"], keys), ours),
    )


def _labels(module: Any, names: list[str], values: list[list[int]]) -> Any:
    return module.Labels(names, np.array(values, dtype=np.int32).reshape(-1, len(names)))


def _no_gradients(module: Any, tensor: Any) -> Any:
    return module.remove_gradients(tensor)


def _weights(module: Any, tensor: Any) -> Any:
    """A gradient-free map whose samples are ``tensor``'s properties (for ``dot``)."""
    blocks = []
    for block in tensor.blocks():
        n = len(block.properties)
        values = np.linspace(-1, 1, n * 2).reshape(2, n).T.copy() if n else np.zeros((0, 2))
        blocks.append(
            module.TensorBlock(
                np.ascontiguousarray(values.T),
                _labels(module, ["w"], [[0], [1]]),
                [],
                block.properties,
            )
        )
    return module.TensorMap(tensor.keys, blocks)


def _moved(module: Any, tensor: Any, name: str, dimension: str) -> Any:
    """``keys_to_*``/``components_to_properties``: functions here, methods in metatensor."""
    if module is mtd:
        return getattr(mtd, name)(tensor, dimension)
    return getattr(tensor, name)(dimension)


def _square(module: Any, tensor: Any) -> Any:
    """The first ``len(properties)`` samples of each block, without gradients, so
    that blocks without components are square (for ``solve``)."""
    tensor = module.remove_gradients(tensor)
    block = tensor.block(0)
    first = np.asarray(block.samples.values)[: len(block.properties)]
    return module.slice(tensor, "samples", module.Labels(block.samples.names, first))


# name -> f(module, a, b) with a, b maps of the same layout (b strictly positive)
OPERATIONS: dict[str, Callable[[Any, Any, Any], Any]] = {
    "add": lambda m, a, b: m.add(a, b),
    "add-scalar": lambda m, a, b: m.add(a, 1.5),
    "subtract": lambda m, a, b: m.subtract(a, b),
    "multiply": lambda m, a, b: m.multiply(a, b),
    "multiply-scalar": lambda m, a, b: m.multiply(a, -2.0),
    "divide": lambda m, a, b: m.divide(a, b),
    "divide-scalar": lambda m, a, b: m.divide(b, 4.0),
    "pow": lambda m, a, b: m.pow(b, 3),
    "pow-half": lambda m, a, b: m.pow(b, 0.5),
    "abs": lambda m, a, b: m.abs(a),
    "dot": lambda m, a, b: m.dot(a, _weights(m, a)),
    "sum_over_samples": lambda m, a, b: m.sum_over_samples(a, "a"),
    "mean_over_samples": lambda m, a, b: m.mean_over_samples(a, "a"),
    "var_over_samples": lambda m, a, b: m.var_over_samples(a, "a"),
    "std_over_samples": lambda m, a, b: m.std_over_samples(b, "a"),
    "sum_over_properties": lambda m, a, b: m.sum_over_properties(a, "p"),
    "mean_over_properties": lambda m, a, b: m.mean_over_properties(a, "p"),
    "var_over_properties": lambda m, a, b: m.var_over_properties(a, "p"),
    "std_over_properties": lambda m, a, b: m.std_over_properties(b, "p"),
    "slice-samples": lambda m, a, b: m.slice(a, "samples", _labels(m, ["a"], [[0]])),
    "slice-samples-none": lambda m, a, b: m.slice(a, "samples", _labels(m, ["a"], [[7]])),
    "slice-properties": lambda m, a, b: m.slice(a, "properties", _labels(m, ["p"], [[0]])),
    "split-samples": lambda m, a, b: m.split(
        a, "samples", [_labels(m, ["a"], [[1]]), _labels(m, ["a"], [[0]])]
    ),
    "split-properties": lambda m, a, b: m.split(
        a, "properties", [_labels(m, ["p"], [[2], [4]]), _labels(m, ["p"], [[0]])]
    ),
    "join-samples": lambda m, a, b: m.join([a, b], "samples", add_dimension="tensor"),
    "join-properties": lambda m, a, b: m.join([a, b], "properties", add_dimension="tensor"),
    "keys_to_samples": lambda m, a, b: _moved(m, a, "keys_to_samples", "t"),
    "keys_to_properties": lambda m, a, b: _moved(m, a, "keys_to_properties", "t"),
    "components_to_properties": lambda m, a, b: _moved(m, a, "components_to_properties", "c0"),
    "sort": lambda m, a, b: m.sort(a),
    "sort-samples-descending": lambda m, a, b: m.sort(a, "samples", descending=True),
    "remove_gradients": lambda m, a, b: m.remove_gradients(a),
    "zeros_like": lambda m, a, b: m.zeros_like(a),
    "ones_like": lambda m, a, b: m.ones_like(a, gradients=[]),
    "drop_empty_blocks": lambda m, a, b: m.drop_empty_blocks(a),
    "solve": lambda m, a, b: m.solve(_square(m, b), _square(m, a)),
    "append_dimension": lambda m, a, b: m.append_dimension(a, "samples", "new", 3),
    "insert_dimension": lambda m, a, b: m.insert_dimension(a, "properties", 0, "new", 1),
    "permute_dimensions": lambda m, a, b: m.permute_dimensions(a, "samples", [1, 0]),
    "remove_dimension": lambda m, a, b: m.remove_dimension(a, "keys", "k"),
    "rename_dimension": lambda m, a, b: m.rename_dimension(a, "properties", "p", "q"),
    "drop_blocks": lambda m, a, b: m.drop_blocks(a, _labels(m, ["t"], [[0]])),
    "filter_blocks": lambda m, a, b: m.filter_blocks(a, _labels(m, ["t"], [[1]])),
    "detach": lambda m, a, b: m.detach(a),
    "join-union": lambda m, a, b: m.join(
        [a, m.drop_blocks(b, _labels(m, ["t"], [[0]]))],
        "samples",
        different_keys="union",
        add_dimension="tensor",
    ),
    "make_contiguous": lambda m, a, b: m.make_contiguous(a),
    "lstsq": lambda m, a, b: m.lstsq(a, b, rcond=1e-10),
    "lstsq-no-gradients": lambda m, a, b: m.lstsq(
        _no_gradients(m, a), _no_gradients(m, b), rcond=1e-12
    ),
}

# metatensor's mean/var/std over samples divide gradients by the number of merged
# gradient rows, which is wrong for sparse gradients (the math divides by the number
# of samples): the oracle runs on gradients densified with explicit zero rows
DENSIFIED = {"mean_over_samples", "var_over_samples", "std_over_samples"}
# results of numerical solvers and two-pass variances are compared with a tolerance
TOLERANT = {"lstsq", "lstsq-no-gradients", "pow-half", *DENSIFIED}
TOLERANT |= {"var_over_properties", "std_over_properties"}
ELEMENT_WISE = {"multiply", "divide", "pow", "pow-half", "abs"}


def _with_arrays(template: Any, arrays: Callable[[Any], tuple[Any, dict[str, Any]]]) -> Any:
    """A metatensor map with ``template``'s Labels and the arrays given, for each block,
    by ``arrays(block) -> (values, {parameter: gradient values})``."""
    blocks = []
    for block in template.blocks():
        values, gradients = arrays(block)
        new = metatensor.TensorBlock(values, block.samples, block.components, block.properties)
        for parameter, gradient in block.gradients():
            new.add_gradient(
                parameter,
                metatensor.TensorBlock(
                    gradients[parameter],
                    gradient.samples,
                    gradient.components,
                    gradient.properties,
                ),
            )
        blocks.append(new)
    return metatensor.TensorMap(template.keys, blocks)


def _spread_over_properties(tensor: Any, std: bool) -> Any:
    """var (or std) over all properties, from the definition:
    ``var = mean((x - mean(x))**2)``, ``d var = 2 mean((x - mean(x)) dx)``,
    ``d std = d var / (2 std)`` (0 where std is 0, as metatensor)."""
    template = metatensor.sum_over_properties(tensor, "p")
    inputs = {tuple(k): block for k, block in zip(tensor.keys, tensor.blocks(), strict=True)}

    def arrays(block: Any) -> tuple[Any, dict[str, Any]]:
        source = inputs[tuple(template.keys[template.blocks().index(block)])]
        x = np.asarray(source.values)
        centered = x - x.mean(axis=-1, keepdims=True)
        var = (centered**2).mean(axis=-1, keepdims=True)
        gradients = {}
        for parameter, gradient in source.gradients():
            rows = centered[np.asarray(gradient.samples.column("sample"))]
            rows = rows.reshape(
                len(rows), *([1] * (gradient.values.ndim - rows.ndim)), *rows.shape[1:]
            )
            d_var = 2 * (rows * np.asarray(gradient.values)).mean(axis=-1, keepdims=True)
            parents = np.sqrt(var)[np.asarray(gradient.samples.column("sample"))]
            parents = parents.reshape((*rows.shape[:-1], 1))
            # metatensor's convention: no gradient where std is 0 (a single property)
            d_std = np.divide(
                d_var,
                2 * parents,
                out=np.zeros_like(d_var),
                where=np.broadcast_to(parents > 0, d_var.shape),
            )
            gradients[parameter] = d_std if std else d_var
        return (np.sqrt(var) if std else var), gradients

    return _with_arrays(template, arrays)


def _sorted_samples(tensor: Any, descending: bool = False) -> Any:
    """Samples sorted by permuting value rows and renumbering gradient rows (keys,
    components and properties of these maps are already in increasing order)."""
    blocks = []
    for block in tensor.blocks():
        samples = np.asarray(block.samples.values)
        order = np.lexsort(samples.T[::-1])
        order = order[::-1] if descending else order
        new = metatensor.TensorBlock(
            np.asarray(block.values)[order],
            metatensor.Labels(block.samples.names, samples[order].reshape(-1, samples.shape[1])),
            block.components,
            block.properties,
        )
        renumbered = np.argsort(order)
        for parameter, gradient in block.gradients():
            rows = np.asarray(gradient.samples.values).copy()
            rows[:, 0] = renumbered[rows[:, 0]]
            by_row = np.lexsort(rows.T[::-1])
            by_row = by_row[::-1] if descending else by_row  # as metatensor
            new.add_gradient(
                parameter,
                metatensor.TensorBlock(
                    np.asarray(gradient.values)[by_row],
                    metatensor.Labels(gradient.samples.names, rows[by_row].reshape(rows.shape)),
                    gradient.components,
                    gradient.properties,
                ),
            )
        blocks.append(new)
    return metatensor.TensorMap(tensor.keys, blocks)


def _over_no_properties(tensor: Any) -> Any:
    """A reduction over all of zero properties: zero groups, so zero output columns
    (as metatensor reduces zero samples to zero samples), named ``_`` as the single
    column of a reduction over all properties (metatensor gives them no name, which
    ``metatensor.load`` refuses once saved)."""
    properties = metatensor.Labels(["_"], np.zeros((0, 1), dtype=np.int32))
    blocks = []
    for block in tensor.blocks():
        new = metatensor.TensorBlock(block.values, block.samples, block.components, properties)
        for parameter, gradient in block.gradients():
            new.add_gradient(
                parameter,
                metatensor.TensorBlock(
                    gradient.values, gradient.samples, gradient.components, properties
                ),
            )
        blocks.append(new)
    return metatensor.TensorMap(tensor.keys, blocks)


def _empty_weights(x: Any, y: Any) -> Any:
    """``lstsq`` of blocks without properties: weights of shape (0, 0)."""
    blocks = [
        metatensor.TensorBlock(np.zeros((0, 0)), block_y.properties, [], block_x.properties)
        for block_x, block_y in zip(x.blocks(), y.blocks(), strict=True)
    ]
    return metatensor.TensorMap(x.keys, blocks)


# Where metatensor-operations 0.5.0 is wrong (it raises), the oracle is the math:
# (layouts, operations) -> oracle(a, b) on the metatensor maps
UPSTREAM_BUGS: list[tuple[set[str], set[str], Callable[[Any, Any], Any]]] = [
    # sort: IndexError on blocks or gradients without rows, or without properties
    (
        {"zero-samples", "one-sample-no-rows", "gradient-zero-rows", "zero-properties"}
        | {"empty-and-full"},
        {"sort"},
        lambda a, b: _sorted_samples(a),
    ),
    (
        {"zero-samples", "one-sample-no-rows", "gradient-zero-rows", "empty-and-full"},
        {"sort-samples-descending"},
        lambda a, b: _sorted_samples(a, descending=True),
    ),
    # var/std over properties do not broadcast over components of length > 1
    (
        {"one-sample", "empty-chunks", "split-length-1", "empty-and-full"},
        {"var_over_properties"},
        lambda a, b: _spread_over_properties(a, False),
    ),
    (
        {"one-sample", "empty-chunks", "split-length-1", "empty-and-full"},
        {"std_over_properties"},
        lambda a, b: _spread_over_properties(b, True),
    ),
    # products and powers reshape to (..., 0) and fail without properties: the result
    # has the metadata of the inputs and empty arrays
    ({"zero-properties"}, ELEMENT_WISE, lambda a, b: a),
    # sums and moments over zero properties fail on the gradients' properties
    (
        {"zero-properties"},
        {f"{r}_over_properties" for r in ("sum", "mean", "var", "std")},
        lambda a, b: _over_no_properties(a),
    ),
    (
        {"zero-properties"},
        {"lstsq", "lstsq-no-gradients"},
        lambda a, b: _empty_weights(a, b),
    ),
]


def _theirs(layout: str, name: str, a: Any, b: Any) -> Any:
    for layouts, names, oracle in UPSTREAM_BUGS:
        if layout in layouts and name in names:
            with pytest.raises(Exception):  # noqa: B017 (any error: it is a bug)
                OPERATIONS[name](metatensor, a, b)
            return oracle(a, b)
    if name in DENSIFIED:
        a, b = densified(a, ["a"]), densified(b, ["a"])
    return OPERATIONS[name](metatensor, a, b)


def _arrays(tensor: mtd.TensorMap) -> list[Any]:
    arrays = []
    for block in tensor.blocks():
        arrays.append(block.values)
        arrays.extend(gradient.values for _, gradient in block.gradients())
    return arrays


def _chunk_tasks(array: Any) -> tuple[list[Any], dict]:
    """The keys of ``array``'s chunks and its graph, asserting one task per chunk."""
    assert isinstance(array, da.Array)
    keys = list(flatten(array.__dask_keys__()))
    graph = dict(array.__dask_graph__())
    assert len(keys) == int(np.prod(array.numblocks)), "missing chunks"
    assert all(key in graph for key in keys), "missing tasks"
    return keys, graph


def assert_arrays_are_sound_together(arrays: list[Any]) -> None:
    """Each of ``arrays`` has one task per chunk, and each task gives an array of the
    declared chunk shape (so the assembled array has the declared shape). The tasks of
    every array run in one ``dask.get``, the arrays are assembled in one
    ``dask.compute``."""
    _sound_chunks(arrays)
    for array, computed in zip(arrays, dask.compute(*arrays), strict=True):
        assert np.shape(computed) == array.shape


def assert_array_is_sound(array: Any) -> None:
    """``array`` is sound (see :func:`assert_arrays_are_sound_together`)."""
    assert_arrays_are_sound_together([array])


def assert_arrays_are_sound(tensor: mtd.TensorMap) -> None:
    """Every values and gradient array of ``tensor`` is sound (see
    :func:`assert_arrays_are_sound_together`)."""
    assert_arrays_are_sound_together(_arrays(tensor))


def _sound_chunks(arrays: list[Any]) -> list[list[Any]]:
    """The chunks of each of ``arrays``, in the order of their keys, from one
    ``dask.get`` of every chunk task, asserting each has its declared shape."""
    keys: list[list[Any]] = []
    graph: dict = {}
    for array in arrays:
        array_keys, array_graph = _chunk_tasks(array)
        keys.append(array_keys)
        graph.update(array_graph)
    chunks = iter(dask.get(graph, [key for array_keys in keys for key in array_keys]))
    result = []
    for array, array_keys in zip(arrays, keys, strict=True):
        result.append([next(chunks) for _ in array_keys])
        for key, chunk in zip(array_keys, result[-1], strict=True):
            expected = tuple(c[i] for c, i in zip(array.chunks, key[1:], strict=True))
            assert np.shape(chunk) == expected, (key, np.shape(chunk), expected)
    return result


def _assembled(array: Any, chunks: list[Any]) -> np.ndarray:
    """``array``'s value from its ``chunks`` (in the order of its keys)."""
    grid = np.empty(array.numblocks, dtype=object)
    for index, chunk in zip(np.ndindex(*array.numblocks), chunks, strict=True):
        grid[index] = np.asarray(chunk)
    assembled = np.block(grid.tolist()) if grid.size > 1 else grid.flat[0]
    assert assembled.shape == array.shape, (assembled.shape, array.shape)
    return assembled


def _block_with(block: Any, arrays: Any) -> Any:
    """``block`` with its values and gradients replaced by the next of ``arrays``."""
    new = mtd.TensorBlock(
        da.from_array(next(arrays), chunks=-1), block.samples, block.components, block.properties
    )
    for parameter, gradient in block.gradients():
        new.add_gradient(parameter, _block_with(gradient, arrays))
    return new


def assert_sound_and_equal_to_metatensor(
    ours: Any, theirs: Any, rtol: float = 0.0, atol: float = 0.0
) -> None:
    """:func:`assert_arrays_are_sound` and ``assert_equal_to_metatensor`` of ``ours``
    (a map or a block) in one computation: the arrays compared are the ones assembled
    from the chunk tasks that the soundness check runs."""
    as_map = ours if isinstance(ours, mtd.TensorMap) else None
    blocks = list(as_map.blocks()) if as_map is not None else [ours]
    arrays = [a for block in blocks for a in _arrays_of_block(block)]
    computed = iter(_assembled(a, c) for a, c in zip(arrays, _sound_chunks(arrays), strict=True))
    new_blocks = [_block_with(block, computed) for block in blocks]
    if as_map is None:
        assert_equal_to_metatensor(new_blocks[0], theirs, rtol=rtol, atol=atol)
        return
    result = mtd.TensorMap(as_map.keys, new_blocks)
    for key, value in as_map.info().items():
        result.set_info(key, value)
    assert_equal_to_metatensor(result, theirs, rtol=rtol, atol=atol)


def _arrays_of_block(block: Any) -> list[Any]:
    """The values of ``block`` then of each gradient (recursively), as
    :func:`_block_with` consumes them."""
    arrays = [block.values]
    for _, gradient in block.gradients():
        arrays.extend(_arrays_of_block(gradient))
    return arrays


def _compare(ours: Any, theirs: Any, tolerant: bool) -> None:
    if isinstance(ours, mtd.Labels):
        assert_equal_to_metatensor(ours, theirs)
        return
    assert isinstance(ours, mtd.TensorMap), type(ours)
    tolerance = {"rtol": 1e-9, "atol": 1e-12} if tolerant else {}
    assert_sound_and_equal_to_metatensor(ours, theirs, **tolerance)


@pytest.fixture(scope="module", params=list(LAYOUTS))
def pair(request: pytest.FixtureRequest) -> tuple[str, tuple, tuple]:
    layout = LAYOUTS[request.param]
    (a_theirs, a_ours), (b_theirs, b_ours) = _maps(layout, 0), _maps(layout, 1, True, True)
    return request.param, (a_ours, b_ours), (a_theirs, b_theirs)


def test_soundness_check_sees_chunks_of_the_wrong_shape():
    values = da.from_array(np.ones((3, 1)), chunks=((1, 2), (0, 1)))
    wrong = mtd.TensorMap(
        mtd.Labels.range("k", 1),
        [mtd.TensorBlock(values + 1.0, mtd.Labels.range("s", 3), [], mtd.Labels.range("p", 1))],
    )
    with pytest.raises(AssertionError):
        assert_arrays_are_sound(wrong)
    expected = metatensor.TensorMap(
        metatensor.Labels.range("k", 1),
        [
            metatensor.TensorBlock(
                np.full((3, 1), 2.0),
                metatensor.Labels.range("s", 3),
                [],
                metatensor.Labels.range("p", 1),
            )
        ],
    )
    with pytest.raises(AssertionError):
        assert_sound_and_equal_to_metatensor(wrong, expected)
    # the same map in chunks of their declared shape is sound and equal
    right = da.from_array(np.ones((3, 1)), chunks=((1, 2), (1,))) + 1.0
    block = mtd.TensorBlock(right, mtd.Labels.range("s", 3), [], mtd.Labels.range("p", 1))
    assert_sound_and_equal_to_metatensor(mtd.TensorMap(mtd.Labels.range("k", 1), [block]), expected)


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_operation_matches_metatensor(pair, name):
    layout, ours, theirs = pair
    try:
        expected = _theirs(layout, name, *theirs)
    except Exception as error:  # the same bad input must fail the same way here
        assert not isinstance(error, Warning), error  # a warning is no answer
        with pytest.raises(Exception) as raised:
            OPERATIONS[name](mtd, *ours)
        assert type(raised.value).__name__ == type(error).__name__, (raised.value, error)
        return
    result = lazily(lambda: OPERATIONS[name](mtd, *ours))
    if isinstance(result, list):
        assert len(result) == len(expected)
        for mine, other in zip(result, expected, strict=True):
            _compare(mine, other, name in TOLERANT)
    else:
        _compare(result, expected, name in TOLERANT)


# name -> f(module, a, b) giving Labels or booleans, compared as they are
QUERIES: dict[str, Callable[[Any, Any, Any], Any]] = {
    "unique_metadata-samples": lambda m, a, b: m.unique_metadata(a, "samples", "s"),
    "unique_metadata-gradient": lambda m, a, b: m.unique_metadata(
        a, "samples", ["atom"], "positions"
    ),
    "unique_metadata-properties": lambda m, a, b: m.unique_metadata(a, "properties", "p"),
    "equal-self": lambda m, a, b: m.equal(a, a),
    "equal-other": lambda m, a, b: m.equal(a, b),
    "allclose-self": lambda m, a, b: m.allclose(a, a),
    "allclose-other": lambda m, a, b: m.allclose(a, b),
    "equal_metadata": lambda m, a, b: m.equal_metadata(a, b),
    "is_contiguous": lambda m, a, b: m.is_contiguous(m.make_contiguous(a)),
    "one_hot": lambda m, a, b: m.one_hot(
        a.block(0).samples,
        _labels(m, ["s"], [[0], [1], [2], [3]]),
    ),
}


def test_fancy_indexing_of_values(pair):
    """The tutorial's ``values[gradient.samples["sample"], None, :]``, and a reversed
    selection of rows, over empty and length-1 chunks."""
    _, (ours, _), (theirs, _) = pair
    for mine, other in zip(ours.blocks(), theirs.blocks(), strict=True):
        rows = np.asarray(other.gradient("positions").samples.column("sample"))
        reversed_rows = np.arange(len(other.samples))[::-1]
        for index in [(rows, None, slice(None)), (reversed_rows,), (rows,)]:
            result = mine.values[index]
            assert_array_is_sound(result)
            np.testing.assert_array_equal(result.compute(), np.asarray(other.values)[index])


@pytest.mark.parametrize("name", list(QUERIES))
def test_query_matches_metatensor(pair, name):
    _, ours, theirs = pair
    expected = QUERIES[name](metatensor, *theirs)
    result = QUERIES[name](mtd, *ours)
    if isinstance(expected, metatensor.Labels):
        assert_equal_to_metatensor(result, expected)
    else:
        assert type(result) is type(expected)
        np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize(
    "name, oracle",
    [
        ("var_over_properties", lambda a: _spread_over_properties(a, False)),
        ("std_over_properties", lambda a: _spread_over_properties(a, True)),
        ("sort", _sorted_samples),
        ("sort-samples-descending", lambda a: _sorted_samples(a, descending=True)),
    ],
)
def test_math_oracles_agree_with_metatensor_where_it_works(name, oracle):
    theirs, _ = _maps(LAYOUTS["component-1"], 2, positive=True)
    expected = OPERATIONS[name](metatensor, theirs, theirs)
    result = oracle(theirs)
    assert metatensor.equal_metadata(result, expected)
    assert metatensor.allclose(result, expected, rtol=1e-12, atol=1e-14)
