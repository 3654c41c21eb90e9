"""The shortcuts that make writing and opening maps of many tiny blocks fast keep every
check: documents that repeat from block to block are checked by comparison with the
one checked before, and a damaged one in any block is still refused; array names
follow the metadata; objects made while the collector is paused stay collectable."""

from __future__ import annotations

import gc
import json
import weakref

import dask
import numpy as np
import pytest
from test_many_blocks_io import tiny

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

N_BLOCKS = 8
#: the block whose documents are damaged: not the first, so that the documents of the
#: blocks before it were checked and are compared with
DAMAGED = 5


@pytest.fixture(scope="module")
def theirs():
    return tiny(N_BLOCKS)


@pytest.fixture
def store(tmp_path, theirs):
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(theirs).to_zarr(path)
    return path


def _edit(path, place: str, change) -> None:
    """Apply ``change`` to the inline document of ``blocks/DAMAGED/<place>``."""
    root = json.loads((path / "zarr.json").read_text())
    change(root["consolidated_metadata"]["metadata"][f"blocks/{DAMAGED}/{place}"])
    (path / "zarr.json").write_text(json.dumps(root))


def _set(field: str, value):
    def change(document):
        document[field] = value

    return change


def _first_codec(document):
    document["codecs"][0] = {"name": "bytes", "configuration": {"endian": "big"}}


def _grid(document):
    document["chunk_grid"]["configuration"]["chunk_shape"][0] = 0


def _extra_codec(document):
    document["codecs"].append({"name": "transpose", "configuration": {"order": [0, 1]}})


EDITS = {
    "big endian": (_first_codec, "not little-endian"),
    "other codec": (_extra_codec, "transpose"),
    "empty chunks": (_grid, "invalid chunk grid"),
    "fill value": (_set("fill_value", 1), "fill value"),
    "dimension names": (_set("dimension_names", list("abcde")), "dimension names"),
    "data type": (_set("data_type", "bool"), None),  # refused by what depends on it
    "shape": (_set("shape", "ten"), "not a valid Zarr v3 array"),
    "attributes": (_set("attributes", ["names"]), "not a mapping"),
}
PLACES = [
    "values",
    "samples",
    "properties",
    "gradients/positions/values",
    "gradients/positions/samples",
    "gradients/positions/components/0",
    "gradients/positions/row_pointer",
]


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("edit", list(EDITS))
def test_a_damaged_document_in_a_later_block_is_refused(store, place, edit):
    change, message = EDITS[edit]
    _edit(store, place, change)
    with pytest.raises(mtd.MetatensorDaskError, match=message) as raised:
        mtd.open_zarr(store)
    assert f"blocks/{DAMAGED}/" in str(raised.value) or edit == "data type"


def test_equal_documents_are_checked_like_the_first(store, theirs):
    # every block alike: the documents of blocks 1.. are compared with those of block 0
    assert_equal_to_metatensor(mtd.open_zarr(store), theirs)


def _names(tensor) -> list[str]:
    return [
        name
        for block in tensor.blocks()
        for name in (block.values.name, block.gradient("positions").values.name)
    ]


def test_array_names_follow_the_store_and_its_metadata(tmp_path, store, theirs):
    def refuse(*args, **kwargs):
        raise AssertionError("opening a store computes nothing")

    with dask.config.set(scheduler=refuse):
        first, again = mtd.open_zarr(store), mtd.open_zarr(store)
    assert _names(first) == _names(again)
    assert len(set(_names(first))) == 2 * N_BLOCKS

    copy = tmp_path / "copy.zarr"
    mtd.from_metatensor(theirs).to_zarr(copy)
    assert not set(_names(mtd.open_zarr(copy))) & set(_names(first))

    # the values rewritten (same metadata, another write): other names, other data
    doubled = mtd.multiply(mtd.from_metatensor(theirs), 2.0)
    doubled.to_zarr(store, mode="r+")
    rewritten = mtd.open_zarr(store)
    assert not set(_names(rewritten)) & set(_names(first))
    values = rewritten.block(0).values.compute()
    np.testing.assert_array_equal(values, 2 * theirs.block(0).values)


def test_objects_made_while_the_collector_is_paused_are_not_scanned_at_once():
    from metatensor_dask._gc import collector_paused

    started = []

    def record(phase, info):
        if phase == "start":
            started.append(info["generation"])

    try:
        with collector_paused():
            kept = [[i] for i in range(50_000)]
            gc.callbacks.append(record)
        a_few = [[i] for i in range(100)]  # fewer than the young generation's threshold
    finally:
        gc.callbacks.remove(record)
    assert gc.isenabled()
    assert started == []
    assert len(kept) + len(a_few) == 50_100


def test_garbage_cycles_made_while_the_collector_is_paused_are_collected():
    from metatensor_dask._gc import collector_paused

    class Node:
        pass

    with collector_paused():
        node = Node()
        node.self = node
        alive = weakref.ref(node)
        del node
    assert alive() is not None
    gc.collect()
    assert alive() is None


def test_files_in_missing_folders_are_written(tmp_path):
    from zarr.storage import LocalStore

    from metatensor_dask.io.zarr_store import get_many, make_folders, set_many

    store = LocalStore(tmp_path / "s")
    few = {f"a/{i}/b/c": bytes([i]) for i in range(3)}
    many = {f"m/{i % 7}/{i}": bytes([i]) for i in range(200)}  # written from threads
    set_many(store, few)
    set_many(store, many)
    keys = list(few) + list(many)
    assert get_many(store, keys) == [*few.values(), *many.values()]
    make_folders(store, ["x", "x/y", "z/w"])
    assert (tmp_path / "s" / "x" / "y").is_dir() and (tmp_path / "s" / "z" / "w").is_dir()


def test_repeated_documents_are_written_as_encoded(store):
    from metatensor_dask.io.zarr_layout import encode

    root = json.loads((store / "zarr.json").read_text())
    nodes = root["consolidated_metadata"]["metadata"]
    for path, document in nodes.items():
        assert (store / path / "zarr.json").read_bytes() == encode(document), path
    assert mtd.verify(store).ok


@pytest.mark.parametrize("info", [{}, {"note": 'a "quoted" é \u0000 metadata'}])
def test_the_root_is_encoded_from_the_encoded_nodes_as_a_whole(tmp_path, info):
    from metatensor_dask.io import zarr_layout as layout

    tensor = mtd.from_metatensor(tiny(3))
    tensor.to_zarr(tmp_path / "t.zarr")
    raw = (tmp_path / "t.zarr" / "zarr.json").read_bytes()
    _, nodes = layout.parse_root(raw, "t")
    for complete in (False, True):
        document = layout.root_document(complete, info, nodes)
        joined = layout.encode_root(document, layout.encode_nodes(nodes))
        assert joined == layout.encode(document)
        assert json.loads(joined) == document
