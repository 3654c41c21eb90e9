"""Operations on stores larger than a chunk keep their chunks bounded by the
``chunk-size`` setting, whatever the store's size: no task of an operation may build
an output chunk that grows with the number of samples."""

from __future__ import annotations

from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest

import metatensor_dask as mtd

TARGET = "16KiB"
PROPERTIES = 8


def _labels(names: list[str], values: np.ndarray) -> mtd.Labels:
    return mtd.Labels(names, np.asarray(values, dtype=np.int32).reshape(-1, len(names)))


def _stored(path: Path, n_samples: int) -> mtd.TensorMap:
    """A stored map of one block: systems of 8 atoms, one ``positions`` gradient row
    per sample, opened lazily."""
    index = np.arange(n_samples)
    samples = _labels(["system", "atom"], np.stack([index // 8, index % 8], 1))
    properties = _labels(["n"], np.arange(PROPERTIES))
    rng = da.random.default_rng(0)
    block = mtd.TensorBlock(
        rng.standard_normal((n_samples, PROPERTIES), chunks=(256, PROPERTIES)),
        samples,
        [],
        properties,
    )
    rows = np.stack([index, index // 8, index % 8], 1)
    block.add_gradient(
        "positions",
        mtd.TensorBlock(
            rng.standard_normal((n_samples, 3, PROPERTIES), chunks=(256, 3, PROPERTIES)),
            _labels(["sample", "system", "atom"], rows),
            [_labels(["xyz"], np.arange(3))],
            properties,
        ),
    )
    with dask.config.set({"metatensor_dask.chunk-size": TARGET, "scheduler": "sync"}):
        mtd.TensorMap(_labels(["k"], [0]), [block]).to_zarr(path, chunks=TARGET)
        return mtd.open_zarr(path)


def _largest_chunk(array: da.Array) -> int:
    row = array.dtype.itemsize * int(np.prod(array.shape[1:]))
    return max(array.chunks[0]) * row


@pytest.mark.xfail(
    strict=True,
    reason="a reduction keeps all the gradient rows of one output sample in one chunk; "
    "reducing over 'system' leaves a few samples (the atoms) that each hold a share "
    "of every system's gradient rows, so that chunk grows with the store",
)
@pytest.mark.parametrize("reduction", ["sum", "var"])
def test_reducing_over_a_dimension_every_chunk_shares_keeps_gradient_chunks_bounded(
    tmp_path, reduction
):
    reduce = getattr(mtd, f"{reduction}_over_samples")
    for n_samples in (1024, 4096):
        tensor = _stored(tmp_path / f"{n_samples}.zarr", n_samples)
        with dask.config.set({"metatensor_dask.chunk-size": TARGET}):
            gradient = reduce(tensor, "system").block(0).gradient("positions").values
        budget = _largest_chunk(tensor.block(0).gradient("positions").values)
        assert _largest_chunk(gradient) <= budget, (n_samples, _largest_chunk(gradient), budget)
