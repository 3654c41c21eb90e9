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
from collections.abc import Callable
from pathlib import Path

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd

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
