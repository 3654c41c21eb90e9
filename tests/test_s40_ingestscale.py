"""write_batches of many small batches: the work of each append in proportion to the
rows it appends, not to the rows stored before it, and the store metatensor's join of
the renumbered batches (values and gradients)."""

from __future__ import annotations

import dask
import metatensor
import numpy as np
from ingest_support import renumbered

import metatensor_dask as mtd
from metatensor_dask.io import zarr_samples

#: Items per batch, and the atoms of each item's structure.
BATCH = 20
ATOMS = 3


def _block(items: list[int], species: int) -> metatensor.TensorBlock:
    """The rows of ``species`` in ``items`` (systems numbered from 0 in the batch), with
    positions gradients grouped by sample, as featomic gives them."""
    rows = [(system, atom) for system in range(len(items)) for atom in range(ATOMS)]
    samples = np.array(rows, dtype=np.int32).reshape(-1, 2)
    values = np.array([[items[s] + 0.25 * a + species, -items[s] * 0.5] for s, a in rows])
    block = metatensor.TensorBlock(
        values.reshape(-1, 2), metatensor.Labels(["system", "atom"], samples), [],
        metatensor.Labels.range("n", 2),
    )  # fmt: skip
    # each sample's gradient with respect to its own atom and the atom after it
    gradient_rows = [
        (sample, system, (atom + shift) % ATOMS)
        for sample, (system, atom) in enumerate(rows)
        for shift in (0, 1)
    ]
    gradient_samples = np.array(gradient_rows, dtype=np.int32).reshape(-1, 3)
    gradient_values = np.arange(len(gradient_rows) * 3 * 2, dtype=np.float64).reshape(-1, 3, 2)
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            gradient_values + items[0],
            metatensor.Labels(["sample", "system", "atom"], gradient_samples),
            [metatensor.Labels.range("xyz", 3)],
            metatensor.Labels.range("n", 2),
        ),
    )
    return block


def _batch(items: list[int]) -> metatensor.TensorMap:
    """Species 0 in every batch, species 1 in every other one, species 2 in every
    third: keys come and go between batches."""
    first = items[0] // BATCH
    species = [s for s in (0, 1, 2) if first % (s + 1) == 0]
    keys = metatensor.Labels(["species"], np.array([[s] for s in species], dtype=np.int32))
    return metatensor.TensorMap(keys, [_block(items, s) for s in species])


def _joined(n_items: int) -> metatensor.TensorMap:
    """metatensor's join of the batches, each renumbered by its first item's index."""
    batches = [
        renumbered(_batch(list(range(start, min(start + BATCH, n_items)))), start)
        for start in range(0, n_items, BATCH)
    ]
    return metatensor.join(batches, axis="samples", different_keys="union")


def test_appends_hash_the_rows_appended_not_the_rows_kept(tmp_path, monkeypatch):
    """Each append extends the digest of every samples array it appends to. The rows
    after the digest's last block (up to 65,536) were kept in memory by the appending
    process and hashed again, copied twice and scanned for their maxima by every
    append: with small batches, the work of an append grew with the rows already
    stored (from 20 to 34 ms of CPU per append over 1,000 batches of small molecules).
    The rows hashed in a run, counted where the digest hashes rows, are now about those
    stored (each hashed when appended, and once more when a block created by a batch is
    first appended to), where they grew with the square of the number of batches."""
    hashed = []
    rows_of = zarr_samples._rows

    def counted(values: np.ndarray) -> np.ndarray:
        hashed.append(len(values))
        return rows_of(values)

    monkeypatch.setattr(zarr_samples, "_rows", counted)
    n_items = 20 * BATCH
    path = tmp_path / "many.zarr"
    with dask.config.set(scheduler="synchronous"):
        mtd.write_batches(_batch, list(range(n_items)), path, batch_size=BATCH, quiet=True)
    monkeypatch.setattr(zarr_samples, "_rows", rows_of)
    expected = _joined(n_items)
    stored_rows = sum(
        len(block.samples) + len(block.gradient("positions").samples) for block in expected.blocks()
    )
    assert sum(hashed) <= 2 * stored_rows, (sum(hashed), stored_rows)
    tensor = mtd.to_metatensor(mtd.open_zarr(path))
    assert metatensor.equal(tensor, expected)
    for key, block in expected.items():
        ours = tensor.block(key)
        np.testing.assert_array_equal(ours.values, block.values)
        gradient, reference = ours.gradient("positions"), block.gradient("positions")
        np.testing.assert_array_equal(gradient.values, reference.values)
        assert gradient.samples == reference.samples
