"""Appending samples to a store: the result is metatensor's join of the batches."""

from __future__ import annotations

import json
import re
from pathlib import Path

import metatensor
import numpy as np
import pytest
from ingest_support import renumbered as shifted
from ingest_support import store_files
from zarr.storage import MemoryStore, WrapperStore
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.io.zarr_samples import CHAIN_ROWS
from metatensor_dask.testing import assert_equal_to_metatensor


def select(tensor: metatensor.TensorMap, keys: list[tuple[int, int]]) -> metatensor.TensorMap:
    """Blocks of ``tensor`` for some keys (in that order)."""
    labels = metatensor.Labels(tensor.keys.names, np.array(keys, dtype=np.int32))
    blocks = [tensor.block(dict(zip(labels.names, key, strict=True))).copy() for key in keys]
    return metatensor.TensorMap(labels, blocks)


def join(batches: list[metatensor.TensorMap]) -> metatensor.TensorMap:
    """metatensor's join, which does not support gradients of gradients: the nested
    ``cell`` gradients are removed first, and checked by :func:`assert_nested`."""
    flat = []
    for batch in batches:
        blocks = []
        for b in batch.blocks():
            block = metatensor.TensorBlock(b.values, b.samples, b.components, b.properties)
            for parameter, gradient in b.gradients():
                block.add_gradient(
                    parameter,
                    metatensor.TensorBlock(
                        gradient.values,
                        gradient.samples,
                        gradient.components,
                        gradient.properties,
                    ),
                )
            blocks.append(block)
        flat.append(metatensor.TensorMap(batch.keys, blocks))
    return metatensor.join(flat, axis="samples", different_keys="union")


def assert_equal_to_join(stored: mtd.TensorMap, batches: list[metatensor.TensorMap]) -> None:
    """``stored`` equals the join of ``batches``, nested gradients included: the
    ``cell`` gradient of ``positions`` is the batches' one after another, its
    ``"sample"`` shifted by the ``positions`` rows before."""
    stored = stored.compute()
    nested = {}
    for key, block in stored.items():
        positions = block.gradient("positions")
        if positions.gradients_list():
            nested[tuple(int(v) for v in key.values)] = positions.gradient("cell")
    flat = mtd.remove_gradients(stored, ["positions"])
    expected = join(batches)
    assert_equal_to_metatensor(flat, metatensor.remove_gradients(expected, ["positions"]))
    for key, block in stored.items():
        theirs = expected.block(expected.keys.position(key.values)).gradient("positions")
        np.testing.assert_array_equal(block.gradient("positions").values, theirs.values)
        assert block.gradient("positions").samples == mtd.from_metatensor(theirs.samples)
        if not nested:
            continue
        values, samples, rows = [], [], 0
        for batch in batches:
            position = batch.keys.position(key.values)
            if position is None:
                continue
            positions = batch.block(position).gradient("positions")
            cell = positions.gradient("cell")
            values.append(cell.values)
            moved = np.array(cell.samples.values)
            moved[:, 0] += rows
            samples.append(moved)
            rows += len(positions.samples)
        cell = nested[tuple(int(v) for v in key.values)]
        np.testing.assert_array_equal(cell.values, np.concatenate(values))
        np.testing.assert_array_equal(cell.samples.values, np.concatenate(samples))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_appends_equal_join(tmp_path, dtype):
    a = make_metatensor(0, dtype=dtype)
    # keys come and go: (1, 6) is missing here, (8, 8) is new; (6, 8) has no rows
    b = make_metatensor(1, dtype=dtype, n_samples=(7, 5, 0), n_properties=(4, 3, 0))
    b = metatensor.TensorMap(
        metatensor.Labels(b.keys.names, np.array([[1, 1], [8, 8], [6, 8]], np.int32)),
        [blk.copy() for blk in b.blocks()],
    )
    c = select(make_metatensor(2, dtype=dtype, n_samples=(9, 4, 6)), [(6, 8), (1, 6)])
    batches = [a, shifted(b, 100), shifted(c, 200)]
    path = tmp_path / "appended.zarr"
    for batch in batches:
        mtd.from_metatensor(batch).to_zarr(path, append_dim="samples", chunks=4)
    assert_equal_to_join(mtd.open_zarr(path), batches)
    assert mtd.verify(path).ok
    assert not (path / ".progress").exists() and not (path / ".lock").exists()


