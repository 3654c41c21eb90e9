"""Checks of the session's review: the wording of write_batches' failures."""

import pytest

from metatensor_dask.io.ingest_schedule import Batches


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
