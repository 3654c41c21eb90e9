"""featomic's radial spectrum of structures nobody tuned to (rattled molecules, a rattled
triclinic cell, a molecule with an atom far from the others, a lone atom, a species seen
only in later batches and selected in every one), through the three write paths onto
one store: ``write_batches`` with a short last batch, ``to_zarr`` appends (``"next"``
and an offset), ``convert --append --renumber system`` of ``.mts`` files. The store is
metatensor's join of the renumbered batches; what a user computes from it equals
metatensor on the join, and the positions gradients of a per-system mean equal finite
differences of featomic's values."""

from __future__ import annotations

import functools

import metatensor
import numpy as np
import pytest
from ingest_support import renumbered

import metatensor_dask as mtd
from metatensor_dask.execution.cli import main
from metatensor_dask.testing import assert_equal_to_metatensor

featomic = pytest.importorskip("featomic")
ase = pytest.importorskip("ase")

GRADIENTS = ["positions", "strain"]
#: (center_type, neighbor_type): N (7) is in the last structures only, He (2) has no
#: neighbour within the cutoff
KEYS = [[1, 1], [1, 8], [2, 1], [7, 1], [8, 1], [8, 14], [14, 8]]
TYPES = [1, 2, 6, 7, 8, 14]


def _structure(item: int):
    rng = np.random.default_rng(item)
    kind = item % 5
    if kind == 0:
        frame = ase.Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    elif kind == 1:
        cell = np.array([[4.1, 0, 0], [0.7, 3.9, 0], [0.5, 0.9, 4.4]])
        frame = ase.Atoms("Si2O2H", rng.random((5, 3)) @ cell, cell=cell, pbc=True)
    elif kind == 2:  # the helium atom has no neighbour
        frame = ase.Atoms("OH2He", [[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0], [30, 0, 0]])
    elif kind == 3:
        frame = ase.Atoms("O", positions=[[0.1, 0.2, 0.3]])
    else:
        frame = ase.Atoms(
            "NH3", [[0, 0, 0.1], [0.94, 0, -0.3], [-0.47, 0.8, -0.3], [-0.47, -0.8, -0.3]]
        )
    frame.positions += 0.03 * rng.standard_normal(frame.positions.shape)
    return frame


@functools.cache
def _calculator():
    return featomic.SoapRadialSpectrum(
        cutoff={"radius": 3.0, "smoothing": {"type": "ShiftedCosine", "width": 0.5}},
        density={"type": "Gaussian", "width": 0.3},
        basis={"radial": {"type": "Gto", "max_radial": 1}},
    )


def spectrum(items: list[int]) -> metatensor.TensorMap:
    """The radial spectrum of ``items`` (systems numbered from 0), of the keys ``KEYS``."""
    keys = metatensor.Labels(["center_type", "neighbor_type"], np.array(KEYS, np.int32))
    frames = [_structure(item) for item in items]
    return _calculator().compute(frames, gradients=GRADIENTS, selected_keys=keys)


def _largest_system(tensor: metatensor.TensorMap) -> int:
    found = [int(b.samples.column("system").max()) for b in tensor.blocks() if len(b.samples)]
    return max(found, default=-1)


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> tuple[str, metatensor.TensorMap]:
    """A store written by the three paths, and the join it must equal."""
    folder = tmp_path_factory.mktemp("featomic")
    path = folder / "spectrum.zarr"
    items = [0, 1, 2, 3, 0]
    mtd.write_batches(spectrum, items, path, batch_size=2, quiet=True)
    parts = [renumbered(spectrum(items[i : i + 2]), i) for i in range(0, len(items), 2)]
    assert all(len(b.samples) == 0 for b in parts[0].blocks(center_type=7))

    mtd.from_metatensor(spectrum([4, 1])).to_zarr(
        path, append_dim="samples", renumber={"system": "next"}
    )
    parts.append(renumbered(spectrum([4, 1]), 5))
    mtd.from_metatensor(spectrum([2])).to_zarr(path, append_dim="samples", renumber={"system": 10})
    parts.append(renumbered(spectrum([2]), 10))

    sources = []
    for i, batch in enumerate([[3, 4], [1, 0, 2]]):
        sources.append(str(folder / f"{i}.mts"))
        metatensor.save(sources[-1], spectrum(batch))
        parts.append(renumbered(spectrum(batch), _largest_system(parts[-1]) + 1))
    assert main(["convert", *sources, str(path), "--append", "--renumber", "system"]) == 0
    return str(path), metatensor.join(parts, axis="samples", different_keys="union")


