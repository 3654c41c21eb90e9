"""Maps whose blocks are in several row chunks, for the tests of the arithmetic operations on
chunked blocks (``test_chunked_general.py``).

* :func:`featomic_like`: a metatensor-core map of four blocks (11, 0, 7 and 5 samples),
  values with exact zeros, a ``positions`` gradient of zero to five rows per sample (none
  at all in the third block), ``strain`` and ``cell`` gradients with two
  gradient-specific components each (``cell`` rows in decreasing ``"sample"`` order);
* :func:`irregular`: its metatensor-dask copy in irregular row chunks (2, 5, 1, 3, ...),
  gradients co-partitioned where their rows are grouped by ``"sample"``;
* :func:`stored`: the same written to a Zarr store in chunks of a few rows, then
  opened;
* :func:`entry_finite_differences`: gradients checked by central finite differences
  for operations that merge gradient rows (reductions over samples).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import metatensor
import numpy as np

import metatensor_dask as mtd
from metatensor_dask._partition import gradient_row_chunks, row_pointer

#: gradient rows of each sample in the blocks of :func:`featomic_like`
ROWS_PER_SAMPLE = ([0, 2, 1, 3, 0, 0, 5, 0, 1, 2, 1], [], [0] * 7, [1] * 5)


def _labels(names: list[str], rows: list[list[int]]) -> metatensor.Labels:
    return metatensor.Labels(names, np.array(rows, dtype=np.int32).reshape(-1, len(names)))


def featomic_like(
    dtype: type = np.float64,
    seed: int = 0,
    grouped: bool = True,
    components: bool = True,
    n_properties: int = 4,
    gradients: tuple[str, ...] = ("positions", "strain", "cell"),
) -> metatensor.TensorMap:
    """The metatensor-core map described in the module docstring.

    ``grouped=False`` shuffles the ``positions`` rows of each block (metatensor allows
    any order), in the same order for every ``seed``; ``components`` gives values an
    ``o3_mu`` component of 3 entries.
    """
    rng = np.random.default_rng(seed)
    block_components = [metatensor.Labels.range("o3_mu", 3)] if components else []
    component_shape = [3] if components else []
    properties = _labels(["n"], [[2 * p + 1] for p in range(n_properties)])
    blocks = []
    for rows_per_sample in ROWS_PER_SAMPLE:
        n = len(rows_per_sample)
        samples = _labels(["system", "atom"], [[i // 3, i % 3] for i in range(n)])
        values = rng.uniform(-2, 2, (n, *component_shape, n_properties))
        values.reshape(-1)[::5] = 0.0
        block = metatensor.TensorBlock(values.astype(dtype), samples, block_components, properties)

        specs = []
        if "positions" in gradients:
            rows = [[s, s // 3, a] for s, count in enumerate(rows_per_sample) for a in range(count)]
            if not grouped:  # the same order whatever the seed of the values
                order = np.random.default_rng(len(blocks)).permutation(len(rows))
                rows = [rows[i] for i in order]
            specs.append(("positions", rows, ["sample", "system", "atom"], ["xyz"]))
        if "strain" in gradients:
            specs.append(("strain", [[s] for s in range(n)], ["sample"], ["xyz_2", "xyz_1"]))
        if "cell" in gradients:
            specs.append(("cell", [[s] for s in reversed(range(n))], ["sample"], ["abc", "xyz"]))
        for parameter, rows, names, extra in specs:
            shape = (len(rows), *[3] * len(extra), *component_shape, n_properties)
            block.add_gradient(
                parameter,
                metatensor.TensorBlock(
                    rng.uniform(-2, 2, shape).astype(dtype),
                    _labels(names, rows),
                    [*(metatensor.Labels.range(e, 3) for e in extra), *block_components],
                    properties,
                ),
            )
        blocks.append(block)
    return metatensor.TensorMap(_labels(["center_type"], [[1], [6], [7], [8]]), blocks)


def irregular_chunks(n: int) -> tuple[int, ...]:
    """Row chunks of 2, 5, 1, 3, 2, 5, ... rows (the last one cut) summing to ``n``."""
    if n == 0:
        return (0,)
    sizes, chunks = (2, 5, 1, 3), []
    while sum(chunks) < n:
        chunks.append(min(sizes[len(chunks) % 4], n - sum(chunks)))
    return tuple(chunks)


def irregular(theirs: metatensor.TensorMap) -> mtd.TensorMap:
    """``theirs`` as metatensor-dask, values in :func:`irregular_chunks`, gradients
    co-partitioned with them when grouped by ``"sample"``, else in irregular chunks."""
    blocks = []
    for block in theirs.blocks():
        values = np.asarray(block.values)
        chunks = irregular_chunks(len(values))
        new = mtd.TensorBlock(
            da.from_array(values, chunks=(chunks, *values.shape[1:])),
            mtd.from_metatensor(block.samples),
            [mtd.from_metatensor(c) for c in block.components],
            mtd.from_metatensor(block.properties),
        )
        for parameter in block.gradients_list():
            gradient = block.gradient(parameter)
            rows = np.asarray(gradient.values)
            pointer = row_pointer(np.asarray(gradient.samples.column("sample")), len(values))
            row_chunks = (
                irregular_chunks(len(rows))
                if pointer is None
                else gradient_row_chunks(pointer, chunks)
            )
            new.add_gradient(
                parameter,
                mtd.TensorBlock(
                    da.from_array(rows, chunks=(row_chunks, *rows.shape[1:])),
                    mtd.from_metatensor(gradient.samples),
                    [mtd.from_metatensor(c) for c in gradient.components],
                    mtd.from_metatensor(gradient.properties),
                ),
            )
        blocks.append(new)
    return mtd.TensorMap(mtd.from_metatensor(theirs.keys), blocks)


def stored(theirs: metatensor.TensorMap, path: Path, rows: int = 2) -> mtd.TensorMap:
    """``theirs`` written to a Zarr store at ``path`` in chunks of ``rows`` value rows,
    then opened (lazy: chunks are read when computed)."""
    mtd.to_zarr(irregular(theirs), path, mode="w", chunks=rows)
    return mtd.open_zarr(path)


def _extra_components(block: mtd.TensorBlock, parameter: str) -> int:
    return len(block.gradient(parameter).components) - len(block.components)


def _entry_derivative(
    block: mtd.TensorBlock, parameter: str, direction: dict[tuple, np.ndarray]
) -> np.ndarray:
    """The derivative of a computed block's values along ``direction``: one vector over
    the gradient-specific components per gradient entry (``"sample"`` left out)."""
    gradient = block.gradient(parameter)
    extra = _extra_components(block, parameter)
    result = np.zeros(block.values.shape, dtype=np.float64)
    rows = np.asarray(gradient.values, dtype=np.float64)
    for r, row in enumerate(gradient.samples.values):
        weights = direction[tuple(row[1:])]
        weights = weights.reshape(*weights.shape, *[1] * (rows.ndim - 1 - extra))
        result[row[0]] += (weights * rows[r]).sum(axis=tuple(range(extra)))
    return result


def entry_finite_differences(
    function: Callable[[mtd.TensorMap], mtd.TensorMap],
    tensor: mtd.TensorMap,
    parameter: str,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-7,
) -> None:
    """Check the ``parameter`` gradients of ``function(tensor)`` by central finite
    differences, for functions that merge gradient rows.

    Each gradient entry (a gradient sample without its ``"sample"``) is one parameter
    (a vector over the gradient-specific components) shared by the rows that have it:
    the values move by ``eps`` along a random direction in that space, keeping their
    chunks, and the change of the output values must match the output gradients
    contracted with the same direction.
    """
    entry_finite_differences_together([(function, tensor, parameter)], eps, rtol, atol)


def _entry_directions(computed: mtd.TensorMap, parameter: str) -> dict[tuple, np.ndarray]:
    """A random direction for each ``parameter`` gradient entry of ``computed``."""
    rng = np.random.default_rng(7)
    direction: dict[tuple, np.ndarray] = {}
    for block in computed.blocks():
        gradient = block.gradient(parameter)
        shape = gradient.values.shape[1 : 1 + _extra_components(block, parameter)]
        for row in gradient.samples.values:
            direction.setdefault(tuple(row[1:]), rng.uniform(-1, 1, shape))
    return direction


def values_moved(
    tensor: mtd.TensorMap, computed: Any, shift: Callable[[Any], np.ndarray]
) -> mtd.TensorMap:
    """``tensor`` with the values of each block moved by ``shift(computed_block)``
    (``computed``: ``tensor`` computed, metatensor's or ours), in the same chunks, with
    the same labels and gradients."""
    blocks = []
    for block, lazy in zip(computed.blocks(), tensor.blocks(), strict=True):
        values = np.asarray(block.values, np.float64) + shift(block)
        new = mtd.TensorBlock(
            da.from_array(values.astype(lazy.values.dtype), chunks=lazy.values.chunks),
            lazy.samples,
            lazy.components,
            lazy.properties,
        )
        for name, gradient in lazy.gradients():
            new.add_gradient(name, gradient)
        blocks.append(new)
    return mtd.TensorMap(tensor.keys, blocks)


def entry_finite_differences_together(
    checks: list[tuple[Callable[[mtd.TensorMap], mtd.TensorMap], mtd.TensorMap, str]],
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-7,
) -> None:
    """:func:`entry_finite_differences` of each ``(function, tensor, parameter)`` of
    ``checks``, in two ``dask.compute``: one of the tensors, one of every result and
    every moved result's values."""
    tensors = {id(tensor): tensor for _, tensor, _ in checks}
    computed = dict(zip(tensors, dask.compute(*tensors.values()), strict=True))
    directions = [_entry_directions(computed[id(t)], p) for _, t, p in checks]
    lazy = []
    for (function, tensor, parameter), direction in zip(checks, directions, strict=True):
        steps = [
            values_moved(
                tensor,
                computed[id(tensor)],
                lambda block, step=step, direction=direction, parameter=parameter: (
                    step * _entry_derivative(block, parameter, direction)
                ),
            )
            for step in (eps, -eps)
        ]
        # only the values of the moved results are compared
        moved = [[block.values for block in function(t).blocks()] for t in steps]
        lazy.append((function(tensor), *moved))
    (results,) = dask.compute(lazy)
    for (_, _, parameter), direction, (result, plus, minus) in zip(
        checks, directions, results, strict=True
    ):
        for block, up, down in zip(result.blocks(), plus, minus, strict=True):
            finite = (up.astype(np.float64) - down.astype(np.float64)) / (2 * eps)
            analytic = _entry_derivative(block, parameter, direction)
            np.testing.assert_allclose(finite, analytic, rtol=rtol, atol=atol)
