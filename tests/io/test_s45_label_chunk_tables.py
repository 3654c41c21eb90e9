"""The chunk tables of sample Labels and row pointers (format 5): written by every
writer, extended by appends, compared by the tasks reading those chunks; stores of
format 4 read as before."""

from __future__ import annotations

import json
from pathlib import Path

import dask
import pytest
import zarr
from older_formats import make_format_4
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

SHAPES = {"n_samples": (12, 8), "n_properties": (3, 3), "nested": False}
GRADIENT = "blocks/0/gradients/strain"


def _appended(path: Path) -> None:
    mtd.from_metatensor(make_metatensor(seed=1, **SHAPES)).to_zarr(path, chunks=4)
    more = mtd.from_metatensor(make_metatensor(seed=2, **SHAPES))
    more.to_zarr(path, append_dim="samples", renumber={"system": "next"})


def _batches(path: Path) -> None:
    def function(items: list[int]):
        return make_metatensor(seed=items[0], **SHAPES)

    mtd.write_batches(function, list(range(3)), path, quiet=True, chunks=4)


WRITERS = {"append": _appended, "write_batches": _batches}


def _move_a_gradient_row_in_both_arrays(path: Path) -> None:
    """Give the first gradient row of the last value row but one to the value row
    before it, in the row pointer and in the ``"sample"`` column of the gradient
    samples, both rewritten by zarr (valid chunks, checksums recomputed): the two
    agree, and only the chunk tables tell them from the chunks written."""
    with zarr.config.set({"array.write_empty_chunks": True}):
        pointer = zarr.open_array(path / GRADIENT / "row_pointer", mode="r+")
        samples = zarr.open_array(path / GRADIENT / "samples", mode="r+")
        entries, rows = pointer[...], samples[...]
        k = len(entries) - 3
        assert entries[k] < entries[k + 1]
        rows[entries[k], 0] = k - 1
        entries[k] += 1
        pointer[...], samples[...] = entries, rows


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_rows_moved_in_the_chunks_an_append_wrote_are_refused(tmp_path, writer):
    # the chunk-wise task pairing value and gradient rows found them agreeing, and gave
    # other numbers: the appends list the chunks they write in the tables
    path = tmp_path / "t.zarr"
    with dask.config.set(scheduler="synchronous"):
        WRITERS[writer](path)
        assert mtd.verify(path).ok
        _move_a_gradient_row_in_both_arrays(path)
        with pytest.raises(mtd.DamagedStoreError, match="is not the chunk the store lists"):
            tensor = mtd.open_zarr(path)
            mtd.multiply(tensor, tensor).block(0).gradient("strain").values.compute()
    problems = mtd.verify(path).problems
    assert any(f"'{GRADIENT}/row_pointer' is not the chunk" in p for p in problems), problems
    assert any(f"'{GRADIENT}/samples' is not the chunk" in p for p in problems), problems


def _root(path: Path) -> dict:
    return json.loads((path / "zarr.json").read_text())


def _edit_root(path: Path, change) -> None:
    root = _root(path)
    change(root["consolidated_metadata"]["metadata"])
    (path / "zarr.json").write_text(json.dumps(root))


@pytest.fixture
def written(tmp_path) -> Path:
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(make_metatensor(seed=1, **SHAPES)).to_zarr(path, chunks=4)
    return path


def test_a_format_4_root_whose_labels_record_tables_is_refused_as_edited(written):
    # a format 5 root with its format number edited down read its Labels unchecked
    root = _root(written)
    root["attributes"]["metatensor_dask"]["format"] = 4
    (written / "zarr.json").write_text(json.dumps(root))
    with pytest.raises(mtd.DamagedStoreError, match="only format 5 stores have"):
        mtd.open_zarr(written)


def test_a_samples_table_lost_is_refused(written):
    # (the table gone, the chunks of the samples would be read unchecked)
    def drop(nodes):
        del nodes[f"{GRADIENT}/samples"]["attributes"]["chunk_crc32c"]

    _edit_root(written, drop)
    match = f"the array '{GRADIENT}/samples' has no valid 'chunk_crc32c'"
    with pytest.raises(mtd.DamagedStoreError, match=match):
        mtd.open_zarr(written)


def test_format_4_stores_read_and_append_as_format_4(written):
    make_format_4(written)
    theirs = make_metatensor(seed=1, **SHAPES)
    assert_equal_to_metatensor(mtd.open_zarr(written), theirs)
    more = mtd.from_metatensor(make_metatensor(seed=2, **SHAPES))
    more.to_zarr(written, append_dim="samples", renumber={"system": "next"})
    root = _root(written)
    assert root["attributes"]["metatensor_dask"]["format"] == 4
    nodes = root["consolidated_metadata"]["metadata"]
    assert "chunk_crc32c" in nodes["blocks/0/values"]["attributes"]
    assert "chunk_crc32c" not in nodes[f"{GRADIENT}/samples"]["attributes"]
    assert mtd.verify(written).ok
    assert len(mtd.open_zarr(written).block(0).samples) == 24
