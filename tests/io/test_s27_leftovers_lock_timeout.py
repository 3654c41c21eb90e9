"""A ``lock-timeout`` shorter than a holder can keep its lock fresh (or not a finite
duration) is refused, naming the setting, by every write that takes a lock, before it
writes anything: the store (or its absence) is left as it was."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import dask
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd

ABSURD = [1e-9, 0, 0.4, "0.49s", -1, "-1s", math.nan, math.inf, "inf", "nan", "soon", True, None]


def _tensor(rows: int) -> mtd.TensorMap:
    values = np.arange(3.0 * rows).reshape(rows, 3)
    block = mtd.TensorBlock(values, mtd.Labels.range("s", rows), [], mtd.Labels.range("p", 3))
    return mtd.TensorMap(mtd.Labels.range("k", 1), [block])


def _files(root: Path) -> dict[str, str]:
    """Every file under ``root`` and a hash of its bytes."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _refused() -> pytest.RaisesContext:
    return pytest.raises(
        mtd.MetatensorDaskError, match=r"metatensor_dask\.lock-timeout=.*least 0.5 s"
    )


@pytest.mark.parametrize("value", ABSURD, ids=repr)
def test_a_new_store_is_not_created(tmp_path: Path, value: object) -> None:
    with dask.config.set({"metatensor_dask.lock-timeout": value}):
        with _refused():
            mtd.to_zarr(_tensor(4), tmp_path / "t.zarr")
        with _refused():
            mtd.write_batches(
                lambda batch: _tensor(len(batch)), list(range(4)), tmp_path / "b.zarr"
            )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", ABSURD, ids=repr)
def test_a_stored_tensor_is_left_as_it_was(tmp_path: Path, value: object) -> None:
    path = tmp_path / "t.zarr"
    mtd.to_zarr(_tensor(4), path)
    before = _files(path)
    with dask.config.set({"metatensor_dask.lock-timeout": value}):
        for write in [
            lambda: mtd.to_zarr(_tensor(4), path, append_dim="samples"),
            lambda: mtd.to_zarr(_tensor(4), path, mode="w"),
            lambda: mtd.to_zarr(_tensor(4), path, mode="a"),
            lambda: mtd.discard_append(path),
        ]:
            with _refused():
                write()
    assert _files(path) == before
    stored = mtd.to_metatensor(mtd.open_zarr(path))
    expected = metatensor.TensorBlock(
        np.arange(12.0).reshape(4, 3),
        metatensor.Labels.range("s", 4),
        [],
        metatensor.Labels.range("p", 3),
    )
    assert metatensor.equal_block(stored.block(0), expected)


@pytest.mark.parametrize("value", [0.5, "1s", 2.5, "5 minutes", 10**12])
def test_sane_values_write(tmp_path: Path, value: object) -> None:
    with dask.config.set({"metatensor_dask.lock-timeout": value}):
        mtd.to_zarr(_tensor(4), tmp_path / "t.zarr")
    assert mtd.verify(tmp_path / "t.zarr").ok
