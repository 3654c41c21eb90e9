"""Blocks written whole by ``write_batches`` (the first batch, a new key) planned from a
metatensor-core batch's own numpy arrays (``io/zarr_plan.py``): the same plan as the
metatensor-dask tensor of the batch, and stores with the same bytes."""

from __future__ import annotations

import dask
import metatensor
import numpy as np
import pytest
from ingest_support import renumbered, store_files

import metatensor_dask as mtd
from metatensor_dask.io.chunks import ChunkRequest
from metatensor_dask.io.ingest_core import core_view
from metatensor_dask.io.zarr_plan import plan_whole
from metatensor_dask.testing import assert_equal_to_metatensor

#: Items per batch.
BATCH = 2
#: The keys of each batch, by batch index: keys appear in later batches, in another
#: order, batches without blocks. Key 2 has gradients whose rows are not grouped by
#: sample; the block (4, 1) has no samples.
SCHEDULES = {
    "first-batch-with-blocks": [[0], [0, 1], [], [2, 0], [1], [3, 2, 1, 0]],
    "first-batch-empty": [[], [1, 0], [2], [], [0, 3]],
}


def _labels(names: list[str], values) -> metatensor.Labels:
    return metatensor.Labels(names, np.asarray(values, np.int32).reshape(-1, len(names)))


def _block(
    rng: np.random.Generator, n_systems: int, key: int, dtype: type, empty: bool
) -> metatensor.TensorBlock:
    """Values with a component, positions gradients (0 to 3 rows per sample) with a
    component of their own; key 2 has its gradient rows in reverse order."""
    grouped = key != 2
    atoms = np.zeros(n_systems, int) if empty else rng.integers(0 if grouped else 2, 4, n_systems)
    system = np.repeat(np.arange(n_systems), atoms)
    atom = np.concatenate([np.arange(k) for k in atoms]) if len(system) else system
    samples = _labels(["system", "atom"], np.stack([system, atom], axis=1))
    components = [_labels(["o3_mu"], np.arange(-1, 2))]
    properties = _labels(["n"], np.arange(2 + key))
    n, p = len(system), 2 + key
    block = metatensor.TensorBlock(
        rng.normal(size=(n, 3, p)).astype(dtype), samples, components, properties
    )
    per = rng.integers(0 if grouped else 1, 4, n)
    sample = np.repeat(np.arange(n), per)
    local = np.concatenate([np.arange(k) for k in per]) if len(sample) else sample
    rows = np.stack([sample, system[sample], local], axis=1)
    if not grouped:
        rows = rows[::-1]
    gradient = metatensor.TensorBlock(
        rng.normal(size=(len(rows), 3, 3, p)).astype(dtype),
        _labels(["sample", "system", "atom"], rows),
        [_labels(["xyz"], np.arange(3)), *components],
        properties,
    )
    block.add_gradient("positions", gradient)
    return block


def core_batch(items: list[int], schedule: str, dtype: type) -> metatensor.TensorMap:
    """The metatensor-core batch of ``items`` (systems numbered from 0)."""
    index = items[0] // BATCH
    rng = np.random.default_rng(items[0])
    keys = SCHEDULES[schedule][index]
    blocks = [_block(rng, len(items), key, dtype, (index, key) == (4, 1)) for key in keys]
    tensor = metatensor.TensorMap(_labels(["key"], keys), blocks)
    tensor.set_info("schedule", schedule)
    return tensor


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    ("chunks", "shards"),
    [(None, None), (2, None), ("2KiB", None), (3, 2)],
    ids=["default-chunks", "2-rows", "2KiB", "3-rows-sharded"],
)
def test_core_batches_store_the_bytes_of_metatensor_dask_batches(
    tmp_path, schedule, dtype, chunks, shards
):
    n_items = BATCH * len(SCHEDULES[schedule])
    items = list(range(n_items))

    def core(batch: list[int]) -> metatensor.TensorMap:
        return core_batch(batch, schedule, dtype)

    def ours(batch: list[int]) -> mtd.TensorMap:
        return mtd.from_metatensor(core_batch(batch, schedule, dtype))

    stores = {name: tmp_path / f"{name}.zarr" for name in ("core", "ours")}
    with dask.config.set({"metatensor_dask.shard-chunks": shards}):
        for name, function in (("core", core), ("ours", ours)):
            mtd.write_batches(function, items, stores[name], BATCH, chunks=chunks, quiet=True)
    found = store_files(stores["core"])
    assert found == store_files(stores["ours"])
    # key 2 (the third key to appear) has no row pointer: its rows are not grouped
    pointer = "blocks/{}/gradients/positions/row_pointer/zarr.json"
    assert pointer.format(0) in found and pointer.format(2) not in found
    batches = [core(items[i : i + BATCH]) for i in range(0, n_items, BATCH)]
    expected = metatensor.join(
        [renumbered(b, i * BATCH) for i, b in enumerate(batches) if len(b)],
        axis="samples",
        different_keys="union",
    )
    expected.set_info("schedule", schedule)
    assert_equal_to_metatensor(mtd.open_zarr(stores["core"]).compute(), expected)
    assert mtd.verify(stores["core"]).ok


def _arrays(block) -> list[np.ndarray]:
    found = [block.values]
    for _, gradient in block.gradients():
        found += _arrays(gradient)
    return found


@pytest.mark.parametrize(
    "request_",
    [ChunkRequest("keep"), ChunkRequest("rows", 2), ChunkRequest("bytes", 1000)],
    ids=["keep", "2-rows", "1000-bytes"],
)
@pytest.mark.parametrize("growing", [True, False])
@pytest.mark.parametrize("shards", [None, 3])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_core_blocks_are_planned_as_their_tensor_blocks(request_, growing, shards, dtype):
    """The same documents, Labels and row pointers; the values arrays are the batch's
    own numpy arrays, equal to the metatensor-dask ones."""
    theirs = core_batch(list(range(10, 16)), "first-batch-with-blocks", dtype)
    view = core_view(theirs, None)
    tensor = mtd.from_metatensor(theirs)
    with dask.config.set({"metatensor_dask.shard-chunks": shards}):
        core = plan_whole(list(enumerate(view.blocks())), view.keys, request_, growing)
        ours = plan_whole(list(enumerate(tensor.blocks())), tensor.keys, request_, growing)
    assert core.nodes == ours.nodes
    assert sorted(core.small) == sorted(ours.small)
    for path in core.small:
        np.testing.assert_array_equal(core.small[path](), ours.small[path]())
    assert any(path.endswith("row_pointer") for path in core.small)
    own = [array for block in view.blocks() for array in _arrays(block)]
    assert sorted(core.data) == sorted(ours.data)
    assert len(core.data) == len(own)
    for path, array in core.data.items():
        assert any(array is mine for mine in own), path  # not copied, not wrapped
        expected = ours.data[path].compute()
        np.testing.assert_array_equal(array, expected)
        assert array.dtype == expected.dtype == dtype
