"""A write that may take a lock over (``resume=True``, ``mode="w"``) and is refused
leaves the lock where it was: the ``Delayed`` of an append of this process still
finishes it, and the store is byte for byte as before the refused call."""

from __future__ import annotations

import metatensor
import numpy as np
import pytest
from test_s24_append_refusals import location_state

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def _tensor(systems: list[int], scale: float) -> metatensor.TensorMap:
    samples = metatensor.Labels(["system"], np.array(systems, np.int32).reshape(-1, 1))
    values = scale * np.arange(2 * len(systems), dtype=np.float64).reshape(-1, 2)
    properties = metatensor.Labels(["p"], np.arange(2, dtype=np.int32).reshape(-1, 1))
    block = metatensor.TensorBlock(values, samples, [], properties)
    return metatensor.TensorMap(metatensor.Labels.single(), [block])


def _refusals(path):
    """Calls refused by a store whose append of this process has not run."""
    other = mtd.from_metatensor(_tensor([7, 8], 3.0))
    return {
        "resume another append": lambda: other.to_zarr(path, append_dim="samples", resume=True),
        "overwrite with values read from it": lambda: mtd.multiply(
            mtd.open_zarr(path), 2.0
        ).to_zarr(path, mode="w"),
    }


@pytest.mark.parametrize("case", ["resume another append", "overwrite with values read from it"])
def test_a_refused_takeover_leaves_the_append_of_a_delayed_to_finish(tmp_path, case):
    path = tmp_path / "t.zarr"
    first, second = _tensor([0, 1, 2], 1.0), _tensor([3, 4], 2.0)
    mtd.from_metatensor(first).to_zarr(path)
    pending = mtd.from_metatensor(second).to_zarr(path, append_dim="samples", compute=False)
    before = location_state(path)
    with pytest.raises(mtd.MetatensorDaskError, match=r"interrupted|reads the store"):
        _refusals(path)[case]()
    assert location_state(path) == before
    pending.compute()
    values = np.concatenate([first.block().values, second.block().values])
    samples = metatensor.Labels(["system"], np.arange(5, dtype=np.int32).reshape(-1, 1))
    block = metatensor.TensorBlock(values, samples, [], first.block().properties)
    joined = metatensor.TensorMap(first.keys, [block])
    assert_equal_to_metatensor(mtd.open_zarr(path), joined)
    assert mtd.verify(path).ok
