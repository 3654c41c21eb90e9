"""write_batches of random batch functions against metatensor's join of the renumbered
batches: keys that come and go, batches without blocks, blocks without rows, gradients
with several parameters (with and without the renumbered dimension), components,
float32, ``renumber`` on a dimension other than ``"system"`` (first or last column) or
``None``, metatensor-core or metatensor-dask results (single chunks or chunks of any
rows, of none too), items that are not numbers. The store is the same, byte for byte,
on threads, dask's synchronous scheduler and a LocalCluster of processes."""

from __future__ import annotations

import json
import zlib
from typing import Any

import dask
import metatensor
import numpy as np
import pytest
from ingest_support import renumbered, store_files

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

N_KEYS = 5
XYZ = metatensor.Labels(["xyz"], np.arange(3, dtype=np.int32).reshape(3, 1))
STRAIN = [
    metatensor.Labels(["i"], np.arange(2, dtype=np.int32).reshape(2, 1)),
    metatensor.Labels(["j"], np.arange(2, dtype=np.int32).reshape(2, 1)),
]


class RandomBatches:
    """A batch function: a random TensorMap drawn from its seed and the batch's items.

    Samples are ``(dimension, "atom")`` (``("atom", dimension)`` when ``last``), the
    dimension numbered from 0 in each batch (``absolute``: the items, which are then
    ints). ``"positions"`` gradients hold the dimension in their samples, ``"strain"``
    ones only ``"sample"``."""

    def __init__(self, seed: int, **options: Any):
        self.seed = seed
        self.options = options
        self.dimension: str = options.get("dimension", "system")
        self.dtype: str = options.get("dtype", "float64")
        self.gradients: tuple[str, ...] = options.get("gradients", ("positions",))
        self.output: str = options.get("output", "core")
        self.absolute: bool = options.get("absolute", False)
        self.last: bool = options.get("last", False)
        self.n_components = int(np.random.default_rng(seed).integers(0, 3))

    def metadata(self, key: int) -> tuple[list[metatensor.Labels], metatensor.Labels]:
        """The components and properties of the block of ``key``, in every batch."""
        rng = np.random.default_rng([self.seed, key])
        components = [
            metatensor.Labels(
                [f"c{i}"], np.arange(int(rng.integers(1, 4)), dtype=np.int32)[:, None]
            )
            for i in range(self.n_components)
        ]
        chosen = rng.permutation(10)[: int(rng.integers(1, 5))]
        return components, metatensor.Labels(["p"], chosen.astype(np.int32)[:, None])

    def __call__(self, items: list[Any]) -> Any:
        rng = np.random.default_rng([self.seed, zlib.crc32(repr(items).encode())])
        keys = (
            []
            if rng.random() < 0.15
            else [k for k in rng.permutation(N_KEYS) if rng.random() < 0.6]
        )
        blocks = [self._block(int(key), items, rng) for key in keys]
        tensor = metatensor.TensorMap(
            metatensor.Labels(["k"], np.array(keys, dtype=np.int32).reshape(-1, 1)), blocks
        )
        if self.output == "core":
            return tensor
        ours = mtd.from_metatensor(tensor)
        return ours if self.output == "dask" else _rechunked(ours, rng)

    def _labels(self, names: list[str], rows: list[tuple[int, ...]]) -> metatensor.Labels:
        values = np.array(rows, dtype=np.int32).reshape(-1, len(names))
        return metatensor.Labels(names, values)

    def _block(self, key: int, items: list[Any], rng: np.random.Generator) -> Any:
        components, properties = self.metadata(key)
        rows = []
        if rng.random() > 0.2:
            for position, item in enumerate(items):
                number = int(item) if self.absolute else position
                rows += [(number, atom) for atom in range(int(rng.integers(0, 3)))]
        names = [self.dimension, "atom"]
        if self.last:
            names, rows = names[::-1], [row[::-1] for row in rows]
        shape = [len(rows), *(len(c) for c in components), len(properties)]
        block = metatensor.TensorBlock(
            rng.standard_normal(shape).astype(self.dtype),
            self._labels(names, rows),
            components,
            properties,
        )
        for parameter in self.gradients:
            if parameter == "positions":
                column = names.index(self.dimension)
                found = [
                    (i, row[column], atom)
                    for i, row in enumerate(rows)
                    for atom in range(int(rng.integers(0, 3)))
                ]
                labels = self._labels(["sample", self.dimension, "atom"], found)
                extra = [XYZ]
            else:
                found = [(i,) for i in range(len(rows)) if rng.random() < 0.7]
                labels, extra = self._labels(["sample"], found), STRAIN
            gradient_shape = [len(found), *(len(c) for c in extra), *shape[1:]]
            gradient = metatensor.TensorBlock(
                rng.standard_normal(gradient_shape).astype(self.dtype),
                labels,
                extra + components,
                properties,
            )
            block.add_gradient(parameter, gradient)
        return block


def _rechunked(tensor: Any, rng: np.random.Generator) -> Any:
    """``tensor`` (metatensor-dask) with its arrays in chunks of random rows, of 0 rows
    too."""

    def rows(n: int) -> tuple[int, ...]:
        sizes = []
        while n > 0:
            sizes.append(int(rng.integers(0, n + 1)))
            n -= sizes[-1]
        return tuple(sizes) or (0,)

    def block(original: Any) -> Any:
        values = original.values
        return mtd.TensorBlock(
            values.rechunk((rows(values.shape[0]), *values.shape[1:])),
            original.samples,
            original.components,
            original.properties,
        )

    blocks = []
    for original in tensor.blocks():
        new = block(original)
        for parameter, gradient in original.gradients():
            new.add_gradient(parameter, block(gradient))
        blocks.append(new)
    return mtd.TensorMap(tensor.keys, blocks)


