"""featomic calculators other than the SOAP power spectrum (per-system atomic
compositions, samples ``system`` only) stored by ``write_batches``, reduced, and saved
for metatensor: a selection that leaves every block empty, reduced over every sample
(or property) name, must still make a map that metatensor loads.
"""

from __future__ import annotations

import metatensor
import numpy as np
import pytest
from ingest_support import renumbered

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

featomic = pytest.importorskip("featomic")
ase = pytest.importorskip("ase")

ITEMS = list(range(5))


def frame(item: int):
    """A small periodic cell (SiC, H2O, NH3 in turn), rattled by ``item``."""
    symbols, cell = (("SiC", 2.7), ("OH2", 5.0), ("NH3", 5.0))[item % 3]
    rng = np.random.default_rng(item)
    positions = rng.uniform(0, 1.5, size=(len(ase.Atoms(symbols)), 3))
    return ase.Atoms(symbols, positions=positions, cell=np.eye(3) * cell, pbc=True)


def composition(items: list[int]) -> metatensor.TensorMap:
    """featomic's per-system atomic composition, with positions and cell gradients."""
    calculator = featomic.AtomicComposition(per_system=True)
    return calculator.compute([frame(item) for item in items], gradients=["positions", "cell"])


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """The store of ``write_batches`` of the compositions in batches of 2, and
    metatensor's join of the renumbered batches."""
    path = tmp_path_factory.mktemp("composition") / "composition.zarr"
    mtd.write_batches(composition, ITEMS, path, batch_size=2, renumber="system", quiet=True)
    batches = [renumbered(composition(ITEMS[s : s + 2]), s) for s in range(0, len(ITEMS), 2)]
    return path, metatensor.join(batches, axis="samples", different_keys="union")


def test_the_store_is_the_join_of_the_batches(stored):
    path, joined = stored
    assert_equal_to_metatensor(mtd.open_zarr(path, chunks=3).compute(), joined)


def _no_sample(tensor):
    return mtd.slice(tensor, "samples", mtd.Labels(["system"], np.array([[99]])))


def _no_property(tensor):
    return mtd.slice(tensor, "properties", mtd.Labels(["count"], np.array([[99]])))


@pytest.mark.parametrize(
    ("emptied", "reduce", "axis"),
    [
        (_no_sample, lambda t: mtd.mean_over_samples(t, "system"), "samples"),
        (_no_property, lambda t: mtd.sum_over_properties(t, "count"), "properties"),
    ],
)
def test_reducing_every_name_of_a_map_of_empty_blocks_saves_for_metatensor(
    stored, tmp_path, emptied, reduce, axis
):
    """Every name reduced gives the single entry ``_`` (none for an empty block): with
    every block empty, the result had no names at all, which ``mtd.save`` wrote and
    ``metatensor.load`` refused (``invalid header in file: expected '(', got ']'``)."""
    path, _ = stored
    result = reduce(emptied(mtd.open_zarr(path, chunks=3)))
    mtd.save(tmp_path / "reduced.mts", result)
    loaded = metatensor.load(str(tmp_path / "reduced.mts"))
    assert metatensor.equal(loaded, mtd.to_metatensor(result.compute()))
    for block in loaded.blocks():
        assert getattr(block, axis).names == ["_"]
        assert len(getattr(block, axis)) == 0
