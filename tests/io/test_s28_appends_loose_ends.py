"""A write in ``mode="a"`` of a map of no block writes nothing; ``resume=True`` of a
whole write (not an append) of another computation is refused before it takes over the
lock of a pending write, which then still finishes."""

from __future__ import annotations

import metatensor
import numpy as np
import pytest
from test_s24_append_refusals import location_state

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def _tensor(systems: list[int], scale: float, keys: int = 1) -> metatensor.TensorMap:
    samples = metatensor.Labels(["system"], np.array(systems, np.int32).reshape(-1, 1))
    properties = metatensor.Labels(["p"], np.arange(2, dtype=np.int32).reshape(-1, 1))
    blocks = [
        metatensor.TensorBlock(
            scale * (k + 1) * np.arange(2 * len(systems), dtype=np.float32).reshape(-1, 2),
            samples,
            [],
            properties,
        )
        for k in range(keys)
    ]
    labels = metatensor.Labels(["k"], np.arange(keys, dtype=np.int32).reshape(-1, 1))
    return metatensor.TensorMap(labels, blocks)


@pytest.mark.parametrize("compute", [True, False])
def test_mode_a_of_a_map_of_no_block_writes_nothing(tmp_path, compute):
    path = tmp_path / "t.zarr"
    stored = _tensor([0, 1], 1.0, keys=3)
    mtd.from_metatensor(stored).to_zarr(path)
    before = location_state(path)
    empty = metatensor.TensorMap(metatensor.Labels(["k"], np.zeros((0, 1), np.int32)), [])
    for resume in (False, True):  # resumed (a requeued script), it is done already
        delayed = mtd.from_metatensor(empty).to_zarr(path, mode="a", compute=compute, resume=resume)
        if delayed is not None:
            delayed.compute()
        assert location_state(path) == before
    # the lock is released: another write takes the store
    mtd.from_metatensor(_tensor([2], 1.0, keys=3)).to_zarr(
        path, append_dim="samples", renumber={"system": "next"}
    )
    assert mtd.verify(path).ok


def _pending_write(path):
    """A whole write of this process not computed yet (its store incomplete)."""
    return mtd.from_metatensor(_tensor([0, 1, 2], 1.0)).to_zarr(path, compute=False)


def _pending_append(path):
    """An append of this process to a complete store, not computed yet."""
    mtd.from_metatensor(_tensor([0, 1, 2], 1.0)).to_zarr(path)
    return mtd.from_metatensor(_tensor([3], 1.0)).to_zarr(path, append_dim="samples", compute=False)


# (mode='w' with resume=True overwrites a complete store that another write made)
@pytest.mark.parametrize(
    ("pending", "mode"),
    [
        (_pending_write, "w-"),
        (_pending_write, "r+"),
        (_pending_write, "w"),
        (_pending_append, "w-"),
        (_pending_append, "r+"),
    ],
)
def test_a_resume_of_another_whole_write_leaves_the_pending_write_its_lock(tmp_path, pending, mode):
    path = tmp_path / "t.zarr"
    delayed = pending(path)
    before = location_state(path)
    other = mtd.from_metatensor(_tensor([0, 1, 2], 5.0))
    with pytest.raises(mtd.MetatensorDaskError, match="another computation"):
        other.to_zarr(path, mode=mode, resume=True)
    assert location_state(path) == before
    delayed.compute()
    expected = _tensor([0, 1, 2], 1.0)
    if pending is _pending_append:
        expected = metatensor.join([expected, _tensor([3], 1.0)], axis="samples")
    assert_equal_to_metatensor(mtd.open_zarr(path), expected)
    assert mtd.verify(path).ok


def test_a_requeued_script_finds_its_write_and_appends_done(tmp_path):
    """A script that writes a store whole and appends to it, each with resume=True,
    run again: the whole write, which the appends followed, is found done."""
    path = tmp_path / "t.zarr"
    first, second = _tensor([0, 1], 1.0, keys=2), _tensor([0], 2.0, keys=3)

    def script():
        mtd.from_metatensor(first).to_zarr(path, resume=True)
        mtd.from_metatensor(second).to_zarr(
            path, append_dim="samples", renumber={"system": "next"}, resume=True
        )

    script()
    before = location_state(path)
    script()
    assert location_state(path) == before
    expected = metatensor.join(
        [first, _tensor([2], 2.0, keys=3)], axis="samples", different_keys="union"
    )
    assert_equal_to_metatensor(mtd.open_zarr(path), expected)
    assert mtd.verify(path).ok


@pytest.mark.parametrize("compute", [True, False])
def test_a_resume_of_a_done_write_leaves_a_pending_append_its_lock(tmp_path, compute):
    path = tmp_path / "t.zarr"
    first = mtd.from_metatensor(_tensor([0, 1, 2], 1.0))
    pending = _pending_append(path)
    before = location_state(path)
    done = first.to_zarr(path, resume=True, compute=compute)
    if done is not None:
        done.compute()
    assert location_state(path) == before
    pending.compute()
    expected = metatensor.join([_tensor([0, 1, 2], 1.0), _tensor([3], 1.0)], axis="samples")
    assert_equal_to_metatensor(mtd.open_zarr(path), expected)
    assert mtd.verify(path).ok


@pytest.mark.parametrize("compute", [True, False])
def test_a_resume_of_a_stored_append_leaves_a_pending_append_its_lock(tmp_path, compute):
    """An append stored, then another one pending (its record written, its lock held):
    the first one resumed (a requeued script) is found done without taking the lock
    over, and the pending one still finishes."""
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(_tensor([0, 1], 1.0)).to_zarr(path)
    stored = mtd.from_metatensor(_tensor([2], 2.0))
    stored.to_zarr(path, append_dim="samples")
    pending = mtd.from_metatensor(_tensor([3], 3.0)).to_zarr(
        path, append_dim="samples", compute=False
    )
    before = location_state(path)
    done = stored.to_zarr(path, append_dim="samples", resume=True, compute=compute)
    if done is not None:
        done.compute()
    assert location_state(path) == before
    pending.compute()
    expected = metatensor.join(
        [_tensor([0, 1], 1.0), _tensor([2], 2.0), _tensor([3], 3.0)], axis="samples"
    )
    assert_equal_to_metatensor(mtd.open_zarr(path), expected)
    assert mtd.verify(path).ok
