"""A write of many tiny blocks joins its root from the pieces of its inline metadata and
encodes the Labels chunks shared by blocks once: the stores are those the plain
encodings give, every block's Labels its own."""

from __future__ import annotations

import json

import dask
import metatensor
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import metatensor_dask as mtd
from metatensor_dask.io import zarr_layout as layout
from metatensor_dask.io.chunks import parse_chunks
from metatensor_dask.io.zarr_plan import plan_whole
from metatensor_dask.testing import assert_equal_to_metatensor

_DOCUMENTS = st.sampled_from([b"{}", b"[1]", b'"x"', b'{"a":[1,2]}'])


@settings(deadline=None)
@given(st.dictionaries(st.text(max_size=12), _DOCUMENTS), st.data())
def test_inline_metadata_with_documents_replaced_as_encoded_one_by_one(encoded, data):
    metadata = layout.InlineMetadata(encoded)
    joined = b",".join(layout.encode(path) + b":" + raw for path, raw in encoded.items())
    assert b"".join(metadata.pieces) == joined
    # some documents replaced, given in any order
    replaced = data.draw(st.dictionaries(st.sampled_from(sorted(encoded) or [""]), _DOCUMENTS))
    replaced = {path: raw for path, raw in replaced.items() if path in encoded}
    merged = {**encoded, **replaced}
    expected = b",".join(layout.encode(path) + b":" + raw for path, raw in merged.items())
    assert b"".join(metadata.replaced(replaced).pieces) == expected
    assert b"".join(metadata.pieces) == joined  # the metadata replaced from is unchanged


def _labels(names: list[str], rows) -> metatensor.Labels:
    return metatensor.Labels(names, np.asarray(rows, dtype=np.int32).reshape(-1, len(names)))


def _tiny_block(rng, samples, components, properties, gradient_samples):
    block = metatensor.TensorBlock(
        rng.random((len(samples), len(components[0]), len(properties))),
        samples,
        components,
        properties,
    )
    gradient = metatensor.TensorBlock(
        rng.random((len(gradient_samples), 3, len(components[0]), len(properties))),
        gradient_samples,
        [metatensor.Labels.range("xyz", 3), *components],
        properties,
    )
    block.add_gradient("positions", gradient)
    return block


def _map_sharing_some_labels(n_blocks: int) -> metatensor.TensorMap:
    """Blocks in runs sharing their Labels objects, and blocks whose Labels are other
    objects of the same shapes, with other values (the same chunk format)."""
    rng = np.random.default_rng(7)
    shared = (
        _labels(["system", "atom"], [[0, 0], [0, 1], [1, 0]]),
        [_labels(["c"], [[0], [1]])],
        _labels(["p"], [[0], [1], [2], [3]]),
        _labels(["sample", "neighbor"], [[0, 0], [1, 1], [2, 2]]),
    )
    blocks = []
    for i in range(n_blocks):
        if i % 3 == 2:  # Labels of its own, the same shapes as the shared ones
            own = (
                _labels(["system", "atom"], [[i, 0], [i, 1], [i, 2]]),
                [_labels(["c"], [[i], [i + 1]])],
                _labels(["p"], [[i], [i + 1], [i + 2], [i + 3]]),
                _labels(["sample", "neighbor"], [[0, i], [1, i], [2, i]]),
            )
            blocks.append(_tiny_block(rng, *own))
        else:
            blocks.append(_tiny_block(rng, *shared))
    return metatensor.TensorMap(_labels(["k"], range(n_blocks)), blocks)


@pytest.mark.parametrize("codecs", [{}, {"metatensor_dask.compressor": "zstd"}])
def test_blocks_sharing_labels_read_back_with_their_own(tmp_path, codecs):
    theirs = _map_sharing_some_labels(12)
    with dask.config.set(codecs):
        mtd.from_metatensor(theirs).to_zarr(tmp_path / "t.zarr")
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "t.zarr"), theirs)
    # each Labels chunk file holds its block's own rows (and its crc32c)
    for i in range(12):
        samples = (tmp_path / f"t.zarr/blocks/{i}/samples/c.0.0").read_bytes()
        expected = theirs.block(i).samples.values.astype("<i4").tobytes()
        assert samples[: len(expected)] == expected


def test_root_joined_from_its_pieces_is_its_compact_json(tmp_path):
    theirs = _map_sharing_some_labels(9)
    tensor = mtd.from_metatensor(theirs)
    tensor.to_zarr(tmp_path / "t.zarr")
    raw = (tmp_path / "t.zarr/zarr.json").read_bytes()
    assert layout.encode(json.loads(raw)) == raw
    # the same as the document made with its metadata inline, encoded whole
    plan = plan_whole(list(enumerate(tensor.blocks())), tensor.keys, parse_chunks(None), False)
    for complete in (False, True):
        inline = layout.root_document(complete, {"a": "b"}, plan.nodes, store_id="x")
        empty = layout.root_document(complete, {"a": "b"}, plan.nodes, store_id="x", inline=False)
        metadata = layout.InlineMetadata(layout.encode_nodes(plan.nodes))
        assert metadata.root(empty) == layout.encode(inline)
