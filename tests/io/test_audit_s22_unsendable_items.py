"""On a cluster, ``write_batches`` refuses items that do not pickle (they can not reach
a worker) with an error naming the batch, its first item and the remedy: before, the
client's own ``TypeError`` ("Could not serialize object of type ...") was raised, after
the store's root was written. The first batch's items are checked before anything is
written; a later batch that can not be sent stops the run, which resumes."""

from __future__ import annotations

import dask
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


class Unsendable:
    """An item that does not pickle (as a lock, or an object holding a C pointer)."""

    def __init__(self, value: int):
        self.value = value

    def __int__(self) -> int:
        return self.value

    def __reduce__(self):
        raise TypeError("this item does not pickle")

    def __repr__(self) -> str:
        return f"Unsendable({self.value})"


def one_row_per_item(items: list) -> metatensor.TensorMap:
    values = np.array([[float(int(item))] for item in items])
    samples = metatensor.Labels(["system"], np.arange(len(items), dtype=np.int32)[:, None])
    block = metatensor.TensorBlock(values, samples, [], metatensor.Labels.range("p", 1))
    return metatensor.TensorMap(metatensor.Labels.single(), [block])


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0") as local,
        Client(local) as connected,
    ):
        yield connected


def test_items_that_do_not_pickle_are_refused_before_anything(tmp_path, client):
    path = tmp_path / "batches.zarr"
    items = [Unsendable(value) for value in range(4)]
    message = r"batch 0 \(first item Unsendable\(0\)\) can not be sent to the workers"
    with pytest.raises(mtd.MetatensorDaskError, match=message) as raised:
        mtd.write_batches(one_row_per_item, items, path, batch_size=2, quiet=True)
    assert "this item does not pickle" in str(raised.value)
    assert "nothing was written" in str(raised.value)
    assert not path.exists()


def test_a_later_batch_that_does_not_pickle_stops_the_run_which_resumes(tmp_path, client):
    path = tmp_path / "batches.zarr"
    items: list = [0, 1, 2, 3, Unsendable(4), 5]
    message = r"batch 2 \(first item Unsendable\(4\)\) can not be sent .*resume=True"
    with pytest.raises(mtd.MetatensorDaskError, match=message):
        mtd.write_batches(one_row_per_item, items, path, batch_size=2, quiet=True)
    mtd.write_batches(one_row_per_item, list(range(6)), path, batch_size=2, quiet=True, resume=True)
    expected = one_row_per_item(list(range(6)))
    # checked in this process: the workers would first import the readers for it
    with dask.config.set(scheduler="threads"):
        assert mtd.verify(path).ok
    assert_equal_to_metatensor(mtd.open_zarr(path), expected)
