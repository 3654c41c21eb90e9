"""The shortcuts of a write of many tiny blocks give what the general paths give:
documents made once per kind of array, Labels chunks encoded whole, the sample maxima
of a few rows, the root's metadata joined once, progress markers, the gradient chunking
of one values chunk, storing tasks built as dask tasks."""

from __future__ import annotations

import json
from urllib.parse import quote

import dask
import google_crc32c
import metatensor
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_zarr_tiny_reads import CODECS, tiny_map

import metatensor_dask as mtd
from metatensor_dask._partition import block_row_pointer, gradient_row_chunks
from metatensor_dask.io import chunks as chunking
from metatensor_dask.io import zarr_layout as layout
from metatensor_dask.io.zarr_codecs import (
    ChunkFormat,
    decode_chunks,
    encode_chunks,
    small_template,
    template,
)
from metatensor_dask.io.zarr_identity import STORE_ID, content_id
from metatensor_dask.io.zarr_plan import gradient_rows, plan_whole, sharding, value_rows
from metatensor_dask.io.zarr_samples import sample_attributes
from metatensor_dask.testing import assert_equal_to_metatensor


def _one_by_one(plan, block, prefix: str, rows: int, is_gradient: bool) -> dict:
    """The array documents of ``block`` at ``prefix`` made one at a time, each from its
    template (as every write made them before documents were made per kind)."""
    values = block.values
    shards = sharding(rows)
    components = [c.names[0] for c in block.components]
    expected = {
        f"{prefix}/values": layout.array_document(
            template(values.dtype, values.ndim, shards is not None),
            values.shape,
            rows,
            shards,
            {},
            layout.dimension_names(f"{prefix}/values", components),
        )
    }

    def labels(path: str, labels, chunk_rows: int | None) -> None:
        shape = (len(labels), len(labels.names))
        rows = chunk_rows if chunk_rows is not None else max(shape[0], 1)
        document = small_template(np.dtype(np.int32), 2)
        names = layout.dimension_names(path)
        expected[path] = layout.array_document(
            document, shape, rows, None, plan.nodes[path]["attributes"], names
        )

    labels(f"{prefix}/samples", block.samples, rows)
    for j, component in enumerate(block.components):
        labels(f"{prefix}/components/{j}", component, None)
    if not is_gradient:
        labels(f"{prefix}/properties", block.properties, None)
    for parameter, gradient in block.gradients():
        path = layout.gradient_prefix(prefix, parameter)
        pointer = block_row_pointer(block, parameter)
        chunk_rows = int(
            plan.nodes[f"{path}/values"]["chunk_grid"]["configuration"]["chunk_shape"][0]
        )
        if shards is not None:
            chunk_rows = chunk_rows // 2
        if pointer is not None:
            expected[f"{path}/{layout.ROW_POINTER}"] = layout.array_document(
                small_template(np.dtype(np.int64), 1),
                pointer.shape,
                rows,
                None,
                {},
                layout.dimension_names(f"{path}/{layout.ROW_POINTER}"),
            )
        expected.update(_one_by_one(plan, gradient, path, chunk_rows, True))
    return expected


@pytest.mark.parametrize("codecs", sorted(CODECS))
def test_documents_made_per_kind_equal_those_made_one_by_one(codecs):
    # blocks of 5 samples, of none, of no properties: several kinds at each place
    tensor = mtd.from_metatensor(tiny_map(24, seed=3))
    request = chunking.parse_chunks(None)
    with dask.config.set(CODECS[codecs]):
        blocks = list(enumerate(tensor.blocks()))
        plan = plan_whole(blocks, tensor.keys, request, growing=False)
        expected = {}
        for i, block in blocks:
            expected.update(
                _one_by_one(plan, block, layout.block_prefix(i), value_rows(block, request), False)
            )
    arrays = {p: d for p, d in plan.nodes.items() if d["node_type"] == "array" and p != "keys"}
    assert arrays.keys() == expected.keys()
    for path, document in arrays.items():
        assert document == expected[path], path
        assert layout.encode(document) == layout.encode(expected[path]), path
    # each document has attributes of its own, though its kind is shared
    first, other = arrays["blocks/0/values"], arrays["blocks/1/values"]
    assert first["chunk_grid"] is other["chunk_grid"]
    assert first["attributes"] is not other["attributes"]
    assert arrays["blocks/3/values"]["shape"] != first["shape"]  # a block without samples


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(-3, 3), st.integers(-3, 3)),
        min_size=1,
        max_size=150,  # rows compared as lists, and with numpy
    )
)
def test_sample_maxima_of_few_and_many_rows(entries):
    attributes = sample_attributes(["a", "b"], np.array(entries, dtype=np.int32))
    assert attributes["max"] == list(max(entries))
    assert attributes["column_max"] == [max(column) for column in zip(*entries, strict=True)]
    assert all(type(v) is int for v in attributes["max"] + attributes["column_max"])


def test_sample_maxima_of_entries_without_dimensions():
    for rows in (3, 100):
        attributes = sample_attributes([], np.zeros((rows, 0), dtype=np.int32))
        assert attributes["max"] == [] and attributes["column_max"] == []


