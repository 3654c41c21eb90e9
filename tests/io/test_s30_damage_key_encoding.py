"""Chunk key encodings edited in a store's documents: every writer names chunk files
``c.3.0.0`` (the default encoding, ``.`` separator), so any other encoding is an edited
document. Readers refuse it when opening, naming it; ``verify`` reports it as a problem
and never raises (also for a node outside the tensor's layout)."""

from __future__ import annotations

import copy
import json

import pytest
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd

ENCODINGS = {
    "not a mapping": "default",
    "no configuration": {"name": "default", "configuration": None},
    "a separator that is not a string": {"name": "default", "configuration": {"separator": 1}},
    "the '/' separator": {"name": "default", "configuration": {"separator": "/"}},
    "zarr v2 keys": {"name": "v2", "configuration": {"separator": "."}},
}
#: each encoding in another array: values, Labels, row pointers
ARRAYS = [
    "blocks/0/values",
    "blocks/0/gradients/positions/samples",
    "blocks/1/gradients/positions/values",
    "blocks/1/gradients/positions/row_pointer",
    "keys",
]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    path = tmp_path_factory.mktemp("encodings") / "t.zarr"
    mtd.from_metatensor(make_metatensor(seed=3, n_samples=(7, 2), n_properties=(2, 1))).to_zarr(
        path, chunks=3
    )
    return path, (path / "zarr.json").read_text()


def _edited(written, array, encoding):
    """The store with the consolidated document of ``array`` given ``encoding``."""
    path, original = written
    root = json.loads(original)
    root["consolidated_metadata"]["metadata"][array]["chunk_key_encoding"] = encoding
    (path / "zarr.json").write_text(json.dumps(root))
    return path


@pytest.fixture
def restored(written):
    yield written
    path, original = written
    (path / "zarr.json").write_text(original)


@pytest.mark.parametrize("encoding, array", list(zip(ENCODINGS, ARRAYS, strict=True)))
def test_an_edited_chunk_key_encoding_is_refused_when_opening(restored, array, encoding):
    path = _edited(restored, array, ENCODINGS[encoding])
    expected = f"'{array}' has the chunk key encoding {ENCODINGS[encoding]!r}"
    with pytest.raises(mtd.DamagedStoreError, match="which the format forbids") as error:
        mtd.open_zarr(path)
    assert expected in str(error.value)
    report = mtd.verify(path)
    assert not report.ok
    assert any(expected in problem for problem in report.problems), report.problems


@pytest.mark.parametrize(
    "field, value",
    [
        ("chunk_key_encoding", {"name": "default", "configuration": None}),
        ("chunk_grid", "regular"),
        ("chunk_grid", {"name": "regular", "configuration": {"chunk_shape": ["a", 1, 1]}}),
    ],
)
def test_verify_reports_a_node_outside_the_layout_with_an_invalid_document(restored, field, value):
    """An array node the tensor does not use, with a chunk file, in a store otherwise
    whole: verify lists it (a document missing beside the consolidated copy) and does
    not fail on its document."""
    path, original = restored
    root = json.loads(original)
    nodes = root["consolidated_metadata"]["metadata"]
    document = copy.deepcopy(nodes["blocks/0/values"])
    document[field] = value
    nodes["blocks/0/extra"] = document
    (path / "zarr.json").write_text(json.dumps(root))
    (path / "blocks/0/extra").mkdir()
    try:
        (path / "blocks/0/extra/c.0.0.0").write_bytes(b"\0" * 8)
        report = mtd.verify(path)
    finally:
        (path / "blocks/0/extra/c.0.0.0").unlink()
        (path / "blocks/0/extra").rmdir()
    assert not report.ok
    assert any(problem.startswith("blocks/0/extra: ") for problem in report.problems)
