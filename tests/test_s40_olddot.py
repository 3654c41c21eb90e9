"""Stores whose Labels other than samples record a chained digest, as ``dot`` of maps
read from Zarr wrote them before its writer recorded the plain digest there: readers,
``verify``, ``convert``, ``info`` and appends accept them when the digest is that of
the entries as read, and refuse an edited entry, values and gradients compared with
metatensor.
"""

from __future__ import annotations

import json

import metatensor
import metatensor.operations as mops
import numpy as np
import pytest
import zarr
from pipeline_support import run

import metatensor_dask as mtd
from metatensor_dask.io.zarr_samples import chained_digest
from metatensor_dask.testing import assert_equal_to_metatensor

KEYS = metatensor.Labels(["k"], np.array([[0], [1]], dtype=np.int32))


def _labels(name: str, count: int, first: int = 0) -> metatensor.Labels:
    return metatensor.Labels([name], np.arange(first, first + count, dtype=np.int32)[:, None])


def _features(first_system: int = 0) -> metatensor.TensorMap:
    """Two blocks of 5 systems, 4 properties and positions gradients."""
    rng = np.random.default_rng(first_system)
    blocks = []
    for _ in KEYS:
        block = metatensor.TensorBlock(
            rng.normal(size=(5, 4)), _labels("system", 5, first_system), [], _labels("n", 4)
        )
        gradient_samples = metatensor.Labels(
            ["sample", "atom"], np.array([[0, 0], [1, 1], [3, 0]], dtype=np.int32)
        )
        block.add_gradient(
            "positions",
            metatensor.TensorBlock(
                rng.normal(size=(3, 3, 4)), gradient_samples, [_labels("xyz", 3)], _labels("n", 4)
            ),
        )
        blocks.append(block)
    return metatensor.TensorMap(KEYS, blocks)


def _weights() -> metatensor.TensorMap:
    """6 weights (samples ``m``) of the 4 properties of each block of :func:`_features`."""
    rng = np.random.default_rng(7)
    blocks = [
        metatensor.TensorBlock(rng.normal(size=(6, 4)), _labels("m", 6), [], _labels("n", 4))
        for _ in KEYS
    ]
    return metatensor.TensorMap(KEYS, blocks)


def _with_chained_digest(store, path: str) -> None:
    """Record at the Labels array ``path`` the chained digest of its entries, in its
    own document and in the root's consolidated metadata, as writers did for Labels
    made from samples read from a store (``dot``'s properties) before they recorded
    the plain digest there."""
    array = zarr.open_array(str(store / path), mode="r")
    digest = chained_digest(list(array.attrs["names"]), np.asarray(array[...]))
    document_file = store / path / "zarr.json"
    document = json.loads(document_file.read_text())
    document["attributes"]["digest"] = digest
    document_file.write_text(json.dumps(document, separators=(",", ":")))
    root_file = store / "zarr.json"
    root = json.loads(root_file.read_text())
    root["consolidated_metadata"]["metadata"][path]["attributes"]["digest"] = digest
    root_file.write_text(json.dumps(root, separators=(",", ":")))


#: The non-sample Labels of the result of ``dot``: its properties (the weights'
#: samples), components and keys.
OLD_CHAINED = ("blocks/0/properties", "blocks/1/properties")
ALL_CHAINED = (*OLD_CHAINED, "blocks/0/gradients/positions/components/0", "keys")


def _old_store(folder, chained=OLD_CHAINED):
    """``dot`` of maps read from Zarr, stored with a chained digest at ``chained``, and
    the result of metatensor."""
    mtd.to_zarr(mtd.from_metatensor(_features()), folder / "a.zarr")
    mtd.to_zarr(mtd.from_metatensor(_weights()), folder / "w.zarr")
    store = folder / "dot.zarr"
    mtd.to_zarr(mtd.dot(mtd.open_zarr(folder / "a.zarr"), mtd.open_zarr(folder / "w.zarr")), store)
    for path in chained:
        _with_chained_digest(store, path)
    return store, mops.dot(_features(), _weights())


@pytest.mark.parametrize("chained", [OLD_CHAINED, ALL_CHAINED], ids=["properties", "all"])
def test_old_dot_store_opens_and_verifies(tmp_path, capsys, chained):
    """The store was refused as damaged ("the Labels array 'blocks/0/properties' has
    no valid 'chain' attribute") by every reader."""
    store, expected = _old_store(tmp_path, chained)
    assert_equal_to_metatensor(mtd.open_zarr(store), expected)
    assert mtd.verify(store).problems == []
    code, out, err = run(capsys, "verify", store)
    assert code == 0, err
    code, out, err = run(capsys, "info", store)
    assert code == 0, err
    assert "(5, 6)" in out


def test_old_dot_store_converts(tmp_path, capsys):
    store, expected = _old_store(tmp_path)
    code, _, err = run(capsys, "convert", store, tmp_path / "dot.mts")
    assert code == 0, err
    assert metatensor.equal(metatensor.load(str(tmp_path / "dot.mts")), expected)
    code, _, err = run(capsys, "convert", store, tmp_path / "again.zarr")
    assert code == 0, err
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "again.zarr"), expected)
    assert mtd.verify(tmp_path / "again.zarr").problems == []


