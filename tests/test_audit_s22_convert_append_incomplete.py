"""``convert --append`` into a store whose write did not finish names that write's
remedies: it added those of an interrupted append (``--resume`` with the same sources,
``discard_append``), which neither finish a run of ``write_batches`` nor a convert."""

from __future__ import annotations

import dask.array as da
import metatensor
import numpy as np
import pytest
from pipeline_support import run

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def rows(first: int, count: int) -> metatensor.TensorMap:
    block = metatensor.TensorBlock(
        np.arange(float(count)).reshape(-1, 1) + first,
        metatensor.Labels(["system"], np.arange(first, first + count, dtype=np.int32)[:, None]),
        [],
        metatensor.Labels.range("p", 1),
    )
    return metatensor.TensorMap(metatensor.Labels.single(), [block])


def stopping_at_batch_two(items: list[int]) -> metatensor.TensorMap:
    if items[0] >= 4:
        raise RuntimeError("this batch fails")
    return rows(0, len(items))


def _fail(block: np.ndarray) -> np.ndarray:
    raise RuntimeError("this chunk fails")


@pytest.mark.parametrize("resume", [False, True])
def test_convert_append_into_an_unfinished_run_of_write_batches(capsys, tmp_path, resume):
    store = tmp_path / "run.zarr"
    with pytest.raises(mtd.MetatensorDaskError, match="batch 2"):
        mtd.write_batches(stopping_at_batch_two, range(8), store, batch_size=2, quiet=True)
    source = tmp_path / "more.mts"
    metatensor.save(str(source), rows(0, 2))
    flags = ["--resume"] if resume else []
    code, _, err = run(capsys, "convert", source, store, "--append", "--renumber", "system", *flags)
    assert code != 0
    assert "the run of write_batches writing it was interrupted" in err
    assert "write_batches(..., resume=True)" in err
    assert "discard_append" not in err and "given the same sources" not in err
    # the run's own remedy finishes it
    mtd.write_batches(lambda items: rows(0, 2), range(8), store, batch_size=2, resume=True)
    expected = metatensor.TensorBlock(
        np.array([[0.0], [1.0]] * 4),
        metatensor.Labels(["system"], np.arange(8, dtype=np.int32)[:, None]),
        [],
        metatensor.Labels.range("p", 1),
    )
    assert_equal_to_metatensor(
        mtd.open_zarr(store), metatensor.TensorMap(metatensor.Labels.single(), [expected])
    )


def test_convert_append_into_an_unfinished_write(capsys, tmp_path):
    store = tmp_path / "write.zarr"
    failing = da.from_array(np.ones((4, 1)), chunks=(2, 1)).map_blocks(_fail, dtype=float)
    block = mtd.TensorBlock(
        failing,
        mtd.Labels(["system"], np.arange(4, dtype=np.int32)[:, None]),
        [],
        mtd.Labels(["p"], np.zeros((1, 1), dtype=np.int32)),
    )
    with pytest.raises(RuntimeError, match="this chunk fails"):
        mtd.TensorMap(mtd.Labels(["_"], np.zeros((1, 1), dtype=np.int32)), [block]).to_zarr(store)
    source = tmp_path / "more.mts"
    metatensor.save(str(source), rows(0, 2))
    code, _, err = run(capsys, "convert", source, store, "--append")
    assert code != 0
    assert "it holds a write that did not finish" in err
    assert "--resume (without --append)" in err and "--overwrite" in err
    assert "discard_append" not in err and "given the same sources" not in err
