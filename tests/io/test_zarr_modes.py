"""Write modes, delayed writes and the kinds of store ``to_zarr`` accepts."""

from __future__ import annotations

import dask
import metatensor
import numpy as np
import pytest
import zarr
from dask.delayed import Delayed
from zarr.core.sync import sync
from zarr.storage import MemoryStore
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


@pytest.fixture(scope="module")
def theirs() -> metatensor.TensorMap:
    return make_metatensor(seed=5)


def _doubled(tensor: metatensor.TensorMap) -> metatensor.TensorMap:
    doubled = metatensor.multiply(tensor, 2.0)
    for key, value in tensor.info().items():  # the stored info is kept
        doubled.set_info(key, value)
    return doubled


def _select(tensor: metatensor.TensorMap, indices: list[int]) -> metatensor.TensorMap:
    keys = metatensor.Labels(tensor.keys.names, tensor.keys.values[indices])
    return metatensor.TensorMap(keys, [tensor.block(i).copy() for i in indices])


def test_mode_w_minus_refuses_an_existing_store(tmp_path, theirs):
    tensor = mtd.from_metatensor(theirs)
    tensor.to_zarr(tmp_path / "t.zarr")
    with pytest.raises(mtd.MetatensorDaskError, match=r"already exists.*mode='w'"):
        tensor.to_zarr(tmp_path / "t.zarr")
    with pytest.raises(mtd.MetatensorDaskError, match="`mode` must be one of"):
        tensor.to_zarr(tmp_path / "t.zarr", mode="x")


def test_mode_w_overwrites(tmp_path, theirs):
    mtd.from_metatensor(theirs).to_zarr(tmp_path / "t.zarr")
    other = _select(theirs, [2, 0])
    mtd.to_zarr(mtd.from_metatensor(other), tmp_path / "t.zarr", mode="w")
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "t.zarr"), other)
    group = zarr.open_group(tmp_path / "t.zarr", mode="r")
    assert "2" not in group["blocks"]


def test_mode_w_overwrites_an_fsspec_store(theirs):
    pytest.importorskip("fsspec")
    url = "memory://zarr-tests/overwritten.zarr"
    mtd.from_metatensor(theirs).to_zarr(url, mode="w")
    other = _select(theirs, [2, 0])
    mtd.from_metatensor(other).to_zarr(url, mode="w")
    assert_equal_to_metatensor(mtd.open_zarr(url), other)
    store = zarr.storage.FsspecStore.from_url(url)

    async def listing() -> list[str]:
        return [key async for key in store.list()]

    keys = sync(listing())
    assert "zarr.json" in keys
    assert not [key for key in keys if key.startswith(("blocks/2/", ".lock", ".progress"))]


def test_mode_a_adds_blocks(tmp_path, theirs):
    mtd.from_metatensor(_select(theirs, [0, 2])).to_zarr(tmp_path / "t.zarr", chunks=4)
    mtd.from_metatensor(_select(theirs, [1])).to_zarr(tmp_path / "t.zarr", mode="a")
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "t.zarr"), _select(theirs, [0, 2, 1]))


def test_mode_a_refuses_a_stored_key(tmp_path, theirs):
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(_select(theirs, [0, 2])).to_zarr(path)
    before = sorted(p.relative_to(path) for p in path.rglob("*"))
    remedies = r"append_dim='samples'.*mode='r\+'.*mode='w'"
    # the same block again: it would be a silent no-op
    with pytest.raises(
        mtd.MetatensorDaskError, match=r"key \(6, 8\) is already stored.*" + remedies
    ):
        mtd.from_metatensor(_select(theirs, [2, 1])).to_zarr(path, mode="a")
    # other samples under a stored key
    other = make_metatensor(seed=9, n_samples=(5,), n_properties=(4,))
    with pytest.raises(mtd.MetatensorDaskError, match=r"'blocks/0/.*" + remedies):
        mtd.from_metatensor(other).to_zarr(path, mode="a")
    assert sorted(p.relative_to(path) for p in path.rglob("*")) == before
    assert_equal_to_metatensor(mtd.open_zarr(path), _select(theirs, [0, 2]))


def test_mode_a_adds_gradients(tmp_path):
    full = make_metatensor(seed=7, nested=False)
    without = metatensor.remove_gradients(full, ["strain"])
    mtd.from_metatensor(without).to_zarr(tmp_path / "t.zarr")
    mtd.from_metatensor(full).to_zarr(tmp_path / "t.zarr", mode="a")
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "t.zarr"), full)


def test_mode_a_creates_a_missing_store(tmp_path, theirs):
    mtd.from_metatensor(theirs).to_zarr(tmp_path / "t.zarr", mode="a")
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "t.zarr"), theirs)


