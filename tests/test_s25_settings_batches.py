"""``write_batches`` refuses a wrong value of a setting it uses before it makes the store
or runs a batch, naming the setting; and a run whose settings differ from the workers'
writes the store the caller's settings ask for."""

from __future__ import annotations

import json
from pathlib import Path

import dask
import metatensor
import numpy as np
import pytest
from distributed import Client, LocalCluster

import metatensor_dask as mtd
from metatensor_dask.io.ingest_batch import STORE_SETTINGS


def _batch(items: list[int]) -> metatensor.TensorMap:
    """One system per item, ``items[0] + 2`` atoms, values and positions gradient."""
    n = items[0] + 2
    rng = np.random.default_rng(items[0])
    samples = metatensor.Labels(["system", "atom"], np.array([[0, a] for a in range(n)]))
    block = metatensor.TensorBlock(
        rng.standard_normal((n, 3)), samples, [], metatensor.Labels.range("p", 3)
    )
    rows = metatensor.Labels(["sample", "system", "atom"], np.array([[a, 0, a] for a in range(n)]))
    xyz = [metatensor.Labels.range("xyz", 3)]
    gradient = metatensor.TensorBlock(
        rng.standard_normal((n, 3, 3)), rows, xyz, metatensor.Labels.range("p", 3)
    )
    block.add_gradient("positions", gradient)
    return metatensor.TensorMap(metatensor.Labels.range("k", 1), [block])


def _failing(items: list[int]) -> metatensor.TensorMap:
    raise AssertionError("a batch ran although a setting was wrong")


WRONG = [
    ("compressor", "ZSTD", "compressor"),
    ("compressor", 3, "compressor=3"),
    ("compressor", {"name": "gzip", "configuration": {"level": 99}}, "compressor"),
    ("compressor", "bytes", "compressor"),
    ("checksum", "no", "checksum='no'"),
    ("shard-chunks", 0, "shard-chunks=0"),
    ("shard-chunks", "2", "shard-chunks='2'"),
    ("chunk-size", "0", "chunk-size='0'"),
    ("lock-timeout", "soon", "lock-timeout='soon'"),
    ("progress", "maybe", "progress='maybe'"),
]


@pytest.mark.parametrize(("name", "value", "named"), WRONG)
def test_a_wrong_setting_is_refused_before_the_store_is_made(tmp_path, name, value, named):
    store = tmp_path / "out.zarr"
    with (
        dask.config.set({f"metatensor_dask.{name}": value}),
        pytest.raises(mtd.MetatensorDaskError, match=f"metatensor_dask.{named}"),
    ):
        mtd.write_batches(_failing, [0, 1], store)
    assert not store.exists()


def test_every_store_setting_is_checked():
    assert {name for name, _, _ in WRONG} >= set(STORE_SETTINGS)


def _expected(items: list[int]) -> metatensor.TensorMap:
    parts = []
    for item in items:
        part = _batch([item])
        block = part.block(0)
        shifted = metatensor.TensorBlock(
            block.values,
            metatensor.Labels(["system", "atom"], block.samples.values + np.array([item, 0])),
            [],
            block.properties,
        )
        gradient = block.gradient("positions")
        moved = gradient.samples.values + np.array([0, item, 0])
        shifted.add_gradient(
            "positions",
            metatensor.TensorBlock(
                gradient.values,
                metatensor.Labels(gradient.samples.names, moved),
                gradient.components,
                gradient.properties,
            ),
        )
        parts.append(metatensor.TensorMap(part.keys, [shifted]))
    return metatensor.join(parts, axis="samples")


def _codecs(store: Path) -> tuple[str, str]:
    document = json.loads((store / "blocks/0/values/zarr.json").read_text())
    return json.dumps(document["codecs"]), json.dumps(document["chunk_grid"])


@pytest.mark.xdist_group("serial")
def test_workers_append_with_the_settings_of_the_caller(tmp_path):
    settings = {
        "metatensor_dask.compressor": {"name": "zstd", "configuration": {"level": 5}},
        "metatensor_dask.shard-chunks": 2,
        "metatensor_dask.checksum": False,
        "metatensor_dask.chunk-size": 200,
    }
    items = list(range(5))
    with dask.config.set(settings):
        mtd.write_batches(_batch, items, tmp_path / "threads.zarr", quiet=True)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster),
        dask.config.set(settings),
    ):
        mtd.write_batches(_batch, items, tmp_path / "cluster.zarr", quiet=True)
    codecs = _codecs(tmp_path / "threads.zarr")
    assert '"level": 5' in codecs[0] and "sharding_indexed" in codecs[0]
    inner = json.loads(codecs[0])[0]["configuration"]["codecs"]
    assert [codec["name"] for codec in inner] == ["bytes", "zstd"]
    assert _codecs(tmp_path / "cluster.zarr") == codecs
    expected = _expected(items)
    for name in ("threads.zarr", "cluster.zarr"):
        assert mtd.verify(tmp_path / name).ok
        assert metatensor.equal(mtd.to_metatensor(mtd.open_zarr(tmp_path / name)), expected)
