"""``discard_append``: an append that failed and can not be finished is given up, and
the store reads and takes appends as before it."""

from __future__ import annotations

import json
import os
import socket
import time

import dask
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def _core(start: int, keys: tuple[int, ...]) -> metatensor.TensorMap:
    """A metatensor map of ``keys``, 10 samples (systems ``start`` on) per block, with
    a positions gradient of two rows per sample."""
    blocks = []
    for key in keys:
        samples = np.arange(start, start + 10, dtype=np.int32)[:, None]
        values = np.arange(20, dtype=np.float64).reshape(10, 2) + start + 100 * key
        block = metatensor.TensorBlock(
            values,
            metatensor.Labels(["system"], samples),
            [],
            metatensor.Labels.range("p", 2),
        )
        rows = np.repeat(np.arange(10, dtype=np.int32), 2)
        gradient_samples = np.stack([rows, np.tile([0, 1], 10).astype(np.int32)], axis=1)
        block.add_gradient(
            "positions",
            metatensor.TensorBlock(
                np.full((20, 3, 2), float(start + key)),
                metatensor.Labels(["sample", "atom"], gradient_samples),
                [metatensor.Labels.range("xyz", 3)],
                block.properties,
            ),
        )
        blocks.append(block)
    return metatensor.TensorMap(metatensor.Labels(["k"], np.array(keys)[:, None]), blocks)


def _failing(start: int, keys: tuple[int, ...], slow: float = 0.0) -> mtd.TensorMap:
    """:func:`_core` in chunks of 4 rows, the values of its last block failing to
    compute after their first chunk (after ``slow / 5`` s), the other blocks' taking
    ``slow`` s each."""
    tensor = mtd.from_metatensor(_core(start, keys))
    blocks = []
    for position, block in enumerate(tensor.blocks()):
        values = block.values.rechunk((4, 2))
        if position == len(tensor) - 1:

            def fail(chunk: np.ndarray, block_info=None) -> np.ndarray:
                if block_info is not None and block_info[0]["chunk-location"][0] > 0:
                    time.sleep(slow / 5)
                    raise ValueError("this batch can not be computed")
                return chunk

            values = values.map_blocks(fail, dtype=values.dtype)
        else:

            def wait(chunk: np.ndarray) -> np.ndarray:
                if chunk.size:
                    time.sleep(slow)
                return chunk

            values = values.map_blocks(wait, dtype=values.dtype)
        gradient = block.gradient("positions")
        copy = mtd.TensorBlock(values, block.samples, block.components, block.properties)
        copy.add_gradient(
            "positions",
            mtd.TensorBlock(
                gradient.values, gradient.samples, gradient.components, block.properties
            ),
        )
        blocks.append(copy)
    return mtd.TensorMap(tensor.keys, blocks)


def _files(path) -> dict[str, bytes]:
    """Every file under ``path``, by relative path, with its bytes."""
    return {
        str(file.relative_to(path)): file.read_bytes() for file in path.rglob("*") if file.is_file()
    }


@pytest.fixture
def interrupted(tmp_path):
    """A store of key 0, whose append of keys 0 and 1 failed while computing."""
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(_core(0, (0,))).to_zarr(path, chunks=4)
    # one task at a time: none left running once the append raised
    with dask.config.set(scheduler="synchronous"):
        with pytest.raises(ValueError, match="can not be computed"):
            _failing(10, (0, 1)).to_zarr(path, append_dim="samples")
    return path


