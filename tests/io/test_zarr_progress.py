"""Progress records of an interrupted write: one record per data task, naming the
chunks it stored; a record cut short names nothing; per-chunk markers (written before
records existed) are still honoured by a resumed write."""

from __future__ import annotations

import json

import dask
import pytest
from test_many_blocks_io import tiny

import metatensor_dask as mtd
from metatensor_dask.io import zarr_layout as layout
from metatensor_dask.io.zarr_progress import recorded_chunks
from metatensor_dask.io.zarr_store import open_store
from metatensor_dask.testing import assert_equal_to_metatensor

N_BLOCKS = 40


def _interrupted(path) -> list[str]:
    """Write ``tiny(N_BLOCKS)`` to ``path``, running every data task but not the
    completion task (as a writer killed just before it); the markers of every chunk."""
    delayed = mtd.from_metatensor(tiny(N_BLOCKS)).to_zarr(path, compute=False)
    graph = dict(delayed.__dask_graph__())
    tasks = [key for key in graph if isinstance(key, tuple) and key[0].startswith("zarr-write-")]
    dask.get(graph, tasks)
    markers = [
        layout.progress_marker(f"{layout.block_prefix(i)}/{array}", 0)
        for i in range(N_BLOCKS)
        for array in ("values", "gradients/positions/values")
    ]
    # the killed writer's lock: resume=True takes it over
    (path / ".lock").unlink()
    return markers


def _records(path) -> list:
    return sorted((path / ".progress").glob("batch-*.json"))


def test_each_task_records_its_chunks_in_one_record(tmp_path):
    path = tmp_path / "t.zarr"
    markers = _interrupted(path)
    records = _records(path)
    # tiny chunks are stored by a few tasks, not one record per chunk
    assert 1 <= len(records) < len(markers) / 4
    named = [c for record in records for c in json.loads(record.read_text())["chunks"]]
    assert sorted(named) == sorted(markers)
    recorded = recorded_chunks(open_store(path, None, writable=False))
    assert set(markers) <= recorded
    assert not [key for key in recorded if key.startswith(layout.BATCH_PREFIX)]
    mtd.from_metatensor(tiny(N_BLOCKS)).to_zarr(path, resume=True)
    assert not (path / ".progress").exists()
    assert_equal_to_metatensor(mtd.open_zarr(path), tiny(N_BLOCKS))


def test_resume_skips_the_recorded_chunks(tmp_path):
    path = tmp_path / "t.zarr"
    _interrupted(path)
    # a recorded chunk is not written again: losing it now shows that
    (path / "blocks" / "3" / "values" / "c.0.0").unlink()
    # the completion lists every chunk (format 4): it finds the lost one
    with pytest.raises(mtd.DamagedStoreError, match=r"'c\.0\.0' of the array 'blocks/3/values'"):
        mtd.from_metatensor(tiny(N_BLOCKS)).to_zarr(path, resume=True)


@pytest.mark.parametrize("damage", ["truncated", "zeros", "not a list"])
def test_a_damaged_record_names_nothing(tmp_path, damage):
    path = tmp_path / "t.zarr"
    _interrupted(path)
    record = _records(path)[0]
    named = json.loads(record.read_text())["chunks"]
    content = record.read_bytes()
    record.write_bytes(
        {
            "truncated": content[: len(content) // 2],
            "zeros": bytes(len(content)),
            "not a list": b'{"chunks": "all"}',
        }[damage]
    )
    recorded = recorded_chunks(open_store(path, None, writable=False))
    assert not set(named) & recorded
    # its chunks are written again by the resumed write
    lost = next(m for m in named if "%2Fgradients%2F" not in m)
    block = lost.split("%2F")[1]
    (path / "blocks" / block / "values" / "c.0.0").unlink()
    mtd.from_metatensor(tiny(N_BLOCKS)).to_zarr(path, resume=True)
    assert_equal_to_metatensor(mtd.open_zarr(path), tiny(N_BLOCKS))


def test_per_chunk_markers_of_older_writes_are_honoured(tmp_path):
    path = tmp_path / "t.zarr"
    markers = _interrupted(path)
    for record in _records(path):
        record.unlink()
    for marker in markers:
        (path / marker).write_bytes(b"")
    (path / "blocks" / "5" / "values" / "c.0.0").unlink()
    # not written again; the completion lists every chunk (format 4): it finds it lost
    with pytest.raises(mtd.DamagedStoreError, match=r"'c\.0\.0' of the array 'blocks/5/values'"):
        mtd.from_metatensor(tiny(N_BLOCKS)).to_zarr(path, resume=True)
    assert not (path / "blocks" / "5" / "values" / "c.0.0").exists()
