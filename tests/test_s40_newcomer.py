"""An atomistic-ML user's workflows on featomic output, stored by ``write_batches`` in
Zarr and by metatensor in a ``.mts`` file, compared with metatensor-operations: values,
every gradient and the metadata.
"""

from __future__ import annotations

import functools

import metatensor
import metatensor.operations as mops
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

featomic = pytest.importorskip("featomic")
ase_build = pytest.importorskip("ase.build")

MOLECULES = ("H2O", "CH4", "NH3", "C2H4", "CH3OH", "HCN", "CO2", "C2H6")


def molecules(items: list[int]):
    """The molecules of ``items``, each rattled by its index."""
    frames = []
    for item in items:
        frame = ase_build.molecule(MOLECULES[item % len(MOLECULES)])
        frame.positions += np.random.default_rng(item).normal(scale=0.05, size=(len(frame), 3))
        frames.append(frame)
    return frames


@functools.cache
def calculator():
    return featomic.SphericalExpansion(
        cutoff={"radius": 3.0, "smoothing": {"type": "ShiftedCosine", "width": 0.5}},
        density={"type": "Gaussian", "width": 0.3},
        basis={
            "type": "TensorProduct",
            "max_angular": 1,
            "radial": {"type": "Gto", "max_radial": 1},
        },
    )


def expansion(items: list[int]) -> metatensor.TensorMap:
    """featomic's spherical expansion of the molecules of ``items``, positions gradients."""
    return calculator().compute(molecules(items), gradients=["positions"])


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """``(zarr store, .mts file)`` of the expansion of 8 molecules, by batches of 3."""
    folder = tmp_path_factory.mktemp("newcomer")
    store = str(folder / "expansion.zarr")
    mtd.write_batches(expansion, list(range(len(MOLECULES))), store, batch_size=3, quiet=True)
    path = str(folder / "expansion.mts")
    metatensor.save(path, mtd.to_metatensor(mtd.open_zarr(store)))
    return store, path


def opened(stored, kind: str) -> mtd.TensorMap:
    store, path = stored
    return mtd.open_zarr(store) if kind == "zarr" else mtd.load(path)


def systems(first: int, stop: int, module):
    return module.Labels(["system"], np.arange(first, stop, dtype=np.int32).reshape(-1, 1))


@pytest.mark.parametrize("kind", ["zarr", "mts"])
def test_joining_train_sets_numbered_alike_names_the_remedy(stored, kind):
    """Two train sets whose systems are numbered alike (two featomic runs, each from 0)
    join along samples only with ``add_dimension``: the error said "can not have the
    same label entry multiple times" and nothing of what to do."""
    tensor = opened(stored, kind)
    first = mtd.slice(tensor, "samples", systems(0, 4, mtd))
    again = mtd.slice(tensor, "samples", systems(0, 4, mtd))
    with pytest.raises(mtd.MetatensorError, match="same label entry multiple times") as error:
        mtd.join([first, again], "samples")
    assert 'add_dimension="tensor"' in str(error.value)
    assert "(system, atom)" in str(error.value)

    theirs = metatensor.load(stored[1])
    their_first = mops.slice(theirs, "samples", systems(0, 4, metatensor))
    joined = mtd.join([first, again], "samples", add_dimension="tensor")
    expected = mops.join([their_first, their_first], "samples", add_dimension="tensor")
    assert_equal_to_metatensor(joined, expected)


@pytest.mark.parametrize("kind", ["zarr", "mts"])
def test_joining_the_same_properties_names_the_remedy(stored, kind):
    """Descriptors of two calculators with the same property labels side by side need
    ``add_dimension``; the error now says so, and with it the result is metatensor's."""
    tensor = opened(stored, kind)
    with pytest.raises(mtd.MetatensorError, match="same label entry multiple times") as error:
        mtd.join([tensor, tensor], "properties")
    assert 'add_dimension="tensor"' in str(error.value)
    assert "(n)" in str(error.value)

    theirs = metatensor.load(stored[1])
    joined = mtd.join([tensor, tensor], "properties", add_dimension="tensor")
    expected = mops.join([theirs, theirs], "properties", add_dimension="tensor")
    assert_equal_to_metatensor(joined, expected)


def test_join_blocks_names_the_remedy(stored):
    block = opened(stored, "zarr").block(0)
    with pytest.raises(mtd.MetatensorError, match="two inputs of `join_blocks`"):
        mtd.join_blocks([block, block], "samples")


def test_joining_maps_of_other_keys_names_the_remedy(stored, tmp_path):
    """Two featomic runs over different species have different keys: ``join`` (and
    ``apply join`` of the command line) needs ``different_keys``; the error said only
    "inputs to 'join' should have the same number of blocks"."""
    tensor = opened(stored, "zarr")
    metatensor.save(str(tmp_path / "water.mts"), expansion([0]))
    their_water = metatensor.load(str(tmp_path / "water.mts"))
    water = mtd.load(str(tmp_path / "water.mts"))
    with pytest.raises(mtd.NotEqualError, match="should have the same number of blocks") as error:
        mtd.join([water, tensor], "samples", add_dimension="tensor")
    assert 'different_keys="union"' in str(error.value)

    joined = mtd.join([water, tensor], "samples", "union", add_dimension="tensor")
    theirs = metatensor.load(stored[1])
    expected = mops.join([their_water, theirs], "samples", "union", add_dimension="tensor")
    assert_equal_to_metatensor(joined, expected)
