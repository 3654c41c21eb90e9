"""Helpers for the tests of Operations II (manipulation, selection, reductions, keys).

* :func:`tutorial`: the tutorial data as (metatensor-dask, metatensor) pairs, chunked
  one sample per chunk so that every operation crosses chunk boundaries;
* :func:`densified`: a metatensor map whose sparse gradients get explicit zero rows,
  so metatensor-operations' mean/var/std normalization (by merged rows) is right;
* :func:`finite_differences`: checks an operation's gradients numerically;
* :func:`assert_co_partitioned`, :func:`max_chunk`, :func:`largest_chunk_bytes`:
  structural checks of chunking; :func:`chunks_at_the_configured_size`, for the checks
  of chunks bounded by the inputs' largest;
* :func:`big_block`, :func:`check_out_of_core`: chunk sizes and graph growth of an
  operation on a one-block tensor of many chunks;
* :func:`assert_same_error`: run ours and metatensor's, compare type and message;
* :func:`check_against_metatensor`, :func:`check_function`: lazy results equal to
  metatensor's, inputs unmodified.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dask
import dask.array as da
import metatensor
import numpy as np

# one copy of the error comparison, shared with the model's tests
from metatensor_compare import (
    assembled,
    assert_same_error,  # noqa: F401  (re-exported)
)

import metatensor_dask as mtd
from metatensor_dask._partition import gradient_row_chunks, row_pointer
from metatensor_dask.datasets import tutorial_file


def rechunked(tensor: mtd.TensorMap, rows: int = 1) -> mtd.TensorMap:
    """``tensor`` with values chunked every ``rows`` samples and gradients co-partitioned."""
    blocks = []
    for block in tensor.blocks():
        values = da.asarray(block.values).rechunk({0: rows})
        gradients = {}
        for parameter, gradient in block.gradients():
            pointer = row_pointer(gradient.samples.column("sample"), len(block))
            array = da.asarray(gradient.values)
            if pointer is not None and len(gradient.samples):
                array = array.rechunk({0: gradient_row_chunks(pointer, values.chunks[0])})
            gradients[parameter] = mtd.TensorBlock(
                array, gradient.samples, gradient.components, gradient.properties
            )
        blocks.append((values, block.samples, block.components, block.properties, gradients))
    return assembled(tensor.keys, blocks, tensor.info())


def tutorial(name: str, rows: int = 1) -> tuple[mtd.TensorMap, Any]:
    """(ours, metatensor's) for ``radial-spectrum`` or ``spherical-expansion``."""
    theirs = metatensor.load(tutorial_file(f"{name}.npz"))
    return rechunked(mtd.from_metatensor(theirs), rows), theirs


def to_mts(tensor: Any) -> Any:
    return mtd.to_metatensor(tensor)


def densified(tensor: Any, reduced: list[str]) -> Any:
    """A metatensor map where, inside each group of samples sharing the dimensions not
    in ``reduced``, every sample has a gradient row (zeros when missing) for every
    non-``sample`` gradient entry that any sample of the group has."""
    blocks = []
    for block in tensor.blocks():
        names = block.samples.names
        kept = [names.index(n) for n in names if n not in reduced]
        samples = np.asarray(block.samples.values)
        _, group = np.unique(samples[:, kept], axis=0, return_inverse=True)
        group = group.reshape(-1)
        new = metatensor.TensorBlock(
            np.array(block.values), block.samples, block.components, block.properties
        )
        for parameter, gradient in block.gradients():
            rows = np.asarray(gradient.samples.values)
            values = np.array(gradient.values)
            present = {tuple(r) for r in rows}
            extra = set()
            for g in np.unique(group):
                members = np.flatnonzero(group == g)
                others = {tuple(r[1:]) for r in rows if group[r[0]] == g}
                for s in members:
                    for other in others:
                        if (s, *other) not in present:
                            extra.add((s, *other))
            all_rows = np.concatenate(
                [rows, np.array(sorted(extra), np.int32).reshape(-1, rows.shape[1])]
            )
            zeros = np.zeros((len(extra), *values.shape[1:]), values.dtype)
            all_values = np.concatenate([values, zeros])
            order = np.lexsort(all_rows.T[::-1])
            new.add_gradient(
                parameter,
                metatensor.TensorBlock(
                    all_values[order],
                    metatensor.Labels(gradient.samples.names, all_rows[order]),
                    gradient.components,
                    gradient.properties,
                ),
            )
        blocks.append(new)
    return metatensor.TensorMap(tensor.keys, blocks)


def _displaced(tensor: mtd.TensorMap, parameter: str, entry: tuple, step: float) -> mtd.TensorMap:
    """Values moved by ``step`` along the gradient rows whose non-``sample`` entries are
    ``entry`` (the values as functions of one scalar per gradient entry)."""
    blocks = []
    for block in tensor.blocks():
        values = np.array(block.values, dtype=np.float64)
        gradient = block.gradient(parameter)
        rows = gradient.samples.values
        gradient_values = np.asarray(gradient.values)
        for r, row in enumerate(rows):
            if tuple(row[1:]) == entry:
                values[row[0]] += step * gradient_values[r]
        blocks.append(mtd.TensorBlock(values, block.samples, block.components, block.properties))
    return mtd.TensorMap(tensor.keys, blocks)


def finite_differences(
    function: Callable[[mtd.TensorMap], mtd.TensorMap],
    tensor: mtd.TensorMap,
    parameter: str,
    step: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-8,
) -> None:
    """Check ``function``'s ``parameter`` gradient against central finite differences.

    ``tensor``'s gradient must have no gradient-specific components, so that each
    gradient entry (the gradient sample without ``"sample"``) is one scalar parameter.
    """
    tensor = tensor.compute()
    result = function(tensor).compute()
    entries = sorted(
        {tuple(r[1:]) for b in tensor.blocks() for r in b.gradient(parameter).samples.values}
    )
    assert entries, "no gradient rows to check"
    for entry in entries:
        plus = function(_displaced(tensor, parameter, entry, step)).compute()
        minus = function(_displaced(tensor, parameter, entry, -step)).compute()
        for block, up, down in zip(result.blocks(), plus.blocks(), minus.blocks(), strict=True):
            numeric = (np.asarray(up.values) - np.asarray(down.values)) / (2 * step)
            analytic = np.zeros_like(numeric)
            gradient = block.gradient(parameter)
            for r, row in enumerate(gradient.samples.values):
                if tuple(row[1:]) == entry:
                    analytic[row[0]] += np.asarray(gradient.values)[r]
            np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol)


