"""featomic's spherical expansion of periodic crystals (an ``o3_mu`` component of 2l+1
entries per key, positions, strain and cell gradients with their own components), its
keys growing with the species of later batches, through every write path: appends,
``write_batches`` on threads and on a LocalCluster of processes, ``convert --append`` of
``.mts`` files, ``.mts`` save; each reads as metatensor's join of the renumbered
batches, and the operations that move or reduce components give metatensor's result."""

from __future__ import annotations

import functools
import logging

import metatensor
import numpy as np
import pytest
from ingest_support import renumbered

import metatensor_dask as mtd
from metatensor_dask.execution.cli import main
from metatensor_dask.testing import assert_equal_to_metatensor

featomic = pytest.importorskip("featomic")
ase_build = pytest.importorskip("ase.build")

GRADIENTS = ["positions", "strain", "cell"]


def _crystal(item: int):
    """Si, then NaCl, then C (new keys in later batches), each rattled its own way."""
    kind = item % 3
    if kind == 0:
        frame = ase_build.bulk("Si", "diamond", a=5.43)
    elif kind == 1:
        frame = ase_build.bulk("NaCl", "rocksalt", a=5.6)
    else:
        frame = ase_build.bulk("C", "diamond", a=3.57)
    frame.rattle(0.02, seed=item)
    return frame


@functools.cache
def _calculator():
    return featomic.SphericalExpansion(
        cutoff={"radius": 3.0, "smoothing": {"type": "ShiftedCosine", "width": 0.5}},
        density={"type": "Gaussian", "width": 0.3},
        basis={
            "type": "TensorProduct",
            "max_angular": 2,
            "radial": {"type": "Gto", "max_radial": 1},
        },
    )


@functools.cache
def _expansion_buffer(items: tuple[int, ...]) -> bytes:
    """The spherical expansion of ``items`` saved to a buffer: computed once for the
    tests (and processes) that ask for the same items."""
    logging.getLogger().setLevel(logging.ERROR)  # featomic warns about cell gradients
    computed = _calculator().compute([_crystal(i) for i in items], gradients=GRADIENTS)
    return bytes(metatensor.io.save_buffer(computed))


def expansion(items: list[int]) -> metatensor.TensorMap:
    """The spherical expansion of ``items`` (systems numbered from 0), numpy-backed."""
    return metatensor.io.load_buffer(_expansion_buffer(tuple(items)))


BATCHES = [[0], [1, 2], [3, 4, 5]]


def _expected(batches: list[list[int]]) -> metatensor.TensorMap:
    """The join of ``batches``, the systems of each renumbered from its first item."""
    shifted = [renumbered(expansion(batch), batch[0]) for batch in batches]
    return metatensor.join(shifted, axis="samples", different_keys="union")


def test_appends_and_mts_files_equal_the_join(tmp_path):
    expected = _expected(BATCHES)
    assert len(expansion(BATCHES[0]).keys) < len(expected.keys)
    path = tmp_path / "appended.zarr"
    for batch in BATCHES:
        appended = mtd.from_metatensor(expansion(batch))
        appended.to_zarr(path, append_dim="samples", renumber={"system": "next"}, chunks=5)
    assert mtd.verify(path).ok
    assert_equal_to_metatensor(mtd.open_zarr(path, chunks=3), expected)
    mtd.save(tmp_path / "saved.mts", mtd.open_zarr(path))
    assert_equal_to_metatensor(
        mtd.from_metatensor(metatensor.load(str(tmp_path / "saved.mts"))), expected
    )
    assert_equal_to_metatensor(mtd.load(tmp_path / "saved.mts"), expected)

    sources = [str(tmp_path / f"{i}.mts") for i in range(len(BATCHES))]
    for source, batch in zip(sources, BATCHES, strict=True):
        metatensor.save(source, expansion(batch))
    converted = tmp_path / "converted.zarr"
    # the command line in this process (a new interpreter for it took a second or two)
    command = ["convert", *sources, str(converted)]
    assert main([*command, "--append", "--renumber", "system", "--chunks", "4"]) == 0
    assert mtd.verify(converted).ok
    assert_equal_to_metatensor(mtd.open_zarr(converted), expected)


def _operations(tensor, module) -> dict:
    """The operations that touch components, on ``tensor`` with ``module`` (metatensor
    or metatensor_dask): metatensor-core moves keys and components with methods."""
    core = module is metatensor
    systems = module.Labels(["system"], np.array([[0], [4]], np.int32))
    return {
        "keys_to_properties": tensor.keys_to_properties("neighbor_type")
        if core
        else module.keys_to_properties(tensor, "neighbor_type"),
        "components_to_properties": tensor.components_to_properties("o3_mu")
        if core
        else module.components_to_properties(tensor, "o3_mu"),
        "join": module.join([tensor, tensor], axis="properties", add_dimension="copy"),
        "slice": module.slice(tensor, "samples", systems),
        "sort": module.sort(tensor, descending=True),
        "sum_over_samples": module.sum_over_samples(tensor, "atom"),
        "multiply": module.multiply(tensor, -1.5),
    }


def test_operations_on_components_of_the_store_equal_metatensor(tmp_path):
    expected = _expected(BATCHES)
    path = tmp_path / "expansion.zarr"
    mtd.from_metatensor(expected).to_zarr(path, chunks=4)
    stored = mtd.open_zarr(path, chunks=3)
    ours = _operations(stored, mtd)
    theirs = _operations(expected, metatensor)
    for name, result in ours.items():
        assert_equal_to_metatensor(result, theirs[name])
    weights = [
        metatensor.TensorBlock(
            np.random.default_rng(i).standard_normal((2, len(block.properties))),
            metatensor.Labels.range("out", 2),
            [],
            block.properties,
        )
        for i, block in enumerate(expected.blocks())
    ]
    model = metatensor.TensorMap(expected.keys, weights)
    assert_equal_to_metatensor(
        mtd.dot(stored, mtd.from_metatensor(model)), metatensor.dot(expected, model)
    )


@pytest.mark.xdist_group("serial")
def test_write_batches_on_threads_and_a_local_cluster(tmp_path):
    from distributed import Client, LocalCluster

    items = list(range(6))
    mtd.write_batches(expansion, items, tmp_path / "threads.zarr", batch_size=2, quiet=True)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster),
    ):
        mtd.write_batches(expansion, items, tmp_path / "cluster.zarr", batch_size=4, quiet=True)
    for name, batches in [
        ("threads", [[0, 1], [2, 3], [4, 5]]),
        ("cluster", [[0, 1, 2, 3], [4, 5]]),
    ]:
        path = tmp_path / f"{name}.zarr"
        assert mtd.verify(path).ok
        assert_equal_to_metatensor(mtd.open_zarr(path), _expected(batches))