def test_a_failed_append_is_discarded_and_another_appended(interrupted):
    with pytest.raises(mtd.MetatensorDaskError, match=r"discard_append\(store\)"):
        mtd.from_metatensor(_core(20, (0, 2))).to_zarr(interrupted, append_dim="samples")
    assert "discard_append" in mtd.verify(interrupted).problems[0]

    assert mtd.discard_append(interrupted) is True
    assert mtd.verify(interrupted).ok
    assert_equal_to_metatensor(mtd.open_zarr(interrupted), _core(0, (0,)))
    assert not (interrupted / "blocks" / "1").exists()

    mtd.from_metatensor(_core(20, (0, 2))).to_zarr(interrupted, append_dim="samples")
    expected = metatensor.join(
        [_core(0, (0,)), _core(20, (0, 2))], axis="samples", different_keys="union"
    )
    assert_equal_to_metatensor(mtd.open_zarr(interrupted), expected)
    assert mtd.verify(interrupted).ok


def test_tasks_left_running_by_a_failed_append_store_nothing_after_a_discard(tmp_path):
    """dask does not wait for the running tasks when one raises: those of the failed
    append must not store their rows over those of the append that follows."""
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(_core(0, (0,))).to_zarr(path, chunks=4)
    with dask.config.set(scheduler="threads", num_workers=16):
        with pytest.raises(ValueError, match="can not be computed"):
            _failing(10, (0, 1), slow=1.0).to_zarr(path, append_dim="samples")
        assert mtd.discard_append(path) is True
        mtd.from_metatensor(_core(10, (0, 2))).to_zarr(path, append_dim="samples")
    time.sleep(1.5)  # the failed append's tasks are done
    expected = metatensor.join(
        [_core(0, (0,)), _core(10, (0, 2))], axis="samples", different_keys="union"
    )
    assert_equal_to_metatensor(mtd.open_zarr(path), expected)
    assert mtd.verify(path).ok


def test_node_documents_of_an_append_killed_before_its_root_are_restored(interrupted):
    """An append killed between its node documents and its root leaves node documents
    that the root does not hold: the discard writes them again from the root."""
    document = interrupted / "blocks" / "0" / "values" / "zarr.json"
    before = document.read_bytes()
    node = json.loads(before)
    node["shape"][0] += 10
    document.write_text(json.dumps(node))
    new_block = interrupted / "blocks" / "1" / "values"
    new_block.mkdir(parents=True, exist_ok=True)
    (new_block / "zarr.json").write_text(json.dumps(node))
    assert not mtd.verify(interrupted).ok

    assert mtd.discard_append(interrupted) is True
    restored, original = json.loads(document.read_bytes()), json.loads(before)
    # the chunk table lists the partial last chunk as the append left it (its rows kept)
    tables = [
        restored["attributes"].pop("chunk_crc32c"),
        original["attributes"].pop("chunk_crc32c"),
    ]
    assert tables[0][:-1] == tables[1][:-1]
    assert restored == original
    assert not (interrupted / "blocks" / "1").exists()
    assert mtd.verify(interrupted).ok


def test_nothing_to_discard_changes_nothing(tmp_path):
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(_core(0, (0, 1))).to_zarr(path)
    before = _files(path)
    assert mtd.discard_append(path) is False
    assert _files(path) == before


def test_an_incomplete_write_is_not_discarded(tmp_path):
    path = tmp_path / "t.zarr"
    with pytest.raises(ValueError, match="can not be computed"):
        _failing(0, (0, 1)).to_zarr(path)
    with pytest.raises(mtd.MetatensorDaskError, match="incomplete write, not an interrupted"):
        mtd.discard_append(path)
    with pytest.raises(mtd.MetatensorDaskError, match="no store at"):
        mtd.discard_append(tmp_path / "missing.zarr")


def test_a_live_writer_keeps_its_append(interrupted):
    """The lock of a writer that may still be writing is not taken over."""
    now = time.time()
    holder = {
        "owner": "someone",
        "host": socket.gethostname(),
        "pid": os.getppid(),
        "start": now,
        "heartbeat": now,
        "write_id": "another",
    }
    (interrupted / ".lock").write_text(json.dumps(holder))
    before = _files(interrupted)
    with pytest.raises(mtd.StoreLockedError):
        mtd.discard_append(interrupted)
    assert _files(interrupted) == before