def max_chunk(array: Any) -> int:
    return max([0, *array.chunks[0]])


def largest_chunk_bytes(tensor: mtd.TensorMap) -> int:
    """Bytes of the largest chunk of the values and gradients of ``tensor``."""
    largest = 0
    for block in tensor.blocks():
        for array in [block.values, *(g.values for _, g in block.gradients())]:
            array = da.asarray(array)
            row_bytes = array.dtype.itemsize * int(np.prod(array.shape[1:]))
            largest = max(largest, max(array.chunks[0]) * row_bytes)
    return largest


def chunks_at_the_configured_size() -> Any:
    """A context in which the configured chunk size is below any chunk: an operation
    that may fill its output chunks up to the configured size, or to the inputs'
    largest chunk when larger, then bounds them by the inputs' largest alone. The
    tests of that bound use chunks of a few rows to stand for chunks of the configured
    size (64 MiB by default), which outputs of many times their size would not fit in
    a worker's memory."""
    return dask.config.set({"metatensor_dask.chunk-size": 1})


def assert_co_partitioned(tensor: mtd.TensorMap) -> None:
    """Gradient chunk *i* holds the rows of values chunk *i*, for grouped gradients."""
    for block in tensor.blocks():
        for _, gradient in block.gradients():
            pointer = row_pointer(gradient.samples.column("sample"), len(block))
            if pointer is None or len(gradient.samples) == 0:
                continue
            expected = gradient_row_chunks(pointer, block.values.chunks[0])
            assert gradient.values.chunks[0] == expected, (gradient.values.chunks[0], expected)


