"""The same tensor with its gradients in another order is the same append: metatensor
gives the gradients of a map it loads in an order that changes from one process to the
next, and a requeued job passes ``resume=True`` with the tensor loaded again."""

from __future__ import annotations

import metatensor
import numpy as np
import pytest
from test_s24_append_refusals import location_state

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def _labels(name: str, values: list[int]) -> metatensor.Labels:
    return metatensor.Labels([name], np.array(values, np.int32).reshape(-1, 1))


def _tensor(systems: list[int], order: list[str]) -> metatensor.TensorMap:
    """One block of samples ``system``, with the gradients ``order`` added in that
    order (the same values whatever the order)."""
    n = len(systems)
    block = metatensor.TensorBlock(
        np.arange(3.0 * n).reshape(n, 3) + systems[0],
        _labels("system", systems),
        [],
        _labels("p", [0, 1, 2]),
    )
    gradients = {
        "positions": (
            metatensor.Labels(
                ["sample", "system", "atom"],
                np.array([[i, s, a] for i, s in enumerate(systems) for a in (0, 1)], np.int32),
            ),
            [_labels("xyz", [0, 1, 2])],
        ),
        "strain": (
            metatensor.Labels(["sample"], np.arange(n, dtype=np.int32).reshape(-1, 1)),
            [_labels("xyz_1", [0, 1, 2]), _labels("xyz_2", [0, 1, 2])],
        ),
        "cell": (
            metatensor.Labels(["sample"], np.arange(n, dtype=np.int32).reshape(-1, 1)),
            [_labels("abc", [0, 1])],
        ),
    }
    for parameter in order:
        samples, components = gradients[parameter]
        shape = (len(samples), *(len(c) for c in components), 3)
        values = np.arange(float(np.prod(shape))).reshape(shape) - systems[0]
        block.add_gradient(
            parameter, metatensor.TensorBlock(values, samples, components, block.properties)
        )
    return metatensor.TensorMap(_labels("k", [0]), [block])


ORDERS = [["positions", "strain", "cell"], ["cell", "strain", "positions"]]


@pytest.mark.parametrize("renumber", [None, {"system": "next"}, {"system": 10}])
def test_resume_of_a_stored_append_given_its_gradients_in_another_order(tmp_path, renumber):
    first, again = (_tensor([3, 4], order) for order in ORDERS)
    assert first.block(0).gradients_list() != again.block(0).gradients_list()
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(_tensor([0, 1, 2], ORDERS[0])).to_zarr(path, chunks=2)
    mtd.from_metatensor(first).to_zarr(path, append_dim="samples", renumber=renumber)
    stored = location_state(path)
    # the requeued job: the same tensor, its gradients in the order of this process
    mtd.from_metatensor(again).to_zarr(path, append_dim="samples", renumber=renumber, resume=True)
    assert location_state(path) == stored


def test_an_append_with_the_gradients_in_another_order_reads_as_the_join(tmp_path):
    path = tmp_path / "t.zarr"
    batches = [_tensor([0, 1], ORDERS[0]), _tensor([2], ORDERS[1]), _tensor([3, 4], ORDERS[1])]
    for batch in batches:
        mtd.from_metatensor(batch).to_zarr(path, append_dim="samples", chunks=2)
    expected = metatensor.join(batches, axis="samples", different_keys="union")
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), expected)
    assert mtd.verify(path).ok
