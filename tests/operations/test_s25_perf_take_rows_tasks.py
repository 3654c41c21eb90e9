"""Merging blocks whose samples differ costs a few tasks per array, not a shuffle.

``keys_to_properties`` places each block's rows among the merged samples (rows it does
not have are filled) and ``keys_to_samples`` interleaves the rows of the merged blocks:
both take rows in an order dask's fancy indexing turned into a shuffle (every input
chunk split for every output chunk). Each output chunk now reads only the chunks its
rows come from, in one task. The blocks are above the size of tiny blocks (grouped
otherwise) so that their rows are taken one array at a time.
"""

from __future__ import annotations

import dask
import metatensor
import numpy as np
import pytest
from dask.utils import key_split

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes


def _block(rng: np.random.Generator, systems: int) -> metatensor.TensorBlock:
    """Samples ``(system, atom)``: a random subset of ``systems`` x 6 atoms, sorted;
    a positions gradient of 1 to 3 rows per sample."""
    every = np.array([(s, a) for s in range(systems) for a in range(6)], dtype=np.int32)
    samples = every[np.sort(rng.choice(len(every), size=len(every) // 2, replace=False))]
    block = metatensor.TensorBlock(
        rng.normal(size=(len(samples), 3, 8)),
        metatensor.Labels(["system", "atom"], samples),
        [metatensor.Labels.range("c", 3)],
        metatensor.Labels.range("p", 8),
    )
    counts = rng.integers(1, 4, size=len(samples))
    rows = np.repeat(np.arange(len(samples)), counts)
    atoms = np.concatenate([np.arange(count) for count in counts])
    gradient_samples = np.stack([rows, samples[rows, 0], atoms], 1)
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            rng.normal(size=(len(rows), 3, 3, 8)),
            metatensor.Labels(["sample", "system", "atom"], gradient_samples.astype(np.int32)),
            [metatensor.Labels.range("xyz", 3), metatensor.Labels.range("c", 3)],
            metatensor.Labels.range("p", 8),
        ),
    )
    return block


def _tensor(seed: int) -> metatensor.TensorMap:
    rng = np.random.default_rng(seed)
    keys = np.array([(a, b) for a in range(3) for b in range(4)], dtype=np.int32)
    blocks = [_block(rng, 500) for _ in keys]
    return metatensor.TensorMap(metatensor.Labels(["a", "b"], keys), blocks)


@pytest.mark.parametrize("chunks", [None, 500])
@pytest.mark.parametrize("move", ["keys_to_properties", "keys_to_samples"])
def test_merging_blocks_takes_rows_without_a_shuffle(
    move: str, chunks: int | None, tmp_path
) -> None:
    reference = _tensor(seed=len(move) + (chunks or 0))
    if chunks is None:
        tensor = mtd.from_metatensor(reference)
    else:
        metatensor.save(tmp_path / "data.mts", reference)
        tensor = mtd.load(tmp_path / "data.mts", chunks=chunks)
    with raise_if_dask_computes():
        result = getattr(tensor, move)("b")
    names = {key_split(key) for key in dict(result.__dask_graph__())}
    assert not {name for name in names if "shuffle" in name}
    assert "gather-rows" in names
    assert_equal_to_metatensor(dask.compute(result)[0], getattr(reference, move)("b"))
