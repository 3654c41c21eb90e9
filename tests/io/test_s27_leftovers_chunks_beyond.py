"""Chunk files past the shapes of a store's arrays: ``discard_append`` removes those
of the append it gives up (the store then holds the files it held before the append,
and nothing a reader needs is lost), and ``verify`` notes those it finds in a complete
store, without calling it damaged."""

from __future__ import annotations

import shutil
from pathlib import Path

import dask
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def _core(start: int, keys: tuple[int, ...], rows: int = 10) -> metatensor.TensorMap:
    """A map of ``keys``, ``rows`` samples (systems ``start`` on) per block, with a
    positions gradient on every other sample."""
    blocks = []
    for key in keys:
        samples = np.arange(start, start + rows, dtype=np.int32)[:, None]
        values = np.arange(3.0 * rows).reshape(rows, 3) + start + 100 * key
        block = metatensor.TensorBlock(
            values, metatensor.Labels(["system"], samples), [], metatensor.Labels.range("p", 3)
        )
        gradient_rows = np.arange(0, rows, 2, dtype=np.int32)
        block.add_gradient(
            "positions",
            metatensor.TensorBlock(
                np.full((len(gradient_rows), 3, 3), float(start + key)),
                metatensor.Labels(
                    ["sample", "atom"], np.stack([gradient_rows, gradient_rows % 2], axis=1)
                ),
                [metatensor.Labels.range("xyz", 3)],
                block.properties,
            ),
        )
        blocks.append(block)
    return metatensor.TensorMap(metatensor.Labels(["k"], np.array(keys)[:, None]), blocks)


def _failing(tensor: metatensor.TensorMap) -> mtd.TensorMap:
    """``tensor`` in chunks of 4 rows, whose last block's values fail to compute after
    their first chunk."""
    ours = mtd.from_metatensor(tensor)
    blocks = []
    for position, block in enumerate(ours.blocks()):
        values = block.values.rechunk((4, 3))
        if position == len(ours) - 1:

            def fail(chunk: np.ndarray, block_info=None) -> np.ndarray:
                if block_info is not None and block_info[0]["chunk-location"][0] > 0:
                    raise ValueError("this batch can not be computed")
                return chunk

            values = values.map_blocks(fail, dtype=values.dtype)
        copy = mtd.TensorBlock(values, block.samples, block.components, block.properties)
        gradient = block.gradient("positions")
        copy.add_gradient(
            "positions",
            mtd.TensorBlock(
                gradient.values, gradient.samples, gradient.components, block.properties
            ),
        )
        blocks.append(copy)
    return mtd.TensorMap(ours.keys, blocks)


def _files(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()}


SETTINGS = [{}, {"shard-chunks": 2}, {"compressor": "zstd", "checksum": False}]


@pytest.mark.parametrize("settings", SETTINGS, ids=str)
@pytest.mark.parametrize(("stored_rows", "appended"), [(10, (0, 1)), (8, (1, 0)), (3, (0,))])
def test_a_discarded_append_leaves_the_files_before_it(
    tmp_path: Path, settings: dict, stored_rows: int, appended: tuple[int, ...]
) -> None:
    path = tmp_path / "t.zarr"
    stored = _core(0, (0,), stored_rows)
    with dask.config.set({f"metatensor_dask.{k}": v for k, v in settings.items()}):
        mtd.from_metatensor(stored).to_zarr(path, chunks=4)
    before = _files(path)
    with dask.config.set(scheduler="synchronous"):
        with pytest.raises(ValueError, match="can not be computed"):
            _failing(_core(50, appended, 9)).to_zarr(path, append_dim="samples")
    assert _files(path) - before, "the failed append wrote nothing past the shapes"
    assert mtd.discard_append(path) is True
    assert _files(path) - before == set()
    report = mtd.verify(path)
    assert report.ok and report.notes == []
    assert_equal_to_metatensor(mtd.open_zarr(path), stored)
    mtd.from_metatensor(_core(20, (0, 2), 6)).to_zarr(path, append_dim="samples")
    expected = metatensor.join(
        [stored, _core(20, (0, 2), 6)], axis="samples", different_keys="union"
    )
    assert_equal_to_metatensor(mtd.open_zarr(path), expected)
    report = mtd.verify(path)
    assert report.ok and report.notes == []


def test_verify_notes_chunk_files_past_the_shapes(tmp_path: Path) -> None:
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(_core(0, (0, 1), 10)).to_zarr(path, chunks=4)
    # what an append given up by an older discard left: rows past the shapes
    left = [
        "blocks/1/values/c.3.0",
        "blocks/1/values/c.7.0",
        "blocks/0/samples/c.5.0",
        "blocks/0/gradients/positions/values/c.9.0.0",
    ]
    for key in left:
        shutil.copy(path / "blocks/0/values/c.0.0", path / key)
    report = mtd.verify(path)
    assert report.ok
    (note,) = report.notes
    assert note.startswith("4 chunk files past the shapes of their arrays")
    for key in sorted(left)[:3]:
        assert repr(key) in note
    assert "and 1 more" in note
    assert_equal_to_metatensor(mtd.open_zarr(path), _core(0, (0, 1), 10))


def test_a_complete_store_of_empty_arrays_has_no_note(tmp_path: Path) -> None:
    for settings in SETTINGS:
        path = tmp_path / f"{len(settings)}.zarr"
        tensor = _core(0, (0, 1), 0)
        with dask.config.set({f"metatensor_dask.{k}": v for k, v in settings.items()}):
            mtd.from_metatensor(tensor).to_zarr(path)
        report = mtd.verify(path)
        assert report.ok and report.notes == [], settings
