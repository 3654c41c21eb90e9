"""Stores read by other tools, as a user knowing only the documented layout reads them:
zarr-python (each node, and the root's consolidated metadata), ``dask.array.from_zarr``
and xarray give metatensor's values, gradients and labels of every block, for stores of
every kind this package writes."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import dask
import dask.array as da
import metatensor
import numpy as np
import pytest
import xarray as xr
import zarr
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.execution.cli import main

DOCS = Path(__file__).resolve().parents[2] / "docs" / "zarr-format.md"


def _settings(**settings: object) -> dict[str, object]:
    return {f"metatensor_dask.{name}": value for name, value in settings.items()}


def _renumbered(block: metatensor.TensorBlock, offset: int) -> metatensor.TensorBlock:
    """A copy of ``block`` with ``offset`` added to the ``"system"`` column of its
    samples and of its gradients' samples, as the documented ``renumber`` does."""
    samples = block.samples.values.copy()
    samples[:, block.samples.names.index("system")] += offset
    copy = metatensor.TensorBlock(
        block.values.copy(),
        metatensor.Labels(block.samples.names, samples),
        block.components,
        block.properties,
    )
    for parameter in block.gradients_list():
        copy.add_gradient(parameter, _renumbered(block.gradient(parameter), offset))
    return copy


def _shifted(tensor: metatensor.TensorMap, offset: int) -> metatensor.TensorMap:
    """``tensor`` with its systems numbered from ``offset`` on."""
    blocks = [_renumbered(block, offset) for block in tensor.blocks()]
    return metatensor.TensorMap(tensor.keys, blocks)


def _whole(tensor: metatensor.TensorMap, **settings: object) -> Callable[[Path], object]:
    def write(path: Path) -> metatensor.TensorMap:
        with dask.config.set(_settings(**settings)):
            mtd.from_metatensor(tensor).to_zarr(path, chunks=3)
        return tensor

    return write


def _appended(path: Path) -> metatensor.TensorMap:
    """Two appends, one of them renumbered, to a compressed, sharded store."""
    first = make_metatensor(seed=1, nested=False)
    second = _shifted(make_metatensor(seed=2, nested=False), 100)
    third = make_metatensor(seed=3, nested=False)
    with dask.config.set(_settings(compressor="zstd", **{"shard-chunks": 2})):
        mtd.from_metatensor(first).to_zarr(path, chunks=4)
    mtd.from_metatensor(second).to_zarr(path, append_dim="samples")
    mtd.from_metatensor(third).to_zarr(path, append_dim="samples", renumber={"system": 200})
    return metatensor.join([first, second, _shifted(third, 200)], axis="samples")


def _new_keys(path: Path) -> metatensor.TensorMap:
    """Blocks of new keys added with ``mode="a"``, gzip and no checksum."""
    first = make_metatensor(seed=4)
    other = make_metatensor(seed=5)
    keys = metatensor.Labels(first.keys.names, first.keys.values + 10)
    added = metatensor.TensorMap(keys, [block.copy() for block in other.blocks()])
    with dask.config.set(_settings(compressor="gzip", checksum=False)):
        mtd.from_metatensor(first).to_zarr(path, chunks=5)
    mtd.from_metatensor(added).to_zarr(path, mode="a")
    all_keys = metatensor.Labels(keys.names, np.concatenate([first.keys.values, keys.values]))
    blocks = [block.copy() for block in [*first.blocks(), *added.blocks()]]
    return metatensor.TensorMap(all_keys, blocks)