def test_mode_a_refuses_what_would_break_the_tensor(tmp_path, theirs):
    mtd.from_metatensor(_select(theirs, [0])).to_zarr(tmp_path / "t.zarr")
    # a new block without the gradients of the stored ones
    bare = metatensor.remove_gradients(_select(theirs, [1]))
    with pytest.raises(mtd.MetatensorDaskError, match="mode='a' can not add"):
        mtd.from_metatensor(bare).to_zarr(tmp_path / "t.zarr", mode="a")
    # a known key whose values differ in shape
    changed = make_metatensor(seed=5, n_samples=(7,), n_properties=(4,))
    with pytest.raises(mtd.MetatensorDaskError, match=r"does not match this tensor.*'blocks/0/"):
        mtd.from_metatensor(changed).to_zarr(tmp_path / "t.zarr", mode="a")
    # other key names
    renamed = metatensor.rename_dimension(_select(theirs, [1]), "keys", "center_type", "other")
    with pytest.raises(mtd.MetatensorDaskError, match="can not add blocks with keys"):
        mtd.from_metatensor(renamed).to_zarr(tmp_path / "t.zarr", mode="a")
    # the store is untouched by refused writes
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "t.zarr"), _select(theirs, [0]))


@pytest.mark.parametrize("chunks", [4, 7])
def test_mode_r_plus_refuses_values_read_from_the_store_it_rewrites(tmp_path, chunks):
    """A task could read a chunk that another task already rewrote: the rows of a
    reversed block came out wrong, without an error."""
    theirs = make_metatensor(seed=5, nested=False)
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(theirs).to_zarr(path, chunks=4)
    doubled = mtd.multiply(mtd.open_zarr(path, chunks=chunks), 2.0)
    with pytest.raises(mtd.MetatensorDaskError, match="mode='r\\+' would rewrite chunks"):
        doubled.to_zarr(path, mode="r+")
    assert_equal_to_metatensor(mtd.open_zarr(path), theirs)
    assert mtd.verify(path).ok


def test_mode_r_plus_rewrites_values(tmp_path):
    theirs = make_metatensor(seed=5, nested=False)  # multiply refuses nested gradients
    mtd.from_metatensor(theirs).to_zarr(tmp_path / "t.zarr", chunks=4)
    doubled = mtd.multiply(mtd.open_zarr(tmp_path / "t.zarr", chunks=7), 2.0)
    # computed before the rewrite: the source and the target are the same arrays
    doubled = doubled.persist()
    doubled.to_zarr(tmp_path / "t.zarr", mode="r+")
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "t.zarr"), _doubled(theirs))
    # the stored chunking is kept
    assert mtd.open_zarr(tmp_path / "t.zarr").block(0).values.chunks[0][0] == 4


def test_mode_r_plus_refuses_other_metadata(tmp_path, theirs):
    with pytest.raises(mtd.MetatensorDaskError, match="mode='r\\+' rewrites an existing store"):
        mtd.from_metatensor(theirs).to_zarr(tmp_path / "t.zarr", mode="r+")
    mtd.from_metatensor(theirs).to_zarr(tmp_path / "t.zarr")
    with pytest.raises(mtd.MetatensorDaskError, match="only in the store"):
        mtd.from_metatensor(_select(theirs, [0])).to_zarr(tmp_path / "t.zarr", mode="r+")
    other = make_metatensor(seed=5, n_samples=(23, 0, 12))
    with pytest.raises(mtd.MetatensorDaskError, match=r"'blocks/2/.*mode='r\+' only rewrites"):
        mtd.from_metatensor(other).to_zarr(tmp_path / "t.zarr", mode="r+")


def test_compute_false_returns_a_delayed(tmp_path, theirs):
    delayed = mtd.from_metatensor(theirs).to_zarr(tmp_path / "t.zarr", compute=False, chunks=5)
    assert isinstance(delayed, Delayed)
    # metadata is there, the store is not complete yet
    with pytest.raises(mtd.MetatensorDaskError, match=r"incomplete.*resume=True"):
        mtd.open_zarr(tmp_path / "t.zarr")
    dask.compute(delayed)
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "t.zarr"), theirs)


def test_store_objects_and_urls(tmp_path, theirs):
    tensor = mtd.from_metatensor(theirs)
    store = MemoryStore()
    tensor.to_zarr(store, chunks=3)
    assert_equal_to_metatensor(mtd.open_zarr(store), theirs)

    pytest.importorskip("fsspec")
    tensor.to_zarr("memory://zarr-tests/t.zarr", mode="w")
    assert_equal_to_metatensor(mtd.open_zarr("memory://zarr-tests/t.zarr"), theirs)

    url = f"file://{tmp_path}/url.zarr"
    tensor.to_zarr(url, storage_options={"auto_mkdir": True})
    assert_equal_to_metatensor(mtd.open_zarr(url, storage_options={"auto_mkdir": True}), theirs)
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "url.zarr"), theirs)


def test_memory_stores_are_refused_with_process_workers(theirs):
    tensor = mtd.from_metatensor(theirs)
    with dask.config.set(scheduler="processes"):
        with pytest.raises(mtd.MetatensorDaskError, match=r"memory store.*'processes'"):
            tensor.to_zarr(MemoryStore())
        with pytest.raises(mtd.MetatensorDaskError, match="memory store"):
            mtd.open_zarr(MemoryStore())
        pytest.importorskip("fsspec")
        with pytest.raises(mtd.MetatensorDaskError, match="memory store"):
            tensor.to_zarr("memory://zarr-tests/processes.zarr")


