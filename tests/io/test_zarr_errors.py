"""Stores that are missing, foreign, newer or damaged get clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr
from older_formats import make_format_3, make_format_4
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(make_metatensor(seed=4)).to_zarr(path, chunks=5)
    return path


def _edit(path, change) -> None:
    """Apply ``change`` to the root document's attributes and inline node metadata."""
    root = json.loads((path / "zarr.json").read_text())
    change(root["attributes"], root["consolidated_metadata"]["metadata"])
    (path / "zarr.json").write_text(json.dumps(root))


def _open_fails(path, match: str) -> None:
    with pytest.raises(mtd.MetatensorDaskError, match=match):
        mtd.open_zarr(path)


def test_missing_store(tmp_path):
    with pytest.raises(mtd.MetatensorDaskError, match="no Zarr store found"):
        mtd.open_zarr(tmp_path / "nothing.zarr")
    (tmp_path / "empty.zarr").mkdir()
    _open_fails(tmp_path / "empty.zarr", "no Zarr group found.*to_zarr")


def test_store_not_ours(tmp_path):
    zarr.open_group(tmp_path / "plain.zarr", mode="w").create_array("x", shape=(2,), dtype="f8")
    _open_fails(tmp_path / "plain.zarr", "not a metatensor-dask store.*zarr.open_group")
    tensor = mtd.from_metatensor(make_metatensor(seed=1))
    for mode in ["w-", "w", "a"]:  # never overwritten: it is not ours
        with pytest.raises(mtd.MetatensorDaskError, match="not a metatensor-dask store"):
            tensor.to_zarr(tmp_path / "plain.zarr", mode=mode)
    assert "x" in zarr.open_group(tmp_path / "plain.zarr", mode="r")


def test_root_is_not_json(store):
    (store / "zarr.json").write_text("{not json")
    _open_fails(store, "not valid JSON")


def test_newer_format(store):
    _edit(store, lambda attrs, nodes: attrs["metatensor_dask"].update(format=6))
    _open_fails(store, "format 6, newer than the format 5.*upgrade metatensor-dask")


def test_invalid_format(store):
    _edit(store, lambda attrs, nodes: attrs["metatensor_dask"].update(format="one"))
    _open_fails(store, "no valid 'metatensor_dask.format'")


def test_incomplete_store(store):
    _edit(store, lambda attrs, nodes: attrs["metatensor_dask"].update(complete=False))
    _open_fails(store, "incomplete.*resume=True")


def test_missing_array(store):
    _edit(store, lambda attrs, nodes: nodes.pop("blocks/2/gradients/strain/values"))
    _open_fails(store, "damaged: the array 'blocks/2/gradients/strain/values' is missing")


def test_labels_disagreeing_with_values(store):
    def fewer_samples(attrs, nodes):
        nodes["blocks/0/samples"]["shape"] = [22, 2]

    _edit(store, fewer_samples)
    _open_fails(store, "'blocks/0/samples' has 22 entries but 'blocks/0/values' has 23 rows")


def test_properties_disagreeing_with_values(store):
    _edit(store, lambda attrs, nodes: nodes["blocks/0/properties"].update(shape=[5, 1]))
    _open_fails(store, "'blocks/0/values' has 4 columns but there are 5 properties")


def test_components_disagreeing_with_values(store):
    _edit(store, lambda attrs, nodes: nodes["blocks/0/components/0"].update(shape=[2, 1]))
    _open_fails(store, "'blocks/0/components/0' has 2 entries but axis 1")


def test_labels_with_a_wrong_dtype(store):
    _edit(store, lambda attrs, nodes: nodes["blocks/1/properties"].update(data_type="float64"))
    _open_fails(store, "'blocks/1/properties' must be 2-D int32, got float64")


def test_labels_without_names(store):
    _edit(store, lambda attrs, nodes: nodes["keys"]["attributes"].pop("names"))
    _open_fails(store, "'keys' has no 'names' attribute")


def test_gradient_with_another_dtype(store):
    _edit(
        store,
        lambda attrs, nodes: nodes["blocks/0/gradients/strain/values"].update(data_type="float32"),
    )
    _open_fails(store, "'blocks/0/gradients/strain/values' has dtype float32 but its parent")


def test_gradient_with_wrong_trailing_shape(store):
    def change(attrs, nodes):
        nodes["blocks/0/gradients/strain/values"]["shape"][-1] = 9

    _edit(store, change)
    _open_fails(store, "does not end with the components and properties of its parent")


def test_wrong_row_pointer_shape(store):
    _edit(
        store,
        lambda attrs, nodes: nodes["blocks/0/gradients/positions/row_pointer"].update(shape=[3]),
    )
    _open_fails(store, "row_pointer' must be int64 with shape \\(24,\\)")


def test_damaged_row_pointer_content(store):
    make_format_4(store)  # (its pointers' content checks: no chunk table to find it first)
    array = zarr.open_array(store, path="blocks/0/gradients/positions/row_pointer", mode="r+")
    array[:] = np.arange(array.shape[0])[::-1]
    _open_fails(store, "not a non-decreasing row pointer")


def test_blocks_that_disagree(store):
    _edit(
        store,
        lambda attrs, nodes: nodes["blocks/1/samples"]["attributes"].update(
            names=["system", "other"]
        ),
    )
    _open_fails(store, "block 1 differs from block 0")


def test_unknown_data_type(store):
    _edit(store, lambda attrs, nodes: nodes["blocks/0/values"].update(data_type="nonsense"))
    _open_fails(store, "'blocks/0/values' has the data type 'nonsense'")


def test_invalid_array_metadata(store):
    _edit(store, lambda attrs, nodes: nodes["blocks/0/values"].pop("chunk_grid"))
    _open_fails(store, "the metadata of 'blocks/0/values' is not a valid Zarr v3 array")


def test_invalid_info(store):
    _edit(store, lambda attrs, nodes: attrs.update(info={"a": 1}))
    _open_fails(store, "'info' attribute must map strings to strings")


def test_stores_without_inline_metadata_still_open(store):
    # of a format before 4, without chunk tables (format 4 roots need their inline
    # metadata: tests/io/test_s44_damage_unusual.py)
    make_format_3(store)
    root = json.loads((store / "zarr.json").read_text())
    del root["consolidated_metadata"]
    (store / "zarr.json").write_text(json.dumps(root))
    assert_equal_to_metatensor(mtd.open_zarr(store), make_metatensor(seed=4))


@pytest.mark.parametrize("path", ["blocks/3", "blocks/3/values", "blocks/3/gradients/x/values"])
def test_a_node_of_a_block_past_the_keys(store, path):
    _edit(store, lambda attrs, nodes: nodes.update({path: nodes["blocks/0/values"]}))
    _open_fails(store, "more blocks than its 3 keys \\('blocks/3'\\)")
