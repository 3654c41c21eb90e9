"""Files of maps of many tiny blocks: the cost of writing, saving and opening them must
not grow faster than the number of blocks. Calls are counted, not timed."""

from __future__ import annotations

import gc

import metatensor
import numpy as np
import pytest
from dask.highlevelgraph import Layer
from store_support import CountingStore

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes


def tiny(n_blocks: int) -> metatensor.TensorMap:
    """``n_blocks`` blocks of 4 samples, 2 properties and a gradient of 2 rows per sample."""
    rng = np.random.default_rng(n_blocks)
    samples = metatensor.Labels.range("s", 4)
    properties = metatensor.Labels.range("p", 2)
    rows = np.stack([np.repeat(np.arange(4), 2), np.tile([0, 1], 4)], axis=1)
    gradient_samples = metatensor.Labels(["sample", "atom"], rows.astype(np.int32))
    blocks = []
    for _ in range(n_blocks):
        block = metatensor.TensorBlock(rng.random((4, 2)), samples, [], properties)
        block.add_gradient(
            "positions",
            metatensor.TensorBlock(
                rng.random((8, 3, 2)),
                gradient_samples,
                [metatensor.Labels.range("xyz", 3)],
                properties,
            ),
        )
        blocks.append(block)
    return metatensor.TensorMap(metatensor.Labels.range("k", n_blocks), blocks)


@pytest.fixture
def culled_layers(monkeypatch):
    """The number of graph layers dask culls, by layer (each cull of a layer copies the
    set of keys still needed: one layer per array made writes quadratic in blocks)."""
    calls = []
    cull = Layer.cull

    def counting(self, *args, **kwargs):
        calls.append(self)
        return cull(self, *args, **kwargs)

    monkeypatch.setattr(Layer, "cull", counting)
    return calls


@pytest.mark.parametrize("operation", ["copy", "multiply"])
def test_writing_culls_one_flat_graph(tmp_path, culled_layers, operation):
    theirs = tiny(30)
    tensor = mtd.from_metatensor(theirs)
    if operation == "multiply":  # grouped tiny blocks, sharing their group's tasks
        tensor = mtd.multiply(tensor, tensor)
        theirs = metatensor.multiply(theirs, theirs)
    tensor.to_zarr(tmp_path / "t.zarr")
    assert len(culled_layers) <= 1
    mtd.save(tmp_path / "t.mts", tensor)
    assert len(culled_layers) <= 2
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "t.zarr"), theirs)
    assert_equal_to_metatensor(mtd.load(tmp_path / "t.mts"), theirs)


def test_loading_and_opening_build_blocks_with_the_collector_paused(tmp_path, monkeypatch):
    from metatensor_dask.io import _mts_read, zarr_read

    theirs = tiny(5)
    mtd.from_metatensor(theirs).to_zarr(tmp_path / "t.zarr")
    metatensor.save(tmp_path / "t.mts", theirs)
    states = []

    def recording(function):
        def wrapper(*args, **kwargs):
            states.append(gc.isenabled())
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(_mts_read.Archive, "part", recording(_mts_read.Archive.part))
    monkeypatch.setattr(zarr_read._Reader, "block", recording(zarr_read._Reader.block))
    assert gc.isenabled()
    assert_equal_to_metatensor(mtd.load(tmp_path / "t.mts"), theirs)
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "t.zarr"), theirs)
    assert states and not any(states)
    assert gc.isenabled()


def test_a_collector_disabled_by_the_caller_stays_disabled():
    from metatensor_dask._gc import collector_paused

    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("the collector runs again after an error")
    assert gc.isenabled()


def test_opening_reads_one_metadata_document_and_builds_no_zarr_array(tmp_path, monkeypatch):
    import zarr
    from zarr.storage import LocalStore

    theirs = tiny(12)
    mtd.from_metatensor(theirs).to_zarr(tmp_path / "t.zarr")
    built = []
    init = zarr.AsyncArray.__init__

    def counting(self, *args, **kwargs):
        built.append(self)
        init(self, *args, **kwargs)

    monkeypatch.setattr(zarr.AsyncArray, "__init__", counting)
    store = CountingStore(LocalStore(tmp_path / "t.zarr", read_only=True))
    tensor = mtd.open_zarr(store)
    assert [key for key in store.reads if key.endswith("zarr.json")] == ["zarr.json"]
    assert not built
    # the Labels shared by every block are read once; the row pointers of blocks of one
    # chunk are not read until an operation needs them
    assert len([key for key in store.reads if "/properties/" in key]) == 1
    assert not [key for key in store.reads if "/row_pointer/" in key]
    with raise_if_dask_computes():
        product = mtd.multiply(tensor, tensor)
    # then each once, all in one batch (not a local store: one round trip each)
    pointers = [key for key in store.reads if "/row_pointer/" in key]
    assert len(pointers) == len(set(pointers))
    assert {key.rpartition("/")[0] for key in pointers} == {
        f"blocks/{i}/gradients/positions/row_pointer" for i in range(12)
    }
    assert not any(block.gradient("positions").samples.is_loaded for block in tensor.blocks())
    assert_equal_to_metatensor(product, metatensor.multiply(theirs, theirs))
    assert_equal_to_metatensor(tensor, theirs)
    assert len(pointers) == len([key for key in store.reads if "/row_pointer/" in key])


@pytest.mark.parametrize("operation", ["copy", "multiply"])
def test_appending_culls_one_flat_graph(tmp_path, culled_layers, operation):
    theirs = tiny(30)
    tensor = mtd.from_metatensor(theirs)
    if operation == "multiply":
        tensor = mtd.multiply(tensor, tensor)
        theirs = metatensor.multiply(theirs, theirs)
    tensor.to_zarr(tmp_path / "t.zarr")
    before = len(culled_layers)
    tensor.to_zarr(tmp_path / "t.zarr", append_dim="samples", renumber={"s": "next"})
    assert len(culled_layers) - before <= 1
    second = mtd.to_metatensor(mtd.open_zarr(tmp_path / "t.zarr").compute())
    for key, block in second.items():
        values = block.values
        np.testing.assert_array_equal(values[:4], theirs.block(key).values)
        np.testing.assert_array_equal(values[4:], theirs.block(key).values)
        np.testing.assert_array_equal(block.samples.column("s"), np.arange(8))
        gradient = block.gradient("positions")
        expected = theirs.block(key).gradient("positions")
        np.testing.assert_array_equal(gradient.values[:8], expected.values)
        np.testing.assert_array_equal(gradient.values[8:], expected.values)
        np.testing.assert_array_equal(gradient.samples.column("sample"), np.repeat(np.arange(8), 2))


def test_saving_thousands_of_the_smallest_blocks_gives_metatensor_file(tmp_path):
    """Blocks of one value: their members (a few hundred bytes each, header included)
    are gathered into writes of thousands of buffers, more than one ``writev`` takes;
    metatensor reads the file back equal."""
    blocks = [
        metatensor.TensorBlock(
            np.full((1, 1), float(i)),
            metatensor.Labels.range("s", 1),
            [],
            metatensor.Labels.range("p", 1),
        )
        for i in range(2000)
    ]
    expected = metatensor.TensorMap(metatensor.Labels.range("k", 2000), blocks)
    mtd.save(tmp_path / "tiny.mts", mtd.from_metatensor(expected))
    assert metatensor.equal(metatensor.load(tmp_path / "tiny.mts"), expected)
    assert_equal_to_metatensor(mtd.load(tmp_path / "tiny.mts"), expected)