def test_append_by_the_method_and_small_chunks(tmp_path):
    """Many small chunks: each array's partial last chunk is completed by the next
    append, which keeps the stored rows; nested gradients follow."""
    batches = [
        shifted(make_metatensor(i, n_samples=(n, 2, 3)), 10 * i) for i, n in enumerate((5, 1, 0, 6))
    ]
    path = tmp_path / "t.zarr"
    for batch in batches:
        mtd.from_metatensor(batch).to_zarr(path, append_dim="samples", chunks=3)
    assert_equal_to_join(mtd.open_zarr(path, chunks=2), batches)
    assert mtd.verify(path).ok


def test_empty_batch(tmp_path):
    a = make_metatensor(0)
    empty = metatensor.TensorMap(metatensor.Labels(a.keys.names, np.empty((0, 2), np.int32)), [])
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(a).to_zarr(path, append_dim="samples")
    before = store_files(path)
    mtd.from_metatensor(empty).to_zarr(path, append_dim="samples")
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), a)
    after = store_files(path)
    assert after.keys() == before.keys()


def test_append_to_nothing_creates(tmp_path):
    a = make_metatensor(3)
    path = tmp_path / "new.zarr"
    mtd.to_zarr(mtd.from_metatensor(a), path, append_dim="samples")
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), a)


def test_lazy_append_is_lazy(tmp_path):
    """Building the append writes metadata and labels only: values are computed by
    the returned Delayed."""
    from metatensor_dask.testing import raise_if_dask_computes

    path = tmp_path / "t.zarr"
    a = make_metatensor(0, nested=False)
    mtd.from_metatensor(a).to_zarr(path)
    b = mtd.multiply(mtd.from_metatensor(shifted(make_metatensor(1, nested=False), 50)), 2.0)
    with raise_if_dask_computes():
        delayed = b.to_zarr(path, append_dim="samples", compute=False)
    # not visible until computed
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), a)
    delayed.compute()
    b = mtd.to_metatensor(b.compute())
    assert_equal_to_join(mtd.open_zarr(path), [a, b])


def test_unsorted_samples_are_checked_by_reading(tmp_path):
    """Samples that do not sort after the stored ones are compared with them: no
    duplicate, so the append goes on."""
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(shifted(make_metatensor(0), 100)).to_zarr(path)
    early = make_metatensor(1)  # systems 0.. sort before the stored 100..
    mtd.from_metatensor(early).to_zarr(path, append_dim="samples")
    assert_equal_to_join(mtd.open_zarr(path), [shifted(make_metatensor(0), 100), early])


# -- errors: nothing is written ------------------------------------------------------------


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(make_metatensor(0)).to_zarr(path)
    return path


def _refused(store: Path, tensor, match: str, **kwargs) -> None:
    before = store_files(store)
    with pytest.raises(mtd.MetatensorDaskError, match=match):
        mtd.to_zarr(tensor, store, append_dim="samples", **kwargs)
    assert store_files(store) == before


def _edit_block(tensor: metatensor.TensorMap, edit) -> metatensor.TensorMap:
    return metatensor.TensorMap(tensor.keys, [edit(b) for b in tensor.blocks()])


def test_duplicate_samples_refused(store):
    _refused(
        store,
        mtd.from_metatensor(make_metatensor(0)),
        r"the block \(center_type=1, neighbor_type=1\) has the sample \{'system': 0, 'atom': 0\}"
        r", which is already stored.*renumber",
    )


def test_other_properties_refused(store):
    def edit(b):
        props = metatensor.Labels(b.properties.names, b.properties.values + 50)
        return metatensor.TensorBlock(b.values, b.samples, b.components, props)

    tensor = mtd.from_metatensor(_edit_block(shifted(make_metatensor(1), 50), edit))
    _refused(store, tensor, "has other properties than the stored ones")