def test_old_dot_store_appended_along_samples(tmp_path):
    """The appended store keeps the chained digest of its properties, which still
    checks against their entries."""
    store, expected = _old_store(tmp_path)
    more = mops.dot(_features(first_system=5), _weights())
    mtd.to_zarr(mtd.from_metatensor(more), store, append_dim="samples")
    joined = mops.join([expected, more], axis="samples")
    assert_equal_to_metatensor(mtd.open_zarr(store), joined)
    assert mtd.verify(store).problems == []


def test_old_dot_store_appended_a_key(tmp_path):
    store, expected = _old_store(tmp_path)
    extra_keys = metatensor.Labels(["k"], np.array([[7]], dtype=np.int32))
    extra = metatensor.TensorMap(extra_keys, [expected.block(0).copy()])
    mtd.to_zarr(mtd.from_metatensor(extra), store, mode="a")
    whole = metatensor.TensorMap(
        metatensor.Labels(["k"], np.array([[0], [1], [7]], dtype=np.int32)),
        [block.copy() for block in expected.blocks()] + [expected.block(0).copy()],
    )
    assert_equal_to_metatensor(mtd.open_zarr(store), whole)
    assert mtd.verify(store).problems == []


def _edited(folder, path: str):
    """An old store of which the first entry of the Labels ``path`` was edited."""
    store, _ = _old_store(folder, ALL_CHAINED)
    array = zarr.open_array(str(store / path), mode="r+")
    array[0, 0] = 100  # written with its checksum: only the digest tells the edit
    return store, f"the Labels '{path}' do not match the digest recorded when written"


@pytest.mark.parametrize("path", ["blocks/0/properties", *ALL_CHAINED[2:]])
def test_old_dot_store_with_an_edited_entry_is_refused(tmp_path, path):
    """A chained digest is accepted only when it is that of the entries as read (Labels
    recorded with the same digest and names are read once, from the first block)."""
    store, message = _edited(tmp_path, path)
    with pytest.raises(mtd.DamagedStoreError, match=message):
        mtd.to_metatensor(mtd.open_zarr(store))


@pytest.mark.parametrize("path", ALL_CHAINED)
def test_old_dot_store_with_an_edited_entry_fails_verify(tmp_path, capsys, path):
    store, message = _edited(tmp_path, path)
    assert any(message in problem for problem in mtd.verify(store).problems)
    code, out, err = run(capsys, "verify", store)
    assert code != 0
    assert message in out + err


def test_old_dot_store_rewritten_in_place(tmp_path):
    """mode="r+" refused the old store: "'blocks/0/properties' has attributes {...
    'digest': 'c1-...'} in the store, {... 'digest': '...'} here"."""
    store, expected = _old_store(tmp_path)
    twice = mops.multiply(expected, 2.0)
    mtd.to_zarr(mtd.from_metatensor(twice), store, mode="r+")
    assert_equal_to_metatensor(mtd.open_zarr(store), twice)
    assert mtd.verify(store).problems == []


def _with_cell_gradient(tensor: metatensor.TensorMap) -> metatensor.TensorMap:
    """``tensor`` whose blocks have, besides their gradients, a ``cell`` gradient."""
    blocks = []
    for i, original in enumerate(tensor.blocks()):
        block = original.copy()
        rows = len(block.samples)
        samples = metatensor.Labels(["sample"], np.arange(rows, dtype=np.int32)[:, None])
        values = np.random.default_rng(i).normal(size=(rows, len(block.properties)))
        block.add_gradient("cell", metatensor.TensorBlock(values, samples, [], block.properties))
        blocks.append(block)
    return metatensor.TensorMap(tensor.keys, blocks)


def test_old_dot_store_given_a_gradient(tmp_path):
    """mode="a" adding a gradient to the stored blocks refused the old store, as
    mode="r+" did."""
    store, expected = _old_store(tmp_path)
    more = _with_cell_gradient(expected)
    mtd.to_zarr(mtd.from_metatensor(more), store, mode="a")
    assert_equal_to_metatensor(mtd.open_zarr(store), more)
    assert mtd.verify(store).problems == []


def test_old_dot_store_not_rewritten_with_other_properties(tmp_path):
    """The stored chained digest stands for the planned properties only when it is
    theirs: other entries are other metadata."""
    store, expected = _old_store(tmp_path)
    properties = _labels("m", 6, first=10)
    blocks = []
    for original in expected.blocks():
        block = metatensor.TensorBlock(original.values, original.samples, [], properties)
        gradient = original.gradient("positions")
        block.add_gradient(
            "positions",
            metatensor.TensorBlock(
                gradient.values, gradient.samples, gradient.components, properties
            ),
        )
        blocks.append(block)
    other = metatensor.TensorMap(expected.keys, blocks)
    with pytest.raises(mtd.MetatensorDaskError, match="'blocks/0/properties' has attributes"):
        mtd.to_zarr(mtd.from_metatensor(other), store, mode="r+")
