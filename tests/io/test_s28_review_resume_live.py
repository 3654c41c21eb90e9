"""``resume=True`` against a store that a live writer is writing: refused as locked by
that writer (wait for it), not as an interrupted write of another computation (whose
remedy, ``mode='w'``, the lock refuses too)."""

from __future__ import annotations

import json
import threading
import time

import dask.array as da
import numpy as np
import pytest
from zarr_writer_process import slow_tensor

import metatensor_dask as mtd


def _gated_tensor(gate: threading.Event) -> mtd.TensorMap:
    """One block whose values are computed once ``gate`` is set."""

    def wait(chunk: np.ndarray) -> np.ndarray:
        if not gate.wait(60.0):
            raise TimeoutError("the test never opened the gate")
        return chunk

    values = da.from_array(np.arange(12.0).reshape(6, 2), chunks=(3, 2))
    block = mtd.TensorBlock(
        values.map_blocks(wait, dtype=np.float64, meta=np.empty((0, 0))),
        mtd.Labels(["system"], np.arange(6)[:, None]),
        [],
        mtd.Labels(["n"], np.arange(2)[:, None]),
    )
    return mtd.TensorMap(mtd.Labels(["center_type"], np.array([[7]])), [block])


def _until_incomplete(path) -> None:
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        try:
            root = json.loads((path / "zarr.json").read_text())
        except (OSError, ValueError):
            root = {}
        attributes = root.get("attributes", {}).get("metatensor_dask", {})
        if (path / ".lock").exists() and attributes.get("complete") is False:
            return
        time.sleep(0.01)
    raise AssertionError("the write never started")


@pytest.mark.parametrize("mode", ["w", "r+", "a"])
def test_resume_of_another_tensor_while_a_write_goes_on_waits_for_it(tmp_path, mode):
    path = tmp_path / "t.zarr"
    slow_tensor(2, 0.0).to_zarr(path)
    gate = threading.Event()
    failures: list[BaseException] = []

    def overwrite() -> None:
        try:
            _gated_tensor(gate).to_zarr(path, mode="w")
        except BaseException as error:
            failures.append(error)

    writer = threading.Thread(target=overwrite)
    writer.start()
    try:
        _until_incomplete(path)
        with pytest.raises(mtd.StoreLockedError, match="being written by another writer"):
            slow_tensor(2, 0.0, key=3).to_zarr(path, mode=mode, resume=True)
    finally:
        gate.set()
        writer.join()
    assert failures == []
    got = mtd.open_zarr(path)
    assert got.keys.values.tolist() == [[7]]
    np.testing.assert_array_equal(got.block(0).values.compute(), np.arange(12.0).reshape(6, 2))