def _edit_one(tensor: metatensor.TensorMap, edit, index: int = -1) -> metatensor.TensorMap:
    """``tensor`` with its block ``index`` replaced by ``edit(block)``."""
    blocks = [b.copy() for b in tensor.blocks()]
    blocks[index] = edit(blocks[index])
    return metatensor.TensorMap(tensor.keys, blocks)


def _with_gradient(block, parameter: str, edit) -> metatensor.TensorBlock:
    """``block`` with its gradient ``parameter`` replaced by ``edit(gradient)``."""
    new = metatensor.TensorBlock(block.values, block.samples, block.components, block.properties)
    for name, gradient in block.gradients():
        new.add_gradient(name, edit(gradient) if name == parameter else gradient.copy())
    return new


def _other_component(block, position: int) -> metatensor.TensorBlock:
    """``block`` (without gradients of its own) with other entries of one component."""
    components = list(block.components)
    old = components[position]
    components[position] = metatensor.Labels(old.names, old.values + 1)
    return metatensor.TensorBlock(block.values, block.samples, components, block.properties)


def test_mismatch_in_a_later_block_refused_before_any_block_is_written(store):
    """The first block is fine: the second one's properties are checked before
    anything of the first one is written."""

    def edit(b):
        props = metatensor.Labels(b.properties.names, b.properties.values + 50)
        new = metatensor.TensorBlock(b.values, b.samples, b.components, props)
        for parameter, gradient in b.gradients():
            new.add_gradient(parameter, _with_properties(gradient, props))
        return new

    tensor = mtd.from_metatensor(_edit_one(shifted(make_metatensor(1), 50), edit, 1))
    _refused(store, tensor, r"the block \(center_type=1, neighbor_type=6\) has other properties")


def _with_properties(block, properties) -> metatensor.TensorBlock:
    new = metatensor.TensorBlock(block.values, block.samples, block.components, properties)
    for parameter, gradient in block.gradients():
        new.add_gradient(parameter, _with_properties(gradient, properties))
    return new


def test_other_gradient_components_refused(store):
    """Other entries of strain's second component, in the last block only."""
    tensor = _edit_one(
        shifted(make_metatensor(1), 50),
        lambda b: _with_gradient(b, "strain", lambda g: _other_component(g, 1)),
    )
    _refused(
        store,
        mtd.from_metatensor(tensor),
        r"the block \(center_type=6, neighbor_type=8\), gradient 'strain' has other components",
    )


def test_other_nested_gradient_components_refused(store):
    def edit(b):
        return _with_gradient(
            b,
            "positions",
            lambda g: _with_gradient(g, "cell", lambda c: _other_component(c, 0)),
        )

    tensor = mtd.from_metatensor(_edit_one(shifted(make_metatensor(1), 50), edit))
    _refused(store, tensor, r"gradient 'positions', gradient 'cell' has other components")


def test_other_components_refused(store):
    def edit(b):
        component = metatensor.Labels(["o3_mu"], np.arange(3, dtype=np.int32)[:, None])
        block = metatensor.TensorBlock(b.values, b.samples, [component], b.properties)
        return block

    tensor = mtd.from_metatensor(_edit_block(shifted(make_metatensor(1), 50), edit))
    _refused(store, tensor, "has other components than the stored ones")


def test_other_gradients_refused(store):
    def edit(b):
        new = metatensor.TensorBlock(b.values, b.samples, b.components, b.properties)
        new.add_gradient("positions", b.gradient("positions").copy())
        return new

    tensor = mtd.from_metatensor(_edit_block(shifted(make_metatensor(1), 50), edit))
    _refused(
        store, tensor, r"has the gradients \['positions'\], the store \['positions', 'strain'\]"
    )


