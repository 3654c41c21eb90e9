"""Tensors for the Zarr tests, and a writer to run (and kill) in a subprocess.

``python zarr_writer_process.py STORE N_CHUNKS DELAY [--mode M] [--scale S] [--key K]
[--resume] [--go FILE] [--append]`` writes ``S * slow_tensor(N_CHUNKS, DELAY, key=K)`` to ``STORE``
one chunk at a time, each chunk taking ``DELAY`` seconds, so that a test can kill it in
the middle of the data phase. With ``--go``, it creates ``FILE.ready.<pid>`` once its
imports are done, then waits for ``FILE`` to exist before writing, so that several
writers start together. With ``--append`` it appends the
samples instead (``append_dim="samples"``, ``renumber={"system": "next"}``). It
prints ``done`` at the end, or ``locked: <message>`` and exits with 3 when another
writer holds the store.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import dask
import dask.array as da
import metatensor
import numpy as np

import metatensor_dask as mtd


def _labels(names: list[str], values: np.ndarray) -> metatensor.Labels:
    return metatensor.Labels(names, np.asarray(values, dtype=np.int32).reshape(-1, len(names)))


def _values(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if np.dtype(dtype).kind == "f":
        return rng.normal(size=shape).astype(dtype)
    return rng.integers(-100, 100, size=shape).astype(dtype)


def _gradient(
    rng: np.random.Generator,
    parent_rows: int,
    rows_per_parent: np.ndarray,
    extra: list[metatensor.Labels],
    parent: metatensor.TensorBlock,
    dtype: np.dtype,
) -> metatensor.TensorBlock:
    """A gradient whose rows are grouped by ``"sample"`` (as featomic writes them)."""
    sample = np.repeat(np.arange(parent_rows), rows_per_parent)
    atom = np.concatenate([np.arange(k) for k in rows_per_parent]) if len(sample) else sample
    samples = _labels(["sample", "system", "atom"], np.stack([sample, sample % 3, atom], axis=1))
    components = extra + list(parent.components)
    shape = (len(samples), *(len(c) for c in components), len(parent.properties))
    return metatensor.TensorBlock(
        _values(rng, shape, dtype), samples, components, parent.properties
    )


def make_metatensor(
    seed: int = 0,
    dtype: np.dtype = np.float64,
    n_samples: tuple[int, ...] = (23, 0, 11),
    n_properties: tuple[int, ...] = (4, 3, 0),
    nested: bool = True,
) -> metatensor.TensorMap:
    """A metatensor TensorMap with components, positions and strain gradients.

    Blocks may have no samples or no properties; the positions gradient has 0 to 4
    rows per sample and, with ``nested``, a gradient of its own (``"cell"``).
    """
    rng = np.random.default_rng(seed)
    xyz = _labels(["xyz"], np.arange(3))
    blocks = []
    for i, (n, p) in enumerate(zip(n_samples, n_properties, strict=True)):
        samples = _labels(["system", "atom"], np.stack([np.arange(n) // 4, np.arange(n)], axis=1))
        components = [_labels(["o3_mu"], np.arange(-1, 2))]
        properties = _labels(["n"], np.arange(p) + i)
        block = metatensor.TensorBlock(
            _values(rng, (n, 3, p), dtype), samples, components, properties
        )
        positions = _gradient(rng, n, rng.integers(0, 5, size=n), [xyz], block, dtype)
        if nested:
            rows = len(positions.samples)
            cell = _gradient(
                rng,
                rows,
                rng.integers(0, 3, size=rows),
                [_labels(["abc"], np.arange(2))],
                positions,
                dtype,
            )
            positions.add_gradient("cell", cell)
        block.add_gradient("positions", positions)
        strain = _gradient(
            rng,
            n,
            np.ones(n, int),
            [_labels(["xyz_1"], np.arange(3)), _labels(["xyz_2"], np.arange(3))],
            block,
            dtype,
        )
        block.add_gradient("strain", strain)
        blocks.append(block)
    keys = _labels(["center_type", "neighbor_type"], [[1, 1], [1, 6], [6, 8]][: len(blocks)])
    tensor = metatensor.TensorMap(keys, blocks)
    tensor.set_info("creator", "zarr tests")
    return tensor


def with_strain_of(tensor, full: metatensor.TensorMap):
    """``tensor`` (a metatensor-dask map) whose blocks are given the strain gradient of
    the block of the same key in ``full`` (a metatensor map), and ``full``'s info: what
    a write of new gradients with ``mode="a"`` takes."""
    theirs = mtd.from_metatensor(full)
    blocks = []
    for key, block in tensor.items():
        new = mtd.TensorBlock(block.values, block.samples, block.components, block.properties)
        for parameter, gradient in block.gradients():
            new.add_gradient(parameter, gradient)
        new.add_gradient("strain", theirs.block(key).gradient("strain"))
        blocks.append(new)
    result = mtd.TensorMap(tensor.keys, blocks)
    for name, value in full.info().items():
        result.set_info(name, value)
    return result


class Counter:
    """Counts the value chunks computed by :func:`slow_tensor`."""

    def __init__(self) -> None:
        self.count = 0


class _SlowDouble:
    """Doubles a chunk, taking ``delay`` s and counting it in ``counter``."""

    def __init__(self, delay: float, counter: Counter | None) -> None:
        self.delay, self.counter = delay, counter

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        if chunk.size:  # dask also calls it on an empty array to learn the output type
            time.sleep(self.delay)
            if self.counter is not None:
                self.counter.count += 1
        return chunk * 2.0

    def __dask_tokenize__(self) -> str:
        return "slow-double"


def slow_tensor(
    n_chunks: int, delay: float, counter: Counter | None = None, rows: int = 4, key: int = 1
) -> mtd.TensorMap:
    """One block (of key ``key``) of ``n_chunks * rows`` samples, each values chunk
    taking ``delay`` s, with a positions gradient; the same numbers on every call."""
    n = n_chunks * rows
    rng = np.random.default_rng(12345)
    base = rng.normal(size=(n, 3, 5))

    # the same token whatever the delay and the counter (which do not change the
    # numbers), so that every call is the same computation: dask 2025.1 appends
    # the function's token to an explicit name
    values = da.from_array(base, chunks=(rows, 3, 5)).map_blocks(
        _SlowDouble(delay, counter), dtype=np.float64, name=f"slow-values-{n_chunks}-{rows}"
    )
    block = mtd.TensorBlock(
        values,
        mtd.Labels(["system", "atom"], np.stack([np.arange(n) // 10, np.arange(n)], axis=1)),
        [mtd.Labels(["o3_mu"], np.arange(-1, 2)[:, None])],
        mtd.Labels(["n"], np.arange(5)[:, None]),
    )
    sample = np.repeat(np.arange(n), 2)
    gradient = mtd.TensorBlock(
        rng.normal(size=(2 * n, 3, 3, 5)),
        mtd.Labels(
            ["sample", "system", "atom"],
            np.stack([sample, sample // 10, np.arange(2 * n) % 2], axis=1),
        ),
        [
            mtd.Labels(["xyz"], np.arange(3)[:, None]),
            mtd.Labels(["o3_mu"], np.arange(-1, 2)[:, None]),
        ],
        mtd.Labels(["n"], np.arange(5)[:, None]),
    )
    block.add_gradient("positions", gradient)
    return mtd.TensorMap(mtd.Labels(["center_type"], np.array([[key]])), [block])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("n_chunks", type=int)
    parser.add_argument("delay", type=float)
    parser.add_argument("--mode", default="w-")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--key", type=int, default=1)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--go")
    parser.add_argument("--append", action="store_true")
    args = parser.parse_args()
    tensor = slow_tensor(args.n_chunks, args.delay, key=args.key)
    if args.scale != 1.0:
        tensor = mtd.multiply(tensor, args.scale)
    if args.go is not None:
        Path(f"{args.go}.ready.{os.getpid()}").touch()
    while args.go is not None and not os.path.exists(args.go):
        time.sleep(0.005)
    # a tiny chunk-size: each chunk is written (and recorded) by a task of its own
    with dask.config.set({"scheduler": "synchronous", "metatensor_dask.chunk-size": "256B"}):
        try:
            appending = {"append_dim": "samples", "renumber": {"system": "next"}}
            mtd.to_zarr(
                tensor,
                args.store,
                None if args.append else args.mode,
                **(appending if args.append else {}),
                resume=args.resume,
                storage_options={"auto_mkdir": True} if "://" in args.store else None,
            )
        except mtd.StoreLockedError as error:
            print(f"locked: {error}", flush=True)
            sys.exit(3)
    print("done", flush=True)


if __name__ == "__main__":
    main()
