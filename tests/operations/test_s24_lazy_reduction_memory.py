"""Reductions over samples to few groups (every sample name, or a name such as
``"system"`` whose groups each span the whole block) hold their large gradient output
a few times at most while writing it. Their merged gradient has nearly one row per
input row, in one output chunk (co-partitioned with a few value rows), far larger than
the input chunks: partial sums each as large as that chunk, summed in a tree, held
about sixteen of them at once.

The most memory allocated at any time (``tracemalloc``, which counts numpy's arrays)
is compared with the bytes of the output gradient, under the synchronous scheduler."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import dask
import dask.array as da
import metatensor
import numpy as np
import pytest
from oracle2 import chunks_at_the_configured_size

import metatensor_dask as mtd
from metatensor_dask._partition import gradient_row_chunks, row_pointer

N_SAMPLES = 4000
ROWS_PER_CHUNK = 50
PROPERTIES = 16


def _labels(names: list[str], values: np.ndarray) -> metatensor.Labels:
    return metatensor.Labels(names, np.asarray(values, dtype=np.int32).reshape(-1, len(names)))


def _theirs() -> metatensor.TensorBlock:
    """A block of ``N_SAMPLES`` samples ``(system, atom)`` (8 atoms per system), two
    ``positions`` gradient rows per sample."""
    rng = np.random.default_rng(7)
    index = np.arange(N_SAMPLES)
    samples = np.stack([index // 8, index % 8], axis=1)
    properties = _labels(["p"], np.arange(PROPERTIES))
    block = metatensor.TensorBlock(
        rng.standard_normal((N_SAMPLES, PROPERTIES)),
        _labels(["system", "atom"], samples),
        [],
        properties,
    )
    rows = np.repeat(index, 2)
    neighbour = (samples[rows, 1] + np.tile([0, 1], N_SAMPLES)) % 8
    gradient_samples = np.stack([rows, samples[rows, 0], neighbour], axis=1)
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            rng.standard_normal((2 * N_SAMPLES, 3, PROPERTIES)),
            _labels(["sample", "system", "atom"], gradient_samples),
            [metatensor.Labels.range("xyz", 3)],
            properties,
        ),
    )
    return block


def _chunked(theirs: metatensor.TensorBlock) -> mtd.TensorBlock:
    """``theirs`` in rows of ``ROWS_PER_CHUNK`` samples, gradients co-partitioned."""
    ours = mtd.from_metatensor(theirs)
    chunks = (ROWS_PER_CHUNK,) * (N_SAMPLES // ROWS_PER_CHUNK)
    block = mtd.TensorBlock(
        da.asarray(ours.values).rechunk({0: chunks}), ours.samples, [], ours.properties
    )
    gradient = ours.gradient("positions")
    pointer = row_pointer(gradient.samples.column("sample"), N_SAMPLES)
    rows = gradient_row_chunks(pointer, chunks)
    block.add_gradient(
        "positions",
        mtd.TensorBlock(
            da.asarray(gradient.values).rechunk({0: rows}),
            gradient.samples,
            gradient.components,
            gradient.properties,
        ),
    )
    return block


@pytest.fixture(scope="module")
def blocks(tmp_path_factory) -> tuple[metatensor.TensorBlock, mtd.TensorBlock]:
    """Metatensor's block and ours in chunks, once a reduction of ours was written: the
    first write of a process imports modules and fills caches, which the peak of the
    test run first counted (the sum to eight groups peaked at 3.99 times its gradient
    run first, 3.4 times after another)."""
    theirs = _theirs()
    ours = _chunked(theirs)
    warm_up = mtd.TensorMap(mtd.Labels.single(), [mtd.sum_over_samples_block(ours, "atom")])
    with dask.config.set(scheduler="sync"):
        mtd.to_zarr(warm_up, tmp_path_factory.mktemp("warm-up") / "summed.zarr")
    return theirs, ours


def _peak_while_writing(tensor: mtd.TensorMap, store: Path) -> int:
    """The most memory allocated while ``tensor`` is written to ``store``."""
    with dask.config.set(scheduler="sync"):
        tracemalloc.start()
        try:
            mtd.to_zarr(tensor, store)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()


#: The most memory allocated while writing, in output gradients: the output and the
#: arrays computed from it by the reduction (a quotient, a square root: a few more for
#: ``var``, ``std``); the partial sums of a tree held about sixteen.
MOST = {"sum": 4, "mean": 10, "var": 10, "std": 10}


#: Every reduction to one group (every sample name) and to eight (``"system"``), but
#: ``var`` to eight: its gradient is ``std``'s centred sums (checked to eight groups)
#: divided by the counts as ``mean``'s (checked to eight groups), times two (checked to
#: one group), and ``var`` to eight took a third of this module's time.
CASES = [
    *(pytest.param(reduction, ["system", "atom"], id=f"one-{reduction}") for reduction in MOST),
    *(
        pytest.param(reduction, ["system"], id=f"eight-{reduction}")
        for reduction in ("sum", "mean", "std")
    ),
]


@pytest.mark.parametrize(("reduction", "names"), CASES)
def test_gradient_of_few_groups_held_a_few_times(blocks, reduction, names, tmp_path):
    theirs, ours = blocks
    with chunks_at_the_configured_size():
        reduced = getattr(mtd, f"{reduction}_over_samples_block")(ours, names)
    gradient = reduced.gradient("positions").values
    # one output chunk per group (co-partitioned with its value row), each many times
    # as large as an input chunk: the case at hand
    assert gradient.numblocks[0] == reduced.values.numblocks[0] == len(reduced.samples)
    assert min(gradient.chunks[0]) > 5 * ROWS_PER_CHUNK
    tensor = mtd.TensorMap(mtd.Labels.single(), [reduced])
    peak = _peak_while_writing(tensor, tmp_path / "reduced.zarr")
    assert peak < MOST[reduction] * gradient.nbytes, (peak, gradient.nbytes)
    _check_written(mtd.open_zarr(tmp_path / "reduced.zarr"), theirs, reduction, names)


def _check_written(
    written: mtd.TensorMap, theirs: metatensor.TensorBlock, reduction: str, names: list[str]
) -> None:
    """Values as metatensor's; gradients of ``sum`` as metatensor's, of ``mean`` as
    metatensor's sums divided by the samples of each group (metatensor divides by the
    rows merged, see the operations' docs), of ``var`` and ``std`` as those of the
    block in one chunk."""
    block = mtd.to_metatensor(written).block()
    expected = getattr(metatensor, f"{reduction}_over_samples_block")(theirs, names)
    np.testing.assert_allclose(block.values, expected.values, rtol=1e-12)
    gradient = block.gradient("positions")
    if reduction in ("sum", "mean"):
        summed = metatensor.sum_over_samples_block(theirs, names).gradient("positions")
        assert gradient.samples == summed.samples
        group_size = N_SAMPLES / len(block.samples)
        scale = 1.0 if reduction == "sum" else 1.0 / group_size
        np.testing.assert_allclose(gradient.values, summed.values * scale, rtol=1e-12)
    else:
        whole = mtd.from_metatensor(theirs)
        one_chunk = getattr(mtd, f"{reduction}_over_samples_block")(whole, names)
        reference = one_chunk.gradient("positions").values.compute()
        np.testing.assert_allclose(gradient.values, reference, rtol=1e-10, atol=1e-14)


@pytest.mark.xdist_group("serial")
@pytest.mark.parametrize("processes", [False, True])
def test_chained_sums_on_a_cluster(blocks, processes):
    """Tasks adding into the array of the previous task, run by threads sharing it or by
    processes receiving copies, give metatensor's sums."""
    from distributed import Client, LocalCluster

    theirs, ours = blocks
    reduced = mtd.sum_over_samples_block(ours, ["system"]).gradient("positions").values
    expected = metatensor.sum_over_samples_block(theirs, ["system"]).gradient("positions")
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=2,
            processes=processes,
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as client,
    ):
        computed = client.compute(reduced).result()
    np.testing.assert_allclose(computed, expected.values, rtol=1e-12)