def test_other_dtype_refused(store):
    tensor = mtd.from_metatensor(shifted(make_metatensor(1, dtype=np.float32), 50))
    _refused(store, tensor, "has the dtype float32, the store float64")
    # with the remedy, which appends it
    remedy = r"convert it first: tensor\.to\(dtype='float64'\)"
    _refused(store, tensor, remedy)
    tensor.to(dtype="float64").to_zarr(store, append_dim="samples")
    assert mtd.open_zarr(store).block(0).values.dtype == np.float64


def test_new_key_of_another_kind_refused(store):
    """A new key's block must be like the stored blocks (a TensorMap's rule)."""
    other = make_metatensor(1, dtype=np.float32)
    tensor = mtd.from_metatensor(select(other, [(6, 8)]))
    tensor = mtd.TensorMap(mtd.Labels(tensor.keys.names, np.array([[9, 9]])), tensor.blocks())
    _refused(store, tensor, r"the block \(center_type=9, neighbor_type=9\) has the dtype")


def test_other_sample_names_refused(store):
    tensor = mtd.rename_dimension(
        mtd.from_metatensor(shifted(make_metatensor(1), 50)), "samples", "atom", "center"
    )
    _refused(store, tensor, r"has the samples \['system', 'center'\]")


def test_other_key_names_refused(store):
    tensor = mtd.rename_dimension(
        mtd.from_metatensor(shifted(make_metatensor(1), 50)), "keys", "center_type", "a"
    )
    _refused(store, tensor, r"the tensor's keys are \['a', 'neighbor_type'\]")


@pytest.mark.parametrize("mode", ["w", "w-", "r+"])
def test_append_dim_with_another_mode_refused(store, tmp_path, mode):
    """As xarray: append_dim goes with mode 'a' (or None) only; the store is not
    overwritten, and none is created."""
    tensor = mtd.from_metatensor(shifted(make_metatensor(1), 50))
    _refused(store, tensor, rf"with mode 'a' \(or None\).*mode='{re.escape(mode)}'", mode=mode)
    with pytest.raises(mtd.MetatensorDaskError, match="`append_dim` can only be 'samples'"):
        mtd.to_zarr(tensor, tmp_path / "new.zarr", mode=mode, append_dim="samples")
    assert not (tmp_path / "new.zarr").exists()


def test_explicit_mode_a_appends(store):
    second = shifted(make_metatensor(1), 50)
    mtd.to_zarr(mtd.from_metatensor(second), store, mode="a", append_dim="samples")
    assert_equal_to_join(mtd.open_zarr(store), [make_metatensor(0), second])


def test_metatensor_core_tensor_refused(store):
    with pytest.raises(TypeError, match="must be a metatensor_dask TensorMap"):
        mtd.to_zarr(shifted(make_metatensor(1), 50), store, append_dim="samples")


def test_append_dim_and_mode_checked(store):
    tensor = mtd.from_metatensor(shifted(make_metatensor(1), 50))
    before = store_files(store)
    with pytest.raises(mtd.MetatensorDaskError, match="`append_dim` can only be 'samples'"):
        mtd.to_zarr(tensor, store, append_dim="properties")
    with pytest.raises(mtd.MetatensorDaskError, match="only used with append_dim"):
        mtd.to_zarr(tensor, store, mode="a", renumber={"system": 1})
    assert store_files(store) == before


def test_gradient_rows_not_grouped_refused(store):
    def edit(b):
        new = metatensor.TensorBlock(b.values, b.samples, b.components, b.properties)
        for parameter, gradient in b.gradients():
            order = np.arange(len(gradient.samples))
            if parameter == "positions":
                order = order[::-1]
            gradient = metatensor.TensorBlock(
                gradient.values[order],
                metatensor.Labels(gradient.samples.names, gradient.samples.values[order]),
                gradient.components,
                gradient.properties,
            )
            new.add_gradient(parameter, gradient)
        return new

    tensor = _edit_block(shifted(make_metatensor(1, nested=False), 50), edit)
    path = store.parent / "flat.zarr"
    mtd.from_metatensor(make_metatensor(0, nested=False)).to_zarr(path)
    _refused(path, mtd.from_metatensor(tensor), "rows not grouped by 'sample'")