def big_block(n_chunks: int, rows: int = 10, per_row: int = 3) -> mtd.TensorMap:
    """One block of ``n_chunks`` chunks of ``rows`` samples, with a ``positions``
    gradient of ``per_row`` rows per sample, co-partitioned with the values."""
    n = n_chunks * rows
    samples = mtd.Labels(["system", "atom"], np.stack([np.arange(n) // 4, np.arange(n) % 4], 1))
    properties = mtd.Labels.range("n", 5)
    values = da.random.default_rng(0).random((n, 5), chunks=(rows, 5))
    block = mtd.TensorBlock(values, samples, [], properties)
    gradient_samples = np.array([(s, s // 4, a) for s in range(n) for a in range(per_row)])
    gradient = da.random.default_rng(1).random(
        (len(gradient_samples), 3, 5), chunks=(rows * per_row, 3, 5)
    )
    block.add_gradient(
        "positions",
        mtd.TensorBlock(
            gradient,
            mtd.Labels(["sample", "system", "atom"], gradient_samples),
            [mtd.Labels.range("xyz", 3)],
            properties,
        ),
    )
    return mtd.TensorMap(mtd.Labels.single(), [block])


def check_out_of_core(
    operation: Callable[[mtd.TensorMap], mtd.TensorMap],
) -> dict[int, mtd.TensorMap]:
    """``operation`` on :func:`big_block` maps of 10 and 20 chunks: no output chunk
    (values or gradient) is larger than the input's, gradients stay co-partitioned, and
    the graph added grows linearly with the number of chunks. Returns the results by
    number of input chunks."""
    results, sizes = {}, {}
    for n_chunks in (10, 20):
        tensor = big_block(n_chunks)
        result = results[n_chunks] = operation(tensor)
        block, source = result.block(0), tensor.block(0)
        assert max_chunk(block.values) <= max_chunk(source.values)
        assert max_chunk(block.gradient("positions").values) <= max_chunk(
            source.gradient("positions").values
        )
        assert_co_partitioned(result)
        sizes[n_chunks] = len(dict(result.__dask_graph__())) - len(dict(tensor.__dask_graph__()))
    assert sizes[20] <= 2.2 * sizes[10]
    return results


def snapshot(tensor: mtd.TensorMap) -> Any:
    """A metatensor copy, to check later that an input was not modified."""
    return to_mts(tensor)


def check_against_metatensor(
    ours: Callable[[], Any],
    theirs: Callable[[], Any],
    inputs: list[mtd.TensorMap],
    rtol: float = 1e-12,
    atol: float = 1e-14,
) -> Any:
    """Build ``ours()`` without computing, compare it with ``theirs()`` (values and
    gradients), and check that the inputs were not modified. Returns our result."""
    from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes

    before = [snapshot(t) for t in inputs]
    with raise_if_dask_computes():
        result = ours()
    expected = theirs()
    if isinstance(result, list):
        assert len(result) == len(expected)
        for mine, other in zip(result, expected, strict=True):
            assert_equal_to_metatensor(mine, other, rtol=rtol, atol=atol)
    else:
        assert_equal_to_metatensor(result, expected, rtol=rtol, atol=atol)
    for tensor, copy in zip(inputs, before, strict=True):
        assert metatensor.equal(snapshot(tensor), copy), "the input was modified"
    return result


def check_function(
    function: str, ours: Any, theirs: Any, *args: Any, rtol: float = 1e-12, atol: float = 1e-14
) -> Any:
    """:func:`check_against_metatensor` for ``function(ours, *args)`` against
    metatensor's ``function(theirs, *args)``; ``ours`` must stay unmodified when it is a
    map. Returns our result."""
    return check_against_metatensor(
        lambda: getattr(mtd, function)(ours, *args),
        lambda: getattr(metatensor, function)(theirs, *args),
        [ours] if isinstance(ours, mtd.TensorMap) else [],
        rtol=rtol,
        atol=atol,
    )
