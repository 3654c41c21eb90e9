"""Appends, ``write_batches`` and ``convert --append`` on blocks with components, two
gradients (one, ``strain``, with samples ``["sample"]`` and components of its own),
negative sample values and a renumbered dimension that is not the first: the store
read back equals metatensor's ``join(..., axis="samples", different_keys="union")`` of
the (renumbered) batches, values and every gradient."""

from __future__ import annotations

import json
import re

import dask
import metatensor
import numpy as np
import pytest
from ingest_support import store_files
from test_append_general import _join, _labels, _tensor
from test_zarr_append import _chunks_read, _RecordingStore, shifted
from zarr.storage import MemoryStore

import metatensor_dask as mtd
from metatensor_dask.execution.cli import main
from metatensor_dask.io.zarr_samples import CHAIN_ROWS
from metatensor_dask.testing import assert_equal_to_metatensor

# LocalClusters of worker processes: one such test at a time (2 cores)
pytestmark = pytest.mark.xdist_group("serial")


def _block(seed: int, systems, dtype=np.float64) -> metatensor.TensorBlock:
    """Samples ``["atom", "system"]`` (atoms from -1), values ``(n, 3, 2)``, a
    ``positions`` gradient of 0 to 2 rows per sample and a ``strain`` gradient of one
    row per sample with components ``xyz_1``, ``xyz_2`` of its own."""
    rng = np.random.default_rng(seed)
    systems = np.asarray(systems, dtype=np.int32)
    n = len(systems)
    samples = _labels(["atom", "system"], np.stack([np.arange(n) - 1, systems], axis=1))
    components = [_labels(["c"], [-1, 0, 1])]
    properties = _labels(["p"], [0, 1])
    block = metatensor.TensorBlock(
        rng.normal(size=(n, 3, 2)).astype(dtype), samples, components, properties
    )
    per_sample = np.arange(n) % 3
    sample = np.repeat(np.arange(n), per_sample)
    atom = np.concatenate([np.arange(k) for k in per_sample]) if n else sample
    xyz = [_labels([name], [0, 1, 2]) for name in ("xyz", "xyz_1", "xyz_2")]
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            rng.normal(size=(len(sample), 3, 3, 2)).astype(dtype),
            _labels(["sample", "system", "atom"], np.stack([sample, systems[sample], atom], 1)),
            [xyz[0], *components],
            properties,
        ),
    )
    block.add_gradient(
        "strain",
        metatensor.TensorBlock(
            rng.normal(size=(n, 3, 3, 3, 2)).astype(dtype),
            _labels(["sample"], np.arange(n)),
            [xyz[1], xyz[2], *components],
            properties,
        ),
    )
    return block


def _empty() -> metatensor.TensorMap:
    """A map without blocks."""
    return metatensor.TensorMap(_labels(["k"], []), [])


def test_convert_renumbers_past_sources_without_samples(tmp_path):
    """A source without blocks, or whose blocks have no rows, between others: the
    sources after it are still numbered past every source before it."""
    sources = [
        _tensor({0: _block(0, [0, 1, 1]), 1: _block(1, [0])}),
        _empty(),
        _tensor({1: _block(2, [0, 0, 1])}),
        _tensor({0: _block(3, []), 2: _block(4, [])}),
        _tensor({0: _block(5, [0, 2]), 2: _block(6, [1])}),
    ]
    paths = []
    for i, tensor in enumerate(sources):
        paths.append(str(tmp_path / f"{i}.mts"))
        metatensor.save(paths[-1], tensor)
    out = tmp_path / "all.zarr"
    assert main(["convert", *paths, str(out), "--append", "--renumber", "system", "-q"]) == 0
    expected = [sources[0], shifted(sources[2], 2), sources[3], shifted(sources[4], 4)]
    assert_equal_to_metatensor(mtd.open_zarr(out).compute(), _join(expected))


def _batch(items: list[int]) -> metatensor.TensorMap:
    """A batch for ``write_batches``: its systems numbered from 0, key 1 only in
    batches holding an odd item."""
    blocks = {0: _block(items[0], np.arange(len(items)))}
    odd = [i for i, item in enumerate(items) if item % 2]
    if odd:
        blocks[1] = _block(100 + items[0], odd)
    return _tensor(blocks)


def _joined_batches(n_items: int, batch_size: int) -> metatensor.TensorMap:
    starts = range(0, n_items, batch_size)
    return _join([shifted(_batch(list(range(s, min(s + batch_size, n_items)))), s) for s in starts])


