"""Finding the CRC checks of a computation derived from many members of several chunks
(``keys_to_samples`` merging the blocks of a file) takes time proportional to the
members, not to their square: the walk over the tasks is made once per array."""

from __future__ import annotations

import gc
import time

import metatensor
import numpy as np

import metatensor_dask as mtd
from metatensor_dask._member_checks import member_checks


def _merged_checks(tensor: mtd.TensorMap, n: int) -> tuple[float, int]:
    """The least CPU time of five searches for the checks of ``keys_to_samples`` of the
    first ``n`` blocks of ``tensor`` (the time of this thread, without garbage
    collections: others' load does not count), and how many checks it finds."""
    keys = mtd.Labels(["key"], np.arange(n, dtype=np.int32).reshape(-1, 1))
    merged = mtd.keys_to_samples(mtd.TensorMap(keys, tensor.blocks()[:n]), "key")
    arrays = merged._raw_arrays()
    fastest, found = float("inf"), 0
    gc.disable()
    try:
        for _ in range(5):
            start = time.thread_time()
            found = len(member_checks(arrays))
            fastest = min(fastest, time.thread_time() - start)
    finally:
        gc.enable()
    return fastest, found


def test_checks_of_an_array_derived_from_many_members_take_linear_time(tmp_path):
    n_blocks, rows = 1200, 2
    block = metatensor.TensorBlock(
        np.ones((rows, 3)),
        metatensor.Labels.range("sample", rows),
        [],
        metatensor.Labels.range("property", 3),
    )
    path = tmp_path / "many.mts"
    keys = metatensor.Labels.range("key", n_blocks)
    metatensor.save(str(path), metatensor.TensorMap(keys, [block.copy() for _ in keys]))
    tensor = mtd.load(path, chunks=1)
    assert tensor.block(0).values.npartitions == rows
    small, found_small = _merged_checks(tensor, n_blocks // 8)
    large, found_large = _merged_checks(tensor, n_blocks)
    assert (found_small, found_large) == (n_blocks // 8, n_blocks)
    # 8 times the members: about 8 times the time (64 times when quadratic)
    assert large < 24 * small, (small, large)
