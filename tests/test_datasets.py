"""The shipped tutorial files and the featomic-like generator."""

import dask
import metatensor
import numpy as np
import pytest
from dask.utils import parse_bytes

from metatensor_dask.datasets import (
    TUTORIAL_FILES,
    featomic_like,
    nbytes_per_system,
    systems_for_size,
    tutorial_file,
)
from metatensor_dask.testing import raise_if_dask_computes

# what metatensor's "Managing gradients" tutorial prints of its two files
TUTORIAL_CONTENT = {
    "radial-spectrum.npz": (["center_type", "neighbor_type"], 5, ["positions"]),
    "spherical-expansion.npz": (
        ["o3_lambda", "o3_sigma", "center_type", "neighbor_type"],
        12,
        ["positions"],
    ),
}


@pytest.mark.parametrize("name", TUTORIAL_FILES)
def test_tutorial_files_are_the_tutorials(name):
    tensor = metatensor.load(tutorial_file(name))
    names, n_blocks, gradients = TUTORIAL_CONTENT[name]
    assert tensor.keys.names == names
    assert len(tensor) == n_blocks
    assert tensor.block(0).gradients_list() == gradients


def test_unknown_tutorial_file():
    with pytest.raises(ValueError, match=r"unknown tutorial file 'x\.npz', choose one of"):
        tutorial_file("x.npz")


def test_building_is_lazy():
    with raise_if_dask_computes():
        tensor = featomic_like(2, 12, neighbors=(3, 6), chunks=4)
        str(tensor)


def test_shapes_and_labels_are_featomic_like():
    tensor = featomic_like(3, 20, neighbors=(5, 9), seed=3)
    assert tensor.keys.names == ["center_type", "neighbor_1_type", "neighbor_2_type"]
    assert len(tensor.keys) == 18  # 3 center types x 6 neighbour pairs
    atoms_per_type = {1: 0, 6: 0, 8: 0}
    for key, block in tensor.items():
        assert key["neighbor_1_type"] <= key["neighbor_2_type"]
        n = len(block)
        assert block.samples.names == ["system", "atom"]
        assert block.values.shape == (n, 180)
        assert block.properties.names == ["l", "n_1", "n_2"]
        assert block.gradients_list() == ["positions", "strain"]
        positions = block.gradient("positions")
        assert positions.samples.names == ["sample", "system", "atom"]
        assert [c.names for c in positions.components] == [["xyz"]]
        assert positions.values.shape == (len(positions.samples), 3, 180)
        strain = block.gradient("strain")
        assert strain.samples.names == ["sample"]
        assert [c.names for c in strain.components] == [["xyz_1"], ["xyz_2"]]
        assert strain.values.shape == (n, 3, 3, 180)
        # rows grouped by sample, 5 to 9 per sample, the center among them, all in its system
        gradient_samples = positions.samples.values
        counts = np.bincount(gradient_samples[:, 0], minlength=n)
        assert counts.min() >= 5 and counts.max() <= 9
        assert np.all(np.diff(gradient_samples[:, 0]) >= 0)
        for row, (system, atom) in enumerate(block.samples.values):
            mine = gradient_samples[gradient_samples[:, 0] == row]
            assert np.all(mine[:, 1] == system)
            assert atom in mine[:, 2]
        if key["neighbor_1_type"] == key["neighbor_2_type"] == 1:
            atoms_per_type[int(key["center_type"])] = n
    assert atoms_per_type == {1: 30, 6: 18, 8: 12}  # 50/30/20% of 3 x 20 atoms


def test_gradients_are_co_partitioned():
    tensor = featomic_like(2, 24, neighbors=(4, 8), chunks=5)
    for block in tensor.blocks():
        value_chunks = block.values.chunks[0]
        assert set(value_chunks[:-1]) == {5}
        for _, gradient in block.gradients():
            pointer = gradient.row_pointer
            bounds = np.concatenate([[0], np.cumsum(value_chunks)])
            assert gradient.values.chunks[0] == tuple(np.diff(pointer[bounds]))
            expected = np.searchsorted(gradient.samples.column("sample"), np.arange(len(block) + 1))
            np.testing.assert_array_equal(pointer, expected)


def test_values_do_not_depend_on_chunks():
    small = featomic_like(2, 16, neighbors=(3, 7), chunks=3, seed=5)
    large = featomic_like(2, 16, neighbors=(3, 7), chunks=1000, seed=5)
    other = featomic_like(2, 16, neighbors=(3, 7), chunks=3, seed=6)
    a, b, c = dask.compute(small._arrays(), large._arrays(), other._arrays())
    for x, y, z in zip(a, b, c, strict=True):
        np.testing.assert_array_equal(x, y)
        assert not np.array_equal(x, z)


def test_each_task_makes_only_its_chunk():
    block = featomic_like(1, 24, neighbors=(4, 8), chunks=4).block(0)
    gradient = block.gradient("positions").values
    # one independent task per chunk: memory is bounded by one chunk per thread
    assert len(dict(gradient.__dask_graph__())) == gradient.npartitions
    full = gradient.compute()
    start = sum(gradient.chunks[0][:2])
    np.testing.assert_array_equal(
        gradient.blocks[2].compute(), full[start : start + gradient.chunks[0][2]]
    )


def test_chunks_by_size():
    tensor = featomic_like(2, 48, chunks="2MiB")
    for block in tensor.blocks():
        largest = max(a.chunksize[0] * np.prod(a.shape[1:]) * 8 for a in block._arrays())
        assert largest <= parse_bytes("2MiB") * 1.3  # rows are whole: the target is approached


def test_size_estimate():
    n = systems_for_size("100MiB", atoms_per_system=30, neighbors=(10, 20))
    tensor = featomic_like(n, 30, neighbors=(10, 20))
    total = sum(a.nbytes for a in tensor._arrays())
    assert abs(total - parse_bytes("100MiB")) < 0.1 * parse_bytes("100MiB")
    assert nbytes_per_system(30, neighbors=(10, 20)) * n == pytest.approx(total, rel=0.1)
    assert systems_for_size(1) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_systems": 0}, "`n_systems` and `atoms_per_system` must be at least 1"),
        ({"types": (1, 2, 3, 4)}, "`types` must have 1 to 3 atomic types"),
        ({"neighbors": (5, 2)}, r"`neighbors` must be \(low, high\) with 1 <= low <= high"),
    ],
)
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        featomic_like(**kwargs)
