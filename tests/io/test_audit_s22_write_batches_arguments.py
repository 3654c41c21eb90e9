"""``write_batches`` refuses a ``window`` or ``run_id`` it can not use before it creates
anything: a ``window`` of another type failed after the store's root was written (a store
that a new run then refused as existing), ``window=0`` or a negative one ran as 1, and a
``run_id`` that JSON can not encode failed with a ``TypeError``."""

from __future__ import annotations

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def one_row_per_item(items: list[int]) -> metatensor.TensorMap:
    block = metatensor.TensorBlock(
        np.arange(float(len(items))).reshape(-1, 1),
        metatensor.Labels(["system"], np.arange(len(items), dtype=np.int32).reshape(-1, 1)),
        [],
        metatensor.Labels.range("p", 1),
    )
    return metatensor.TensorMap(metatensor.Labels.single(), [block])


@pytest.mark.parametrize("value", ["3", 0, -2, 2.5, True])
def test_a_window_that_is_not_a_positive_int_is_refused_before_anything(tmp_path, value):
    path = tmp_path / "batches.zarr"
    with pytest.raises(mtd.MetatensorDaskError, match="`window` must be a positive int"):
        mtd.write_batches(one_row_per_item, range(4), path, batch_size=2, quiet=True, window=value)
    assert not path.exists() or not any(path.iterdir())


@pytest.mark.parametrize("value", [object(), 7, ["run"]])
def test_a_run_id_that_is_not_a_str_is_refused_before_anything(tmp_path, value):
    path = tmp_path / "batches.zarr"
    with pytest.raises(mtd.MetatensorDaskError, match="`run_id` must be a str or None"):
        mtd.write_batches(one_row_per_item, range(4), path, batch_size=2, quiet=True, run_id=value)
    assert not path.exists() or not any(path.iterdir())
    # the same location then takes a run with valid arguments
    mtd.write_batches(one_row_per_item, range(4), path, batch_size=2, quiet=True, window=1)
    expected = metatensor.join(
        [one_row_per_item([0, 1]), _shifted(one_row_per_item([2, 3]), 2)], axis="samples"
    )
    assert_equal_to_metatensor(mtd.open_zarr(path), expected)


def _shifted(tensor: metatensor.TensorMap, offset: int) -> metatensor.TensorMap:
    block = tensor.block(0)
    samples = metatensor.Labels(["system"], np.asarray(block.samples.values) + offset)
    shifted = metatensor.TensorBlock(block.values, samples, block.components, block.properties)
    return metatensor.TensorMap(tensor.keys, [shifted])
