"""Group documents edited in both places (the node's own ``zarr.json`` and the root's
consolidated copy): readers do not use them and read the tensor as stored, but zarr
and xarray open the hierarchy through them, so ``verify`` reports them."""

from __future__ import annotations

import json

import dask
import pytest
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

EDITS = {
    "an array's node type": lambda document: document.update(node_type="array"),
    "Zarr format 2": lambda document: document.update(zarr_format=2),
}
GROUPS = ["blocks", "blocks/1", "blocks/0/components", "blocks/0/gradients"]


@pytest.mark.parametrize("edit", list(EDITS))
@pytest.mark.parametrize("group", GROUPS)
def test_verify_reports_a_group_document_edited_everywhere(tmp_path, group, edit):
    path = tmp_path / "t.zarr"
    tensor = make_metatensor(seed=2, n_samples=(6, 0, 3), n_properties=(2, 1, 0))
    mtd.from_metatensor(tensor).to_zarr(path, chunks=4)
    root = json.loads((path / "zarr.json").read_text())
    document = root["consolidated_metadata"]["metadata"][group]
    EDITS[edit](document)
    (path / "zarr.json").write_text(json.dumps(root))
    (path / group / "zarr.json").write_text(json.dumps(document))
    with dask.config.set(scheduler="synchronous"):
        assert_equal_to_metatensor(mtd.open_zarr(path), tensor)
    report = mtd.verify(path)
    assert [p for p in report.problems if p.startswith(f"{group}: ")] == [
        f"{group}: its document is not a Zarr v3 group's (zarr_format "
        f"{document['zarr_format']!r}, node_type {document['node_type']!r}), so zarr and "
        "xarray can not open the store; write or convert the tensor again from its source"
    ]
