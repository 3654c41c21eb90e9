"""Appends of new and stored keys: the root written is the compact JSON of what it
holds, its metadata sorted by path, whatever the order of the root it appends to (a
root another writer wrote, or one this process reads again from scratch), and the
store equals metatensor's join of what was appended."""

from __future__ import annotations

import json
from pathlib import Path

import dask
import metatensor
import numpy as np
from test_append_metadata_cache import positions_block

import metatensor_dask as mtd
from metatensor_dask.io import zarr_root_cache
from metatensor_dask.testing import assert_equal_to_metatensor


def _blocks(keys: list[int], seed: int) -> metatensor.TensorMap:
    """Blocks of 1 to 3 samples at the keys ``k`` of ``keys`` (systems from ``10 *
    seed``)."""
    rng = np.random.default_rng(seed)
    labels = metatensor.Labels(["k"], np.array(keys, dtype=np.int32)[:, None])
    sizes = rng.integers(1, 4, size=len(keys)).tolist()
    blocks = [positions_block(10 * seed, n, 1000 * seed + i) for i, n in enumerate(sizes)]
    return metatensor.TensorMap(labels, blocks)


def _append(tensor: metatensor.TensorMap, path: Path) -> None:
    with dask.config.set(scheduler="synchronous"):
        mtd.from_metatensor(tensor).to_zarr(path, append_dim="samples")


def _reordered(path: Path) -> None:
    """Write the root of ``path`` again as another writer could: compact, its metadata
    in reverse order, a letter of every array's node type escaped."""
    document = json.loads((path / "zarr.json").read_bytes())
    metadata = document["consolidated_metadata"]["metadata"]
    document["consolidated_metadata"]["metadata"] = dict(reversed(metadata.items()))
    raw = json.dumps(document, separators=(",", ":")).encode()
    escaped = raw.replace(b'"node_type":"array"', b'"node_type":"\\u0061rray"')
    assert escaped != raw
    (path / "zarr.json").write_bytes(escaped)


def _check_root(path: Path) -> None:
    """The root of ``path`` is compact JSON, its metadata sorted by path."""
    raw = (path / "zarr.json").read_bytes()
    document = json.loads(raw)
    assert json.dumps(document, separators=(",", ":")).encode() == raw
    metadata = list(document["consolidated_metadata"]["metadata"])
    assert metadata == sorted(metadata)


def test_appends_of_new_and_stored_keys_write_the_root_a_reader_expects(tmp_path):
    rng = np.random.default_rng(7)
    path = tmp_path / "t.zarr"
    tensors, stored, seed = [], 0, 0
    for step in range(6):
        new = int(rng.integers(0, 4)) if step else 5
        touched = sorted(set(rng.integers(0, stored, size=2).tolist())) if stored else []
        keys = [*range(stored, stored + new), *touched]
        if not keys:
            continue
        seed += 1
        tensor = _blocks(keys, seed)
        if step == 3:
            _reordered(path)  # written by another writer: its runs are not in order
        _append(tensor, path)
        if step == 4:
            zarr_root_cache._RUNS_READ.clear()  # read from scratch by the next append
        tensors.append(tensor)
        stored += new
        _check_root(path)
    expected = metatensor.join(tensors, axis="samples", different_keys="union")
    assert_equal_to_metatensor(mtd.open_zarr(path), expected)
