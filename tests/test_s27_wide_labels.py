"""Property Labels of a million entries: set operations and positions as metatensor's,
and maps whose blocks have them round-trip through ``.mts`` files and Zarr stores."""

from __future__ import annotations

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

ENTRIES = 10**6


def _entries(seed: int) -> np.ndarray:
    """``ENTRIES`` unique rows ``(n, l, m)``, in no particular order."""
    rng = np.random.default_rng(seed)
    index = rng.permutation(2 * ENTRIES)[:ENTRIES]
    return np.stack([index // 1000, index % 1000, index % 7], axis=1).astype(np.int32)


@pytest.fixture(scope="module")
def entries() -> tuple[np.ndarray, np.ndarray]:
    return _entries(0), _entries(1)


def test_set_operations_and_positions_as_metatensor(entries):
    first, second = entries
    ours = [mtd.Labels(["n", "l", "m"], e) for e in (first, second)]
    theirs = [metatensor.Labels(["n", "l", "m"], e) for e in (first, second)]

    union, *union_maps = ours[0].union_and_mapping(ours[1])
    expected, *expected_maps = theirs[0].union_and_mapping(theirs[1])
    np.testing.assert_array_equal(union.values, np.asarray(expected.values))
    for mine, reference in zip(union_maps, expected_maps, strict=True):
        np.testing.assert_array_equal(mine, np.asarray(reference))

    common, *common_maps = ours[0].intersection_and_mapping(ours[1])
    expected, *expected_maps = theirs[0].intersection_and_mapping(theirs[1])
    assert len(common) > 0
    np.testing.assert_array_equal(common.values, np.asarray(expected.values))
    for mine, reference in zip(common_maps, expected_maps, strict=True):
        np.testing.assert_array_equal(mine, np.asarray(reference))

    probes = [tuple(int(x) for x in second[i]) for i in range(0, ENTRIES, 9973)]
    assert [ours[0].position(p) for p in probes] == [theirs[0].position(p) for p in probes]


def _map(properties: np.ndarray) -> metatensor.TensorMap:
    rng = np.random.default_rng(3)
    labels = metatensor.Labels(["n", "l", "m"], properties)
    samples = metatensor.Labels(["system"], np.array([[0], [1]], dtype=np.int32))
    block = metatensor.TensorBlock(
        rng.normal(size=(2, len(properties))).astype(np.float32), samples, [], labels
    )
    gradient_samples = metatensor.Labels(
        ["sample", "atom"], np.array([[0, 0], [1, 0], [1, 1]], dtype=np.int32)
    )
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            rng.normal(size=(3, 1, len(properties))).astype(np.float32),
            gradient_samples,
            [metatensor.Labels(["xyz"], np.array([[0]], dtype=np.int32))],
            labels,
        ),
    )
    return metatensor.TensorMap(metatensor.Labels(["k"], np.array([[0]], dtype=np.int32)), [block])


def test_a_million_properties_round_trip_through_files_and_stores(entries, tmp_path):
    theirs = _map(entries[0])
    theirs.save(str(tmp_path / "theirs.mts"))
    loaded = mtd.load(tmp_path / "theirs.mts", chunks="1MiB")
    assert_equal_to_metatensor(loaded, theirs)

    loaded.to_zarr(tmp_path / "wide.zarr", chunks="1MiB")
    opened = mtd.open_zarr(tmp_path / "wide.zarr")
    assert opened.block(0).properties.digest() == loaded.block(0).properties.digest()
    assert_equal_to_metatensor(opened, theirs)

    opened.save(tmp_path / "ours.mts")
    assert (tmp_path / "ours.mts").read_bytes() == (tmp_path / "theirs.mts").read_bytes()
