"""Maps of blocks large enough to be split into several irregular row chunks, as
(metatensor-core, metatensor-dask) pairs, for the tests of the metadata operations.

Each block has values chunked at irregular places along samples and three gradients:
``positions`` (0 to 4 rows per sample, extra component ``xyz``), ``strain`` (one row
per sample, components ``xyz_2, xyz_1``) and ``cell`` (rows for some samples only, no
extra component). In blocks marked unsorted, the gradient rows are shuffled (the
``"sample"`` column is not sorted, as metatensor allows) and chunked at random;
otherwise they are co-partitioned with the values. Blocks of zero samples or zero
properties sit among the others.
"""

from __future__ import annotations

import itertools
from typing import Any

import dask.array as da
import metatensor
import numpy as np

import metatensor_dask as mtd
from metatensor_dask._partition import gradient_row_chunks, row_pointer


def _cuts(rng: np.random.Generator, n: int, most: int = 5) -> tuple[int, ...]:
    """Irregular chunk sizes summing to ``n``."""
    if n <= 1:
        return (n,)
    inner = rng.choice(np.arange(1, n), size=min(most - 1, n - 1), replace=False)
    bounds = [0, *sorted(int(c) for c in inner), n]
    return tuple(b - a for a, b in itertools.pairwise(bounds))


def _labels(names: list[str], values: Any) -> metatensor.Labels:
    return metatensor.Labels(names, np.asarray(values, dtype=np.int32).reshape(-1, len(names)))


def _gradient(
    rng: np.random.Generator,
    rows: np.ndarray,
    names: list[str],
    extra: list[metatensor.Labels],
    block: metatensor.TensorBlock,
    shuffle: bool,
) -> metatensor.TensorBlock:
    if shuffle and len(rows) > 1:
        rows = rows[rng.permutation(len(rows))]
    components = [*extra, *block.components]
    shape = (len(rows), *(len(c) for c in components), len(block.properties))
    return metatensor.TensorBlock(
        rng.uniform(-2, 2, shape).astype(block.values.dtype),
        _labels(names, rows),
        components,
        block.properties,
    )


def _block(
    rng: np.random.Generator,
    n_samples: int,
    properties: metatensor.Labels,
    components: list[metatensor.Labels],
    dtype: Any,
    shuffle: bool,
    first_system: int = 0,
) -> metatensor.TensorBlock:
    index = np.arange(n_samples)
    samples = np.stack([first_system + index // 4, index % 4], axis=1)
    shape = (n_samples, *(len(c) for c in components), len(properties))
    block = metatensor.TensorBlock(
        rng.uniform(-2, 2, shape).astype(dtype),
        _labels(["system", "atom"], samples),
        components,
        properties,
    )
    counts = rng.integers(0, 5, n_samples)
    positions = np.array(
        [(s, samples[s, 0], a) for s in range(n_samples) for a in range(counts[s])]
    )
    block.add_gradient(
        "positions",
        _gradient(
            rng,
            positions.reshape(-1, 3),
            ["sample", "system", "atom"],
            [metatensor.Labels.range("xyz", 3)],
            block,
            shuffle,
        ),
    )
    strain = [metatensor.Labels.range("xyz_2", 3), metatensor.Labels.range("xyz_1", 3)]
    block.add_gradient(
        "strain", _gradient(rng, index.reshape(-1, 1), ["sample"], strain, block, shuffle)
    )
    some = index[rng.random(n_samples) < 0.5].reshape(-1, 1)
    block.add_gradient("cell", _gradient(rng, some, ["sample"], [], block, shuffle))
    return block


def reference(
    seed: int = 0,
    dtype: Any = np.float64,
    key_dims: int = 2,
    components: bool = True,
    same_properties: bool = False,
) -> metatensor.TensorMap:
    """A metatensor map of six blocks: 17 to 40 samples each, one block of zero
    samples and (unless ``same_properties``) one of zero properties; properties differ
    between blocks unless ``same_properties``; blocks 1 and 4 have shuffled gradient
    rows. Keys ``(center, neighbor)`` (or ``center`` alone with ``key_dims=1``)."""
    rng = np.random.default_rng(seed)
    component_labels = [metatensor.Labels.range("o3_mu", 3)] if components else []
    sizes = [23, 40, 0, 17, 31, 29]
    blocks = []
    for i, n_samples in enumerate(sizes):
        if same_properties:
            properties = _labels(["n", "l"], [[0, 0], [1, 0], [0, 1], [2, 1]])
        elif i == 5:
            properties = _labels(["n", "l"], np.zeros((0, 2)))
        else:
            kept = [p for p in range(5) if (p + i) % 3 != 0]
            properties = _labels(["n", "l"], [[p, p % 2] for p in kept])
        blocks.append(
            _block(rng, n_samples, properties, component_labels, dtype, i in (1, 4), i % 2)
        )
    centers = [1, 1, 6, 6, 8, 8]
    neighbors = [1, 6, 1, 6, 1, 8]
    if key_dims == 1:
        keys = _labels(["center"], [[c * 10 + n] for c, n in zip(centers, neighbors, strict=True)])
    else:
        keys = _labels(["center", "neighbor"], list(zip(centers, neighbors, strict=True)))
    return metatensor.TensorMap(keys, blocks)


def chunked(theirs: Any, seed: int = 0) -> mtd.TensorMap:
    """``theirs`` (a metatensor map) as metatensor-dask, values chunked at irregular
    places; grouped gradients co-partitioned, the others chunked at random."""
    rng = np.random.default_rng(seed + 1000)
    ours = mtd.from_metatensor(theirs)
    blocks = []
    for block in ours.blocks():
        values = da.asarray(block.values).rechunk({0: _cuts(rng, len(block))})
        new = mtd.TensorBlock(values, block.samples, block.components, block.properties)
        for parameter, gradient in block.gradients():
            pointer = row_pointer(gradient.samples.column("sample"), len(block))
            n_rows = len(gradient.samples)
            if pointer is not None and n_rows:
                rows = gradient_row_chunks(pointer, values.chunks[0])
            else:
                rows = _cuts(rng, n_rows)
            new.add_gradient(
                parameter,
                mtd.TensorBlock(
                    da.asarray(gradient.values).rechunk({0: rows}),
                    gradient.samples,
                    gradient.components,
                    gradient.properties,
                ),
            )
        blocks.append(new)
    return mtd.TensorMap(ours.keys, blocks)


def pair(**kwargs: Any) -> tuple[mtd.TensorMap, metatensor.TensorMap]:
    """(ours, theirs) of :func:`reference` with ``kwargs``."""
    theirs = reference(**kwargs)
    return chunked(theirs, kwargs.get("seed", 0)), theirs
