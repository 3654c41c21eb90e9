"""Zarr storage: many tiny blocks, and ``.mts`` -> Zarr -> read with bounded memory.

* ``test_tiny_blocks``: write and open a map of many tiny blocks (values ``(10, 3, 4)``,
  one gradient ``(30, 3, 3, 4)``), the case where per-array overhead dominates
  (targets: 1,000 blocks written in <= 5 s, opened in <= 1 s);
* ``test_convert_and_read``: a featomic-like ``.mts`` file larger than the chunk size
  converted to Zarr (``mtd.load(...).to_zarr(...)``), then read back (a sum over
  every values and gradient array), each in its own process that reports its wall
  time and peak resident memory (``VmHWM``); the baseline process only imports.

Sizes come from environment variables so that CI runs this quickly::

    MTD_BENCH_ZARR_BLOCKS=1000 MTD_BENCH_ZARR_MIB=1024 MTD_BENCH_ZARR_CHUNK=16MiB \\
        .venv/bin/python -m pytest benchmarks/bench_zarr.py --benchmark-enable -s

Defaults: 100 blocks, an 8 MiB file, 1MiB chunks. ``-s`` shows the summary.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import metatensor
import numpy as np
import pytest
from bench_support import tiny_blocks

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

N_TINY = int(os.environ.get("MTD_BENCH_ZARR_BLOCKS", "100"))
SIZE_MIB = float(os.environ.get("MTD_BENCH_ZARR_MIB", "8"))
CHUNK_SIZE = os.environ.get("MTD_BENCH_ZARR_CHUNK", "1MiB")
N_PROPERTIES = 180
ATOMS_PER_SAMPLE = 36
_SAMPLE_BYTES = 8 * N_PROPERTIES * (1 + 3 * ATOMS_PER_SAMPLE + 9)


def test_tiny_blocks(benchmark, tmp_path):
    theirs = tiny_blocks(N_TINY)
    tensor = mtd.from_metatensor(theirs)
    count = iter(range(10**6))

    def write() -> Path:
        path = tmp_path / f"tiny-{next(count)}.zarr"
        tensor.to_zarr(path)
        return path

    path = benchmark.pedantic(write, rounds=1, iterations=1)
    start = time.perf_counter()
    opened = mtd.open_zarr(path)
    open_time = time.perf_counter() - start
    start = time.perf_counter()
    write()
    write_time = time.perf_counter() - start
    print(f"\n{N_TINY} tiny blocks: write {write_time:.2f} s, open {open_time:.3f} s")
    assert_equal_to_metatensor(opened, theirs)


_WORKER = textwrap.dedent(
    """
    import json, sys, time
    import dask
    import metatensor_dask as mtd

    def peak():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM"):
                    return int(line.split()[1]) * 1024
        return 0

    task, source, store, chunk = sys.argv[1:5]
    start = time.perf_counter()
    result = None
    if task == "convert":
        mtd.load(source, chunks=chunk).to_zarr(store, chunks=chunk)
    elif task == "read":
        tensor = mtd.open_zarr(store)
        sums = []
        for block in tensor:
            sums.append(block.values.sum())
            sums.extend(g.values.sum() for _, g in block.gradients())
        result = float(sum(dask.compute(*sums)))
    print(json.dumps({"seconds": time.perf_counter() - start, "peak": peak(), "sum": result}))
    """
)


def _run(task: str, source: Path, store: Path) -> dict:
    output = subprocess.run(
        [sys.executable, "-c", _WORKER, task, str(source), str(store), CHUNK_SIZE],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def _featomic_like(n_samples: int) -> metatensor.TensorMap:
    rng = np.random.default_rng(1)
    properties = metatensor.Labels.range("n", N_PROPERTIES)
    samples = np.stack([np.arange(n_samples) // 10, np.arange(n_samples) % 10], 1)
    block = metatensor.TensorBlock(
        rng.normal(size=(n_samples, N_PROPERTIES)),
        metatensor.Labels(["system", "atom"], samples.astype(np.int32)),
        [],
        properties,
    )
    rows = np.repeat(np.arange(n_samples), ATOMS_PER_SAMPLE)
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            rng.normal(size=(len(rows), 3, N_PROPERTIES)),
            metatensor.Labels(
                ["sample", "system", "atom"],
                np.stack(
                    [rows, rows // 10, np.tile(np.arange(ATOMS_PER_SAMPLE), n_samples)], 1
                ).astype(np.int32),
            ),
            [metatensor.Labels.range("xyz", 3)],
            properties,
        ),
    )
    strain = np.arange(n_samples)
    block.add_gradient(
        "strain",
        metatensor.TensorBlock(
            rng.normal(size=(n_samples, 3, 3, N_PROPERTIES)),
            metatensor.Labels(["sample"], strain[:, None].astype(np.int32)),
            [metatensor.Labels.range("xyz_2", 3), metatensor.Labels.range("xyz_1", 3)],
            properties,
        ),
    )
    return metatensor.TensorMap(metatensor.Labels.range("key", 1), [block])


@pytest.mark.benchmark(group="zarr-convert")
def test_convert_and_read(tmp_path):
    n_samples = max(int(SIZE_MIB * 2**20 / _SAMPLE_BYTES), 2)
    theirs = _featomic_like(n_samples)
    source = tmp_path / "data.mts"
    metatensor.save(str(source), theirs)
    store = tmp_path / "data.zarr"
    baseline = _run("baseline", source, store)
    convert = _run("convert", source, store)
    read = _run("read", source, store)
    size = os.path.getsize(source)
    print(f"\n.mts of {size / 2**20:.0f} MiB, chunks {CHUNK_SIZE}")
    for name, figures in [("imports only", baseline), ("convert", convert), ("read", read)]:
        print(
            f"  {name:<12} {figures['seconds']:6.2f} s  peak RSS {figures['peak'] / 2**20:7.0f} MiB"
        )
    expected = sum(
        float(np.sum(a))
        for a in [theirs.block(0).values] + [g.values for _, g in theirs.block(0).gradients()]
    )
    assert read["sum"] == pytest.approx(expected, rel=1e-9, abs=1e-6)
    assert_equal_to_metatensor(mtd.open_zarr(store), theirs)
