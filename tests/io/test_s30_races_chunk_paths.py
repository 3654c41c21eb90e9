"""A store appended to by another process, read through the paths that read chunks
only (a few systems sliced, partial sums, keys moved to samples, tiny blocks read by
groups): a tensor opened before the append reads the data it opened at each stage of
the writer (its data stored, the partial last chunks rewritten; its metadata about to
be committed; committed), whether it read its labels before the append or only then;
a tensor opened after reads the old and the new rows whole.

The writer pauses at its own stages (signal files), so every read happens at a known
moment. Expected results are metatensor's, on the metatensor maps written.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import metatensor
import metatensor.operations as mops
import numpy as np
import pytest
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd

HERE = Path(__file__).parent
#: Rows per stored chunk: the first block's last chunk is partial, the others tiny.
CHUNKS = 8
SAMPLES = (45, 0, 3)

#: The writer: appends ``make_metatensor(SEED)`` in chunks of ``CHUNKS`` rows, waiting
#: before it computes the last values chunk of the first block (``data``: the other
#: chunks stored) and before it commits the metadata (``commit``), for the test's
#: ``go-<stage>`` file.
WRITER = """
import os, sys, time
import dask
import numpy as np
import metatensor_dask as mtd
from metatensor_dask.io import zarr_append
from zarr_writer_process import make_metatensor

store, signals, seed, chunks = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

def pause(stage):
    open(os.path.join(signals, stage), "w").close()
    while not os.path.exists(os.path.join(signals, "go-" + stage)):
        time.sleep(0.005)

stored = zarr_append.commit
def commit(*args):
    pause("commit")
    stored(*args)
zarr_append.commit = commit

def gate(chunk, block_info=None):
    where = block_info[0]
    if chunk.size and where["chunk-location"][0] == where["num-chunks"][0] - 1:
        pause("data")
    return chunk

tensor = mtd.from_metatensor(make_metatensor(seed, n_samples=(29, 2, 5), nested=False))
first = tensor.block(0)
gated = mtd.TensorBlock(
    first.values.map_blocks(gate, dtype=first.values.dtype),
    first.samples, first.components, first.properties,
)
for parameter, gradient in first.gradients():
    gated.add_gradient(parameter, gradient)
tensor = mtd.TensorMap(tensor.keys, [gated, *tensor.blocks()[1:]])
with dask.config.set(scheduler="synchronous"):
    tensor.to_zarr(store, append_dim="samples", renumber={"system": "next"}, chunks=chunks)
"""


def _reads(tensor, systems: np.ndarray) -> dict:
    """The chunk-wise reads, lazily, of a metatensor or metatensor-dask map."""
    ops = mtd if isinstance(tensor, mtd.TensorMap) else mops
    labels = mtd.Labels if ops is mtd else metatensor.Labels
    return {
        "slice": lambda: ops.slice(tensor, "samples", labels(["system"], systems)),
        "sum": lambda: ops.sum_over_samples(tensor, "atom"),
        "keys_to_samples": lambda: tensor.keys_to_samples("center_type"),
        "whole": lambda: tensor,
    }


def _expected(tensor: metatensor.TensorMap, systems: np.ndarray) -> dict:
    return {name: read() for name, read in _reads(tensor, systems).items()}


def _assert_reads(tensor: mtd.TensorMap, expected: dict, systems: np.ndarray) -> None:
    for name, read in _reads(tensor, systems).items():
        got = mtd.to_metatensor(read().compute())
        # partial sums add in another order than metatensor's sum
        close = metatensor.allclose(got, expected[name], rtol=1e-12, atol=1e-12)
        assert close if name == "sum" else metatensor.equal(got, expected[name]), name


def _renumbered(block: metatensor.TensorBlock, column: int, shift: int, names: list[str]):
    values = np.array(block.samples.values)
    values[:, column] += shift
    return metatensor.Labels(names, values)


def _appended(old: metatensor.TensorMap, new: metatensor.TensorMap) -> metatensor.TensorMap:
    """``new`` appended to ``old`` along samples, its systems after ``old``'s (their
    gradients' ``"sample"`` after ``old``'s rows, their ``"system"`` renumbered too)."""
    after = 1 + max(int(b.samples.column("system").max()) for b in old if len(b.samples))
    blocks = []
    for key, block in new.items():
        stored = old.block(key)
        samples = _renumbered(block, 0, after, block.samples.names)
        joined = metatensor.TensorBlock(
            np.concatenate([stored.values, block.values]),
            metatensor.Labels(
                block.samples.names, np.concatenate([stored.samples.values, samples.values])
            ),
            block.components,
            block.properties,
        )
        for parameter, gradient in block.gradients():
            kept = stored.gradient(parameter)
            rows = np.array(
                _renumbered(gradient, 0, len(stored.samples), gradient.samples.names).values
            )
            rows[:, 1] += after
            joined.add_gradient(
                parameter,
                metatensor.TensorBlock(
                    np.concatenate([kept.values, gradient.values]),
                    metatensor.Labels(
                        gradient.samples.names, np.concatenate([kept.samples.values, rows])
                    ),
                    gradient.components,
                    gradient.properties,
                ),
            )
        blocks.append(joined)
    return metatensor.TensorMap(new.keys, blocks)


def _wait_for(path: Path, writer: subprocess.Popen) -> None:
    while not path.exists():
        assert writer.poll() is None, writer.communicate()
        time.sleep(0.01)


@pytest.mark.xdist_group("serial")
def test_append_read_chunk_wise_at_each_stage(tmp_path):
    old = make_metatensor(3, n_samples=SAMPLES, nested=False)
    store, signals = str(tmp_path / "data.zarr"), tmp_path / "signals"
    signals.mkdir()
    mtd.from_metatensor(old).to_zarr(store, chunks=CHUNKS)
    systems = np.array([[0], [4], [11], [7]], dtype=np.int32)
    expected = _expected(old, systems)
    opened = mtd.open_zarr(store)
    _assert_reads(opened, expected, systems)  # labels and pointers read before
    untouched = {stage: mtd.open_zarr(store) for stage in ("data", "commit", "after")}

    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    command = [sys.executable, "-c", WRITER, store, str(signals), "4", str(CHUNKS)]
    with subprocess.Popen(command, env=environment, stderr=subprocess.PIPE) as writer:
        for stage in ("data", "commit"):
            _wait_for(signals / stage, writer)
            _assert_reads(opened, expected, systems)
            _assert_reads(untouched[stage], expected, systems)
            (signals / f"go-{stage}").touch()
        assert writer.wait() == 0, writer.stderr.read()
    _assert_reads(opened, expected, systems)
    _assert_reads(untouched["after"], expected, systems)

    new = make_metatensor(4, n_samples=(29, 2, 5), nested=False)
    appended = _appended(old, new)
    _assert_reads(mtd.open_zarr(store), _expected(appended, systems), systems)