def test_verify_passes_after_appends(store):
    for i in range(1, 4):
        mtd.from_metatensor(make_metatensor(i)).to_zarr(
            store, append_dim="samples", renumber={"system": "next"}
        )
    report = mtd.verify(store)
    assert report.ok, report.problems


def _shuffled_gradients(tensor: metatensor.TensorMap) -> metatensor.TensorMap:
    """``tensor`` with the rows of its positions gradients reversed (not grouped by
    ``"sample"``: the store has no row pointer for them)."""

    def edit(b):
        new = metatensor.TensorBlock(b.values, b.samples, b.components, b.properties)
        for parameter, gradient in b.gradients():
            if parameter == "positions":
                order = np.arange(len(gradient.samples))[::-1]
                gradient = metatensor.TensorBlock(
                    gradient.values[order],
                    metatensor.Labels(gradient.samples.names, gradient.samples.values[order]),
                    gradient.components,
                    gradient.properties,
                )
            new.add_gradient(parameter, gradient.copy())
        return new

    return _edit_block(tensor, edit)


def test_append_to_gradients_without_row_pointer(tmp_path):
    """Gradient rows stored without a row pointer (not grouped) take appended rows,
    grouped or not."""
    path = tmp_path / "t.zarr"
    first = _shuffled_gradients(make_metatensor(0, nested=False))
    mtd.from_metatensor(first).to_zarr(path, chunks=4)
    assert not (path / "blocks/0/gradients/positions/row_pointer").exists()
    batches = [
        first,
        shifted(make_metatensor(1, nested=False), 50),
        shifted(_shuffled_gradients(make_metatensor(2, nested=False)), 100),
    ]
    for batch in batches[1:]:
        mtd.from_metatensor(batch).to_zarr(path, append_dim="samples", chunks=3)
    assert mtd.verify(path).ok
    assert_equal_to_join(mtd.open_zarr(path), batches)


