"""Checks of the session's review: the wording of write_batches' failures, and
keys_to_properties spreading a tiny block over a large one's rows."""

import types

import dask
import dask.array as da
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.io.ingest_schedule import Batches
from metatensor_dask.operations._manipulation_utils import take_rows


@pytest.mark.parametrize(
    ("index", "said"),
    [
        (0, "no batch before it is committed to"),
        (1, "the batch before it is committed to"),
        (3, "the 3 batches before it are committed to"),
    ],
)
def test_a_failed_batch_counts_the_batches_committed_before_it(index, said):
    batches = Batches(len, list(range(10)), size=2, committed=index, window=None)
    message = str(batches.failure(index, ValueError("bad structure"), "out.zarr"))
    assert f"batch {index} (items {2 * index} to {2 * index + 1}" in message
    assert f"ValueError: bad structure; {said} out.zarr" in message
    assert "resume=True" in message


def test_a_batch_stopped_by_distributed_says_a_later_batch_may_kill_its_workers():
    """distributed counts a worker's death against every task it held: the batch its
    ``KilledWorker`` names may be one computed before the batch that kills."""
    from distributed.scheduler import KilledWorker

    batches = Batches(len, list(range(10)), size=2, committed=0, window=None)
    # (the scheduler gives it a cleaned-up WorkerState; its message reads the address)
    last = types.SimpleNamespace(address="tcp://127.0.0.1:1")
    error = KilledWorker(task="partial-1", last_worker=last, allowed_failures=3)
    message = str(batches.failure(0, error, "out.zarr"))
    assert message.startswith("batch 0 (items 0 to 1, first item 0) failed: KilledWorker")
    assert "computes this batch or a later one computed by the same worker" in message
    assert "memory limit" in message and "resume=True" in message


def _labels(names, rows):
    return metatensor.Labels(names, np.asarray(rows, dtype=np.int32).reshape(-1, len(names)))


def _tiny_and_large(tiny, properties):
    """Keys 0 and 1: ``tiny`` and a block of 20,000 samples and ``properties``
    properties."""
    rng = np.random.default_rng(properties)
    large = metatensor.TensorBlock(
        rng.standard_normal((20_000, properties)),
        _labels(["s"], np.arange(20_000)),
        [],
        _labels(["p"], np.arange(properties)),
    )
    return metatensor.TensorMap(_labels(["k"], [[0], [1]]), [tiny.copy(), large])


def test_one_tiny_block_merged_with_large_blocks_of_two_widths_computed_together():
    """The same tiny block spread over the rows of two large blocks of different widths
    is cut in chunks of different sizes: the two arrays must not share task names."""
    tiny = metatensor.TensorBlock(
        np.array([[1.0], [2.0]]), _labels(["s"], [[3], [15_000]]), [], _labels(["p"], [0])
    )
    expected, merged = [], []
    for properties in (3, 30):
        tensor = _tiny_and_large(tiny, properties)
        expected.append(tensor.keys_to_properties("k").block(0).values)
        merged.append(mtd.from_metatensor(tensor).keys_to_properties("k").block(0).values)
    for got, want in zip(dask.compute(*merged, scheduler="sync"), expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_rows_spread_in_large_chunks_that_would_read_many_input_chunks():
    """A block of 2,000 rows in 20 chunks spread over 20,000 rows: output chunks of
    15,000 rows would each read more input chunks than a task may, and dask's fancy
    indexing then made more tasks than output chunks of the input's size do."""
    rng = np.random.default_rng(0)
    array = da.from_array(np.arange(2_000.0).reshape(-1, 1), chunks=(100, 1))
    index = -np.ones(20_000, np.int64)
    index[np.sort(rng.choice(20_000, 2_000, replace=False))] = np.arange(2_000)
    large = take_rows(array, index, 0.0, rows_per_chunk=15_000)
    small = take_rows(array, index, 0.0)
    assert len(dict(large.__dask_graph__())) <= len(dict(small.__dask_graph__()))
    expected = np.where(index[:, None] >= 0, np.arange(2_000.0)[index].reshape(-1, 1), 0.0)
    np.testing.assert_array_equal(large.compute(scheduler="sync"), expected)
