"""A stored row pointer that disagrees with the gradient samples is refused by the
chunk-wise gradient operations, chunk by chunk, without reading the sample labels
when building graphs; a clean store gives metatensor's results."""

from __future__ import annotations

import json

import metatensor
import pytest
import zarr
from older_formats import make_format_4
from store_support import CountingStore
from zarr.storage import LocalStore
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes

GRADIENT = "blocks/0/gradients/positions"

# operations pairing value rows with gradient rows chunk by chunk (none reads the
# gradient sample labels to build its graph)
CHUNKWISE = {
    "multiply": (lambda t: mtd.multiply(t, t), lambda t: metatensor.multiply(t, t)),
    "pow": (lambda t: mtd.pow(t, 3), lambda t: metatensor.pow(t, 3)),
    "divide": (lambda t: mtd.divide(t, mtd.add(t, 10.0)), None),
    "var_over_properties": (lambda t: mtd.var_over_properties(t, "n"), None),
}
# sum_over_samples reads the gradient sample labels for its output's metadata, so it
# finds the damage when building its graph, with the check made when Labels are read
SUM = (
    lambda t: mtd.sum_over_samples(t, "atom"),
    lambda t: metatensor.sum_over_samples(t, "atom"),
)


def _write(path) -> metatensor.TensorMap:
    theirs = make_metatensor(seed=2, n_properties=(4, 3, 2), nested=False)
    mtd.from_metatensor(theirs).to_zarr(path, chunks=4)
    return theirs


def _move_a_boundary(path) -> tuple[int, int, int]:
    """Give the first gradient row of some value row ``k`` (inside the values chunk
    ``k // 4``) to value row ``k - 1`` in the stored row pointer, which stays a valid
    pointer (zarr rewrites its checksum). Returns ``(k, that gradient row, its stored
    samples chunk)``. The store is made format 4 first: its pointer records no chunk
    table, which would find the edit before the checks of the samples."""
    make_format_4(path)
    stored = zarr.open_array(path / GRADIENT / "row_pointer", mode="r+")
    pointer = stored[...]
    k = next(k for k in range(9, 12) if pointer[k] < pointer[k + 1])
    row = int(pointer[k])
    pointer[k] += 1
    stored[...] = pointer
    document = json.loads((path / GRADIENT / "samples" / "zarr.json").read_text())
    chunk_rows = document["chunk_grid"]["configuration"]["chunk_shape"][0]
    return k, row, row // chunk_rows


def _disagreement(chunk: int, row: int, k: int) -> str:
    return (
        rf"the store at .*damaged: the gradient samples '{GRADIENT}/samples' disagree with "
        rf"the stored row pointer in chunk {chunk} \(.*\): the gradient row {row} has the "
        rf"sample {k}, where the row pointer puts it in the value row {k - 1}"
    )


@pytest.mark.parametrize("operation", CHUNKWISE)
def test_a_moved_row_pointer_boundary_is_refused_by_each_chunk_task(tmp_path, operation):
    path = tmp_path / "t.zarr"
    _write(path)
    k, row, _ = _move_a_boundary(path)
    function, _ = CHUNKWISE[operation]
    with raise_if_dask_computes():
        result = function(mtd.open_zarr(path))
    with pytest.raises(mtd.DamagedStoreError, match=_disagreement(k // 4, row, k)):
        result.block(0).gradient("positions").values.compute()


@pytest.mark.parametrize("operation", ["multiply", "pow"])
def test_tiny_blocks_computed_together_are_checked_too(tmp_path, operation):
    path = tmp_path / "t.zarr"
    _write(path)
    k, row, _ = _move_a_boundary(path)
    function, _ = CHUNKWISE[operation]
    result = function(mtd.open_zarr(path, chunks=100))  # one chunk per block: grouped
    with pytest.raises(mtd.DamagedStoreError, match=_disagreement(0, row, k)):
        result.compute()


def test_sum_over_samples_finds_it_when_reading_the_gradient_samples(tmp_path):
    path = tmp_path / "t.zarr"
    _write(path)
    k, row, stored_chunk = _move_a_boundary(path)
    with pytest.raises(
        mtd.DamagedStoreError,
        match=(
            rf"'{GRADIENT}/samples' disagree with the stored row pointer: the gradient row "
            rf"{row} has the sample {k}, where the row pointer puts it in the value row "
            rf"{k - 1} \(in its stored chunk {stored_chunk}\)"
        ),
    ):
        SUM[0](mtd.open_zarr(path))


@pytest.mark.parametrize("operation", ["multiply", "pow"])
def test_a_clean_store_reads_gradient_sample_chunks_only_when_computing(tmp_path, operation):
    path = tmp_path / "t.zarr"
    theirs = _write(path)
    store = CountingStore(LocalStore(path, read_only=True))
    tensor = mtd.open_zarr(store)
    function, reference = CHUNKWISE[operation]
    with raise_if_dask_computes():
        result = function(tensor)
    assert not any("/samples/" in key for key in store.reads)
    result.block(0).gradient("positions").values.compute()
    # the check read the stored "sample" column, the Labels stay unloaded
    assert any(key.startswith(f"{GRADIENT}/samples/c") for key in store.reads)
    assert not tensor.block(0).gradient("positions").samples.is_loaded
    assert not any(key.startswith("blocks/0/samples/") for key in store.reads)
    assert_equal_to_metatensor(result, reference(theirs))


def test_a_clean_store_sums_over_samples_as_metatensor(tmp_path):
    path = tmp_path / "t.zarr"
    theirs = _write(path)
    # chunks are summed in a tree: the last bits may differ
    assert_equal_to_metatensor(SUM[0](mtd.open_zarr(path)), SUM[1](theirs), rtol=1e-12)


def test_samples_in_memory_are_not_read_again(tmp_path):
    path = tmp_path / "t.zarr"
    theirs = _write(path)
    store = CountingStore(LocalStore(path, read_only=True))
    tensor = mtd.open_zarr(store)
    samples = tensor.block(0).gradient("positions").samples
    assert samples.values.shape[0] > 0  # loaded, and checked as a whole
    reads = len([key for key in store.reads if key.startswith(f"{GRADIENT}/samples/")])
    result = mtd.multiply(tensor, tensor)
    result.block(0).gradient("positions").values.compute()
    assert len([key for key in store.reads if key.startswith(f"{GRADIENT}/samples/")]) == reads
    assert_equal_to_metatensor(result, metatensor.multiply(theirs, theirs))