def test_write_batches_on_a_cluster_takes_the_callers_codec_settings(tmp_path):
    """The workers of a cluster started before the settings were made (whose own
    settings are the defaults) write the store with the caller's compressor, checksum
    and shards: the same bytes as on threads."""
    from distributed import Client, LocalCluster

    settings = {
        "metatensor_dask.compressor": "zstd",
        "metatensor_dask.checksum": False,
        "metatensor_dask.shard-chunks": 2,
    }
    threads, cluster = tmp_path / "threads.zarr", tmp_path / "cluster.zarr"
    with dask.config.set(settings):
        mtd.write_batches(_batch, list(range(7)), threads, batch_size=2, chunks=1, quiet=True)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0") as local,
        Client(local),
        dask.config.set(settings),
    ):
        mtd.write_batches(_batch, list(range(7)), cluster, batch_size=2, chunks=1, quiet=True)
    root = json.loads((cluster / "zarr.json").read_text())
    values = root["consolidated_metadata"]["metadata"]["blocks/0/values"]
    assert values["codecs"][0]["name"] == "sharding_indexed", values["codecs"]
    inner = [codec["name"] for codec in values["codecs"][0]["configuration"]["codecs"]]
    assert inner == ["bytes", "zstd"], inner
    assert store_files(cluster) == store_files(threads)
    assert_equal_to_metatensor(mtd.open_zarr(cluster).compute(), _joined_batches(7, 2))


def _with_info(tensor: metatensor.TensorMap, info: dict[str, str]) -> metatensor.TensorMap:
    for name, value in info.items():
        tensor.set_info(name, value)
    return tensor


def test_appends_keep_the_info_that_join_drops(tmp_path):
    """The data are metatensor's join; the ``info`` of every appended tensor is kept,
    later values winning, where ``join`` returns none (documented)."""
    first = _with_info(_tensor({0: _block(0, [0, 1])}), {"source": "a", "units": "eV"})
    second = _with_info(_tensor({1: _block(1, [0]), 0: _block(2, [0])}), {"source": "b"})
    path = tmp_path / "t.zarr"
    for tensor in (first, second):
        mtd.from_metatensor(tensor).to_zarr(path, append_dim="samples", renumber={"system": "next"})
    expected = _join([first, shifted(second, 2)])
    assert expected.info() == {}
    stored = mtd.open_zarr(path).compute()
    assert stored.info() == {"source": "b", "units": "eV"}
    assert_equal_to_metatensor(stored, _with_info(expected, stored.info()))


@pytest.mark.parametrize(("dtype", "rows"), [(np.float64, 3), (np.float32, 1)])
def test_appends_of_uneven_batches_read_as_their_join(tmp_path, dtype, rows):
    """Keys only in later batches or absent from a middle one, blocks without rows, a
    map without blocks, batches renumbered by offsets (negative too) or ``"next"``, and
    a batch not renumbered whose samples sort before the stored ones, to a store
    chunked in rows that no batch size divides."""
    batches = [
        (_tensor({0: _block(0, [0, 0, 1], dtype), 1: _block(1, [1], dtype)}), None),
        (_tensor({1: _block(2, [0, 1, 1, 2], dtype), 2: _block(3, [0], dtype)}), "next"),
        (_empty(), "next"),
        (_tensor({0: _block(4, [], dtype), 2: _block(5, [], dtype)}), "next"),
        (_tensor({2: _block(6, [0, 0], dtype), 0: _block(7, [5], dtype)}), -20),
        (_tensor({0: _block(8, [7, 6, 9], dtype)}), None),
        (_tensor({3: _block(9, [0, 1], dtype), 1: _block(10, [0], dtype)}), "next"),
    ]
    offsets = [0, 2, 0, 0, -20, 0, 10]
    path = tmp_path / "t.zarr"
    for tensor, renumber in batches:
        mtd.from_metatensor(tensor).to_zarr(
            path,
            append_dim="samples",
            chunks=rows,
            renumber=None if renumber is None else {"system": renumber},
        )
    report = mtd.verify(path)
    assert report.ok, report.problems
    present = [shifted(t, o) for (t, _), o in zip(batches, offsets, strict=True) if len(t)]
    assert_equal_to_metatensor(mtd.open_zarr(path, chunks=2).compute(), _join(present))


def _batch_of_items(items: list[int]) -> metatensor.TensorMap:
    """A batch of ``write_batches`` with keys that come and go: items 3 to 5 give no
    blocks (a whole batch of them is an empty map), item 6 a block without rows."""
    blocks = {}
    kept = [i for i, item in enumerate(items) if not 3 <= item <= 5]
    if kept:
        blocks[0] = _block(items[0], [i for i in kept if items[i] % 3])
    odd = [i for i in kept if items[i] % 2]
    if odd:
        blocks[1] = _block(50 + items[0], odd)
    if 6 in items:
        blocks[2] = _block(90, [])
    return _tensor(blocks)


def _as_dask(items: list[int]) -> mtd.TensorMap:
    return mtd.from_metatensor(_batch_of_items(items))


