"""Featomic-like data and element-wise operations shared by the benchmarks.

Every block has float64 values ``(n, 180)`` with samples ``(system, atom)`` (10 atoms
per system), a ``positions`` gradient of 36 rows per sample with an ``xyz`` component,
and a ``strain`` gradient ``(n, 3, 3, 180)`` with ``xyz_2, xyz_1`` components, so
gradients are ~99% of the bytes.
"""

from __future__ import annotations

import metatensor
import numpy as np
import psutil

import metatensor_dask as mtd

N_PROPERTIES = 180
ATOMS = 36
"""Rows of the ``positions`` gradient per sample."""
ATOMS_PER_SYSTEM = 10
SAMPLE_BYTES = 8 * N_PROPERTIES * (1 + 3 * ATOMS + 9)
"""Bytes per sample: values, ``ATOMS`` positions rows of 3, one strain row of 3 x 3."""

ELEMENTWISE_OPERATIONS = {
    "multiply": (
        lambda t: mtd.multiply(t, t),
        lambda t: metatensor.multiply(t, t),
        lambda a: a * a,
    ),
    "pow": (lambda t: mtd.pow(t, 2), lambda t: metatensor.pow(t, 2), lambda a: a**2),
    "add": (lambda t: mtd.add(t, t), lambda t: metatensor.add(t, t), lambda a: a + a),
}
"""Each operation as ``(metatensor-dask, metatensor, plain dask on values)``."""


def samples_per_block(size_mib: float, n_blocks: int, minimum: int = 1) -> int:
    """Samples per block for a tensor of about ``size_mib`` MiB (at least ``minimum``)."""
    return max(int(size_mib * 2**20 / SAMPLE_BYTES / n_blocks), minimum)


def featomic_block(rng: np.random.Generator, n_samples: int) -> metatensor.TensorBlock:
    """One block of ``n_samples`` samples, values and gradients drawn from ``rng``."""
    properties = metatensor.Labels.range("n", N_PROPERTIES)
    system = np.arange(n_samples) // ATOMS_PER_SYSTEM
    samples = np.stack([system, np.arange(n_samples) % ATOMS_PER_SYSTEM], axis=1)
    block = metatensor.TensorBlock(
        rng.normal(size=(n_samples, N_PROPERTIES)),
        metatensor.Labels(["system", "atom"], samples.astype(np.int32)),
        [],
        properties,
    )
    rows = np.repeat(np.arange(n_samples), ATOMS)
    gradient_samples = np.stack(
        [rows, rows // ATOMS_PER_SYSTEM, np.tile(np.arange(ATOMS), n_samples)], axis=1
    )
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            rng.normal(size=(len(rows), 3, N_PROPERTIES)),
            metatensor.Labels(["sample", "system", "atom"], gradient_samples.astype(np.int32)),
            [metatensor.Labels.range("xyz", 3)],
            properties,
        ),
    )
    block.add_gradient(
        "strain",
        metatensor.TensorBlock(
            rng.normal(size=(n_samples, 3, 3, N_PROPERTIES)),
            metatensor.Labels.range("sample", n_samples),
            [metatensor.Labels.range("xyz_2", 3), metatensor.Labels.range("xyz_1", 3)],
            properties,
        ),
    )
    return block


def featomic_like(n_samples: int, n_blocks: int, seed: int = 0) -> metatensor.TensorMap:
    """``n_blocks`` blocks of :func:`featomic_block`, keyed by ``center_type`` 0, 1, ..."""
    rng = np.random.default_rng(seed)
    blocks = [featomic_block(rng, n_samples) for _ in range(n_blocks)]
    return metatensor.TensorMap(metatensor.Labels.range("center_type", n_blocks), blocks)


def tiny_blocks(n_blocks: int, seed: int = 0) -> metatensor.TensorMap:
    """``n_blocks`` tiny blocks: values ``(10, 3, 4)`` with samples ``(system, atom)``
    (2 systems of 5 atoms), one ``positions`` gradient ``(30, 3, 3, 4)``; keys
    ``(a, k)`` with ``a = i % 10`` and ``k = i // 10``, so that moving ``k`` leaves at
    most 10 blocks."""
    rng = np.random.default_rng(seed)
    samples = metatensor.Labels(
        ["system", "atom"], np.stack([np.arange(10) // 5, np.arange(10) % 5], axis=1)
    )
    components = [metatensor.Labels.range("c", 3)]
    properties = metatensor.Labels.range("p", 4)
    rows = np.stack([np.repeat(np.arange(10), 3), np.tile(np.arange(3), 10)], axis=1)
    gradient_samples = metatensor.Labels(["sample", "neighbor"], rows.astype(np.int32))
    gradient_components = [metatensor.Labels.range("xyz", 3), *components]
    blocks = []
    for _ in range(n_blocks):
        block = metatensor.TensorBlock(rng.random((10, 3, 4)), samples, components, properties)
        gradient = metatensor.TensorBlock(
            rng.random((30, 3, 3, 4)), gradient_samples, gradient_components, properties
        )
        block.add_gradient("positions", gradient)
        blocks.append(block)
    index = np.arange(n_blocks)
    keys = metatensor.Labels(["a", "k"], np.stack([index % 10, index // 10], axis=1))
    return metatensor.TensorMap(keys, blocks)


def tree_rss(process: psutil.Process) -> int:
    """Resident memory of ``process`` and of all its children (the workers), in bytes."""
    total = 0
    for child in [process, *process.children(recursive=True)]:
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total
