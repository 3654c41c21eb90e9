"""featomic's spherical expansion (blocks with components) with positions and strain
gradients on periodic structures, single atoms among them, species in some batches
only, float32 casts: the store of ``write_batches`` and of ``convert --append``, and the
usual reductions on it, equal metatensor's, and the gradients equal finite differences.
"""

from __future__ import annotations

import metatensor
import numpy as np
import pytest
from ingest_support import renumbered
from pipeline_support import run

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

featomic = pytest.importorskip("featomic")
ase = pytest.importorskip("ase")

#: Each structure's symbols, positions, cell (all periodic): Si/C diamond, a lone O (no
#: neighbour within the cutoff), H2O, a lone H, NH3, a primitive Si cell.
STRUCTURES = (
    ("SiC", [[0, 0, 0], [1.35, 1.35, 1.35]], [[0, 2.7, 2.7], [2.7, 0, 2.7], [2.7, 2.7, 0]]),
    ("O", [[0, 0, 0]], np.eye(3) * 3.0),
    ("OH2", [[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]], np.eye(3) * 6.0),
    ("H", [[0.1, 0.2, 0.3]], np.eye(3) * 4.0),
    ("NH3", [[0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]], np.eye(3) * 6.0),
    ("Si2", [[0, 0, 0], [1.3, 1.3, 1.3]], [[0, 2.7, 2.7], [2.7, 0, 2.7], [2.7, 2.7, 0]]),
)


def frame(item: int):
    """The structure of ``item`` (cycling through :data:`STRUCTURES`), rattled by it."""
    symbols, positions, cell = STRUCTURES[item % len(STRUCTURES)]
    rng = np.random.default_rng(item)
    positions = np.array(positions, dtype=float)
    positions += rng.normal(scale=0.02, size=positions.shape)
    return ase.Atoms(symbols, positions=positions, cell=cell, pbc=True)


def calculator():
    return featomic.SphericalExpansion(
        cutoff={"radius": 2.5, "smoothing": {"type": "ShiftedCosine", "width": 0.5}},
        density={"type": "Gaussian", "width": 0.3},
        basis={
            "type": "TensorProduct",
            "max_angular": 1,
            "radial": {"type": "Gto", "max_radial": 1},
        },
    )


class Expansion:
    """The spherical expansion of the frames of some items, in ``dtype``."""

    def __init__(self, dtype=np.float64):
        self.dtype = dtype

    def __call__(self, items: list[int]) -> metatensor.TensorMap:
        frames = [frame(item) for item in items]
        tensor = calculator().compute(frames, gradients=["positions", "strain"])
        return tensor.to(dtype=self.dtype)


ITEMS = list(range(9))


def joined(function: Expansion, batch_size: int) -> metatensor.TensorMap:
    """metatensor's join of the batches, renumbered as write_batches numbers them."""
    batches = [
        renumbered(function(ITEMS[start : start + batch_size]), start)
        for start in range(0, len(ITEMS), batch_size)
    ]
    return metatensor.join(batches, axis="samples", different_keys="union")


@pytest.mark.parametrize(("batch_size", "dtype"), [(1, np.float64), (4, np.float32)])
def test_write_batches_of_spherical_expansions(tmp_path, batch_size, dtype):
    """Keys come and go from batch to batch (the lone H has only (1, 1)); the store is
    the join of the batches exactly, and equals featomic run once on every item."""
    function = Expansion(dtype)
    path = tmp_path / "se.zarr"
    mtd.write_batches(function, ITEMS, path, batch_size=batch_size, chunks=3, quiet=True)
    stored = mtd.open_zarr(path).compute()
    assert_equal_to_metatensor(stored, joined(function, batch_size))
    assert mtd.verify(path).ok
    once = metatensor.sort(function(ITEMS))
    assert metatensor.equal(metatensor.sort(mtd.to_metatensor(stored)), once)


def test_convert_append_of_spherical_expansions(capsys, tmp_path):
    """The batches saved by metatensor and appended by the command line make the same
    store as write_batches (every batch's last system has samples)."""
    function = Expansion(np.float32)
    sources = []
    for start in range(0, len(ITEMS), 4):
        sources.append(tmp_path / f"{start}.mts")
        metatensor.save(str(sources[-1]), function(ITEMS[start : start + 4]))
    out = tmp_path / "all.zarr"
    assert run(capsys, "convert", *sources, out, "--append", "--renumber", "system", "-q")[0] == 0
    assert_equal_to_metatensor(mtd.open_zarr(out).compute(), joined(function, 4))


