"""Appending batches along samples when the first batch is small.

The first batch has 3, 0 and 2 samples in its three blocks (a rare species pair, a
key present without rows), every later batch ``ROWS`` samples per block (values
``(ROWS, 3, 4)``, positions and strain gradients). Three ways to the same store:

* ``one write``: the joined tensor written at once (``to_zarr(chunks=1000)``), the floor;
* ``appends``: the store created by the first append with ``chunks=1000``, which
  blocks keep as they grow;
* ``appends after a plain write``: the first batch written by a plain
  ``to_zarr(chunks=1000)``, whose chunks are capped to each block's rows (3, 1, 2),
  then the appends: many small files.

Each reports its wall time (writing) and the number of files of the store. Sizes come
from environment variables so that CI runs this quickly::

    MTD_BENCH_APPEND_BATCHES=20 MTD_BENCH_APPEND_ROWS=50 \\
        .venv/bin/python -m pytest benchmarks/bench_append.py --benchmark-enable -s

Defaults: 4 batches of 10 rows. ``-s`` shows the summary.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

N_BATCHES = int(os.environ.get("MTD_BENCH_APPEND_BATCHES", "4"))
ROWS = int(os.environ.get("MTD_BENCH_APPEND_ROWS", "10"))
CHUNKS = 1000
_RESULTS: dict[str, tuple[float, int]] = {}


def _labels(names: list[str], values) -> metatensor.Labels:
    return metatensor.Labels(names, np.asarray(values, dtype=np.int32).reshape(-1, len(names)))


def _batch(seed: int, sizes: tuple[int, ...], first_system: int) -> metatensor.TensorMap:
    """Three blocks of ``sizes`` samples (systems from ``first_system``), with positions
    (two rows per sample) and strain gradients."""
    rng = np.random.default_rng(seed)
    blocks = []
    for n in sizes:
        systems = first_system + np.arange(n)
        block = metatensor.TensorBlock(
            rng.normal(size=(n, 3, 4)),
            _labels(["system", "atom"], np.stack([systems, np.zeros(n)], axis=1)),
            [_labels(["o3_mu"], np.arange(-1, 2))],
            _labels(["n"], np.arange(4)),
        )
        sample = np.repeat(np.arange(n), 2)
        block.add_gradient(
            "positions",
            metatensor.TensorBlock(
                rng.normal(size=(2 * n, 3, 3, 4)),
                _labels(
                    ["sample", "system", "atom"],
                    np.stack([sample, first_system + sample, np.arange(2 * n) % 2], axis=1),
                ),
                [_labels(["xyz"], np.arange(3)), _labels(["o3_mu"], np.arange(-1, 2))],
                block.properties,
            ),
        )
        block.add_gradient(
            "strain",
            metatensor.TensorBlock(
                rng.normal(size=(n, 3, 3, 3, 4)),
                _labels(["sample"], np.arange(n)),
                [
                    _labels(["xyz_1"], np.arange(3)),
                    _labels(["xyz_2"], np.arange(3)),
                    _labels(["o3_mu"], np.arange(-1, 2)),
                ],
                block.properties,
            ),
        )
        blocks.append(block)
    return metatensor.TensorMap(_labels(["a", "b"], [[1, 1], [1, 6], [6, 8]]), blocks)


def _batches() -> list[metatensor.TensorMap]:
    batches = [_batch(0, (3, 0, 2), 0)]
    for i in range(1, N_BATCHES + 1):
        batches.append(_batch(i, (ROWS,) * 3, 10 + i * ROWS))
    return batches


def _files(path: Path) -> int:
    return sum(len(names) for _, _, names in os.walk(path))


@pytest.mark.parametrize("way", ["one write", "appends", "appends after a plain write"])
def test_append_small_first_batch(benchmark, tmp_path, way):
    batches = _batches()
    tensors = [mtd.from_metatensor(batch) for batch in batches]
    joined = metatensor.join(batches, axis="samples", different_keys="union")
    count = iter(range(10**6))

    def write() -> tuple[Path, float]:
        path = tmp_path / f"{next(count)}.zarr"
        start = time.perf_counter()
        if way == "one write":
            mtd.from_metatensor(joined).to_zarr(path, chunks=CHUNKS)
        else:
            if way == "appends":
                tensors[0].to_zarr(path, append_dim="samples", chunks=CHUNKS)
            else:
                tensors[0].to_zarr(path, chunks=CHUNKS)
            for tensor in tensors[1:]:
                tensor.to_zarr(path, append_dim="samples")
        return path, time.perf_counter() - start

    path, elapsed = benchmark.pedantic(write, rounds=1, iterations=1)
    _RESULTS[way] = (elapsed, _files(path))
    assert_equal_to_metatensor(mtd.open_zarr(path), joined)
    if len(_RESULTS) == 3:
        floor = _RESULTS["one write"][0]
        print(f"\n{N_BATCHES} batches of {ROWS} rows per block after a small first batch:")
        for name, (seconds, files) in _RESULTS.items():
            print(f"  {name:28s} {seconds:7.2f} s ({seconds / floor:5.1f}x), {files} files")
