"""metatensor files of many tiny blocks: their arrays are read by groups of neighbours,
and their metadata checked once per distinct content; results stay metatensor's."""

from __future__ import annotations

from pathlib import Path

import dask
import metatensor
import numpy as np
import pytest
from dask.callbacks import Callback
from test_mts import _load_npy, _members, _npy, _rewrite, _write_members, big_endian, make_tensor

import metatensor_dask as mtd
from metatensor_dask._collection import GroupItem
from metatensor_dask.io import _mts_tiny
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes


def tiny_map(n_blocks: int, seed: int = 0) -> metatensor.TensorMap:
    """``n_blocks`` blocks of 3 samples sharing their Labels, a ``positions`` gradient
    of 2 rows per sample; block 1 is empty (0 samples, 0 gradient rows)."""
    rng = np.random.default_rng(seed)
    properties = metatensor.Labels.range("p", 2)
    components = [metatensor.Labels.range("c", 2)]
    blocks = []
    for i in range(n_blocks):
        n = 0 if i == 1 else 3
        samples = metatensor.Labels.range("s", n)
        rows = np.stack([np.repeat(np.arange(n), 2), np.tile([0, 1], n)], axis=1)
        block = metatensor.TensorBlock(rng.random((n, 2, 2)), samples, components, properties)
        block.add_gradient(
            "positions",
            metatensor.TensorBlock(
                rng.random((2 * n, 3, 2, 2)),
                metatensor.Labels(["sample", "atom"], rows.astype(np.int32).reshape(-1, 2)),
                [metatensor.Labels.range("xyz", 3), *components],
                properties,
            ),
        )
        blocks.append(block)
    return metatensor.TensorMap(metatensor.Labels.range("k", n_blocks), blocks)


def _arrays(tensor: mtd.TensorMap) -> list:
    return [a for block in tensor.blocks() for a in block._raw_arrays()]


def _groups(tensor: mtd.TensorMap) -> set[str]:
    return {a.group_key for a in _arrays(tensor) if isinstance(a, GroupItem)}


def test_tiny_blocks_are_read_by_groups(tmp_path, monkeypatch):
    expected = tiny_map(40)
    metatensor.save(tmp_path / "t.mts", expected)
    monkeypatch.setattr(_mts_tiny, "GROUP_BYTES", 4096)
    with raise_if_dask_computes():
        tensor = mtd.load(tmp_path / "t.mts")
    assert all(isinstance(a, GroupItem) for a in _arrays(tensor))
    # a group spans at most 4096 bytes of the file (each block takes ~1,200)
    assert 10 <= len(_groups(tensor)) <= 40
    assert len(dict(tensor.__dask_graph__())) == len(_groups(tensor))
    assert_equal_to_metatensor(tensor, expected)
    assert_equal_to_metatensor(tensor.persist().compute(), expected)
    # an array alone reads its own member
    np.testing.assert_array_equal(tensor.block(7).values.compute(), expected.block(7).values)
    gradient = tensor.block(1).gradient("positions")
    assert gradient.values.compute().shape == (0, 3, 2, 2)
    with dask.config.set(scheduler="processes", num_workers=2):
        assert_equal_to_metatensor(tensor, expected)


def test_grouped_blocks_are_those_read_one_by_one(tmp_path, monkeypatch):
    """Nested gradients, empty blocks, blocks of 0 properties, info: the blocks built
    from groups (checked once per metadata) are those built array by array."""
    blocks = list(make_tensor().blocks())
    # each block twice: the second has the metadata of the first, and is trusted
    expected = metatensor.TensorMap(
        metatensor.Labels.range("k", 2 * len(blocks)), [b.copy() for b in blocks * 2]
    )
    expected.set_info("creator", "test_mts_groups")
    metatensor.save(tmp_path / "t.mts", expected)
    grouped = mtd.load(tmp_path / "t.mts")
    assert _groups(grouped)
    monkeypatch.setattr(_mts_tiny, "TINY_BYTES", -1)
    alone = mtd.load(tmp_path / "t.mts")
    assert not _groups(alone)
    assert str(grouped) == str(alone)
    for a, b in zip(grouped.blocks(), alone.blocks(), strict=True):
        assert repr(a) == repr(b)
        for parameter, gradient in a.gradients():
            other = b.gradient(parameter)
            assert repr(gradient) == repr(other)
            assert gradient._gradient_path == other._gradient_path == (parameter,)
            np.testing.assert_array_equal(gradient.row_pointer, other.row_pointer)
            assert gradient.row_pointer is None or not gradient.row_pointer.flags.writeable
            for nested, block in gradient.gradients():
                assert block._gradient_path == other.gradient(nested)._gradient_path
    assert_equal_to_metatensor(grouped, expected)
    assert grouped.info() == alone.info()