def expected(
    function: RandomBatches, items: list[Any], batch_size: int, renumber: str | None
) -> metatensor.TensorMap:
    """metatensor's join of the batches of ``function``, each renumbered by the index
    of its first item."""
    core = RandomBatches(function.seed, **{**function.options, "output": "core"})
    parts = []
    for start in range(0, len(items), batch_size):
        batch = core(items[start : start + batch_size])
        parts.append(batch if renumber is None else renumbered(batch, start, renumber))
    return metatensor.join(parts, axis="samples", different_keys="union")


def drawn(seed: int) -> tuple[RandomBatches, list[Any], int, str | None]:
    """A batch function, its items, batch size and ``renumber``, drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    dimension = str(rng.choice(["system", "structure"]))
    n_items = int(rng.integers(1, 10))
    renumber = None if rng.random() < 0.3 else dimension
    if renumber is None:  # numbered by the items, which must be ints then
        items: list[Any] = [int(i) for i in rng.permutation(30)[:n_items]]
    else:
        items = [f"frame-{i}" for i in range(n_items)]
    function = RandomBatches(
        seed,
        dimension=dimension,
        dtype=str(rng.choice(["float64", "float32"])),
        gradients=[(), ("positions",), ("positions", "strain"), ("strain",)][rng.integers(4)],
        output=str(rng.choice(["core", "dask", "chunked"])),
        absolute=renumber is None,
        last=bool(rng.integers(2)),
    )
    batch_size = int(rng.integers(1, 5)) if rng.random() < 0.8 else n_items + 2
    return function, items, batch_size, renumber


@pytest.mark.parametrize("seed", range(8))
def test_random_batches_equal_the_join_on_threads_and_synchronously(tmp_path, seed):
    function, items, batch_size, renumber = drawn(seed)
    reference = expected(function, items, batch_size, renumber)
    stores = []
    for name, setting in [("threads", {"num_workers": 2}), ("sync", {"scheduler": "sync"})]:
        path = tmp_path / f"{name}.zarr"
        with dask.config.set(setting):
            mtd.write_batches(
                function, items, path, batch_size=batch_size, renumber=renumber, quiet=True
            )
        assert_equal_to_metatensor(mtd.open_zarr(path).compute(), reference)
        stores.append(store_files(path))
    assert stores[0] == stores[1]


@pytest.mark.xdist_group("serial")
def test_random_batches_on_a_local_cluster_write_the_bytes_of_threads(tmp_path):
    from distributed import Client, LocalCluster

    cases = [drawn(seed) for seed in range(100, 104)]
    for i, (function, items, batch_size, renumber) in enumerate(cases):
        with dask.config.set(num_workers=2):
            mtd.write_batches(
                function,
                items,
                tmp_path / f"{i}-threads.zarr",
                batch_size=batch_size,
                renumber=renumber,
                quiet=True,
            )
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0") as local,
        Client(local),
    ):
        for i, (function, items, batch_size, renumber) in enumerate(cases):
            mtd.write_batches(
                function,
                items,
                tmp_path / f"{i}-cluster.zarr",
                batch_size=batch_size,
                renumber=renumber,
                quiet=True,
            )
    for i, (function, items, batch_size, renumber) in enumerate(cases):
        cluster = tmp_path / f"{i}-cluster.zarr"
        reference = expected(function, items, batch_size, renumber)
        assert_equal_to_metatensor(mtd.open_zarr(cluster).compute(), reference)
        assert store_files(cluster) == store_files(tmp_path / f"{i}-threads.zarr")


class FailingOn:
    """``function``, but raising for the batch holding ``item``."""

    def __init__(self, function: RandomBatches, item: Any):
        self.function = function
        self.item = item

    def __call__(self, items: list[Any]) -> Any:
        if self.item in items:
            raise ValueError(f"can not compute {self.item!r}")
        return self.function(items)


@pytest.mark.parametrize("seed", [200, 201, 205, 210, 212, 215])
def test_random_batches_resumed_after_a_failing_batch(tmp_path, seed):
    """The error names the batch and its first item, the batches before it stay
    committed, and the resumed store is the one written without the failure, byte for
    byte."""
    function, items, batch_size, renumber = drawn(seed)
    bad = int(np.random.default_rng([seed, 1]).integers(len(items)))
    index = bad // batch_size
    path = tmp_path / "t.zarr"
    options = {"batch_size": batch_size, "renumber": renumber, "quiet": True}
    with dask.config.set(num_workers=2):
        with pytest.raises(mtd.MetatensorDaskError) as error:
            mtd.write_batches(FailingOn(function, items[bad]), items, path, **options)
        first = items[index * batch_size]
        assert str(error.value).startswith(f"batch {index} (items {index * batch_size} to ")
        assert f"first item {first!r}) failed: ValueError: can not compute" in str(error.value)
        record = json.loads((path / "zarr.json").read_text())["attributes"]["metatensor_dask"]
        assert record["batches"]["committed"] == index
        mtd.write_batches(function, items, path, resume=True, **options)
        mtd.write_batches(function, items, tmp_path / "clean.zarr", **options)
    reference = expected(function, items, batch_size, renumber)
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), reference)
    assert store_files(path) == store_files(tmp_path / "clean.zarr")
