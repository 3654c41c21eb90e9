"""Appends reuse what their process read of the root document before (the runs of its
text: each block's nodes), and only that: roots written by another process, or
edited, read as from scratch; the root written is the one written without reuse; and
the Python work of an append does not grow with the blocks it does not touch."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import dask
import metatensor
import numpy as np
import pytest
from forked_process import Forked
from kill_support import ended

import metatensor_dask as mtd
from metatensor_dask.io import zarr_root_cache
from metatensor_dask.testing import assert_equal_to_metatensor


def positions_block(first: int, n: int, seed: int) -> metatensor.TensorBlock:
    """``n`` samples numbered from ``first``, with a positions gradient."""
    rng = np.random.default_rng(seed)
    samples = metatensor.Labels(["system"], np.arange(first, first + n, dtype=np.int32)[:, None])
    block = metatensor.TensorBlock(
        rng.normal(size=(n, 2)), samples, [], metatensor.Labels.range("p", 2)
    )
    rows = np.array([[s, first + s, 0] for s in range(n)], dtype=np.int32).reshape(-1, 3)
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            rng.normal(size=(n, 3, 2)),
            metatensor.Labels(["sample", "system", "atom"], rows),
            [metatensor.Labels.range("xyz", 3)],
            block.properties,
        ),
    )
    return block


def batch(index: int, new: int = 4, blocks: int = 8) -> metatensor.TensorMap:
    """Batch ``index``: ``new`` keys not stored before (after the ``blocks`` of batch 0),
    and a few stored keys (the first, one in the middle)."""
    if index == 0:
        keys = list(range(blocks))
    else:
        first = blocks + new * (index - 1)
        keys = [*range(first, first + new), 0, index % blocks]
    labels = metatensor.Labels(["k"], np.array(keys, dtype=np.int32)[:, None])
    return metatensor.TensorMap(
        labels, [positions_block(10 * index, 2, 100 * index + i) for i in range(len(keys))]
    )


def append(path: str | Path, index: int) -> None:
    with dask.config.set(scheduler="synchronous"):
        mtd.from_metatensor(batch(index)).to_zarr(path, append_dim="samples")


def _join(count: int) -> metatensor.TensorMap:
    return metatensor.join([batch(i) for i in range(count)], axis="samples", different_keys="union")


def _in_another_process(path: Path, index: int) -> None:
    """``append(path, index)`` in a process of its own, forked from a server that never
    read a store: nothing this process read of the root is known there."""
    process = Forked(append, str(path), index)
    output = ended(process, timeout=300)
    assert process.returncode == 0, output


def test_appends_alternating_with_another_process(tmp_path):
    """Appends 1 and 3 here, 2 and 4 in processes of their own: each root this process
    reads after its own was written by another process."""
    path = tmp_path / "alternating.zarr"
    append(path, 0)
    for index in range(1, 5):
        if index % 2:
            append(path, index)
        else:
            # the root this process reads next was written by another one, whose
            # blocks (new and touched) it has never seen
            _in_another_process(path, index)
    assert_equal_to_metatensor(mtd.open_zarr(path), _join(5))
    assert mtd.verify(path).problems == []


def _edit_compactly(path: Path, node: str, change) -> None:
    """``change(document)`` of a node, in the root written as the package writes it
    (compact, same order), so that the runs of the other blocks are found again."""
    root = json.loads((path / "zarr.json").read_bytes())
    change(root["consolidated_metadata"]["metadata"][node])
    (path / "zarr.json").write_bytes(json.dumps(root, separators=(",", ":")).encode())


EDITS = {
    "samples of another length": (
        "blocks/3/samples",
        lambda d: d.update(shape=[d["shape"][0] + 1, d["shape"][1]]),
        "'blocks/3/samples' has 3 entries but 'blocks/3/values' has 2 rows",
    ),
    "no digest": (
        "blocks/5/properties",
        lambda d: d["attributes"].pop("digest"),
        "the Labels array 'blocks/5/properties' has no valid 'digest'",
    ),
    "a table too short": (
        "blocks/2/gradients/positions/values",
        lambda d: d["attributes"].update(chunk_crc32c=[]),
        "blocks/2/gradients/positions/values",
    ),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_a_node_edited_between_two_appends_is_found(tmp_path, edit):
    path = tmp_path / "edited.zarr"
    append(path, 0)
    append(path, 1)  # this process has read every block's run
    node, change, message = EDITS[edit]
    _edit_compactly(path, node, change)
    with pytest.raises(mtd.DamagedStoreError, match=message) as warm:
        append(path, 2)
    zarr_root_cache._RUNS_READ.clear()
    with pytest.raises(mtd.DamagedStoreError) as cold:
        append(path, 2)
    assert str(warm.value) == str(cold.value)


def test_a_block_duplicated_elsewhere_in_the_text_is_read_as_a_whole(tmp_path):
    # a node of block 1 put (again) after the keys: not in its block's run, whose
    # bytes are unchanged; read from scratch, the later copy is the one that counts
    path = tmp_path / "moved.zarr"
    append(path, 0)
    append(path, 1)
    root = json.loads((path / "zarr.json").read_bytes())
    nodes = root["consolidated_metadata"]["metadata"]
    samples = dict(nodes["blocks/1/samples"])
    samples["shape"] = [7, 1]
    text = json.dumps(root, separators=(",", ":")).encode()
    extra = b',"blocks/1/samples":' + json.dumps(samples, separators=(",", ":")).encode()
    (path / "zarr.json").write_bytes(text[:-3] + extra + text[-3:])
    with pytest.raises(mtd.DamagedStoreError, match="'blocks/1/samples' has 7 entries"):
        append(path, 2)


def test_the_root_written_is_the_one_written_without_reuse(tmp_path):
    warm, cold = tmp_path / "warm.zarr", tmp_path / "cold.zarr"
    for index in range(5):
        append(warm, index)
        zarr_root_cache._RUNS_READ.clear()
        append(cold, index)
        zarr_root_cache._RUNS_READ.clear()
        assert (warm / "zarr.json").read_bytes() == (cold / "zarr.json").read_bytes()
    raw = (warm / "zarr.json").read_bytes()
    assert json.dumps(json.loads(raw), separators=(",", ":")).encode() == raw
    assert_equal_to_metatensor(mtd.open_zarr(warm), _join(5))


#: Texts of a node that JSON reads as the one written, but that the package's encoder
#: writes otherwise: escapes in its document or in its path, in a block the next append
#: leaves alone (3) or extends (2, its properties unchanged).
OTHERWISE_WRITTEN = {
    "document": (b'"blocks/3/values":{"shape"', b'"blocks/3/values":{"\\u0073hape"'),
    "path": (b'"blocks/3/samples":', b'"blocks/3/s\\u0061mples":'),
    "extended": (b'"blocks/2/properties":{"zarr', b'"blocks/2/properties":{"\\u007aarr'),
}


@pytest.mark.parametrize("edit", list(OTHERWISE_WRITTEN))
def test_a_node_written_otherwise_is_encoded_again(tmp_path, edit):
    # the runs of a root's text are copied into the root written only when they are
    # what the package's encoder writes: one written otherwise is encoded again (read
    # by a process that has not read the root before)
    path = tmp_path / "otherwise.zarr"
    append(path, 0)
    append(path, 1)
    old, new = OTHERWISE_WRITTEN[edit]
    raw = (path / "zarr.json").read_bytes()
    assert raw.count(old) == 1
    edited = raw.replace(old, new)
    assert json.loads(edited) == json.loads(raw)
    (path / "zarr.json").write_bytes(edited)
    zarr_root_cache._RUNS_READ.clear()
    append(path, 2)
    written = (path / "zarr.json").read_bytes()
    assert json.dumps(json.loads(written), separators=(",", ":")).encode() == written
    assert_equal_to_metatensor(mtd.open_zarr(path), _join(3))


def _python_calls(function) -> int:
    """The Python functions called while ``function()`` runs."""
    count = 0

    def profile(frame, event, arg):
        nonlocal count
        count += event == "call"

    sys.setprofile(profile)
    try:
        function()
    finally:
        sys.setprofile(None)
    return count


def test_the_python_work_of_an_append_does_not_grow_with_untouched_blocks(tmp_path):
    calls = {}
    for blocks in (20, 200):
        path = tmp_path / f"{blocks}.zarr"
        with dask.config.set(scheduler="synchronous"):
            mtd.from_metatensor(batch(0, blocks=blocks)).to_zarr(path, append_dim="samples")
        first, second = batch(1, blocks=blocks), batch(2, blocks=blocks)
        append_to = mtd.from_metatensor(first).to_zarr
        with dask.config.set(scheduler="synchronous"):
            append_to(path, append_dim="samples")  # this process reads every block once
            tensor = mtd.from_metatensor(second)
            calls[blocks] = _python_calls(
                lambda tensor=tensor, path=path: tensor.to_zarr(path, append_dim="samples")
            )
    # the whole root tokenized, parsed, checked and encoded: a thousand calls per block;
    # what is left grows with the bytes of the root written (its pieces of 128 KiB)
    assert calls[200] - calls[20] < 200 - 20, calls


def test_an_append_computed_elsewhere_takes_what_was_read_with_it(tmp_path):
    # a distributed scheduler sends the append's tasks, the commit with the root read,
    # to a worker: pickled
    path = tmp_path / "pickled.zarr"
    append(path, 0)
    append(path, 1)
    delayed = mtd.from_metatensor(batch(2)).to_zarr(path, append_dim="samples", compute=False)
    with dask.config.set(scheduler="synchronous"):
        pickle.loads(pickle.dumps(delayed)).compute()
    assert_equal_to_metatensor(mtd.open_zarr(path), _join(3))
