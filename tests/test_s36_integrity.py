"""Damaged sources and stores read by appends: an error, never stored numbers."""

import json
import zipfile

import metatensor
import numpy as np
import pytest
from metatensor import Labels, TensorBlock, TensorMap

import metatensor_dask as mtd


def _tensor(first_system: int, rows: int = 6) -> TensorMap:
    """Two blocks of ``rows`` samples (systems from ``first_system``), float64."""
    rng = np.random.default_rng(first_system)
    blocks = []
    for key in range(2):
        systems = np.arange(first_system, first_system + rows, dtype=np.int32)
        samples = Labels(["system", "atom"], np.stack([systems, np.full(rows, key)], axis=1))
        properties = Labels.range("n", 4)
        blocks.append(TensorBlock(rng.standard_normal((rows, 4)), samples, [], properties))
    return TensorMap(Labels.range("k", 2), blocks)


def _flip_values_byte(path) -> None:
    """Flip one bit in the middle of the data of block 1's values member."""
    member = "blocks/1/values.npy"
    info = zipfile.ZipFile(path).getinfo(member)
    data = bytearray(path.read_bytes())
    name_length = int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_length = int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_length + extra_length
    data[start + info.file_size - 20] ^= 0x10  # in the last row's values
    path.write_bytes(bytes(data))


@pytest.fixture
def damaged_file(tmp_path):
    path = tmp_path / "damaged.mts"
    metatensor.save(str(path), _tensor(100))
    _flip_values_byte(path)
    return path


def test_append_of_a_damaged_file_read_in_chunks_is_refused(tmp_path, damaged_file):
    # a member read by several tasks is checked by a task of its own, which the append
    # must run: without it, the damaged bytes were stored and committed
    store = tmp_path / "store.zarr"
    mtd.from_metatensor(_tensor(0)).to_zarr(store)
    with pytest.raises(mtd.DamagedFileError, match=r"damaged\.mts' is damaged"):
        mtd.load(damaged_file, chunks=2).to_zarr(store, append_dim="samples")
    # the append is interrupted: the store reads as before it
    assert metatensor.equal(mtd.to_metatensor(mtd.open_zarr(store)), _tensor(0))


def test_append_creating_a_store_from_a_damaged_file_is_refused(tmp_path, damaged_file):
    store = tmp_path / "new.zarr"
    with pytest.raises(mtd.DamagedFileError, match="is damaged"):
        mtd.load(damaged_file, chunks=2).to_zarr(store, append_dim="samples")
    with pytest.raises(mtd.MetatensorDaskError):
        mtd.open_zarr(store)


def test_write_batches_of_a_damaged_file_read_in_chunks_is_refused(tmp_path, damaged_file):
    store = tmp_path / "batches.zarr"
    with pytest.raises(mtd.MetatensorDaskError, match=r"damaged\.mts' is damaged"):
        mtd.write_batches(lambda items: mtd.load(damaged_file, chunks=2), [0], store, quiet=True)
    with pytest.raises(mtd.IncompleteStoreError):
        mtd.open_zarr(store)


def _edit_root_record(store, path: str, name: str, value) -> None:
    """Set the attribute ``name`` of the array ``path`` in the root's consolidated
    metadata (what readers and appends use), as an edit of the root would."""
    root = store / "zarr.json"
    document = json.loads(root.read_text())
    document["consolidated_metadata"]["metadata"][path]["attributes"][name] = value
    root.write_text(json.dumps(document))


def _with_samples(tensor: TensorMap, block: int, systems: list[int]) -> TensorMap:
    """``tensor`` with the systems of the samples of block ``block`` replaced."""
    blocks = []
    for i, original in enumerate(tensor.blocks()):
        samples = original.samples.values.copy()
        if i == block:
            samples[:, 0] = systems
        blocks.append(
            TensorBlock(
                original.values.copy(),
                Labels(original.samples.names, samples),
                [],
                original.properties,
            )
        )
    return TensorMap(tensor.keys, blocks)


@pytest.mark.parametrize(("name", "value"), [("max", [1, 1]), ("column_max", [1, 1])])
def test_append_refuses_sample_records_below_the_entries_it_reads(tmp_path, name, value):
    # an append trusts `max` and `column_max` to skip the search for duplicates; the
    # entries it reads anyway (to extend their digest) show them edited: appended
    # rows repeating stored ones were stored, and the store became unreadable
    store = tmp_path / "store.zarr"
    mtd.from_metatensor(_tensor(0)).to_zarr(store)
    _edit_root_record(store, "blocks/1/samples", name, value)
    repeated = _with_samples(_tensor(100), block=1, systems=[3, 4, 5, 6, 7, 8])
    with pytest.raises(mtd.DamagedStoreError, match=f"'blocks/1/samples'.*\\({name}\\)"):
        mtd.from_metatensor(repeated).to_zarr(store, append_dim="samples")
    assert metatensor.equal(mtd.to_metatensor(mtd.open_zarr(store)), _tensor(0))


def test_a_slice_of_a_damaged_file_read_in_chunks_is_refused(damaged_file):
    loaded = mtd.load(damaged_file, chunks=2)
    last = mtd.Labels(["system"], np.array([[105]], dtype=np.int32))
    with pytest.raises(mtd.DamagedFileError):
        mtd.to_metatensor(mtd.slice(loaded, "samples", last))
