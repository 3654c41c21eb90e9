"""Tiny blocks of a store grown by appends hold a chunk per append; opened in one values
chunk (``chunks="auto"``), they are still read by groups, each stored chunk checked."""

from __future__ import annotations

import dask
import pytest
from test_zarr_append import assert_equal_to_join, shifted
from test_zarr_tiny_reads import CODECS, _grouped, tasks, tiny_map

import metatensor_dask as mtd

APPENDS = 3


def _appended(path, codecs: str = "default") -> list:
    """A store of 40 tiny blocks written then appended twice (5 rows each time: three
    chunks a block); returns the parts, as the join expects them."""
    parts = [tiny_map(40, seed=seed) for seed in range(APPENDS)]
    with dask.config.set(CODECS[codecs]):
        mtd.from_metatensor(parts[0]).to_zarr(path)
        for part in parts[1:]:
            mtd.from_metatensor(part).to_zarr(path, append_dim="samples", renumber={"s": "next"})
    largest = 0
    renumbered = []
    for part in parts:
        renumbered.append(shifted(part, largest, "s"))
        largest += max(int(max(b.samples.column("s"), default=-1)) for b in part) + 1
    return renumbered


@pytest.mark.parametrize("codecs", ["default", "sharded-zstd"])
def test_blocks_of_several_stored_chunks_opened_in_one_are_read_by_groups(tmp_path, codecs):
    path = tmp_path / "a.zarr"
    parts = _appended(path, codecs)
    stored = mtd.open_zarr(path)
    assert stored.block(0).values.chunks[0] == (5,) * APPENDS
    # (blocks without samples: one chunk, grouped in both)
    rows = [len(block.samples) > 0 for block in stored.blocks()]
    assert not any(g for g, has_rows in zip(_grouped(stored), rows, strict=True) if has_rows)
    opened = mtd.open_zarr(path, chunks="auto")
    assert opened.block(0).values.chunks[0] == (5 * APPENDS,)
    assert all(_grouped(opened))
    # a few group tasks, where the stored chunks gave one task per chunk of each array
    assert tasks(mtd.add(opened, opened)) * 20 < tasks(mtd.add(stored, stored))
    assert_equal_to_join(opened, parts)
    assert mtd.equal(mtd.add(opened, opened), mtd.add(stored, stored))


@pytest.mark.parametrize("damage", ["flipped", "truncated", "deleted"])
def test_a_damaged_chunk_of_a_grouped_block_is_found(tmp_path, damage):
    path = tmp_path / "a.zarr"
    _appended(path)
    chunk = path / "blocks" / "0" / "values" / "c.1.0.0"
    data = bytearray(chunk.read_bytes())
    if damage == "deleted":
        chunk.unlink()
    elif damage == "truncated":
        chunk.write_bytes(bytes(data[: len(data) // 2]))
    else:
        data[0] ^= 0xFF
        chunk.write_bytes(bytes(data))
    opened = mtd.open_zarr(path, chunks="auto")
    assert all(_grouped(opened))
    with pytest.raises(mtd.DamagedStoreError, match="blocks/0/values"):
        opened.compute()
