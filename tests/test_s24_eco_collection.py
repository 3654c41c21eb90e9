"""Maps and blocks through dask's collection functions (``dask.optimize``, ``persist``,
``compute`` of several), compared with metatensor on the same data."""

from __future__ import annotations

import dask
import dask.array as da
import metatensor
import numpy as np
import pytest
from dask.graph_manipulation import wait_on

import metatensor_dask as mtd


def _reference(seed: int) -> metatensor.TensorMap:
    """A metatensor map of three blocks of random sizes (one of zero samples), with a
    component and a positions gradient."""
    rng = np.random.default_rng(seed)
    blocks = []
    for n_samples in [int(rng.integers(5, 30)), 0, int(rng.integers(5, 30))]:
        n_properties = int(rng.integers(1, 5))
        samples = metatensor.Labels(
            ["system", "atom"], np.stack([np.arange(n_samples) // 3, np.arange(n_samples)], 1)
        )
        components = [metatensor.Labels.range("o3_mu", 3)]
        properties = metatensor.Labels.range("n", n_properties)
        block = metatensor.TensorBlock(
            rng.normal(size=(n_samples, 3, n_properties)), samples, components, properties
        )
        rows = np.array([(s, s // 3, a) for s in range(n_samples) for a in range(s % 3)])
        gradient = metatensor.TensorBlock(
            rng.normal(size=(len(rows), 3, 3, n_properties)),
            metatensor.Labels(["sample", "system", "atom"], rows.reshape(-1, 3)),
            [metatensor.Labels.range("xyz", 3), *components],
            properties,
        )
        block.add_gradient("positions", gradient)
        blocks.append(block)
    return metatensor.TensorMap(metatensor.Labels.range("key", len(blocks)), blocks)


def _rechunked(theirs: metatensor.TensorMap, rows: int) -> mtd.TensorMap:
    """``theirs`` as metatensor-dask, every array in chunks of ``rows`` rows (a graph of
    several tasks per chunk: reading, splitting, merging)."""
    ours = mtd.from_metatensor(theirs)
    blocks = []
    for block in ours.blocks():
        new = mtd.TensorBlock(
            da.asarray(block.values).rechunk({0: rows}),
            block.samples,
            block.components,
            block.properties,
        )
        for parameter, gradient in block.gradients():
            values = da.asarray(gradient.values).rechunk({0: rows})
            new.add_gradient(
                parameter,
                mtd.TensorBlock(values, gradient.samples, gradient.components, gradient.properties),
            )
        blocks.append(new)
    return mtd.TensorMap(ours.keys, blocks)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """(store-backed map, the metatensor map stored)."""
    theirs = _reference(7)
    path = tmp_path_factory.mktemp("optimize") / "t.zarr"
    mtd.to_zarr(_rechunked(theirs, 4), path)
    return mtd.open_zarr(path), theirs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_optimize_gives_maps_and_blocks_that_compute_as_metatensor(seed):
    theirs = _reference(seed)
    ours = _rechunked(theirs, 3 + seed)
    optimized, block = dask.optimize(ours, ours.block(2))
    assert metatensor.equal(mtd.to_metatensor(optimized.compute()), theirs)
    expected = metatensor.TensorMap(metatensor.Labels.range("key", 1), [theirs.block(2).copy()])
    computed = mtd.TensorMap(mtd.Labels.range("key", 1), [block.compute()])
    assert metatensor.equal(mtd.to_metatensor(computed), expected)


def test_optimize_of_operations_on_a_store_computes_as_metatensor(stored):
    ours, theirs = stored
    results = [mtd.add(ours, ours), mtd.multiply(ours, 2.5), mtd.abs(ours)]
    expected = [metatensor.add(theirs, theirs), metatensor.multiply(theirs, 2.5)]
    expected.append(metatensor.abs(theirs))
    for optimized, reference in zip(dask.optimize(*results), expected, strict=True):
        assert metatensor.equal(mtd.to_metatensor(optimized.compute()), reference)


def test_wait_on_gives_maps_and_blocks_that_compute_as_metatensor(stored):
    ours, theirs = stored
    inputs = [_rechunked(_reference(5), 4), mtd.multiply(ours, 2.5), ours]
    expected = [_reference(5), metatensor.multiply(theirs, 2.5), theirs]
    for waited, reference in zip(wait_on(*inputs), expected, strict=True):
        assert metatensor.equal(mtd.to_metatensor(waited.compute()), reference)
    block = wait_on(inputs[1].block(2)).compute()
    computed = mtd.TensorMap(mtd.Labels.range("key", 1), [block])
    single = metatensor.TensorMap(metatensor.Labels.range("key", 1), [expected[1].block(2).copy()])
    assert metatensor.equal(mtd.to_metatensor(computed), single)


def _damaged_store(path) -> str:
    """A store of :func:`_reference` whose first gradient sample Labels chunk is damaged;
    the error those Labels give when read (on threads)."""
    mtd.to_zarr(mtd.from_metatensor(_reference(3)), path)
    (chunk,) = (path / "blocks/0/gradients/positions/samples").glob("c.*")
    data = bytearray(chunk.read_bytes())
    data[-1] ^= 0x10
    chunk.write_bytes(bytes(data))
    computed = mtd.open_zarr(path).compute(scheduler="threads")
    with pytest.raises(mtd.DamagedStoreError) as raised:
        computed.block(0).gradient("positions").samples.values  # noqa: B018
    return str(raised.value)


@pytest.mark.xdist_group("serial")
def test_a_client_not_the_default_computes_maps_as_threads_do(tmp_path):
    from distributed import Client, LocalCluster

    theirs = _reference(4)
    mtd.to_zarr(_rechunked(theirs, 5), tmp_path / "healthy.zarr")
    message = _damaged_store(tmp_path / "damaged.zarr")
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        healthy = mtd.open_zarr(tmp_path / "healthy.zarr")
        computed = client.compute(healthy).result()
        assert metatensor.equal(mtd.to_metatensor(computed), theirs)
        persisted = client.persist(healthy)
        assert metatensor.equal(mtd.to_metatensor(client.compute(persisted).result()), theirs)
        # the graph of the optimized map leaves out the chunks the cluster holds
        optimized = dask.optimize(persisted)[0]
        assert metatensor.equal(mtd.to_metatensor(client.compute(optimized).result()), theirs)
        damaged = mtd.open_zarr(tmp_path / "damaged.zarr")
        for compute in [client.compute, lambda t: dask.compute(t, scheduler=client)]:
            with pytest.raises(mtd.DamagedStoreError) as raised:
                compute(damaged)
            assert str(raised.value) == message
