"""Property: appending a random sequence of batches, with or without ``renumber``, reads
back as metatensor's join of the (renumbered) batches, values and gradients."""

from __future__ import annotations

import tempfile
from pathlib import Path

import dask
import metatensor
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from test_zarr_append import join, shifted
from test_zarr_append_codecs import CODECS, codec_settings

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor, strategies


def _batch(tensor: metatensor.TensorMap, picked: list[list[int] | None]) -> metatensor.TensorMap:
    """The samples ``picked[i]`` (positions, in order) of block ``i`` of ``tensor``;
    blocks picked ``None`` are left out (their key is not in the batch)."""
    keys, blocks = [], []
    for i, rows in enumerate(picked):
        if rows is None:
            continue
        block = tensor.block(i)
        selection = metatensor.Labels(
            block.samples.names, np.array(block.samples.values)[rows].reshape(-1, 2)
        )
        blocks.append(metatensor.slice_block(block, "samples", selection))
        keys.append(np.array(tensor.keys.values[i]))
    names = tensor.keys.names
    values = np.array(keys, np.int32).reshape(-1, len(names))
    return metatensor.TensorMap(metatensor.Labels(names, values), blocks)


@st.composite
def _appends(draw: st.DrawFn):
    """1 to 4 batches of the samples of a tensor (keys present or not, blocks possibly
    without rows), the renumbering of each append, its rows per chunk, and the codecs
    of the store."""
    tensor = draw(
        strategies.tensor_maps(max_blocks=3, max_samples=7, dtypes=(np.float64, np.float32))
    )
    core = mtd.to_metatensor(tensor)
    n_batches = draw(st.integers(1, 4))
    kind = draw(st.sampled_from(["none", "int", "next"]))
    batches, renumbers = [], []
    if kind == "none":
        # each sample goes to one batch at most: the batches never repeat a sample, in
        # any order (later batches may sort before the stored samples)
        owners = [
            draw(st.lists(st.integers(-1, n_batches - 1), min_size=n, max_size=n))
            for n in (len(block.samples) for block in core.blocks())
        ]
    for k in range(n_batches):
        picked: list[list[int] | None] = []
        for i, block in enumerate(core.blocks()):
            if not draw(st.booleans()):
                picked.append(None)
            elif kind == "none":
                picked.append([j for j, owner in enumerate(owners[i]) if owner == k])
            else:
                n = len(block.samples)
                subset = draw(st.sets(st.integers(0, n - 1), max_size=n)) if n else set()
                picked.append(sorted(subset))
        batches.append(_batch(core, picked))
        renumbers.append(None if kind == "none" else ("next" if kind == "next" else 100 * k))
    chunks = [draw(st.integers(1, 4)) for _ in range(n_batches)]
    return batches, renumbers, chunks, draw(st.sampled_from(sorted(CODECS)))


def _largest_system(batches: list[metatensor.TensorMap]) -> int:
    """The largest ``system`` of the samples of ``batches``, -1 without samples."""
    found = [
        int(np.max(np.array(block.samples.column("system"))))
        for batch in batches
        for block in batch.blocks()
        if len(block.samples)
    ]
    return max(found, default=-1)


@given(_appends())
def test_appended_batches_read_as_their_join(appends):
    batches, renumbers, chunks, codecs = appends
    expected_batches = []
    with tempfile.TemporaryDirectory() as folder, dask.config.set(codec_settings(codecs)):
        path = Path(folder) / "t.zarr"
        for batch, renumber, rows in zip(batches, renumbers, chunks, strict=True):
            if renumber is None:
                stored = batch
                mtd.from_metatensor(batch).to_zarr(path, append_dim="samples", chunks=rows)
            else:
                offset = _largest_system(expected_batches) + 1 if renumber == "next" else renumber
                stored = shifted(batch, offset)
                mtd.from_metatensor(batch).to_zarr(
                    path, append_dim="samples", chunks=rows, renumber={"system": renumber}
                )
            expected_batches.append(stored)
        report = mtd.verify(path)
        assert report.ok, report.problems
        result = mtd.open_zarr(path).compute()
        present = [batch for batch in expected_batches if len(batch)]
        if not present:
            assert len(result) == 0
            return
        assert_equal_to_metatensor(result, join(present))