@pytest.mark.parametrize("rows", [1, 4, 7])
def test_labels_chunks_encoded_whole_or_in_pieces_hold_the_rows(rows):
    values = np.arange(14, dtype=np.int32).reshape(7, 2)
    document = layout.array_document(
        small_template(np.dtype(np.int32), 2), values.shape, rows, None, {}
    )
    chunks = encode_chunks(values, document)
    assert list(chunks) == [f"c.{i}.0" for i in range(-(-7 // rows))]
    for data in chunks.values():
        body = bytes(data)[:-4]
        assert len(body) == rows * 2 * 4  # an edge chunk padded
        assert google_crc32c.value(body).to_bytes(4, "little") == bytes(data)[-4:]
    decoded = decode_chunks(list(chunks.values()), document, "x", "here")
    np.testing.assert_array_equal(decoded, values)
    if rows == 7:  # one whole chunk: its bytes, then their crc32c
        (data,) = chunks.values()
        body = values.astype("<i4").tobytes()
        assert bytes(data) == body + google_crc32c.value(body).to_bytes(4, "little")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20), st.integers(0, 10**6))
def test_progress_markers_quote_as_urllib(path, chunk):
    expected = layout.PROGRESS_PREFIX + quote(f"{path}/{chunk}", safe="")
    assert layout.progress_marker(path, chunk) == expected


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=12), st.sampled_from([b"{}", b"[1]", b'"x"'])))
def test_root_metadata_joined_as_encoded_one_by_one(encoded):
    joined = b",".join(layout.encode(path) + b":" + raw for path, raw in encoded.items())
    assert layout.encode_metadata(encoded) == joined
    assert json.loads(b"{" + layout.encode_metadata(encoded) + b"}").keys() == encoded.keys()


@pytest.mark.parametrize("per_sample", [[2, 2, 2], [1, 0, 3], [0, 0, 0], [4]])
def test_gradient_of_one_values_chunk_in_one_chunk_as_its_co_partition(per_sample):
    pointer = np.concatenate([[0], np.cumsum(per_sample)]).astype(np.int64)
    n, m = len(per_sample), int(pointer[-1])
    found = gradient_rows(pointer, n, n, m, 1)
    # what the co-partition of one values chunk gives
    co_partitioned = gradient_row_chunks(pointer, chunking.regular(n, n))
    regular = co_partitioned[0] > 0 and chunking.regular(m, co_partitioned[0]) == co_partitioned
    # a gradient without rows: the values' rows per chunk, so that appended rows fill them
    assert found == (n if m == 0 else co_partitioned[0] if regular else m)


def _stored_files(path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and ".lock" not in p.parts
    }


def test_writes_of_one_tensor_store_the_same_bytes_and_the_id_of_their_content(tmp_path):
    theirs = tiny_map(30, seed=5)
    for name in ("a.zarr", "b.zarr"):
        mtd.from_metatensor(theirs).to_zarr(tmp_path / name)
    first, second = _stored_files(tmp_path / "a.zarr"), _stored_files(tmp_path / "b.zarr")
    assert first == second
    root = json.loads(first["zarr.json"])
    ours = root["attributes"]["metatensor_dask"]
    nodes = root["consolidated_metadata"]["metadata"]
    assert ours[STORE_ID] == content_id(nodes)
    for path, document in nodes.items():  # each node's own document is the root's copy
        assert json.loads(first[f"{path}/zarr.json"]) == document
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "a.zarr"), theirs)


def test_storing_tasks_depend_on_the_chunks_they_store(tmp_path):
    theirs = tiny_map(12, seed=6)
    # computed values: the storing tasks take chunks of other tasks, not data
    tensor = mtd.multiply(mtd.from_metatensor(theirs), 2.0)
    delayed = tensor.to_zarr(tmp_path / "t.zarr", compute=False)
    graph = dict(delayed.__dask_graph__())
    storing = [k for k in graph if isinstance(k, tuple) and k[0].startswith("zarr-write-")]
    assert storing
    for key in storing:
        assert graph[key].dependencies
        assert graph[key].dependencies <= graph.keys()
    (final,) = [k for k in graph if isinstance(k, str) and k.startswith("zarr-complete-")]
    assert set(storing) <= graph[final].dependencies
    delayed.compute(scheduler="sync")
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "t.zarr"), metatensor.multiply(theirs, 2.0))


def test_chunk_formats_worked_out_per_kind_for_the_plans_own_documents():
    tensor = mtd.from_metatensor(tiny_map(4, seed=2))
    plan = plan_whole(list(enumerate(tensor.blocks())), tensor.keys, chunking.parse_chunks(None))
    first, second = plan.nodes["blocks/0/samples"], plan.nodes["blocks/1/samples"]
    found = plan.chunk_format("blocks/0/samples", first)
    assert found == ChunkFormat.of(first)
    assert plan.chunk_format("blocks/1/samples", second) is found
    # a document read from a store (a resumed write) has the format it describes
    stored = json.loads(layout.encode(first))
    stored["chunk_grid"]["configuration"]["chunk_shape"][0] = 2
    assert plan.chunk_format("blocks/0/samples", stored) == ChunkFormat.of(stored) != found
