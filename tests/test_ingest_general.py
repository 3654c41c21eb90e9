"""write_batches on batches nobody tried before: the store equals metatensor's
``join(..., axis="samples", different_keys="union")`` of the renumbered batches, or
the run stops with an error naming the problem and its remedy."""

from __future__ import annotations

import json

import dask
import metatensor
import numpy as np
import pytest
from ingest_support import renumbered

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def _labels(names: list[str], values) -> metatensor.Labels:
    return metatensor.Labels(names, np.asarray(values, dtype=np.int32).reshape(-1, len(names)))


def _batch(seed: int, n: int, gradient_rows: list[int]) -> metatensor.TensorMap:
    """One block of ``n`` samples (systems from 0), two properties, and a positions
    gradient whose rows belong to the samples ``gradient_rows``, in that order."""
    rng = np.random.default_rng(seed)
    sample = np.asarray(gradient_rows, dtype=np.int32)
    block = metatensor.TensorBlock(
        rng.normal(size=(n, 2)),
        _labels(["system"], np.arange(n)),
        [],
        _labels(["p"], [0, 1]),
    )
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            rng.normal(size=(len(sample), 3, 2)),
            _labels(
                ["sample", "system", "atom"], np.stack([sample, sample, np.arange(len(sample))], 1)
            ),
            [_labels(["xyz"], [0, 1, 2])],
            _labels(["p"], [0, 1]),
        ),
    )
    return metatensor.TensorMap(_labels(["k"], [0]), [block])


#: Gradient rows of the batches of two items by first item: the rows of the first
#: batch are grouped by sample, those of the second are not.
_ROWS = {0: [0, 1, 1], 2: [1, 0, 0, 1], 4: [0, 1]}


def unsorted_batch(items: list[int]) -> metatensor.TensorMap:
    return _batch(items[0], len(items), _ROWS[items[0]])


def sorted_batch(items: list[int]) -> metatensor.TensorMap:
    return metatensor.sort(unsorted_batch(items), axes="samples")


def test_gradient_rows_not_grouped_in_a_later_batch(tmp_path):
    """The first batch stored its gradient with a row pointer (its rows are grouped by
    sample); a later batch whose rows are not grouped stops the run with the
    remedy (sorting the batches), and resume with sorted batches finishes it."""
    path = tmp_path / "t.zarr"
    with (
        dask.config.set(num_workers=2),
        pytest.raises(
            mtd.MetatensorDaskError,
            match=r"batch 1 \(items 2 to 3.*gradient 'positions' has rows not grouped by "
            r"'sample'.*metatensor\.sort",
        ),
    ):
        mtd.write_batches(unsorted_batch, list(range(6)), path, batch_size=2, quiet=True)
    root = json.loads((path / "zarr.json").read_text())["attributes"]["metatensor_dask"]
    assert root["batches"]["committed"] == 1
    with dask.config.set(num_workers=2):
        mtd.write_batches(sorted_batch, list(range(6)), path, batch_size=2, resume=True, quiet=True)
    batches = [renumbered(unsorted_batch([0, 1]), 0)]
    batches += [renumbered(sorted_batch([start, start + 1]), start) for start in (2, 4)]
    expected = metatensor.join(batches, axis="samples", different_keys="union")
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), expected)


def test_a_run_that_committed_nothing_resumes_with_other_arguments(tmp_path):
    """The first batch refused (``renumber`` names no sample dimension): the error says
    to fix the problem and resume, which works with the corrected arguments, since no
    batch depends on them yet."""
    path = tmp_path / "t.zarr"
    with pytest.raises(
        mtd.MetatensorDaskError,
        match=r"batch 0 .*can not renumber 'structure': it is not a sample dimension.*"
        r"resume=True",
    ):
        mtd.write_batches(sorted_batch, range(6), path, 2, renumber="structure", quiet=True)
    mtd.write_batches(sorted_batch, range(6), path, 2, resume=True, quiet=True)
    root = json.loads((path / "zarr.json").read_text())["attributes"]["metatensor_dask"]
    assert root["batches"]["renumber"] == "system"
    expected = metatensor.join(
        [renumbered(sorted_batch([start, start + 1]), start) for start in (0, 2, 4)],
        axis="samples",
        different_keys="union",
    )
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), expected)


def test_repeated_samples_without_renumber_name_the_remedy_of_write_batches(tmp_path):
    """Batches numbered from 0 each, ``renumber=None``: the second batch repeats the
    first one's samples; the error gives write_batches' remedy, not to_zarr's."""
    path = tmp_path / "t.zarr"
    with pytest.raises(
        mtd.MetatensorDaskError,
        match=r"batch 1 .*has the sample \{'system': 0\}, which is already stored; nothing "
        r"was written\. Number the batches apart: .*renumber='system' \(write_batches, "
        r"in a new run",
    ):
        mtd.write_batches(sorted_batch, range(6), path, 2, renumber=None, quiet=True)
