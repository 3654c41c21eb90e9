"""The sample rows an appending process keeps (and the chain that hashed them) after an
append that failed once planned: its rows were never stored, so the kept tail must
not stand for the store when another process appended other rows since, as many as
the failed append's. Real processes and stores, metatensor as the reference."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import dask
import dask.array as da
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

#: Builds :func:`batch` in another process (the same definition, kept in one place).
_BATCH = textwrap.dedent(
    """
    import metatensor
    import numpy as np


    def batch(first, n, seed):
        rng = np.random.default_rng(seed)
        samples = metatensor.Labels(
            ["system", "atom"],
            np.stack([np.arange(first, first + n), np.arange(n) % 2], axis=1).astype(np.int32),
        )
        block = metatensor.TensorBlock(
            rng.normal(size=(n, 2)).astype(np.float32), samples, [], metatensor.Labels.range("p", 2)
        )
        rows = np.array([[s, s % 3] for s in range(n)], dtype=np.int32)
        block.add_gradient(
            "positions",
            metatensor.TensorBlock(
                rng.normal(size=(n, 3, 2)).astype(np.float32),
                metatensor.Labels(["sample", "atom"], rows),
                [metatensor.Labels.range("xyz", 3)],
                block.properties,
            ),
        )
        return metatensor.TensorMap(metatensor.Labels.range("k", 1), [block])
    """
)
_namespace: dict = {}
exec(_BATCH, _namespace)  # the definition the other process runs too
batch = _namespace["batch"]


def _failing(tensor: metatensor.TensorMap) -> mtd.TensorMap:
    """``tensor`` whose values raise when computed: an append of it fails once planned."""

    def fail(chunk: np.ndarray) -> np.ndarray:
        raise RuntimeError("a batch that fails while it is stored")

    lazy = mtd.from_metatensor(tensor)
    block = lazy.block(0)
    values = da.map_blocks(fail, block.values, dtype=block.values.dtype)
    failing = mtd.TensorBlock(values, block.samples, block.components, block.properties)
    for parameter, gradient in block.gradients():
        failing.add_gradient(parameter, gradient)
    return mtd.TensorMap(lazy.keys, [failing])


def _append_in_another_process(appends: list[tuple[Path, int, int, int]]) -> None:
    """Append ``batch(first, n, seed)`` to each ``path`` of ``appends``, in one other
    process."""
    code = _BATCH + textwrap.dedent(
        f"""
        import dask
        import metatensor_dask as mtd

        with dask.config.set(scheduler="synchronous"):
            for path, first, n, seed in {[(str(path), *rest) for path, *rest in appends]!r}:
                mtd.from_metatensor(batch(first, n, seed)).to_zarr(
                    path, append_dim="samples", chunks=2
                )
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ)
    )
    assert done.returncode == 0, done.stderr


def _stored_then_failed(path: Path, rows: int) -> list[metatensor.TensorMap]:
    """Store two batches at ``path``, then fail an append of ``rows`` rows there (and
    discard it); the batches stored."""
    stored = [batch(0, 5, 0), batch(5, 4, 1)]
    mtd.from_metatensor(stored[0]).to_zarr(path, chunks=2)
    mtd.from_metatensor(stored[1]).to_zarr(path, append_dim="samples", chunks=2)
    with pytest.raises(RuntimeError, match="fails while it is stored"):
        _failing(batch(9, rows, 2)).to_zarr(path, append_dim="samples", chunks=2)
    mtd.discard_append(path)
    return stored


def test_rows_of_a_failed_append_are_not_kept_for_the_store(tmp_path):
    """An append that failed kept its rows as if stored; after another process appended
    as many other rows, the next append must hash and rewrite what the store holds.
    The failed append's rows end within a chunk (3 rows) and across chunks (7), one
    store each; the other process appends to both."""
    paths = {rows: tmp_path / f"failed-{rows}.zarr" for rows in (3, 7)}
    with dask.config.set(scheduler="synchronous"):
        stored = {rows: _stored_then_failed(path, rows) for rows, path in paths.items()}
        # other rows, as many
        _append_in_another_process([(path, 100, rows, 3) for rows, path in paths.items()])
        for rows, path in paths.items():
            stored[rows] += [batch(100, rows, 3), batch(200, 3, 4)]
            mtd.from_metatensor(stored[rows][-1]).to_zarr(path, append_dim="samples", chunks=2)
    for rows, path in paths.items():
        expected = metatensor.join(stored[rows], axis="samples")
        assert_equal_to_metatensor(mtd.open_zarr(path), expected)
        assert mtd.verify(path).problems == [], rows
