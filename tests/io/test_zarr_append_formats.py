"""Stores of the older formats 1 and 2 are refused for appends, before anything is
written, with the remedy; ``metatensor-dask convert`` upgrades them to a store that
appends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ingest_support import store_files
from older_formats import drop_chunk_tables
from test_zarr_append import assert_equal_to_join, shifted
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.execution.cli import main
from metatensor_dask.labels import Labels


def _documents(path: Path) -> tuple[dict, dict[str, dict]]:
    """The root document and every node document, by path."""
    root = json.loads((path / "zarr.json").read_text())
    nodes = {}
    for name in root["consolidated_metadata"]["metadata"]:
        nodes[name] = json.loads((path / name / "zarr.json").read_text())
    return root, nodes


def _age(path: Path, version: int) -> None:
    """Make a format 3 store look like one written by format ``version``: sample
    Labels without the records appends extend (a plain digest instead of a chained
    one), and for format 1 no record of dtypes and gradients in the root."""
    root, nodes = _documents(path)
    consolidated = root["consolidated_metadata"]["metadata"]
    for name, document in nodes.items():
        attributes = document.get("attributes") or {}
        if "chain" in attributes:
            names = attributes["names"]
            labels = _stored_labels(path, name, names)
            attributes = {"names": names, "digest": labels.digest()}
            document["attributes"] = attributes
            consolidated[name]["attributes"] = attributes
            (path / name / "zarr.json").write_text(json.dumps(document))
    ours = root["attributes"]["metatensor_dask"]
    if version == 1:
        root["attributes"]["metatensor_dask"] = {"format": 1, "complete": ours["complete"]}
    else:
        ours["format"] = version
        del ours["store_id"]  # (format 4 records it)
    (path / "zarr.json").write_text(json.dumps(root))
    drop_chunk_tables(path)


def _stored_labels(path: Path, name: str, names: list[str]) -> Labels:
    import zarr

    values = zarr.open_array(path, path=name, mode="r")[:]
    return Labels(names, values)


@pytest.fixture(params=[1, 2])
def old(request, tmp_path):
    path = tmp_path / "old.zarr"
    mtd.from_metatensor(make_metatensor(0)).to_zarr(path, chunks=4)
    _age(path, request.param)
    report = mtd.verify(path)  # a consistent store of that format
    assert report.ok, report.problems
    return path, request.param


def test_older_formats_are_refused_with_the_remedy(old):
    path, version = old
    before = store_files(path)
    tensor = mtd.from_metatensor(shifted(make_metatensor(1), 50))
    with pytest.raises(
        mtd.MetatensorDaskError,
        match=rf"can not append to .*storage format {version}.*`metatensor-dask convert`",
    ):
        tensor.to_zarr(path, append_dim="samples", renumber={"system": "next"})
    assert store_files(path) == before


def test_convert_upgrades_then_appends(old, capsys):
    path, _ = old
    new = path.parent / "new.zarr"
    assert main(["convert", "-q", str(path), str(new)]) == 0
    assert (
        json.loads((new / "zarr.json").read_text())["attributes"]["metatensor_dask"]["format"] == 5
    )
    first, second = make_metatensor(0), make_metatensor(1)
    mtd.from_metatensor(second).to_zarr(new, append_dim="samples", renumber={"system": "next"})
    report = mtd.verify(new)
    assert report.ok, report.problems
    largest = max(int(max(block.samples.column("system"), default=-1)) for block in first)
    assert_equal_to_join(mtd.open_zarr(new), [first, shifted(second, largest + 1)])