def test_memory_stores_with_a_distributed_client():
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("fsspec")
    theirs = make_metatensor(seed=1, nested=False)
    tensor = mtd.from_metatensor(theirs)
    with distributed.Client(
        processes=False, n_workers=1, threads_per_worker=2, dashboard_address="127.0.0.1:0"
    ):
        # tasks are pickled: a MemoryStore object would be copied, fsspec's memory is global
        with pytest.raises(mtd.MetatensorDaskError, match="distributed Client"):
            tensor.to_zarr(MemoryStore())
        tensor.to_zarr("memory://zarr-tests/inproc.zarr", mode="w")
        assert_equal_to_metatensor(mtd.open_zarr("memory://zarr-tests/inproc.zarr"), theirs)
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
    ) as cluster:
        with distributed.Client(cluster):
            with pytest.raises(mtd.MetatensorDaskError, match="distributed Client"):
                tensor.to_zarr("memory://zarr-tests/processes.zarr")


def test_tensor_method_and_function_agree(tmp_path, theirs):
    tensor = mtd.from_metatensor(theirs)
    tensor.to_zarr(tmp_path / "a.zarr", chunks=2)
    mtd.to_zarr(tensor, tmp_path / "b.zarr", chunks=2)
    a = zarr.open_group(tmp_path / "a.zarr", mode="r")
    b = zarr.open_group(tmp_path / "b.zarr", mode="r")
    np.testing.assert_array_equal(a["blocks/0/values"][:], b["blocks/0/values"][:])
    assert a.metadata.to_dict() == b.metadata.to_dict()


def test_to_zarr_needs_a_tensor(tmp_path, theirs):
    with pytest.raises(TypeError, match="TensorMap"):
        mtd.to_zarr(theirs, tmp_path / "t.zarr")


def _with_gradient(path: list[str]) -> metatensor.TensorMap:
    """A one-block tensor with a gradient, nested along ``path`` (names as given)."""
    n = 3
    properties = metatensor.Labels.range("p", 2)

    def block(rows: int, samples: metatensor.Labels) -> metatensor.TensorBlock:
        return metatensor.TensorBlock(np.ones((rows, 2)), samples, [], properties)

    parent = block(n, metatensor.Labels.range("s", n))
    gradients = [
        block(n, metatensor.Labels(["sample"], np.arange(n, dtype=np.int32)[:, None])) for _ in path
    ]
    for name, child, inner in reversed(
        list(zip(path, gradients, [parent, *gradients][: len(path)], strict=True))
    ):
        inner.add_gradient(name, child)
    return metatensor.TensorMap(metatensor.Labels.range("k", 1), [parent])


@pytest.mark.parametrize(
    "names", [["../../x"], ["a/b"], [".."], ["positions", "../../../evil"], ["ok\n"]]
)
def test_unsafe_gradient_names_are_refused(tmp_path, names):
    tensor = mtd.from_metatensor(_with_gradient(names))
    store = tmp_path / "deep" / "t.zarr"
    for mode in ("w-", "w", "a"):
        with pytest.raises(mtd.UnsafeNameError, match=r"gradient name .* cannot be stored"):
            tensor.to_zarr(store, mode=mode)
    assert list(tmp_path.rglob("*")) == []
    # an existing store is left as it was, even by mode "w"
    safe = _with_gradient(["positions"])
    mtd.from_metatensor(safe).to_zarr(store)
    with pytest.raises(mtd.UnsafeNameError):
        tensor.to_zarr(store, mode="w")
    assert_equal_to_metatensor(mtd.open_zarr(store), safe)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep"]


def test_an_overwrite_is_incomplete_from_its_start(tmp_path):
    theirs = make_metatensor(seed=5, nested=False)  # multiply refuses nested gradients
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(theirs).to_zarr(path)
    delayed = mtd.from_metatensor(_doubled(theirs)).to_zarr(path, mode="w", compute=False)
    with pytest.raises(mtd.MetatensorDaskError, match=r"incomplete.*resume=True"):
        mtd.open_zarr(path)
    dask.compute(delayed)
    assert_equal_to_metatensor(mtd.open_zarr(path), _doubled(theirs))


def test_a_reader_opened_before_an_overwrite_never_sees_zeros(tmp_path):
    theirs = make_metatensor(seed=5, nested=False)
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(theirs).to_zarr(path)
    reader = mtd.open_zarr(path)
    # the overwrite's metadata is written, its data not yet
    delayed = mtd.from_metatensor(_doubled(theirs)).to_zarr(path, mode="w", compute=False)
    try:
        # the old data is gone: the only right answer is a clear error, which says why
        with pytest.raises(mtd.MetatensorDaskError, match=r"overwritten .* since this tensor"):
            reader.block(0).values.compute()
    finally:
        dask.compute(delayed)