def _failing_append(tensor: metatensor.TensorMap) -> mtd.TensorMap:
    """``tensor`` whose first block's values fail to compute after their first chunk."""

    def fail(chunk: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        if block_info is not None and block_info[0]["chunk-location"][0] > 0:
            raise ValueError("this append can not be computed")
        return chunk

    ours = mtd.from_metatensor(tensor)
    first = ours.block(0)
    values = first.values.rechunk(2).map_blocks(fail, dtype=first.values.dtype)
    failing = mtd.TensorBlock(values, first.samples, first.components, first.properties)
    for parameter, gradient in first.gradients():
        failing.add_gradient(
            parameter,
            mtd.TensorBlock(
                gradient.values, gradient.samples, gradient.components, first.properties
            ),
        )
    return mtd.TensorMap(ours.keys, [failing, *(b.copy() for b in list(ours.blocks())[1:])])


def _discarded(path: Path) -> metatensor.TensorMap:
    """An append that failed, discarded, then one that succeeded."""
    first = make_metatensor(seed=6, nested=False)
    later = _shifted(make_metatensor(seed=7, nested=False), 300)
    mtd.from_metatensor(first).to_zarr(path, chunks=4)
    with pytest.raises(ValueError, match="can not be computed"):
        _failing_append(_shifted(make_metatensor(seed=8, nested=False), 100)).to_zarr(
            path, append_dim="samples"
        )
    assert mtd.discard_append(path)
    mtd.from_metatensor(later).to_zarr(path, append_dim="samples")
    return metatensor.join([first, later], axis="samples")


def _batches(path: Path) -> metatensor.TensorMap:
    """A run of ``write_batches``, items 0 to 4 in batches of two, numbered apart."""

    def batch(items: list[int]) -> metatensor.TensorMap:
        return make_metatensor(seed=items[0], n_samples=(2 * len(items), 1, 3), nested=False)

    with dask.config.set(_settings(compressor="blosc", **{"shard-chunks": 3})):
        mtd.write_batches(batch, list(range(5)), path, batch_size=2, quiet=True, chunks=2)
    parts = [_shifted(batch(items), items[0]) for items in ([0, 1], [2, 3], [4])]
    return metatensor.join(parts, axis="samples")


def _converted(path: Path) -> metatensor.TensorMap:
    """``.mts`` files converted to a sharded store, then two appended by ``convert
    --append --renumber system`` (joined, one after the other)."""
    parts = [make_metatensor(seed=seed, nested=False) for seed in (12, 13, 14)]
    files = []
    for seed, part in enumerate(parts):
        files.append(str(path.parent / f"part{seed}.mts"))
        metatensor.save(files[-1], part)
    assert main(["convert", files[0], str(path), "--chunks", "3", "--shard-chunks", "2"]) == 0
    arguments = ["convert", *files[1:], str(path), "--append", "--renumber", "system", "-q"]
    assert main(arguments) == 0
    shifts = [0, 6, 12]
    return metatensor.join(
        [_shifted(part, shift) for part, shift in zip(parts, shifts, strict=True)],
        axis="samples",
    )


KINDS: dict[str, Callable[[Path], object]] = {
    "default": _whole(make_metatensor(seed=1)),
    "float32-zstd-shards": _whole(
        make_metatensor(seed=2, dtype=np.float32), compressor="zstd", **{"shard-chunks": 2}
    ),
    "int32-no-checksum": _whole(make_metatensor(seed=3, dtype=np.int32), checksum=False),
    "complex128-gzip": _whole(make_metatensor(seed=4, dtype=np.complex128), compressor="gzip"),
    "zero-samples": _whole(make_metatensor(seed=5, n_samples=(0, 0, 0), n_properties=(2, 0, 1))),
    "appended": _appended,
    "new-keys": _new_keys,
    "discarded-append": _discarded,
    "write-batches": _batches,
    "converted": _converted,
}


def _parts(
    block: metatensor.TensorBlock, prefix: str
) -> Iterator[tuple[str, metatensor.TensorBlock]]:
    """(documented path, block) of a block and of its gradients, recursively."""
    yield prefix, block
    for parameter in block.gradients_list():
        yield from _parts(block.gradient(parameter), f"{prefix}/gradients/{parameter}")


class _Readers:
    """The store at ``path`` as the other tools open it, each once: zarr alone (each
    node from its own document), zarr through the root's consolidated metadata, and
    ``dask.array.from_zarr`` of each node, whose reads are computed together by
    :meth:`check_lazy` (one computation, not one a node)."""

    def __init__(self, path: Path) -> None:
        self.alone = zarr.open_group(path, mode="r", use_consolidated=False)
        self.consolidated = zarr.open_group(path, mode="r", use_consolidated=True)
        self.arrays: dict[str, zarr.Array] = {}
        self._lazy: list[tuple[str, da.Array, np.ndarray]] = []

    def read(self, node: str) -> np.ndarray:
        """The array at ``node`` read by zarr alone and through the consolidated
        metadata (the same), its read by dask kept for :meth:`check_lazy`."""
        array = self.arrays[node] = self.alone[node]
        alone = array[...]
        consolidated = self.consolidated[node][...]
        assert alone.dtype == consolidated.dtype, node
        np.testing.assert_array_equal(consolidated, alone, err_msg=node)
        self._lazy.append((node, da.from_zarr(array), alone))
        return alone

    def check_lazy(self) -> None:
        """``dask.array.from_zarr`` read every node read so far as zarr did."""
        computed = dask.compute(*(lazy for _, lazy, _ in self._lazy))
        for (node, _, alone), lazy in zip(self._lazy, computed, strict=True):
            assert lazy.dtype == alone.dtype, node
            np.testing.assert_array_equal(lazy, alone, err_msg=node)
        self._lazy.clear()


def _read(path: Path, node: str) -> np.ndarray:
    """The array at ``node`` read by zarr alone, through the root's consolidated
    metadata, and by ``dask.array.from_zarr``: all three the same."""
    readers = _Readers(path)
    alone = readers.read(node)
    readers.check_lazy()
    return alone


def _check_labels(readers: _Readers, node: str, labels: metatensor.Labels) -> None:
    stored = readers.read(node)
    assert stored.dtype == np.int32
    assert stored.shape == labels.values.shape, node
    np.testing.assert_array_equal(stored, labels.values, err_msg=node)
    assert readers.arrays[node].attrs["names"] == list(labels.names)


def _check_block(
    readers: _Readers, prefix: str, block: metatensor.TensorBlock, parent_rows: int
) -> None:
    values = readers.read(f"{prefix}/values")
    expected = np.asarray(block.values)
    assert values.dtype == expected.dtype and values.shape == expected.shape, prefix
    np.testing.assert_array_equal(values, expected, err_msg=prefix)
    _check_labels(readers, f"{prefix}/samples", block.samples)
    for j, component in enumerate(block.components):
        _check_labels(readers, f"{prefix}/components/{j}", component)
    if "/gradients/" not in prefix:
        _check_labels(readers, f"{prefix}/properties", block.properties)
        return
    pointer = f"{prefix}/row_pointer"
    if pointer in readers.consolidated.metadata.consolidated_metadata.metadata:
        rows = np.bincount(block.samples.values[:, 0], minlength=parent_rows)
        expected_pointer = np.concatenate([[0], np.cumsum(rows)])
        np.testing.assert_array_equal(readers.read(pointer), expected_pointer, err_msg=pointer)


def _parents(block: metatensor.TensorBlock, prefix: str) -> dict[str, int]:
    """The number of rows of the parent of each gradient path under ``prefix``."""
    rows = {}
    for parameter in block.gradients_list():
        child = f"{prefix}/gradients/{parameter}"
        rows[child] = len(block.samples)
        rows.update(_parents(block.gradient(parameter), child))
    return rows


def _check_documents(path: Path) -> None:
    """Every node's own ``zarr.json`` is the one the root's consolidated metadata holds,
    both ways, and every attribute is JSON."""
    root = json.loads((path / "zarr.json").read_text())
    nodes = root["consolidated_metadata"]["metadata"]
    on_disk = {
        str(document.parent.relative_to(path)): json.loads(document.read_text())
        for document in path.rglob("zarr.json")
        if document.parent != path and ".progress" not in document.parts
    }
    assert on_disk == nodes
    json.dumps(dict(zarr.open_group(path, mode="r").attrs), allow_nan=False)


def _check_xarray(path: Path, expected: metatensor.TensorMap) -> None:
    """xarray opens the whole tree (consolidated or not) and each block's group, with
    the documented dimension names."""
    for consolidated in (True, False):
        tree = xr.open_datatree(path, engine="zarr", consolidated=consolidated)
        assert tree["keys"].dims == ("keys_entry", "keys_dimension")
        for i, block in enumerate(expected.blocks()):
            values = tree[f"blocks/{i}/values"]
            axes = ("samples", *(c.names[0] for c in block.components), "properties")
            assert values.dims == axes
            np.testing.assert_array_equal(values.values, block.values)
            assert tree[f"blocks/{i}/samples"].dims == ("samples_entry", "samples_dimension")
    for i, block in enumerate(expected.blocks()):
        group = xr.open_zarr(path, group=f"blocks/{i}")
        assert group.sizes["samples"] == len(block.samples)
        np.testing.assert_array_equal(group["values"].values, block.values)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_other_tools_read_every_kind_of_store(tmp_path, kind):
    path = tmp_path / "t.zarr"
    expected = KINDS[kind](path)
    assert isinstance(expected, metatensor.TensorMap)
    readers = _Readers(path)
    np.testing.assert_array_equal(readers.read("keys"), expected.keys.values)
    group = zarr.open_group(path, mode="r")
    assert len(group["blocks"]) == len(expected)
    for i, block in enumerate(expected.blocks()):
        parents = _parents(block, f"blocks/{i}")
        for prefix, part in _parts(block, f"blocks/{i}"):
            _check_block(readers, prefix, part, parents.get(prefix, 0))
    readers.check_lazy()
    _check_documents(path)
    _check_xarray(path, expected)


def _attributes_section() -> str:
    text = DOCS.read_text()
    return text.split("\n## Attributes\n", 1)[1].split("\n## ", 1)[0]


@pytest.mark.parametrize("kind", ["default", "appended", "write-batches"])
def test_every_root_attribute_is_documented(tmp_path, kind):
    """A user reading the root attributes finds each key of ``metatensor_dask`` (and of
    a run's ``batches`` record) described in the Attributes section."""
    path = tmp_path / "t.zarr"
    KINDS[kind](path)
    root = dict(zarr.open_group(path, mode="r").attrs)
    documented = set(re.findall(r'"(\w+)"', _attributes_section()))
    assert set(root) <= documented
    ours = root["metatensor_dask"]
    assert set(ours) - documented == set()
    assert set(ours.get("batches", {})) - documented == set()


def test_a_root_consolidated_by_zarr_verifies(tmp_path):
    """zarr's own ``consolidate_metadata`` rewrites the root, giving each group entry an
    index of its own; the store reads, verifies and takes appends as before (``verify``
    reported every group as differing from its document)."""
    path = tmp_path / "t.zarr"
    tensor = make_metatensor(seed=9)
    mtd.from_metatensor(tensor).to_zarr(path, chunks=4)
    with pytest.warns(UserWarning, match="Consolidated metadata"):
        zarr.consolidate_metadata(path)
    assert "consolidated_metadata" in zarr.open_group(path, mode="r")["blocks"].metadata.to_dict()
    report = mtd.verify(path)
    assert report.ok, report.problems
    mtd.from_metatensor(tensor).to_zarr(path, append_dim="samples", renumber={"system": "next"})
    report = mtd.verify(path)
    assert report.ok, report.problems
    np.testing.assert_array_equal(
        mtd.open_zarr(path).block(0).values.compute(),
        np.concatenate([tensor.block(0).values, tensor.block(0).values]),
    )


def _chunks_section() -> str:
    text = DOCS.read_text()
    return text.split("\n## Chunks and codecs\n", 1)[1].split("\n## ", 1)[0]


@pytest.mark.parametrize("first_keys", [0, 3])
def test_keys_an_append_adds_are_chunked_as_documented(tmp_path, first_keys):
    """Keys added by an append are stored in chunks of the size written first, which
    the Chunks section describes (it said every Labels array but samples was one
    chunk)."""
    path = tmp_path / "t.zarr"
    tensor = make_metatensor(seed=10, nested=False)
    names = tensor.keys.names
    first = metatensor.TensorMap(
        metatensor.Labels(names, tensor.keys.values[:first_keys]),
        [block.copy() for block in list(tensor.blocks())[:first_keys]],
    )
    mtd.from_metatensor(first).to_zarr(path)
    added = metatensor.Labels(names, tensor.keys.values + 50)
    appended = metatensor.TensorMap(added, [block.copy() for block in tensor.blocks()])
    mtd.from_metatensor(appended).to_zarr(path, append_dim="samples")
    keys = zarr.open_array(path, path="keys", mode="r")
    expected = np.concatenate([first.keys.values, added.values])
    np.testing.assert_array_equal(_read(path, "keys"), expected)
    assert keys.chunks[0] == max(first_keys, 1) and keys.nchunks > 1
    assert "`keys` extended\n  by an append" in _chunks_section()


def _variables(node: xr.DataTree) -> tuple[set[str], set[str]]:
    return set(node.data_vars), set(node.coords)


def test_the_tree_xarray_opens_is_the_one_documented(tmp_path):
    """Where each array of a block is in ``open_datatree``'s tree and in a group opened
    alone, and that none indexes another (the docs said nothing of it)."""
    path = tmp_path / "t.zarr"
    tensor = make_metatensor(seed=11)
    mtd.from_metatensor(tensor).to_zarr(path, chunks=4)
    tree = xr.open_datatree(path, engine="zarr")
    block = tensor.block(1)
    assert _variables(tree) == ({"keys"}, set())
    assert _variables(tree["blocks/1"]) == ({"values"}, {"samples", "properties"})
    assert _variables(tree["blocks/1/components"]) == ({"0"}, set())
    positions = tree["blocks/1/gradients/positions"]
    assert _variables(positions) == ({"values", "samples", "row_pointer"}, set())
    assert _variables(positions["components"]) == ({"0", "1"}, set())
    for node in tree.subtree:
        assert not node.indexes, node.path
    samples = tree["blocks/1"]["samples"]
    assert samples.dims == ("samples_entry", "samples_dimension")
    assert samples.attrs["names"] == list(block.samples.names)
    np.testing.assert_array_equal(samples.values, block.samples.values)
    alone = xr.open_zarr(path, group="blocks/1/gradients/positions")
    assert set(alone.data_vars) == {"values", "samples", "row_pointer"}
    np.testing.assert_array_equal(alone["values"].values, block.gradient("positions").values)
    section = _attributes_section()
    assert "`samples` and `properties` as\n  coordinates that do not index it" in section


def test_other_tools_read_an_interrupted_write_as_zeros(tmp_path):
    """zarr reads the chunks an interrupted write did not store as zeros, with no
    error: the root's ``complete``, which the docs tell such users to check, is the only
    sign (a values array's own document is not written yet: opened alone, it is
    missing)."""
    path = tmp_path / "t.zarr"
    tensor = make_metatensor(seed=15, nested=False)
    with pytest.raises(ValueError, match="can not be computed"):
        _failing_append(tensor).to_zarr(path)
    assert zarr.open_group(path, mode="r").attrs["metatensor_dask"]["complete"] is False
    stored = zarr.open_group(path, mode="r")["blocks/0/values"][...]
    assert stored.shape == tensor.block(0).values.shape
    assert not stored[2:].any() and tensor.block(0).values[2:].any()
    with pytest.raises(zarr.errors.ArrayNotFoundError):
        da.from_zarr(str(path), component="blocks/0/values")
    with pytest.raises(mtd.IncompleteStoreError):
        mtd.open_zarr(path)
    section = DOCS.read_text().split("\n## Consolidated metadata\n", 1)[1]
    assert "Check the root attribute\n`metatensor_dask.complete`" in section
