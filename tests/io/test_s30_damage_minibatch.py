"""A minibatch of an appended store whose partial chunk was put back as it was before
the append (an older copy: right size, right checksum, other rows): the selections
that do not read that chunk give metatensor's numbers, those that do are refused,
naming the chunk."""

from __future__ import annotations

import shutil

import metatensor
import numpy as np
import pytest
from metatensor.operations import slice as slice_theirs

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

ROWS = 4


def _systems(first: int, count: int, seed: int) -> metatensor.TensorMap:
    """One block of two atoms per system, with positions gradients (one row per atom)."""
    rng = np.random.default_rng(seed)
    samples = np.array([(s, a) for s in range(first, first + count) for a in range(2)], np.int32)
    block = metatensor.TensorBlock(
        rng.normal(size=(len(samples), 3)),
        metatensor.Labels(["system", "atom"], samples),
        [],
        metatensor.Labels.range("n", 3),
    )
    rows = np.array([(i, s, a) for i, (s, a) in enumerate(samples)], np.int32)
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            rng.normal(size=(len(rows), 3, 3)),
            metatensor.Labels(["sample", "system", "atom"], rows),
            [metatensor.Labels.range("xyz", 3)],
            block.properties,
        ),
    )
    return metatensor.TensorMap(metatensor.Labels.range("key", 1), [block])


@pytest.fixture(scope="module")
def appended(tmp_path_factory):
    """The store of systems 0-4 then 5-8 appended, its values chunk 2 (rows 8:12, of
    which 8:10 stored first) put back as before the append; and the whole map."""
    folder = tmp_path_factory.mktemp("minibatch")
    path, before = folder / "t.zarr", folder / "before.zarr"
    first, second = _systems(0, 5, seed=1), _systems(5, 4, seed=2)
    mtd.to_zarr(mtd.from_metatensor(first), path, chunks=ROWS)
    shutil.copytree(path, before)
    mtd.to_zarr(mtd.from_metatensor(second), path, append_dim="samples")
    chunk = "blocks/0/values/c.2.0"
    assert (before / chunk).read_bytes() != (path / chunk).read_bytes()
    shutil.copyfile(before / chunk, path / chunk)
    whole = metatensor.join([first, second], axis="samples", different_keys="union")
    return path, whole


@pytest.mark.parametrize("systems", [[0, 3], [7], [1, 8]])
def test_a_minibatch_not_reading_the_older_chunk_is_right(appended, systems):
    path, whole = appended
    selection = np.array(systems, np.int32)[:, None]
    ours = mtd.slice(mtd.open_zarr(path), "samples", mtd.Labels(["system"], selection))
    theirs = slice_theirs(whole, "samples", metatensor.Labels(["system"], selection))
    assert_equal_to_metatensor(ours, theirs)


@pytest.mark.parametrize("systems", [[4], [5], [0, 4, 8]])
def test_a_minibatch_reading_the_older_chunk_is_refused(appended, systems):
    path, _ = appended
    selection = np.array(systems, np.int32)[:, None]
    ours = mtd.slice(mtd.open_zarr(path), "samples", mtd.Labels(["system"], selection))
    expected = r"the chunk 'c\.2\.0' of the array 'blocks/0/values' is not the chunk the store"
    with pytest.raises(mtd.DamagedStoreError, match=expected):
        mtd.to_metatensor(ours)
