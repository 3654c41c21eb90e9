"""What assembles a computed block or map carries its metadata, not its dask arrays.

dask sends a collection's ``__dask_postcompute__`` function and arguments with the graph
to a distributed cluster, where a worker runs it. Bound to the map, they carried the
map's dask arrays along: a map made from memory had its data sent twice, and the result
of an operation on it the data of its inputs too.
"""

from __future__ import annotations

import cloudpickle
import metatensor
import metatensor.operations
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


def featomic_shaped(rows: int) -> metatensor.TensorMap:
    """Two blocks of ``rows`` samples, with positions gradients (two rows a sample)."""
    rng = np.random.default_rng(7)
    blocks = []
    for _ in range(2):
        samples = metatensor.Labels(
            ["system", "atom"], np.stack([np.arange(rows), np.zeros(rows, int)], 1)
        )
        block = metatensor.TensorBlock(
            rng.random((rows, 3, 8)),
            samples,
            [metatensor.Labels.range("o3_mu", 3)],
            metatensor.Labels.range("n", 8),
        )
        sample = np.repeat(np.arange(rows), 2)
        gradient_samples = np.stack([sample, sample, np.tile([0, 1], rows)], 1)
        block.add_gradient(
            "positions",
            metatensor.TensorBlock(
                rng.random((2 * rows, 3, 3, 8)),
                metatensor.Labels(["sample", "system", "atom"], gradient_samples),
                [metatensor.Labels.range("xyz", 3), metatensor.Labels.range("o3_mu", 3)],
                metatensor.Labels.range("n", 8),
            ),
        )
        blocks.append(block)
    return metatensor.TensorMap(metatensor.Labels.range("key", 2), blocks)


def sent_bytes(collection) -> int:
    """Bytes of the function and arguments dask sends to assemble ``collection``."""
    return len(cloudpickle.dumps(collection.__dask_postcompute__()))


@pytest.mark.parametrize("what", ["map", "block", "multiply", "gradient"])
def test_what_assembles_a_result_does_not_carry_the_data(what):
    tensor = mtd.from_metatensor(featomic_shaped(2000))
    product = mtd.multiply(tensor, tensor)
    collection = {
        "map": tensor,
        "block": tensor.block(0),
        "multiply": product,
        "gradient": product.block(1).gradient("positions"),
    }[what]
    assert collection.nbytes > 2_000_000
    # the Labels stay (a few kB here); the values, gradients and inputs do not
    assert sent_bytes(collection) < collection.nbytes / 20


@pytest.mark.xdist_group("serial")
def test_computed_on_a_cluster_equals_metatensor():
    from distributed import Client, LocalCluster

    core = featomic_shaped(300)
    tensor = mtd.from_metatensor(core)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0") as cluster,
        Client(cluster),
    ):
        product = mtd.multiply(tensor, tensor).compute()
        block = tensor.block(1).compute()
    assert_equal_to_metatensor(product, metatensor.operations.multiply(core, core))
    assert_equal_to_metatensor(
        mtd.TensorMap(mtd.Labels.range("key", 1), [block]),
        metatensor.TensorMap(metatensor.Labels.range("key", 1), [core.block(1).copy()]),
    )