def test_grouped_big_endian_files_load(tmp_path):
    expected = tiny_map(5)
    metatensor.save(tmp_path / "little.mts", expected)
    _write_members(tmp_path / "big.mts", _rewrite(tmp_path / "little.mts", big_endian))
    loaded = mtd.load(tmp_path / "big.mts")
    assert _groups(loaded)
    computed = loaded.compute()
    assert computed.block(0).values.dtype == np.dtype("=f8")
    assert_equal_to_metatensor(computed, expected)


def _with_member(tmp_path: Path, source: Path, name: str, data: bytes) -> Path:
    members = _members(source)
    members[name] = data
    _write_members(tmp_path / "edited.mts", members)
    return tmp_path / "edited.mts"


def test_a_later_block_with_other_metadata_is_checked(tmp_path):
    """Blocks with the metadata of a checked block are trusted; a block whose Labels
    differ is checked, with metatensor's message."""
    metatensor.save(tmp_path / "t.mts", tiny_map(8))
    name = "blocks/6/gradients/positions/samples.npy"
    samples = _load_npy(_members(tmp_path / "t.mts")[name]).copy()
    samples["sample"][-1] = 3  # the values have 3 rows
    path = _with_member(tmp_path, tmp_path / "t.mts", name, _npy(samples))
    with pytest.raises(metatensor.MetatensorError):
        metatensor.load(str(path))
    with pytest.raises(
        mtd.MetatensorError, match="we got 3, but the values contain 3 samples"
    ) as error:
        mtd.load(path)
    assert "(in 'blocks/6/" in error.value.message


def test_a_later_block_with_another_shape_is_checked(tmp_path):
    metatensor.save(tmp_path / "t.mts", tiny_map(8))
    name = "blocks/5/values.npy"
    values = _load_npy(_members(tmp_path / "t.mts")[name])
    path = _with_member(tmp_path, tmp_path / "t.mts", name, _npy(values[:, :, :1]))
    with pytest.raises(metatensor.MetatensorError):
        metatensor.load(str(path))
    with pytest.raises(mtd.MetatensorError, match="property label entries"):
        mtd.load(path)


def test_a_later_block_breaking_the_maps_rules_is_refused(tmp_path):
    """The rules across blocks (dimension names, dtype) are checked on the blocks of
    distinct metadata: a later block that breaks them gives metatensor's message."""
    metatensor.save(tmp_path / "t.mts", tiny_map(8))
    members = _members(tmp_path / "t.mts")
    samples = _load_npy(members["blocks/5/samples.npy"]).copy()
    samples.dtype.names = ("other",)
    path = _with_member(tmp_path, tmp_path / "t.mts", "blocks/5/samples.npy", _npy(samples))
    with pytest.raises(metatensor.MetatensorError, match="same sample dimensions"):
        metatensor.load(str(path))
    with pytest.raises(mtd.MetatensorError, match=r"same sample dimensions, got \[other\]"):
        mtd.load(path)

    for name in ("blocks/6/values.npy", "blocks/6/gradients/positions/values.npy"):
        members[name] = _npy(_load_npy(members[name]).astype(np.float32))
    _write_members(tmp_path / "dtype.mts", members)
    with pytest.raises(metatensor.MetatensorError, match="different dtypes"):
        metatensor.load(str(tmp_path / "dtype.mts"))
    with pytest.raises(mtd.MetatensorError, match="different dtypes, at least 'f64' and 'f32'"):
        mtd.load(tmp_path / "dtype.mts")


def test_a_damaged_member_fails_its_group_only(tmp_path, monkeypatch):
    metatensor.save(tmp_path / "t.mts", tiny_map(30))
    data = bytearray((tmp_path / "t.mts").read_bytes())
    member = mtd.io.mts._zip.read_directory(str(tmp_path / "t.mts"))["blocks/20/values.npy"]
    data[member.offset + member.size - 1] ^= 0x01
    (tmp_path / "damaged.mts").write_bytes(bytes(data))
    monkeypatch.setattr(_mts_tiny, "GROUP_BYTES", 4096)
    tensor = mtd.load(tmp_path / "damaged.mts")
    expected = tiny_map(30)
    damaged_group = tensor.block(20)._held_values().group_key
    for i in (0, 29):
        assert tensor.block(i)._held_values().group_key != damaged_group
        assert_equal_to_metatensor(tensor.block(i).compute(), expected.block(i))
    with pytest.raises(mtd.DamagedFileError, match=r"in member 'blocks/20/values\.npy'"):
        tensor.compute()
    with pytest.raises(mtd.DamagedFileError, match=r"in member 'blocks/20/values\.npy'"):
        tensor.block(20).values.compute()
    # its gradient, read alone, is whole
    np.testing.assert_array_equal(
        tensor.block(20).gradient("positions").values.compute(),
        expected.block(20).gradient("positions").values,
    )


