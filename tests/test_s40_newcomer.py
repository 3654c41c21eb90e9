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
from pipeline_support import run

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


def _energies(features: metatensor.TensorMap) -> metatensor.TensorMap:
    """A linear model's targets of ``features`` (one block): energies, and their
    positions gradients (forces), from fixed weights."""
    block = features.block(0)
    weights = np.random.default_rng(3).normal(size=(block.values.shape[1], 1))
    energy = metatensor.Labels.range("energy", 1)
    target = metatensor.TensorBlock(block.values @ weights, block.samples, [], energy)
    gradient = block.gradient("positions")
    target.add_gradient(
        "positions",
        metatensor.TensorBlock(
            gradient.values @ weights, gradient.samples, gradient.components, energy
        ),
    )
    return metatensor.TensorMap(features.keys, [target])


def _fitted_stores(stored, folder):
    """Per-structure features ``X`` (all keys moved to properties, summed over atoms)
    and energies ``Y`` in Zarr stores, and metatensor's ``X`` and ``Y``."""
    theirs = metatensor.load(stored[1])
    theirs = mops.sum_over_samples(
        theirs.components_to_properties("o3_mu").keys_to_properties(
            ["o3_lambda", "o3_sigma", "center_type", "neighbor_type"]
        ),
        "atom",
    )
    ours = mtd.sum_over_samples(
        opened(stored, "zarr")
        .components_to_properties("o3_mu")
        .keys_to_properties(["o3_lambda", "o3_sigma", "center_type", "neighbor_type"]),
        "atom",
    )
    targets = _energies(theirs)
    mtd.to_zarr(ours, str(folder / "X.zarr"))
    mtd.to_zarr(mtd.from_metatensor(targets), str(folder / "Y.zarr"))
    return theirs, targets


def test_predictions_of_stored_weights_are_stored_readable(stored, tmp_path):
    """``dot`` of features and weights both read from Zarr, written to Zarr: the store
    could not be opened again ("damaged: the Labels array 'blocks/0/properties' has no
    valid 'chain' attribute"). The properties of the result are the samples of the
    weights, and samples read from a store carry the digest of their chained records,
    which was written beside properties without those records."""
    features, targets = _fitted_stores(stored, tmp_path)
    weights = mops.lstsq(features, targets, rcond=1e-10)
    mtd.to_zarr(mtd.from_metatensor(weights), str(tmp_path / "W.zarr"))

    X = mtd.open_zarr(str(tmp_path / "X.zarr"))
    W = mtd.open_zarr(str(tmp_path / "W.zarr"))
    mtd.to_zarr(mtd.dot(X, W), str(tmp_path / "P.zarr"))
    assert mtd.verify(str(tmp_path / "P.zarr")).ok
    predictions = mtd.open_zarr(str(tmp_path / "P.zarr"))
    assert_equal_to_metatensor(predictions, mops.dot(features, weights), rtol=1e-12, atol=1e-14)


def test_fit_and_predict_from_the_command_line(stored, tmp_path, capsys):
    """``apply lstsq`` then ``apply dot`` on the stores: the predictions, values and
    forces, are metatensor's and equal the energies; the second command's output could
    not be opened."""
    features, targets = _fitted_stores(stored, tmp_path)
    X, Y = tmp_path / "X.zarr", tmp_path / "Y.zarr"
    W, P = tmp_path / "W.zarr", tmp_path / "P.zarr"
    assert run(capsys, "apply", "lstsq", X, Y, "--arg", "rcond=1e-10", "-o", W, "-q")[0] == 0
    assert run(capsys, "apply", "dot", X, W, "-o", P, "-q")[0] == 0
    code, _, err = run(capsys, "verify", P, "-q")
    assert code == 0, err

    weights = mops.lstsq(features, targets, rcond=1e-10)
    assert_equal_to_metatensor(mtd.open_zarr(str(W)), weights, rtol=1e-6, atol=1e-9)
    predictions = mtd.open_zarr(str(P))
    assert_equal_to_metatensor(predictions, mops.dot(features, weights), rtol=1e-6, atol=1e-9)
    assert_equal_to_metatensor(predictions, targets, rtol=1e-6, atol=1e-9)


def test_blocks_selected_by_metatensor_keys_name_the_remedy(stored):
    """Checking a result block by block against metatensor's, ``ours.block(key)`` with
    ``key`` from metatensor's keys raised "invalid type for block selection" without a
    remedy, and ``from_metatensor`` refused a ``LabelsEntry``."""
    ours = opened(stored, "zarr")
    theirs = metatensor.load(stored[1])
    for selection in (theirs.keys[2], theirs.keys):
        with pytest.raises(TypeError, match=r"metatensor_dask\.from_metatensor"):
            ours.block(selection)
    for key, block in theirs.items():
        entry = mtd.from_metatensor(key)
        assert isinstance(entry, mtd.LabelsEntry)
        assert_equal_to_metatensor(ours.block(entry), block)
    assert len(ours.blocks(mtd.from_metatensor(theirs.keys))) == len(theirs.keys)
