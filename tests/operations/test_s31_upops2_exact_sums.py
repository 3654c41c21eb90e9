"""Reductions add rows and columns in metatensor's order, bit for bit, and reductions of
empty blocks give metatensor's labels.

metatensor adds each row (or column) of a group into zeros, one after the other. Groups
of ``[1e16, 1, -1e16, 1]`` tell the orders apart: 1 added one by one, 0 when the last
three are added first (as ``np.add.reduceat`` does).
"""

from __future__ import annotations

import dask.array as da
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

CANCELLING = np.array([1e16, 1.0, -1e16, 1.0])
REDUCTIONS = ["sum", "mean", "var", "std"]


def _labels(module, names: list[str], rows) -> object:
    return module.Labels(names, np.asarray(rows, dtype=np.int32).reshape(-1, len(names)))


def _block(module, values: np.ndarray, samples, properties, rows_per_chunk=None):
    """A block of ``values`` with one ``positions`` gradient row per sample, all with
    respect to the same atom: dense gradients, whose reductions metatensor gets right."""
    components = [_labels(module, ["xyz"], [[0], [1]])]
    gradient_values = np.stack([2 * values, -values], axis=1)
    if module is mtd and rows_per_chunk is not None:
        values = da.from_array(values, chunks=(rows_per_chunk, -1))
        gradient_values = da.from_array(gradient_values, chunks=(rows_per_chunk, -1, -1))
    block = module.TensorBlock(values, samples, [], properties)
    n = len(samples)
    gradient_samples = _labels(module, ["sample", "system", "atom"], [[s, 0, 0] for s in range(n)])
    block.add_gradient(
        "positions", module.TensorBlock(gradient_values, gradient_samples, components, properties)
    )
    return block


def _cancelling_rows(module, rows_per_chunk=None):
    """Two systems of four atoms whose rows, in each column, cancel as CANCELLING."""
    values = np.concatenate([CANCELLING, 3 * CANCELLING])[:, None] * np.array([1.0, -2.0, 5.0])
    samples = _labels(module, ["system", "atom"], [[s, a] for s in range(2) for a in range(4)])
    properties = _labels(module, ["p"], [[0], [1], [2]])
    return _block(module, values, samples, properties, rows_per_chunk)


def _cancelling_columns(module):
    """Columns grouped by ``p``, whose values cancel as CANCELLING in each group."""
    values = np.stack([CANCELLING, -CANCELLING, 7 * CANCELLING], axis=0).repeat(2, axis=1)
    values = np.concatenate([values, values[:, ::-1]], axis=0)
    samples = _labels(module, ["system", "atom"], [[s, 0] for s in range(6)])
    properties = _labels(module, ["p", "q"], [[p, q] for q in range(4) for p in range(2)])
    return _block(module, values, samples, properties)


def _compare(reduction: str, ours, theirs) -> None:
    """Values bit for bit; gradients too, but those of var and std, which follow
    another formula (equal in exact arithmetic)."""
    if reduction in ("var", "std"):
        ours, theirs = mtd.remove_gradients(ours), metatensor.remove_gradients(theirs)
    assert_equal_to_metatensor(ours, theirs)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("rows_per_chunk", [None, 4, 2])
def test_over_samples_adds_rows_one_by_one(reduction, rows_per_chunk):
    """One chunk (the grouped path of tiny blocks), a chunk per group (a task per
    chunk) and each group split across two chunks (``[1e16, 1]`` then ``[-1e16, 1]``,
    whose sums add up to 0) all give metatensor's bits."""
    ours = mtd.TensorMap(_labels(mtd, ["k"], [[0]]), [_cancelling_rows(mtd, rows_per_chunk)])
    theirs = metatensor.TensorMap(_labels(metatensor, ["k"], [[0]]), [_cancelling_rows(metatensor)])
    function = f"{reduction}_over_samples"
    result = getattr(mtd, function)(ours, "atom")
    expected = getattr(metatensor, function)(theirs, "atom")
    _compare(reduction, result, expected)
    if reduction == "sum":
        # one by one: 1e16 + 1 rounds to 1e16, minus 1e16 is 0, plus 1 is 1
        np.testing.assert_array_equal(result.block(0).values.compute()[0, :2], [1.0, -2.0])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_over_properties_adds_columns_one_by_one(reduction):
    ours = mtd.TensorMap(_labels(mtd, ["k"], [[0]]), [_cancelling_columns(mtd)])
    theirs = metatensor.TensorMap(
        _labels(metatensor, ["k"], [[0]]), [_cancelling_columns(metatensor)]
    )
    function = f"{reduction}_over_properties"
    _compare(
        reduction, getattr(mtd, function)(ours, "q"), getattr(metatensor, function)(theirs, "q")
    )


def _empty(module, axis: str):
    """A block of no samples or of no properties, with two dimensions on that axis."""
    if axis == "samples":
        samples = module.Labels(["s_1", "s_2"], np.zeros((0, 2), dtype=np.int32))
        properties = _labels(module, ["p"], [[0]])
        values = np.zeros((0, 1))
    else:
        samples = _labels(module, ["s"], [[0]])
        properties = module.Labels(["p_1", "p_2"], np.zeros((0, 2), dtype=np.int32))
        values = np.zeros((1, 0))
    block = module.TensorBlock(values, samples, [], properties)
    return module.TensorMap(module.Labels.single(), [block])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("axis", ["samples", "properties"])
@pytest.mark.parametrize("reduced", [["s_1", "s_2"], ["s_1"]])
@pytest.mark.parametrize("suffix", ["", "_block"])
def test_empty_axis_keeps_the_remaining_names(reduction, axis, reduced, suffix):
    """Reducing some dimensions of an axis of a map of empty blocks (or of an empty
    block) keeps the others, as metatensor does; reducing every one leaves ``_`` with no
    entry, where metatensor leaves labels without dimensions (which ``metatensor.load``
    refuses once saved)."""
    if axis == "properties":
        reduced = [name.replace("s_", "p_") for name in reduced]
    function = f"{reduction}_over_{axis}{suffix}"
    ours, theirs = _empty(mtd, axis), _empty(metatensor, axis)
    if suffix:
        ours, theirs = ours.block(0), theirs.block(0)
    result = getattr(mtd, function)(ours, reduced)
    if len(reduced) == 1:
        assert_equal_to_metatensor(result, getattr(metatensor, function)(theirs, reduced))
    else:
        block = result if suffix else result.block(0)
        labels = getattr(block, axis)
        assert labels.names == ["_"] and len(labels) == 0
