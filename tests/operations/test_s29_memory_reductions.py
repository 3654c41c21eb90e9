"""Reductions over a sample dimension that every chunk shares keep their chunks within
the input's largest: reducing atoms over ``"system"`` leaves as many gradient rows as
before, and all of them landed in the one chunk of the few reduced values (a block's
whole gradient in one task, beyond a worker's memory limit). The gradient rows of one
reduced sample stay together."""

import dask
import metatensor
import numpy as np
from oracle2 import chunks_at_the_configured_size, largest_chunk_bytes

import metatensor_dask as mtd
from metatensor_dask.datasets import featomic_like
from metatensor_dask.testing import assert_equal_to_metatensor


def _largest_group(tensor: metatensor.TensorMap) -> int:
    """Bytes of the gradient rows of the reduced sample that has the most of them."""
    largest = 0
    for block in tensor.blocks():
        for _, gradient in block.gradients():
            rows = np.bincount(np.asarray(gradient.samples.column("sample")))
            row_bytes = gradient.values.dtype.itemsize * int(np.prod(gradient.values.shape[1:]))
            largest = max(largest, int(rows.max(initial=0)) * row_bytes)
    return largest


def _std_positions_gradient(tensor: metatensor.TensorMap) -> list[np.ndarray]:
    """For each block, the positions gradient of the standard deviation over
    ``"system"`` by its formula: ``(x - mean) dx / (std n)`` summed over the samples of
    each group (metatensor divides by the rows merged instead of ``n``, which differ for
    gradients that not every sample has)."""
    expected = []
    for block in tensor.blocks():
        values, atoms = block.values, np.asarray(block.samples.column("atom"))
        groups, group = np.unique(atoms, return_inverse=True)
        counts = np.bincount(group)
        mean = np.stack([values[group == g].mean(0) for g in range(len(groups))])
        std = np.sqrt(
            np.stack([((values[group == g] - mean[g]) ** 2).mean(0) for g in range(len(groups))])
        )
        gradient = block.gradient("positions")
        rows = np.asarray(gradient.samples.column("sample"))
        # each (group, system, atom) row comes from one sample: no two samples of a group
        # share a system
        order = np.lexsort(
            (gradient.samples.values[:, 2], gradient.samples.values[:, 1], group[rows])
        )
        g = group[rows][order]
        centered = (values[rows[order]] - mean[g])[:, None, :] * gradient.values[order]
        scale = (std[g] * counts[g, None])[:, None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            # 0 where a group has one sample (metatensor's rule)
            expected.append(np.where(scale == 0, 0, centered / scale))
    return expected


def test_reducing_a_shared_dimension_keeps_chunks_of_the_inputs_size():
    ours = featomic_like(6, 8, types=(1, 6), neighbors=(3, 6), chunks=4)
    with chunks_at_the_configured_size():
        reduced = mtd.sum_over_samples(ours, "system")
    theirs = metatensor.sum_over_samples(mtd.to_metatensor(ours), "system")
    assert largest_chunk_bytes(reduced) <= max(largest_chunk_bytes(ours), _largest_group(theirs))
    assert_equal_to_metatensor(reduced, theirs, rtol=1e-12, atol=1e-12)


def test_standard_deviation_over_a_shared_dimension_in_chunks_of_the_inputs_size():
    ours = featomic_like(6, 8, types=(1, 6), neighbors=(3, 6), chunks=4)
    with chunks_at_the_configured_size():
        reduced = mtd.std_over_samples(ours, "system")
    theirs = metatensor.std_over_samples(mtd.to_metatensor(ours), "system")
    assert largest_chunk_bytes(reduced) <= max(largest_chunk_bytes(ours), _largest_group(theirs))
    dense = mtd.remove_gradients(reduced, ["positions"])
    assert_equal_to_metatensor(
        dense, metatensor.remove_gradients(theirs, ["positions"]), rtol=1e-12, atol=1e-12
    )
    computed = [block.gradient("positions").values.compute() for block in reduced.blocks()]
    for actual, expected in zip(
        computed, _std_positions_gradient(mtd.to_metatensor(ours)), strict=True
    ):
        np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-12)


def _nbytes(result: object) -> int:
    if isinstance(result, tuple):
        return sum(part.nbytes for part in result)
    return result.nbytes


def test_partial_sums_hold_the_rows_they_add_into():
    # every input chunk (the atoms of one system) adds into a few rows of each output
    # chunk (an atom's gradient rows over all systems)
    ours = featomic_like(8, 8, types=(1,), neighbors=(3, 6), chunks=8)
    with chunks_at_the_configured_size():
        reduced = mtd.sum_over_samples(ours, "system")
    gradient = reduced.block().gradient("positions").values
    graph = dict(gradient.__dask_graph__())
    partials = [key for key in graph if str(key[0]).startswith("partial-")]
    assert len(partials) > 2 * gradient.numblocks[0]
    held = sum(_nbytes(result) for result in dask.get(graph, partials))
    assert held < 2 * gradient.nbytes, (held, gradient.nbytes)
    theirs = metatensor.sum_over_samples(mtd.to_metatensor(ours), "system")
    assert_equal_to_metatensor(reduced, theirs, rtol=1e-12, atol=1e-12)
