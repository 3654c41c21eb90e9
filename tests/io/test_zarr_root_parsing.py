"""The root document is read node by node, repeated node documents parsed once: the
result is always ``json.loads`` of the same bytes, and invalid JSON is refused."""

from __future__ import annotations

import json

import metatensor
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.io import zarr_layout as layout
from metatensor_dask.testing import assert_equal_to_metatensor


def _tiny(n_blocks: int) -> metatensor.TensorMap:
    rng = np.random.default_rng(n_blocks)
    blocks = []
    for i in range(n_blocks):
        block = metatensor.TensorBlock(
            rng.random((3, 2)),
            metatensor.Labels(["s"], np.arange(3)[:, None] + i % 2),
            [],
            metatensor.Labels.range("p", 2),
        )
        blocks.append(block)
    return metatensor.TensorMap(metatensor.Labels.range("k", n_blocks), blocks)


def test_a_written_root_reads_as_json_loads_with_repeated_documents_shared(tmp_path):
    theirs = _tiny(6)
    mtd.from_metatensor(theirs).to_zarr(tmp_path / "t.zarr")
    raw = (tmp_path / "t.zarr" / "zarr.json").read_bytes()
    parsed = layout.loads_root(raw)
    assert parsed == json.loads(raw)
    nodes = parsed["consolidated_metadata"]["metadata"]
    # equal documents at the same place of two blocks are one object
    assert nodes["blocks/0/properties"] is nodes["blocks/3/properties"]
    # (values documents differ in the crc32c of their chunks, format 4)
    first, last = ({**nodes[f"blocks/{i}/values"], "attributes": {}} for i in (0, 5))
    assert first == last
    # samples of blocks 0 and 2 are equal, those of blocks 1 and 2 differ
    assert nodes["blocks/1/samples"] is not nodes["blocks/2/samples"]
    assert nodes["blocks/1/samples"] != nodes["blocks/2/samples"]
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "t.zarr"), theirs)


def test_a_root_written_with_spaces_is_read_too(tmp_path):
    theirs = make_metatensor(seed=5)
    mtd.from_metatensor(theirs).to_zarr(tmp_path / "t.zarr")
    path = tmp_path / "t.zarr" / "zarr.json"
    document = json.loads(path.read_bytes())
    for indent in [None, 2]:
        path.write_text(json.dumps(document, indent=indent))
        assert layout.loads_root(path.read_bytes()) == document
        assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "t.zarr"), theirs)


NODE = '{"node_type":"array","shape":[2,3],"attributes":{"names":["a"]}}'
TRICKY = [
    # a repeated text followed by more of an object: not a document of its own
    '{"consolidated_metadata":{"metadata":{"blocks/0/values":'
    + NODE
    + ',"blocks/1/values":'
    + NODE[:-1]
    + ',"x":1}}}}',
    # a string holding what looks like the next node
    '{"consolidated_metadata":{"metadata":{"blocks/0/values":{"s":"\\",\\"blocks/1/values\\":{"}}}}',
    # repeated keys: the last one wins, as in json.loads
    '{"a":1,"a":2,"consolidated_metadata":{"metadata":{"k":' + NODE + ',"k":{}}}}',
    # other values than objects, escapes, unicode, numbers
    '{"consolidated_metadata":{"kind":"inline","metadata":{"blocks/0/x":[1,2.5e3,null,true],'
    '"blocks/1/x":"\\u00e9\\n","blocks/2/x":-0.0,"blocks/3/x":{}}},"\u00e9":NaN}',
    # the metadata not an object
    '{"consolidated_metadata":{"metadata":[1,2]}}',
    '{"consolidated_metadata":7}',
    "{}",
]


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_texts_read_as_json_loads(text):
    raw = text.encode()
    assert layout.loads_root(raw) == json.loads(raw)


INVALID = [
    b"",
    b"{",
    b'{"a":1}x',
    b'{"a":1,}',
    b'{"consolidated_metadata":{"metadata":{"blocks/0/v":{"a":1},"blocks/1/v":{"a":1}',
    b'{"consolidated_metadata":{"metadata":{"blocks/0/v":{"a":1},"blocks/1/v":{"a":1}x}}}',
    b"\xff\xfe",
]


@pytest.mark.parametrize("raw", INVALID)
def test_invalid_json_is_refused_as_json_loads_refuses_it(raw):
    with pytest.raises(ValueError):
        json.loads(raw)
    with pytest.raises(ValueError):
        layout.loads_root(raw)
    with pytest.raises(mtd.DamagedStoreError, match="not valid JSON"):
        layout.parse_root(raw, "here")


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


@given(
    nodes=st.lists(
        st.tuples(st.sampled_from(["blocks/0/v", "blocks/1/v", "blocks/1/w", "keys"]), _JSON),
        max_size=6,
    ),
    cut=st.integers(min_value=0, max_value=400),
)
def test_any_root_reads_as_json_loads(nodes, cut):
    # repeated documents written compactly, as a writer does; then cut anywhere
    metadata = ",".join(
        json.dumps(key) + ":" + json.dumps(value, separators=(",", ":")) for key, value in nodes
    )
    raw = ('{"zarr_format":3,"consolidated_metadata":{"metadata":{' + metadata + "}}}").encode()
    assert layout.loads_root(raw) == json.loads(raw)
    try:
        expected = json.loads(raw[:cut])
    except ValueError:
        with pytest.raises(ValueError):
            layout.loads_root(raw[:cut])
    else:
        assert layout.loads_root(raw[:cut]) == expected
