"""Failure paths of the writes of the command line and of ingestion: a write that fails
in this process releases its lock and leaves the store as the documentation says
(incomplete and resumable, or as before an append); the errors of a killed writer
name the command that made the store and its remedy."""

from __future__ import annotations

import threading
from pathlib import Path

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.execution.cli import main
from metatensor_dask.io import _zip
from metatensor_dask.testing import assert_equal_to_metatensor


def _map(first_system: int = 0) -> metatensor.TensorMap:
    """Two blocks of 4 samples with a positions gradient."""
    rng = np.random.default_rng(first_system)
    blocks = []
    for _ in range(2):
        samples = metatensor.Labels(
            ["system", "atom"], np.array([[first_system + i // 2, i % 2] for i in range(4)])
        )
        block = metatensor.TensorBlock(
            rng.normal(size=(4, 2)), samples, [], metatensor.Labels.range("n", 2)
        )
        gradient = metatensor.TensorBlock(
            rng.normal(size=(4, 3, 2)),
            metatensor.Labels(["sample", "atom"], np.array([[i, 0] for i in range(4)])),
            [metatensor.Labels.range("xyz", 3)],
            block.properties,
        )
        block.add_gradient("positions", gradient)
        blocks.append(block)
    return metatensor.TensorMap(metatensor.Labels.range("key", 2), blocks)


def _damaged_mts(path: Path) -> Path:
    """``path``: a saved map whose last values member has a changed byte (found when the
    values are computed, not at load)."""
    metatensor.save(path, _map())
    member = _zip.read_directory(str(path))["blocks/1/values.npy"]
    data = bytearray(path.read_bytes())
    data[member.offset + member.size - 3] ^= 1
    path.write_bytes(bytes(data))
    return path


def _damaged_zarr(path: Path, first_system: int) -> Path:
    """``path``: a store of a map whose first values chunk has a changed byte."""
    mtd.from_metatensor(_map(first_system)).to_zarr(path)
    chunk = path / "blocks" / "0" / "values" / "c.0.0"
    data = bytearray(chunk.read_bytes())
    data[0] ^= 1
    chunk.write_bytes(bytes(data))
    return path


def _lock_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("metatensor-dask lock")]


def test_a_failed_convert_releases_its_lock(tmp_path, capsys):
    """A source that fails while it streams: the command fails (exit 1) with the
    damage; the store is incomplete, not locked (no lock file, no heartbeat left
    running in this process), so that another write of it says what to do with the
    incomplete write (here: mode="w" writes it again)."""
    source = _damaged_mts(tmp_path / "source.mts")
    out = tmp_path / "out.zarr"
    assert main(["convert", str(source), str(out), "--quiet"]) == 1
    assert "is damaged" in capsys.readouterr().err
    assert not (out / ".lock").exists()
    assert _lock_threads() == []
    with pytest.raises(mtd.IncompleteStoreError):
        mtd.open_zarr(out)
    tensor = mtd.from_metatensor(_map())
    with pytest.raises(mtd.MetatensorDaskError, match="holds an incomplete write") as error:
        tensor.to_zarr(out)
    assert not isinstance(error.value, mtd.StoreLockedError)
    tensor.to_zarr(out, mode="w")
    assert_equal_to_metatensor(mtd.open_zarr(out).compute(), _map())


def test_a_failed_convert_append_releases_its_lock_and_is_discarded(tmp_path, capsys):
    """An append of a store whose chunk is damaged fails while it streams: the target
    keeps its stored samples, is not locked, and the interrupted append is given up
    with ``discard_append`` (which takes the lock) or refused by another append with
    its remedy."""
    out = tmp_path / "out.zarr"
    mtd.from_metatensor(_map()).to_zarr(out)
    source = _damaged_zarr(tmp_path / "source.zarr", first_system=10)
    assert main(["convert", str(source), str(out), "--append", "--quiet"]) == 1
    assert "damaged" in capsys.readouterr().err
    assert not (out / ".lock").exists()
    assert _lock_threads() == []
    with pytest.raises(mtd.MetatensorDaskError, match="discard_append") as error:
        mtd.from_metatensor(_map(20)).to_zarr(out, append_dim="samples")
    assert not isinstance(error.value, mtd.StoreLockedError)
    assert mtd.discard_append(out)
    assert_equal_to_metatensor(mtd.open_zarr(out).compute(), _map())


def test_a_failed_pipeline_releases_its_lock(tmp_path, capsys):
    """``apply`` (a pipeline of one step) whose input fails while it streams."""
    source = _damaged_mts(tmp_path / "source.mts")
    out = tmp_path / "out.zarr"
    assert main(["apply", "pow", str(source), "--arg", "B=2", "-o", str(out), "--quiet"]) == 1
    assert "is damaged" in capsys.readouterr().err
    assert not (out / ".lock").exists()
    assert _lock_threads() == []