def descriptor(module, tensor):
    """Per-structure features of ``tensor`` computed by ``module`` (metatensor, or
    metatensor_dask on its lazy maps): neighbour types to properties, centre types to
    samples, o3_mu to properties, summed over atoms and centre types."""
    if module is metatensor:
        moved = tensor.keys_to_properties("neighbor_type").keys_to_samples("center_type")
        moved = moved.components_to_properties("o3_mu")
    else:
        moved = mtd.keys_to_properties(tensor, "neighbor_type")
        moved = mtd.components_to_properties(mtd.keys_to_samples(moved, "center_type"), "o3_mu")
    return module.sum_over_samples(moved, ["atom", "center_type"])


def weights(tensor: metatensor.TensorMap) -> metatensor.TensorMap:
    """One random weight per property of each block of ``tensor``."""
    rng = np.random.default_rng(7)
    blocks = [
        metatensor.TensorBlock(
            rng.normal(size=(1, len(block.properties))),
            metatensor.Labels.range("out", 1),
            [],
            block.properties,
        )
        for block in tensor.blocks()
    ]
    return metatensor.TensorMap(tensor.keys, blocks)


def energy(atoms, w: metatensor.TensorMap) -> float:
    """The weighted descriptor of one structure, summed over the blocks."""
    features = descriptor(metatensor, calculator().compute([atoms]))
    total = 0.0
    for key, block in features.items():
        columns = [w.block(key).properties.position(p) for p in block.properties]
        total += float(block.values[0] @ w.block(key).values[0, columns])
    return total


def test_reductions_of_the_store_and_their_gradients(tmp_path):
    """keys_to_properties, keys_to_samples, components_to_properties, sum_over_samples
    and dot on the opened store equal metatensor's on the joined batches; the positions
    and strain gradients of the result equal finite differences of featomic."""
    function = Expansion()
    path = tmp_path / "se.zarr"
    mtd.write_batches(function, ITEMS, path, batch_size=2, chunks=2, quiet=True)
    expected = descriptor(metatensor, joined(function, 2))
    lazy = descriptor(mtd, mtd.open_zarr(path, chunks=2))
    # sums of chunks, then of their sums: equal to the last bits
    assert_equal_to_metatensor(lazy.compute(), expected, rtol=1e-13, atol=1e-15)
    w = weights(expected)
    product = mtd.to_metatensor(mtd.dot(lazy, mtd.from_metatensor(w)).compute())
    assert metatensor.allclose(product, metatensor.dot(expected, w), rtol=1e-13, atol=1e-14)

    system = 4  # NH3, item 4
    positions, strain = gradients_of(product, system)
    atoms, step = frame(system), 1e-5
    for atom in range(len(atoms)):
        for x in range(3):
            moved = [atoms.copy(), atoms.copy()]
            moved[0].positions[atom, x] += step
            moved[1].positions[atom, x] -= step
            finite = (energy(moved[0], w) - energy(moved[1], w)) / (2 * step)
            assert finite == pytest.approx(positions[atom, x], abs=1e-8)
    for i in range(3):
        for j in range(3):
            deformed = [deform(atoms, i, j, step), deform(atoms, i, j, -step)]
            finite = (energy(deformed[0], w) - energy(deformed[1], w)) / (2 * step)
            assert finite == pytest.approx(strain[i, j], abs=1e-8)


def gradients_of(product: metatensor.TensorMap, system: int) -> tuple:
    """The gradients of ``system``'s total over the blocks of ``product``: with respect
    to the positions of its atoms, ``(n_atoms, 3)``, and to the strain, ``(3, 3)``."""
    positions = np.zeros((len(frame(system)), 3))
    strain = np.zeros((3, 3))
    for block in product.blocks():
        row = block.samples.position((system,))
        gradient = block.gradient("positions")
        for (sample, _, atom), value in zip(gradient.samples.values, gradient.values, strict=True):
            if sample == row:
                positions[atom] += value[:, 0]
        strained = block.gradient("strain")
        strain += strained.values[strained.samples.position((row,)), :, :, 0]
    return positions, strain


def deform(atoms, i: int, j: int, step: float):
    """``atoms`` with cell and positions multiplied by the identity plus ``step`` at
    ``(i, j)`` (featomic's strain)."""
    matrix = np.eye(3)
    matrix[i, j] += step
    copy = atoms.copy()
    copy.set_cell(atoms.cell[:] @ matrix)
    copy.positions = atoms.positions @ matrix
    return copy