def test_store_created_by_appends_keeps_the_rows_per_chunk_asked(tmp_path):
    """A first batch with few rows (or none) in a block: an append creating the store
    (or a new key) keeps ``chunks=`` rows per chunk instead of the block's rows, and
    gives its gradients room at their rows per value row, so that later appends fill
    few chunks."""
    path = tmp_path / "t.zarr"
    sizes = {"n_properties": (4, 3, 2)}
    first = make_metatensor(0, n_samples=(3, 0, 2), **sizes)
    mtd.from_metatensor(first).to_zarr(path, append_dim="samples", chunks=16)
    batches = [first]
    for i in range(1, 4):
        batches.append(shifted(make_metatensor(i, n_samples=(13, 11, 12), **sizes), 100 * i))
        mtd.from_metatensor(batches[-1]).to_zarr(path, append_dim="samples")
    root = json.loads((path / "zarr.json").read_text())["consolidated_metadata"]["metadata"]
    for i in range(3):
        values = root[f"blocks/{i}/values"]
        assert values["chunk_grid"]["configuration"]["chunk_shape"][0] == 16
        n = values["shape"][0]
        assert len(list((path / f"blocks/{i}/values").glob("c.*"))) == -(-n // 16)
        strain = root[f"blocks/{i}/gradients/strain/values"]  # one row per sample
        assert strain["chunk_grid"]["configuration"]["chunk_shape"][0] == 16
    # a plain write keeps its rows per chunk at most the block's rows
    mtd.from_metatensor(first).to_zarr(tmp_path / "plain.zarr", chunks=16)
    plain = json.loads((tmp_path / "plain.zarr" / "zarr.json").read_text())
    values = plain["consolidated_metadata"]["metadata"]["blocks/0/values"]
    assert values["chunk_grid"]["configuration"]["chunk_shape"][0] == 3
    assert mtd.verify(path).ok
    assert_equal_to_join(mtd.open_zarr(path), batches)


class _RecordingStore(WrapperStore):
    """A store recording the keys read through it."""

    def __init__(self, store) -> None:
        super().__init__(store)
        self.read: list[str] = []

    async def get(self, key, prototype, byte_range=None):
        self.read.append(key)
        return await self._store.get(key, prototype, byte_range)

    async def get_partial_values(self, prototype, key_ranges):
        self.read.extend(key for key, _ in key_ranges)
        return await self._store.get_partial_values(prototype, key_ranges)


def _systems(start: int, n: int) -> mtd.TensorMap:
    systems = np.arange(start, start + n, dtype=np.int32)
    block = mtd.TensorBlock(
        np.ones((n, 1)),
        mtd.Labels(["system", "atom"], np.stack([systems, systems % 3], axis=1)),
        [],
        mtd.Labels(["n"], np.zeros((1, 1), np.int32)),
    )
    return mtd.TensorMap(mtd.Labels(["k"], np.zeros((1, 1), np.int32)), [block])


def _chunks_read(store: _RecordingStore, array: str) -> set[int]:
    prefix = f"blocks/0/{array}/c."
    return {int(key[len(prefix) :].split(".")[0]) for key in store.read if key.startswith(prefix)}


def test_append_reads_in_proportion_to_the_appended_rows():
    """Samples sorting after the stored ones: the append reads the partial last chunk
    of the values and of the samples, and the samples since the last record of their
    chained digest (fewer than CHAIN_ROWS), not the stored data. Samples that do not
    sort after them: every stored sample is read, to refuse duplicates."""
    store = _RecordingStore(MemoryStore())
    n = CHAIN_ROWS + 5_000
    _systems(0, n).to_zarr(store, chunks=1000)
    store.read.clear()
    _systems(n, 10).to_zarr(store, append_dim="samples")
    assert _chunks_read(store, "values") == {n // 1000}
    assert min(_chunks_read(store, "samples")) == CHAIN_ROWS // 1000
    store.read.clear()
    _systems(-10, 10).to_zarr(store, append_dim="samples")
    assert _chunks_read(store, "samples") == set(range(-(-(n + 10) // 1000)))
    batches = [mtd.to_metatensor(_systems(s, k)) for s, k in ((0, n), (n, 10), (-10, 10))]
    assert_equal_to_metatensor(mtd.open_zarr(store).compute(), join(batches))


@pytest.mark.parametrize(
    ("renumber", "match"),
    [
        ("system", r"`renumber` must be a dict with one sample dimension"),
        ({"system": 1, "atom": 2}, r"`renumber` must be a dict with one sample dimension"),
        ({"system": 1.5}, r"maps a sample dimension name to an int offset or 'next'"),
        ({"system": True}, r"maps a sample dimension name to an int offset or 'next'"),
        ({"system": "last"}, r"maps a sample dimension name to an int offset or 'next'"),
        ({"center": 1}, r"can not renumber 'center': it is not a sample dimension"),
        ({"sample": 1}, r"can not renumber 'sample'"),
        ({"system": 2**31 - 3}, r"renumbering 'system' by 2147483645 goes past the int32 range"),
        ({"system": -(2**31) - 1}, r"by -2147483649 goes past the int32 range"),
        ({"system": 2**70}, r"by 1180591620717411303424 goes past the int32 range"),
    ],
)
def test_bad_renumber_refused(store, renumber, match):
    _refused(store, mtd.from_metatensor(make_metatensor(1)), match, renumber=renumber)


def test_duplicate_in_a_later_block_refused(store):
    """The samples of the first blocks are new; the last sample of the last block is
    stored (it does not sort after the stored ones, so they are read)."""

    def edit(b):
        values = np.array(b.samples.values)
        values[-1] = [0, 0]
        new = metatensor.TensorBlock(
            b.values, metatensor.Labels(b.samples.names, values), b.components, b.properties
        )
        for parameter, gradient in b.gradients():
            new.add_gradient(parameter, gradient.copy())
        return new

    tensor = mtd.from_metatensor(_edit_one(shifted(make_metatensor(1), 50), edit))
    _refused(
        store,
        tensor,
        r"the block \(center_type=6, neighbor_type=8\) has the sample \{'system': 0, 'atom': 0\}",
    )
