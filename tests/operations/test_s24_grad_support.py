"""Generated maps with gradients, and their finite differences, for the
``test_s24_grad_*`` tests (this module holds no test).

:func:`generated` gives a metatensor-core map of one to three blocks (the later ones
may have no sample), zero to two components of shuffled entries, properties of two
dimensions in shuffled order, values with exact zeros, and three gradients:

* ``positions`` (samples ``sample, system, atom``, a ``xyz`` component): zero to three
  rows per sample, so some samples have none and others several;
* ``strain`` (samples ``sample``, components ``xyz_1, xyz_2`` of 3 entries each): a
  row for most samples only;
* ``alpha`` (samples ``sample, field``, no component of its own).

Gradient rows are grouped by ``"sample"`` or shuffled. :func:`chunked` gives the
metatensor-dask copy in random chunks along every axis (chunks of zero entries
included), gradients co-partitioned with their values or not; :func:`stored` writes it
to a Zarr store and opens it.

:func:`check_finite_differences` is the reference for gradients: each gradient entry
(a gradient sample without its ``"sample"``, e.g. one atom's position) is one
parameter, a vector over the gradient-specific components, shared by every block and
every input that has it. Every differentiable input moves along one random direction
in that space, as a real perturbation would move it, and the change of the output
values must equal the output gradients contracted with that direction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

import dask
import dask.array as da
import metatensor
import numpy as np
from chunked_arithmetic_maps import values_moved

import metatensor_dask as mtd
from metatensor_dask._partition import gradient_row_chunks, row_pointer

PARAMETERS = ("positions", "strain", "alpha")


def labels(names: list[str], rows: Any) -> metatensor.Labels:
    array = np.array(rows, dtype=np.int32).reshape(-1, len(names))
    return metatensor.Labels(names, array)


def _gradient_rows(rng: np.random.Generator, parameter: str, samples: list) -> list:
    rows = []
    for s, (system, _) in enumerate(samples):
        if parameter == "strain":
            rows += [[s]] if rng.random() < 0.8 else []
        elif parameter == "positions":
            atoms = rng.choice(4, int(rng.integers(0, 4)), replace=False)
            rows += [[s, system, int(a)] for a in atoms]
        else:
            fields = rng.choice(3, int(rng.integers(0, 3)), replace=False)
            rows += [[s, int(f)] for f in fields]
    if rng.random() < 0.5:
        rows = [rows[i] for i in rng.permutation(len(rows))]
    return rows


_GRADIENT_LABELS = {
    "positions": (["sample", "system", "atom"], ["xyz"]),
    "strain": (["sample"], ["xyz_1", "xyz_2"]),
    "alpha": (["sample", "field"], []),
}


def structure(
    rng: np.random.Generator, n_components: int | None = None, n_blocks: int | None = None
) -> dict:
    """Random metadata: keys, components, properties, and per block the samples and
    the gradient samples of each parameter."""
    if n_components is None:
        n_components = int(rng.integers(0, 3))
    components = [
        labels([f"c{i}"], rng.permutation(int(rng.integers(1, 4)))) for i in range(n_components)
    ]
    n_properties = int(rng.integers(1, 5))
    properties = labels(
        ["p", "q"], [[int(rng.integers(0, 3)), i] for i in rng.permutation(n_properties)]
    )
    blocks = []
    n_blocks = int(rng.integers(1, 4)) if n_blocks is None else n_blocks
    for b in range(n_blocks):
        n = int(rng.integers(0 if b else 1, 8))
        systems, atoms = rng.integers(0, 3, n), rng.integers(0, 4, n)
        pairs = {(int(s), int(a)) for s, a in zip(systems, atoms, strict=True)}
        samples = [list(p) for p in sorted(pairs)]
        rng.shuffle(samples)
        gradients = {p: _gradient_rows(rng, p, samples) for p in PARAMETERS}
        blocks.append((samples, gradients))
    keys = labels(["k"], [[3 * b + 1] for b in range(n_blocks)])
    return {"keys": keys, "components": components, "properties": properties, "blocks": blocks}


def generated(
    rng: np.random.Generator,
    meta: dict,
    dtype: type = np.float64,
    positive: bool = False,
    zeros: float = 0.2,
) -> metatensor.TensorMap:
    """A metatensor map of metadata ``meta`` with random values (``positive``: in
    [0.5, 2.5), else in [-2, 2) with a fraction ``zeros`` of exact zeros)."""
    components, properties = meta["components"], meta["properties"]
    shape = [len(c) for c in components] + [len(properties)]
    blocks = []
    for samples, gradients in meta["blocks"]:
        values = rng.uniform(-2, 2, (len(samples), *shape))
        values = np.abs(values) + 0.5 if positive else values
        values[rng.random(values.shape) < zeros] = 0.0
        block = metatensor.TensorBlock(
            values.astype(dtype), labels(["system", "atom"], samples), components, properties
        )
        for parameter, rows in gradients.items():
            names, extra = _GRADIENT_LABELS[parameter]
            own = [labels([e], [[0], [1], [2]]) for e in extra]
            gradient = rng.uniform(-1, 1, (len(rows), *[3] * len(extra), *shape))
            block.add_gradient(
                parameter,
                metatensor.TensorBlock(
                    gradient.astype(dtype), labels(names, rows), own + components, properties
                ),
            )
        blocks.append(block)
    return metatensor.TensorMap(meta["keys"], blocks)


def _random_chunks(rng: np.random.Generator, n: int) -> tuple[int, ...]:
    chunks: list[int] = []
    while sum(chunks) < n:
        chunks.append(min(int(rng.integers(0, 4)), n - sum(chunks)))
    return tuple(chunks) or (0,)


def _chunked_array(rng: np.random.Generator, array: np.ndarray) -> da.Array:
    return da.from_array(array, chunks=tuple(_random_chunks(rng, n) for n in array.shape))


def chunked(rng: np.random.Generator, theirs: metatensor.TensorMap) -> mtd.TensorMap:
    """``theirs`` as metatensor-dask in random chunks along every axis; gradient rows
    grouped by ``"sample"`` are co-partitioned with the values most of the time."""
    blocks = []
    for block in theirs.blocks():
        values = _chunked_array(rng, np.asarray(block.values))
        new = mtd.TensorBlock(
            values,
            mtd.from_metatensor(block.samples),
            [mtd.from_metatensor(c) for c in block.components],
            mtd.from_metatensor(block.properties),
        )
        for parameter, gradient in block.gradients():
            rows = _chunked_array(rng, np.asarray(gradient.values))
            column = np.asarray(gradient.samples.column("sample"))
            pointer = row_pointer(column, len(block.samples))
            if pointer is not None and len(column) and rng.random() < 0.7:
                rows = rows.rechunk({0: gradient_row_chunks(pointer, values.chunks[0])})
            new.add_gradient(
                parameter,
                mtd.TensorBlock(
                    rows,
                    mtd.from_metatensor(gradient.samples),
                    [mtd.from_metatensor(c) for c in gradient.components],
                    mtd.from_metatensor(gradient.properties),
                ),
            )
        blocks.append(new)
    return mtd.TensorMap(mtd.from_metatensor(theirs.keys), blocks)


def stored(rng: np.random.Generator, theirs: metatensor.TensorMap, path: Path) -> mtd.TensorMap:
    """:func:`chunked` written to a Zarr store at ``path`` in chunks of 1 to 3 rows,
    then opened (read when computed)."""
    mtd.to_zarr(chunked(rng, theirs), path, mode="w", chunks=int(rng.integers(1, 4)))
    return mtd.open_zarr(path)


def _entry(names: list[str], row: np.ndarray) -> tuple:
    return tuple((n, int(v)) for n, v in zip(names, row, strict=True) if n != "sample")


def _own_components(block: Any, parameter: str) -> int:
    return len(block.gradient(parameter).components) - len(block.components)


def _directions(rng: np.random.Generator, maps: list, parameter: str) -> dict:
    result: dict[tuple, np.ndarray] = {}
    for tensor in maps:
        for block in tensor.blocks():
            gradient = block.gradient(parameter)
            shape = tuple(len(c) for c in gradient.components[: _own_components(block, parameter)])
            for row in np.asarray(gradient.samples.values):
                entry = _entry(gradient.samples.names, row)
                result.setdefault(entry, rng.uniform(-1, 1, shape))
    return result


def derivative(block: Any, parameter: str, direction: dict) -> np.ndarray:
    """The derivative of a metatensor block's values along ``direction`` (a vector
    per gradient entry), from its ``parameter`` gradient."""
    gradient = block.gradient(parameter)
    own = _own_components(block, parameter)
    # the gradient-specific components have entries 0, 1, 2: index the direction by
    # their values, which follows an operation that reorders them
    entries = np.ix_(*[np.asarray(c.values)[:, 0] for c in gradient.components[:own]])
    rows = np.asarray(gradient.values, dtype=np.float64)
    result = np.zeros(np.asarray(block.values).shape)
    for r, row in enumerate(np.asarray(gradient.samples.values)):
        weights = direction[_entry(gradient.samples.names, row)][entries]
        weights = weights.reshape(*weights.shape, *[1] * (rows.ndim - 1 - own))
        result[row[0]] += (weights * rows[r]).sum(axis=tuple(range(own)))
    return result


def _moved(
    t: mtd.TensorMap, theirs: metatensor.TensorMap, parameter: str, direction: dict, step: float
) -> mtd.TensorMap:
    """``t`` (computed: ``theirs``) with its values moved by ``step`` along
    ``direction``."""
    return values_moved(t, theirs, lambda block: step * derivative(block, parameter, direction))


def _as_list(result: Any) -> list:
    return result if isinstance(result, list) else [result]


def _values(result: Any) -> list:
    """The lazy values of every block of ``result`` (a map or a list of maps)."""
    return [block.values for tensor in _as_list(result) for block in tensor.blocks()]


def check_finite_differences(
    function: Callable[..., Any],
    inputs: list[mtd.TensorMap],
    differentiable: list[bool] | None = None,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-7,
) -> None:
    """Check the gradients of ``function(*inputs)`` (a map or a list of maps) for
    every parameter of the first input, by central finite differences (see the module
    docstring).

    The result is computed whole (its gradients are the ones checked); of the moved
    inputs' results only the values are needed, and they are computed in one
    ``dask.compute`` for every parameter and both steps.
    """
    differentiable = differentiable or [True] * len(inputs)
    result = [mtd.to_metatensor(t) for t in _as_list(function(*inputs))]
    blocks = [(key, block) for tensor in result for key, block in tensor.items()]
    moving = [t for t, d in zip(inputs, differentiable, strict=True) if d]
    computed = {id(t): mtd.to_metatensor(t) for t in moving}
    rng = np.random.default_rng(11)
    directions = {
        p: _directions(rng, [computed[id(t)] for t in moving], p)
        for p in inputs[0].block(0).gradients_list()
    }

    def at(step: float, parameter: str) -> list:
        moved = [
            _moved(t, computed[id(t)], parameter, directions[parameter], step) if d else t
            for t, d in zip(inputs, differentiable, strict=True)
        ]
        return _values(function(*moved))

    (steps,) = dask.compute({p: (at(eps, p), at(-eps, p)) for p in directions})
    for parameter, (plus, minus) in steps.items():
        for (key, block), after, before in zip(blocks, plus, minus, strict=True):
            np.testing.assert_allclose(
                derivative(block, parameter, directions[parameter]),
                (after.astype(np.float64) - before.astype(np.float64)) / (2 * eps),
                rtol=rtol,
                atol=atol,
                err_msg=f"gradient '{parameter}' of block {key}",
            )


class Check(NamedTuple):
    """One check of :func:`check_together`: ``function(*inputs)`` equals ``expected``
    (a metatensor map, within ``tolerance``) unless it is None, and its gradients pass
    :func:`check_finite_differences` with the keyword arguments ``differences`` unless
    they are None."""

    function: Callable[..., Any]
    inputs: list[mtd.TensorMap]
    expected: metatensor.TensorMap | None = None
    tolerance: Mapping[str, float] = MappingProxyType({})
    differences: Mapping[str, Any] | None = MappingProxyType({})


def _moving(check: Check) -> list[mtd.TensorMap]:
    if check.differences is None:
        return []
    differentiable = check.differences.get("differentiable") or [True] * len(check.inputs)
    return [t for t, d in zip(check.inputs, differentiable, strict=True) if d]


def _steps(check: Check, computed: dict) -> tuple[dict, dict]:
    """The directions of every parameter, and the lazy values of ``check.function``
    at both steps along them (see :func:`check_finite_differences`)."""
    options = check.differences or {}
    differentiable = options.get("differentiable") or [True] * len(check.inputs)
    eps = options.get("eps", 1e-6)
    rng = np.random.default_rng(11)
    directions = {
        p: _directions(rng, [computed[id(t)] for t in _moving(check)], p)
        for p in check.inputs[0].block(0).gradients_list()
    }

    def at(step: float, parameter: str) -> list:
        moved = [
            _moved(t, computed[id(t)], parameter, directions[parameter], step) if d else t
            for t, d in zip(check.inputs, differentiable, strict=True)
        ]
        return _values(check.function(*moved))

    return directions, {p: (at(eps, p), at(-eps, p)) for p in directions}


def _assert_differences(check: Check, result: list, directions: dict, steps: dict) -> None:
    options = check.differences or {}
    eps = options.get("eps", 1e-6)
    blocks = [(key, block) for tensor in result for key, block in tensor.items()]
    for parameter, (plus, minus) in steps.items():
        for (key, block), after, before in zip(blocks, plus, minus, strict=True):
            np.testing.assert_allclose(
                derivative(block, parameter, directions[parameter]),
                (after.astype(np.float64) - before.astype(np.float64)) / (2 * eps),
                rtol=options.get("rtol", 1e-5),
                atol=options.get("atol", 1e-7),
                err_msg=f"gradient '{parameter}' of block {key}",
            )


def check_together(checks: list[Check]) -> None:
    """Every one of ``checks``, in two ``dask.compute``: one of the inputs that move,
    one of every result and every moved result's values. The same comparisons as
    ``assert_equal_to_metatensor`` and :func:`check_finite_differences` one by one."""
    from metatensor_dask.testing import assert_equal_to_metatensor

    inputs = {id(t): t for check in checks for t in _moving(check)}
    computed = dict(zip(inputs, dask.compute(*inputs.values()), strict=True))
    computed = {k: mtd.to_metatensor(t) for k, t in computed.items()}
    lazy = [_as_list(check.function(*check.inputs)) for check in checks]
    steps = [_steps(c, computed) if c.differences is not None else ({}, {}) for c in checks]
    results, values = dask.compute(lazy, [s for _, s in steps])
    for check, result, (directions, _), moved in zip(checks, results, steps, values, strict=True):
        if check.expected is not None:
            (ours,) = result
            assert_equal_to_metatensor(ours, check.expected, **check.tolerance)
        _assert_differences(check, [mtd.to_metatensor(t) for t in result], directions, moved)
