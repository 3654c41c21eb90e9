"""Which codecs and chunks a write under other settings gives a store: arrays stored
keep theirs (``r+``, appends, the new keys of an append), blocks that ``mode="a"``
adds take the current settings; every store reads back with the default settings."""

from __future__ import annotations

import json
from pathlib import Path

import dask
import metatensor
import metatensor.operations
import numpy as np
import pytest

import metatensor_dask as mtd

SHARDED_ZSTD = {
    "metatensor_dask.compressor": {"name": "zstd", "configuration": {"level": 4}},
    "metatensor_dask.shard-chunks": 2,
    "metatensor_dask.checksum": False,
    "metatensor_dask.chunk-size": 600,
}
PLAIN = {
    "metatensor_dask.compressor": None,
    "metatensor_dask.shard-chunks": None,
    "metatensor_dask.checksum": True,
    "metatensor_dask.chunk-size": "64MiB",
}


def _block(rng: np.random.Generator, rows: int, first_system: int) -> metatensor.TensorBlock:
    systems = first_system + np.arange(rows) // 2
    samples = metatensor.Labels(["system", "atom"], np.stack([systems, np.arange(rows) % 2], 1))
    components = [metatensor.Labels.range("c", 2)]
    properties = metatensor.Labels.range("p", 3)
    block = metatensor.TensorBlock(
        rng.standard_normal((rows, 2, 3)), samples, components, properties
    )
    pairs = np.array([[s, systems[s], a] for s in range(rows) for a in range(s % 3)])
    gradient_samples = metatensor.Labels(["sample", "system", "atom"], pairs.reshape(-1, 3))
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            rng.standard_normal((len(gradient_samples), 3, 2, 3)),
            gradient_samples,
            [metatensor.Labels.range("xyz", 3), *components],
            properties,
        ),
    )
    return block


def _tensor(seed: int, keys: list[int], rows: int, first_system: int) -> metatensor.TensorMap:
    rng = np.random.default_rng(seed)
    blocks = [_block(rng, rows, first_system) for _ in keys]
    return metatensor.TensorMap(metatensor.Labels(["k"], np.array(keys).reshape(-1, 1)), blocks)


def _codecs(store: Path, block: int) -> tuple[str, list[int]]:
    """The codecs of a block's values (without a shard's inner chunk shape, which
    follows the block's rows) and their chunk shape."""
    document = json.loads((store / f"blocks/{block}/values/zarr.json").read_text())
    codecs = document["codecs"]
    for codec in codecs:
        codec.get("configuration", {}).pop("chunk_shape", None)
    return json.dumps(codecs), document["chunk_grid"]["configuration"]["chunk_shape"]


def _write(tensor: metatensor.TensorMap, store: Path, settings: dict, **options) -> None:
    with dask.config.set(settings):
        mtd.to_zarr(mtd.from_metatensor(tensor), store, **options)


def _check(store: Path, expected: metatensor.TensorMap) -> None:
    assert mtd.verify(store).ok
    assert metatensor.equal(mtd.to_metatensor(mtd.open_zarr(store)), expected)


@pytest.mark.parametrize(("first", "then"), [(SHARDED_ZSTD, PLAIN), (PLAIN, SHARDED_ZSTD)])
def test_appends_and_rewrites_keep_the_stored_codecs(tmp_path, first, then):
    store = tmp_path / "t.zarr"
    stored = _tensor(1, [0, 1], 13, 0)
    _write(stored, store, first)
    written = [_codecs(store, block) for block in range(2)]
    twice = metatensor.operations.multiply(stored, 2.0)
    _write(twice, store, then, mode="r+")
    assert [_codecs(store, block) for block in range(2)] == written
    _check(store, twice)

    appended = _tensor(2, [1, 2], 9, 100)
    _write(appended, store, then, append_dim="samples")
    assert [_codecs(store, block)[0] for block in range(3)] == [written[0][0]] * 3
    assert _codecs(store, 1)[1] == written[1][1]
    _check(store, metatensor.join([twice, appended], axis="samples", different_keys="union"))


@pytest.mark.parametrize(("first", "then"), [(SHARDED_ZSTD, PLAIN), (PLAIN, SHARDED_ZSTD)])
def test_blocks_added_by_mode_a_take_the_current_settings(tmp_path, first, then):
    store = tmp_path / "t.zarr"
    stored = _tensor(3, [0], 11, 0)
    added = _tensor(4, [1], 11, 0)
    _write(stored, store, first)
    _write(added, store, then, mode="a")
    expected_codecs = []
    for settings, tensor in ((first, stored), (then, added)):
        _write(tensor, tmp_path / f"alone{len(expected_codecs)}.zarr", settings)
        expected_codecs.append(_codecs(tmp_path / f"alone{len(expected_codecs)}.zarr", 0)[0])
    assert [_codecs(store, block)[0] for block in range(2)] == expected_codecs
    both = metatensor.TensorMap(
        metatensor.Labels(["k"], np.array([[0], [1]])),
        [stored.block(0).copy(), added.block(0).copy()],
    )
    _check(store, both)
