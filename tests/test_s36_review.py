"""Rows taken in any order from a store grown by appends (a chunk per append): the
outputs' chunks stay within the configured chunk size, or the inputs' largest chunk
when larger, for the gradients too. A value row has many gradient rows, so chunks of
values merged up to the configured size make co-partitioned gradient chunks many times
as large (one task then holds them whole); and no task is handed many chunks of that
size at once, where one chunk of the input's size was read before."""

import dask
import metatensor
import numpy as np
import pytest
from dask.callbacks import Callback
from dask.core import get_dependencies

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

APPENDS = 12
ROWS = 50  # samples of a block per append
NEIGHBOURS = 20  # gradient rows per sample
CHUNK_SIZE = 16 * 1024


def _labels(names, rows):
    return metatensor.Labels(names, np.asarray(rows, dtype=np.int32).reshape(-1, len(names)))


def _block(rng, atom):
    """A block of ``ROWS`` systems drawn at random (the store is not sorted), one
    property, and a positions gradient of ``NEIGHBOURS`` rows per sample."""
    systems = rng.choice(100 * ROWS, ROWS, replace=False)
    rows = np.repeat(np.arange(ROWS), NEIGHBOURS)
    block = metatensor.TensorBlock(
        rng.standard_normal((ROWS, 1)),
        _labels(["system", "atom"], [[s, atom] for s in systems]),
        [],
        _labels(["n"], [0]),
    )
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            rng.standard_normal((len(rows), 3, 1)),
            _labels(
                ["sample", "system", "atom"],
                np.stack([rows, systems[rows], np.tile(np.arange(NEIGHBOURS), ROWS)], 1),
            ),
            [_labels(["xyz"], np.arange(3))],
            _labels(["n"], [0]),
        ),
    )
    return block


@pytest.fixture(scope="module")
def appended(tmp_path_factory):
    store = tmp_path_factory.mktemp("s36-review") / "appended.zarr"
    rng = np.random.default_rng(36)
    for atom in range(APPENDS):
        part = metatensor.TensorMap(
            _labels(["k"], [[0], [1]]), [_block(rng, atom), _block(rng, atom)]
        )
        mtd.from_metatensor(part).to_zarr(store, append_dim="samples")
    return store


def _largest_chunk_bytes(tensor):
    largest = 0
    for block in tensor.blocks():
        for array in [block.values, *(gradient.values for _, gradient in block.gradients())]:
            row = array.dtype.itemsize * int(np.prod(array.shape[1:]))
            largest = max(largest, max(array.chunks[0]) * row)
    return largest


@pytest.mark.parametrize("operation", ["sort", "keys_to_samples"])
def test_rows_in_any_order_keep_gradient_chunks_bounded(appended, operation):
    tensor = mtd.open_zarr(appended)
    theirs = mtd.to_metatensor(tensor)
    with dask.config.set({"metatensor_dask.chunk-size": CHUNK_SIZE}):
        if operation == "sort":
            result = mtd.sort(tensor, axes="samples")
            expected = metatensor.sort(theirs, axes="samples")
        else:
            result = tensor.keys_to_samples("k")
            expected = theirs.keys_to_samples("k")
    assert _largest_chunk_bytes(result) <= max(CHUNK_SIZE, _largest_chunk_bytes(tensor))
    assert_equal_to_metatensor(result, expected)


class _HeldInputs(Callback):
    """The most bytes of computed inputs that one task (but the final concatenation)
    is handed, on the synchronous scheduler."""

    def __init__(self):
        super().__init__()
        self.most = 0

    def _pretask(self, key, dsk, state):
        if str(key).startswith(("('finalize", "finalize")):
            return
        inputs = get_dependencies(dsk, key)
        held = sum(getattr(state["cache"].get(k), "nbytes", 0) for k in inputs)
        self.most = max(self.most, held)


def test_rows_in_any_order_read_by_tasks_of_about_a_chunk(tmp_path):
    # 32 appends of 64 rows of 8 KiB each, 256 KiB in all, at a chunk size of 64 KiB:
    # merged to 64 KiB and gathered from all of them, a task held the 4 merged chunks
    # (at the default 64 MiB: 8 chunks of 64 MiB, 512 MiB, for a task)
    store = tmp_path / "appended.zarr"
    rng = np.random.default_rng(7)
    for atom in range(32):
        block = metatensor.TensorBlock(
            rng.standard_normal((64, 16)),
            _labels(["system", "atom"], [[s, atom] for s in rng.choice(10_000, 64, False)]),
            [],
            _labels(["n"], np.arange(16)),
        )
        part = metatensor.TensorMap(_labels(["k"], [[0]]), [block])
        mtd.from_metatensor(part).to_zarr(store, append_dim="samples")
    tensor = mtd.open_zarr(store)
    with dask.config.set({"metatensor_dask.chunk-size": 64 * 1024}):
        result = mtd.sort(tensor, axes="samples")
    with _HeldInputs() as held:
        values = result.block().values.compute(scheduler="synchronous")
    assert held.most <= 2 * max(64 * 1024, _largest_chunk_bytes(tensor)), held.most
    expected = metatensor.sort(mtd.to_metatensor(tensor), axes="samples")
    np.testing.assert_array_equal(values, expected.block().values)
