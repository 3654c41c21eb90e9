"""Gradients carried by the manipulations (join, slice, split, sort, keys and
components moved, dimensions changed), on generated maps (see
``test_s24_grad_support``): checked by finite differences of real perturbations of the
inputs, and against metatensor-operations on the same data."""

from __future__ import annotations

import metatensor
import numpy as np
import pytest
from test_s24_grad_support import check_finite_differences, chunked, generated, structure

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

SEEDS = [0, 1, 2]


def _maps(seed: int, n_components: int | None = None):
    rng = np.random.default_rng(seed)
    theirs = generated(rng, structure(rng, n_components))
    return rng, theirs, chunked(rng, theirs)


def _check(ours, theirs, inputs, expected_inputs) -> None:
    """``ours(*inputs)`` equals ``theirs(*expected_inputs)`` and its gradients are
    the derivatives of its values."""
    result, expected = ours(*inputs), theirs(*expected_inputs)
    if isinstance(result, list):
        assert len(result) == len(expected)
        for mine, other in zip(result, expected, strict=True):
            assert_equal_to_metatensor(mine, other)
    else:
        assert_equal_to_metatensor(result, expected)
    check_finite_differences(ours, inputs)


def _another(rng, theirs, same_samples: bool):
    """A map of the same keys, components and properties as ``theirs``, with other
    values and gradient rows (and other samples unless ``same_samples``)."""
    meta = structure(rng, len(theirs.block(0).components))
    meta["keys"] = theirs.keys
    meta["components"] = list(theirs.block(0).components)
    meta["properties"] = theirs.block(0).properties
    blocks = meta["blocks"]
    blocks = (blocks * len(theirs.keys))[: len(theirs.keys)]
    if same_samples:
        blocks = [
            ([list(s) for s in block.samples.values], gradients)
            for block, (_, gradients) in zip(theirs.blocks(), blocks, strict=True)
        ]
        # gradient rows of this map's samples only
        blocks = [
            (samples, {p: [r for r in rows if r[0] < len(samples)] for p, rows in g.items()})
            for samples, g in blocks
        ]
    meta["blocks"] = blocks
    other = generated(rng, meta)
    return other, chunked(rng, other)


@pytest.mark.parametrize("seed", SEEDS)
def test_join_along_samples(seed):
    rng, first, a = _maps(seed)
    second, b = _another(rng, first, same_samples=False)
    _check(
        lambda x, y: mtd.join([x, y], "samples", add_dimension="tensor"),
        lambda x, y: metatensor.join([x, y], "samples", add_dimension="tensor"),
        [a, b],
        [first, second],
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_join_along_properties_with_other_gradient_rows(seed):
    """The gradient samples of the result are the union of the inputs'."""
    rng, first, a = _maps(seed)
    second, b = _another(rng, first, same_samples=True)
    _check(
        lambda x, y: mtd.join([x, y], "properties", add_dimension="tensor"),
        lambda x, y: metatensor.join([x, y], "properties", add_dimension="tensor"),
        [a, b],
        [first, second],
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_slice_and_split(seed):
    _, first, a = _maps(seed)
    atoms = np.array([[1], [2]], dtype=np.int32)
    _check(
        lambda x: mtd.slice(x, "samples", mtd.Labels(["atom"], atoms)),
        lambda x: metatensor.slice(x, "samples", metatensor.Labels(["atom"], atoms)),
        [a],
        [first],
    )
    kept = np.array([[2], [0]], dtype=np.int32)
    _check(
        lambda x: mtd.slice(x, "properties", mtd.Labels(["q"], kept)),
        lambda x: metatensor.slice(x, "properties", metatensor.Labels(["q"], kept)),
        [a],
        [first],
    )
    systems = [np.array([[0]]), np.array([[2], [1]])]
    _check(
        lambda x: mtd.split(x, "samples", [mtd.Labels(["system"], s) for s in systems]),
        lambda x: metatensor.split(
            x, "samples", [metatensor.Labels(["system"], s) for s in systems]
        ),
        [a],
        [first],
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_sort(seed):
    """metatensor-operations 0.5.0 fails on gradients without rows: compared on the
    maps whose gradients all have rows."""
    _, first, a = _maps(seed)
    descending = mtd.sort(a, descending=True)
    check_finite_differences(lambda x: mtd.sort(x, descending=True), [a])
    if all(len(g.samples) for b in first.blocks() for _, g in b.gradients()):
        assert_equal_to_metatensor(descending, metatensor.sort(first, descending=True))


@pytest.mark.parametrize("seed", SEEDS)
def test_keys_to_samples_and_properties(seed):
    _, first, a = _maps(seed)
    _check(lambda x: x.keys_to_samples("k"), lambda x: x.keys_to_samples("k"), [a], [first])
    # blocks of different samples: zeros where a block has no such sample
    _check(lambda x: x.keys_to_properties("k"), lambda x: x.keys_to_properties("k"), [a], [first])


@pytest.mark.parametrize("seed", SEEDS)
def test_components_to_properties(seed):
    """Moving the first of one or two components (metatensor-core 0.2.6 mixes up the
    components left in place when two or more of them have more than one entry)."""
    _, first, a = _maps(seed, n_components=1 + seed % 2)
    if seed % 2 == 0:
        expected = first.components_to_properties("c0")
        assert_equal_to_metatensor(a.components_to_properties("c0"), expected)
    check_finite_differences(lambda x: x.components_to_properties("c0"), [a])


@pytest.mark.parametrize("seed", SEEDS)
def test_dimensions_changed(seed):
    _, first, a = _maps(seed)
    for axis in ["samples", "properties"]:
        _check(
            lambda x, axis=axis: mtd.insert_dimension(x, axis, 1, "new", 5),
            lambda x, axis=axis: metatensor.insert_dimension(x, axis, 1, "new", 5),
            [a],
            [first],
        )
        _check(
            lambda x, axis=axis: mtd.permute_dimensions(x, axis, [1, 0]),
            lambda x, axis=axis: metatensor.permute_dimensions(x, axis, [1, 0]),
            [a],
            [first],
        )
    # the "q" entries are distinct: "p" can go
    _check(
        lambda x: mtd.remove_dimension(x, "properties", "p"),
        lambda x: metatensor.remove_dimension(x, "properties", "p"),
        [a],
        [first],
    )