def test_the_store_is_the_join_of_the_renumbered_batches(stored):
    path, expected = stored
    assert mtd.verify(path).ok
    assert_equal_to_metatensor(mtd.open_zarr(path), expected)
    assert_equal_to_metatensor(mtd.open_zarr(path, chunks=3), expected)


def _design(module, tensor):
    """Per-system features, as featomic's tutorials build them."""
    pairs = module.Labels(["neighbor_type"], np.array([[t] for t in TYPES], np.int32))
    features = tensor.keys_to_properties(pairs).keys_to_samples("center_type")
    return module.sum_over_samples(features, ["atom", "center_type"])


def _energies(design: metatensor.TensorMap) -> metatensor.TensorMap:
    block = design.block()
    weights = np.random.default_rng(7).standard_normal((len(block.properties), 1))
    energy = metatensor.Labels(["energy"], np.array([[0]], np.int32))
    fitted = metatensor.TensorBlock(block.values @ weights, block.samples, [], energy)
    for parameter, gradient in block.gradients():
        values = gradient.values @ weights
        fitted.add_gradient(
            parameter,
            metatensor.TensorBlock(values, gradient.samples, gradient.components, energy),
        )
    return metatensor.TensorMap(design.keys, [fitted])


def test_what_a_user_computes_from_the_store_equals_metatensor(stored):
    path, expected = stored
    tensor = mtd.open_zarr(path, chunks=4)
    systems = mtd.Labels(["system"], np.array([[1], [5], [10], [12]], np.int32))
    assert_equal_to_metatensor(
        mtd.slice(tensor, "samples", systems),
        metatensor.slice(expected, "samples", mtd.to_metatensor(systems)),
    )
    assert_equal_to_metatensor(
        mtd.multiply(tensor, 1.5), metatensor.multiply(expected, 1.5), rtol=1e-15
    )
    design = _design(metatensor, expected)
    ours = _design(mtd, tensor)
    assert_equal_to_metatensor(ours, design, rtol=1e-12, atol=1e-15)
    energies = _energies(design)
    assert_equal_to_metatensor(
        mtd.lstsq(ours, mtd.from_metatensor(energies), rcond=1e-12),
        metatensor.lstsq(design, energies, rcond=1e-12),
        rtol=1e-6,
        atol=1e-9,
    )


def test_positions_gradients_of_a_mean_equal_finite_differences(stored):
    """The mean over the atoms of each system, through the store, against featomic's
    values at displaced positions (metatensor divides the gradients of atoms that do
    not neighbour every center by too few rows)."""
    path, _ = stored
    mean = mtd.to_metatensor(mtd.mean_over_samples(mtd.open_zarr(path, chunks=2), "atom"))
    # system 1 is the triclinic cell (item 1), whose atoms are not all neighbours
    key, step = {"center_type": 8, "neighbor_type": 14}, 1e-5
    block = mean.block(key)
    gradient = block.gradient("positions")
    row_of_system = {int(s): i for i, s in enumerate(block.samples.column("system"))}
    rows = [r for r, s in enumerate(gradient.samples.values) if s[0] == row_of_system[1]]
    assert len(rows) == 4
    for row in rows:
        atom = int(gradient.samples.values[row, 2])
        for xyz in range(3):
            moved = []
            for sign in (1, -1):
                frame = _structure(1)
                frame.positions[atom, xyz] += sign * step
                computed = _calculator().compute([frame])
                moved.append(computed.block(key).values.mean(axis=0))
            difference = (moved[0] - moved[1]) / (2 * step)
            np.testing.assert_allclose(gradient.values[row, xyz], difference, atol=1e-7)