@pytest.mark.parametrize("batch_size", [1, 3, 4])
def test_write_batches_of_uneven_batches_equal_their_join(tmp_path, batch_size):
    """Batch sizes that do not divide the items, keys only in later batches, empty
    batches: the store equals the join of the renumbered batches, the same bytes
    whether the function returns metatensor-core or metatensor-dask maps."""
    items = list(range(11))
    core, ours = tmp_path / "core.zarr", tmp_path / "dask.zarr"
    mtd.write_batches(_batch_of_items, items, core, batch_size=batch_size, chunks=2, quiet=True)
    mtd.write_batches(_as_dask, items, ours, batch_size=batch_size, chunks=2, quiet=True)
    assert store_files(core) == store_files(ours)
    batches = [
        shifted(_batch_of_items(items[start : start + batch_size]), start)
        for start in range(0, len(items), batch_size)
    ]
    expected = _join([batch for batch in batches if len(batch)])
    assert_equal_to_metatensor(mtd.open_zarr(core).compute(), expected)
    assert mtd.verify(core).ok


def _other_strain(block: metatensor.TensorBlock) -> metatensor.TensorBlock:
    """``block`` with a ``strain`` gradient of two ``xyz_2`` entries instead of three."""
    new = metatensor.TensorBlock(block.values, block.samples, block.components, block.properties)
    new.add_gradient("positions", block.gradient("positions").copy())
    strain = block.gradient("strain")
    new.add_gradient(
        "strain",
        metatensor.TensorBlock(
            np.ascontiguousarray(strain.values[:, :, :2]),
            strain.samples,
            [strain.components[0], _labels(["xyz_2"], [0, 1]), strain.components[2]],
            strain.properties,
        ),
    )
    return new


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        # a sample already stored, in the middle of the stored ones (not the last)
        (_tensor({0: _block(10, [3, 0])}), "the sample {'atom': 0, 'system': 0}, which is"),
        (_tensor({1: _other_strain(_block(11, [7]))}), "gradient 'strain' has other components"),
        (_tensor({1: _block(12, [7], np.float32)}), "has the dtype float32, the store float64"),
    ],
)
def test_refused_appends_write_nothing(tmp_path, tensor, message):
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(_tensor({0: _block(0, [0, 0, 1]), 1: _block(1, [2])})).to_zarr(
        path, chunks=2
    )
    before = store_files(path)
    with pytest.raises(mtd.MetatensorDaskError, match=re.escape(message)):
        mtd.from_metatensor(tensor).to_zarr(path, append_dim="samples")
    assert store_files(path) == before


def _atoms_of_systems(start: int, n: int) -> mtd.TensorMap:
    """Samples ``["atom", "system"]``: the renumbered dimension is not the first."""
    systems = np.arange(start, start + n, dtype=np.int32)
    block = mtd.TensorBlock(
        np.ones((n, 1)),
        mtd.Labels(["atom", "system"], np.stack([systems % 3, systems], axis=1)),
        [],
        mtd.Labels(["n"], np.zeros((1, 1), np.int32)),
    )
    return mtd.TensorMap(mtd.Labels(["k"], np.zeros((1, 1), np.int32)), [block])


def test_renumbered_samples_are_known_unique_without_reading_the_stored_ones():
    """Renumbered past the stored values of a dimension that is not the first, the
    appended samples do not sort after the stored ones, but can not repeat them: the
    append reads the samples since the last record of their digest, not all of them."""
    store = _RecordingStore(MemoryStore())
    n = CHAIN_ROWS + 5_000
    _atoms_of_systems(0, n).to_zarr(store, chunks=1000)
    store.read.clear()
    _atoms_of_systems(0, 10).to_zarr(store, append_dim="samples", renumber={"system": "next"})
    assert min(_chunks_read(store, "samples")) == CHAIN_ROWS // 1000
    expected = [mtd.to_metatensor(_atoms_of_systems(s, k)) for s, k in ((0, n), (n, 10))]
    assert_equal_to_metatensor(mtd.open_zarr(store).compute(), _join(expected))


def test_a_repeated_sample_names_a_remedy_on_the_stored_dimensions(tmp_path):
    """Samples without a ``system`` dimension: the remedy renumbers one of theirs, not
    ``system``, which the append would refuse."""

    def tensor(structures) -> mtd.TensorMap:
        samples = _labels(["structure", "center"], [[s, 0] for s in structures])
        block = metatensor.TensorBlock(
            np.ones((len(structures), 1)), samples, [], _labels(["p"], [0])
        )
        return mtd.from_metatensor(metatensor.TensorMap(_labels(["k"], [0]), [block]))

    path = tmp_path / "t.zarr"
    tensor([0, 1]).to_zarr(path)
    with pytest.raises(mtd.MetatensorDaskError) as refused:
        tensor([1]).to_zarr(path, append_dim="samples")
    message = str(refused.value)
    assert "renumber={'structure': 'next'} (to_zarr)" in message, message
    assert "system" not in message, message
    tensor([1]).to_zarr(path, append_dim="samples", renumber={"structure": "next"})
    assert len(mtd.open_zarr(path).block(0).samples) == 3