def test_saving_a_loaded_map_of_tiny_blocks_gives_metatensors_bytes(tmp_path):
    expected = tiny_map(25)
    metatensor.save(tmp_path / "theirs.mts", expected)
    mtd.save(tmp_path / "ours.mts", mtd.load(tmp_path / "theirs.mts"))
    assert (tmp_path / "ours.mts").read_bytes() == (tmp_path / "theirs.mts").read_bytes()


def _tasks_run(function) -> list:
    """The keys of the dask tasks that ``function()`` runs (one thread)."""
    keys: list = []
    with dask.config.set(scheduler="sync"), Callback(pretask=lambda key, *_: keys.append(key)):
        function()
    return keys


def test_a_loaded_map_of_tiny_blocks_is_saved_by_groups(tmp_path, monkeypatch):
    """Saving a map loaded from a file of tiny blocks runs a read and a write per group
    (not a task per member); the file is metatensor's, and so is a part of the map."""
    expected = tiny_map(40)
    metatensor.save(tmp_path / "theirs.mts", expected)
    monkeypatch.setattr(_mts_tiny, "GROUP_BYTES", 4096)
    with raise_if_dask_computes():
        tensor = mtd.load(tmp_path / "theirs.mts")
    groups = _groups(tensor)
    assert 10 <= len(groups) <= 40
    tasks = _tasks_run(lambda: mtd.save(tmp_path / "ours.mts", tensor))
    # a read and a write per group, the results gathered, the checks waited for
    assert len(tasks) == 2 * len(groups) + 2
    assert groups <= set(tasks)
    assert (tmp_path / "ours.mts").read_bytes() == (tmp_path / "theirs.mts").read_bytes()

    # some blocks of some groups only: their groups read whole, their items written
    selected = [0, 1, 2, 17, 39]
    keys = mtd.Labels(tensor.keys.names, tensor.keys.values[selected])
    part = mtd.TensorMap(keys, [tensor.block(i) for i in selected])
    tasks = _tasks_run(lambda: mtd.save(tmp_path / "part.mts", part))
    assert len(tasks) == 2 * len(_groups(part)) + 2 < 2 * len(groups)
    kept = metatensor.TensorMap(
        metatensor.Labels(expected.keys.names, expected.keys.values[selected]),
        [expected.block(i).copy() for i in selected],
    )
    metatensor.save(tmp_path / "theirs-part.mts", kept)
    assert (tmp_path / "part.mts").read_bytes() == (tmp_path / "theirs-part.mts").read_bytes()


def test_a_map_computed_by_groups_is_saved_by_groups(tmp_path, monkeypatch):
    """The items of groups made by an operation are written by their groups too;
    every value and gradient is metatensor's."""
    expected = tiny_map(30)
    metatensor.save(tmp_path / "theirs.mts", expected)
    monkeypatch.setattr(_mts_tiny, "GROUP_BYTES", 4096)
    loaded = mtd.load(tmp_path / "theirs.mts")
    product = mtd.multiply(loaded, loaded)
    items = [a for block in product.blocks() for a in block._raw_arrays()]
    groups = _groups(product)
    assert groups and all(isinstance(a, GroupItem) for a in items)
    tasks = _tasks_run(lambda: mtd.save(tmp_path / "ours.mts", product))
    assert len(tasks) < len(items)
    assert_equal_to_metatensor(
        mtd.load(tmp_path / "ours.mts"), metatensor.multiply(expected, expected)
    )


@pytest.mark.parametrize("dtype", [np.float64, np.dtype(">f4"), np.int16, bool])
def test_saving_in_memory_values_small_and_large(tmp_path, dtype):
    """Values held in memory are written with the metadata around them when small,
    in slices of the chunk size when large; the file is metatensor's."""
    rng = np.random.default_rng(3)
    blocks = []
    for n in (2, 5000):  # 2 rows: a few bytes; 5,000 rows: more than 64 KiB
        values = (rng.random((n, 3, 4)) * 100).astype(dtype)
        blocks.append(
            metatensor.TensorBlock(
                values.astype(values.dtype.newbyteorder("=")),
                metatensor.Labels.range("s", n),
                [metatensor.Labels.range("c", 3)],
                metatensor.Labels.range("p", 4),
            )
        )
    expected = metatensor.TensorMap(metatensor.Labels.range("k", 2), blocks)
    ours = mtd.from_metatensor(expected)
    if np.dtype(dtype).byteorder == ">":
        ours = mtd.TensorMap(
            ours.keys,
            [
                mtd.TensorBlock(
                    np.asarray(b.values.compute()).astype(">f4"),
                    b.samples,
                    b.components,
                    b.properties,
                )
                for b in ours.blocks()
            ],
        )
    with dask.config.set({"metatensor_dask.chunk-size": "32KiB"}):
        mtd.save(tmp_path / "ours.mts", ours)
    metatensor.save(tmp_path / "theirs.mts", expected)
    assert (tmp_path / "ours.mts").read_bytes() == (tmp_path / "theirs.mts").read_bytes()
