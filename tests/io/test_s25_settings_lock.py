"""A ``lock-timeout`` longer than a thread can wait (about 292 years) is a lock that
never goes stale: its heartbeat waits the longest it can rather than failing."""

from __future__ import annotations

import threading

import dask
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd


@pytest.mark.parametrize("timeout", [10**12, "100000000 days", threading.TIMEOUT_MAX * 10])
def test_a_longer_lock_timeout_than_a_thread_waits_writes_without_failing(
    tmp_path, monkeypatch, timeout
):
    failures: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda raised: failures.append(raised.exc_value))
    values = np.arange(12.0).reshape(6, 2)
    block = mtd.TensorBlock(values, mtd.Labels.range("s", 6), [], mtd.Labels.range("p", 2))
    with dask.config.set({"metatensor_dask.lock-timeout": timeout}):
        mtd.to_zarr(mtd.TensorMap(mtd.Labels.range("k", 1), [block]), tmp_path / "t.zarr")
    assert failures == []
    assert mtd.verify(tmp_path / "t.zarr").ok
    expected = metatensor.TensorBlock(
        values, metatensor.Labels.range("s", 6), [], metatensor.Labels.range("p", 2)
    )
    stored = mtd.to_metatensor(mtd.open_zarr(tmp_path / "t.zarr"))
    assert metatensor.equal_block(stored.block(0), expected)
