"""Batches of several dtypes written to one store, and maps of every dtype through a
store and a metatensor file, then an operation, next to metatensor: a batch of
another dtype than the store's is refused naming both, the batches before it stay
committed, and a resume with the function fixed finishes the store."""

from __future__ import annotations

import dask
import distributed
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.errors import MetatensorDaskError

DTYPES = ["bool", "int8", "uint16", "int64", "float16", "float32", "complex128"]


def _labels(names: list[str], rows: list[list[int]]) -> metatensor.Labels:
    return metatensor.Labels(names, np.array(rows, dtype=np.int32).reshape(-1, len(names)))


def _batch(item: int, dtype: str) -> metatensor.TensorMap:
    """One system of 3 atoms (numbered from 0, as featomic does) with position
    gradients, values of ``dtype`` drawn from ``item``."""
    rng = np.random.default_rng(item)
    values = rng.integers(0, 3, (3, 2)).astype(dtype)
    block = metatensor.TensorBlock(
        values,
        _labels(["system", "atom"], [[0, a] for a in range(3)]),
        [],
        _labels(["p"], [[0], [1]]),
    )
    gradient = rng.integers(0, 3, (6, 3, 2)).astype(dtype)
    rows = [[s, 0, a] for s in range(3) for a in range(2)]
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            gradient,
            _labels(["sample", "system", "atom"], rows),
            [_labels(["xyz"], [[0], [1], [2]])],
            _labels(["p"], [[0], [1]]),
        ),
    )
    return metatensor.TensorMap(_labels(["k"], [[0]]), [block])


def _float32_then_float64(items: list[int]) -> metatensor.TensorMap:
    return _batch(items[0], "float32" if items[0] < 2 else "float64")


def _float32(items: list[int]) -> metatensor.TensorMap:
    return _batch(items[0], "float32")


@pytest.mark.xdist_group("serial")
def test_a_batch_of_another_dtype_is_refused_then_resumed(tmp_path):
    store = tmp_path / "batches.zarr"
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address="127.0.0.1:0"
        ) as cluster,
        distributed.Client(cluster),
    ):
        with pytest.raises(MetatensorDaskError) as refused:
            mtd.write_batches(_float32_then_float64, list(range(4)), store, quiet=True)
        message = str(refused.value)
        assert "has the dtype float64, the store float32" in message
        assert "the 2 batches before it are committed" in message
        assert "resume=True" in message
        mtd.write_batches(_float32, list(range(4)), store, resume=True, quiet=True)
    expected = metatensor.join(
        [
            metatensor.TensorMap(
                batch.keys,
                [
                    metatensor.TensorBlock(
                        block.values,
                        metatensor.Labels(
                            block.samples.names,
                            np.asarray(block.samples.values) + np.array([item, 0], np.int32),
                        ),
                        block.components,
                        block.properties,
                    )
                    for block in batch.blocks()
                ],
            )
            for item, batch in enumerate(_float32([i]) for i in range(4))
        ],
        "samples",
    )
    ours = mtd.to_metatensor(mtd.remove_gradients(mtd.open_zarr(store)))
    assert ours.block(0).values.dtype == np.float32
    assert metatensor.equal(ours, expected)
    assert mtd.verify(store).problems == []


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_through_a_store_and_a_file_then_an_operation(tmp_path, dtype):
    tensor = metatensor.join([_batch(i, dtype) for i in range(3)], "samples", add_dimension="batch")
    metatensor.save(tmp_path / "core.mts", tensor)
    mtd.to_zarr(mtd.load(tmp_path / "core.mts", chunks=4), tmp_path / "map.zarr", chunks=2)
    mtd.save(tmp_path / "ours.mts", mtd.open_zarr(tmp_path / "map.zarr"))
    assert (tmp_path / "ours.mts").read_bytes() == (tmp_path / "core.mts").read_bytes()
    back = metatensor.load(tmp_path / "ours.mts")
    assert metatensor.equal(back, tensor)
    with dask.config.set(scheduler="sync"):
        ours = mtd.to_metatensor(mtd.multiply(mtd.open_zarr(tmp_path / "map.zarr"), 2))
    theirs = metatensor.multiply(tensor, 2)
    assert ours.block(0).values.dtype == theirs.block(0).values.dtype
    assert metatensor.equal(ours, theirs)
