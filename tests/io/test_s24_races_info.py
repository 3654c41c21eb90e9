"""``info`` (``describe_store``) of a store overwritten while it reads it: the summary is
of one state of the store, never the metadata of one write with the keys of another.

The overwrite falls at a chosen moment: a zarr ``WrapperStore`` over the store's own
``LocalStore`` runs it when the summary first reads the keys, after the root.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import metatensor
import pytest
from zarr.storage import LocalStore, WrapperStore
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.io.inspection import describe_store, report_dict


class _WrittenAtKeys(WrapperStore):
    """A store that runs ``write()`` before its first read under ``keys/``."""

    def __init__(self, store: LocalStore, write) -> None:
        super().__init__(store)
        self.write = write
        self.written = False

    async def get(self, key, prototype, byte_range=None):
        if key.startswith("keys/") and not self.written:
            self.written = True
            await asyncio.get_running_loop().run_in_executor(None, self.write)
        return await self._store.get(key, prototype, byte_range)


def _rekeyed(tensor: metatensor.TensorMap, offset: int) -> metatensor.TensorMap:
    keys = metatensor.Labels(tensor.keys.names, tensor.keys.values + offset)
    return metatensor.TensorMap(keys, [block.copy() for block in tensor.blocks()])


def _summary(report) -> dict:
    summary = report_dict(report)
    summary.pop("location")
    return summary


@pytest.mark.parametrize("n_samples", [(23, 0, 11), (4, 5, 6)])
def test_info_of_a_store_overwritten_while_read_is_one_state(tmp_path: Path, n_samples):
    """Other keys and chunks written (``mode="w"``) between the reads of the root and of
    the keys: before, the summary gave the old blocks' shapes and chunks under the new
    keys."""
    path = tmp_path / "store.zarr"
    mtd.from_metatensor(make_metatensor(0)).to_zarr(path, chunks=2)
    other = mtd.from_metatensor(_rekeyed(make_metatensor(1, n_samples=n_samples), 7))
    store = _WrittenAtKeys(
        LocalStore(path, read_only=True), lambda: other.to_zarr(path, mode="w", chunks=3)
    )
    report = describe_store(store)
    assert store.written
    assert _summary(report) == _summary(describe_store(path))
    assert report.keys.tolist() == (make_metatensor(1).keys.values + 7).tolist()
    assert [block[0].chunk_rows for block in report.blocks] == [min(3, n) or 1 for n in n_samples]
