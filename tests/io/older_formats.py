"""Stores made to look as written by an older format of metatensor-dask (1 to 4)."""

from __future__ import annotations

import json
from pathlib import Path

from metatensor_dask.io.zarr_identity import TABLE


def drop_chunk_tables(path: Path) -> None:
    """Remove the chunk tables (format 4) from every array document of the store at
    ``path``, its own and the root's copy: a store written before format 4 has none,
    and a root of an older format with arrays that have them is refused as edited."""
    root = json.loads((path / "zarr.json").read_text())
    for name, document in root["consolidated_metadata"]["metadata"].items():
        if TABLE in document.get("attributes", {}):
            del document["attributes"][TABLE]
            (path / name / "zarr.json").write_text(json.dumps(document))
    (path / "zarr.json").write_text(json.dumps(root))


def make_format_3(path: Path) -> None:
    """Make the store at ``path`` look written before format 4: format 3, no store id,
    no chunk tables (in the root and in every array's own document)."""
    root = json.loads((path / "zarr.json").read_text())
    ours = root["attributes"]["metatensor_dask"]
    ours["format"] = 3
    del ours["store_id"]
    (path / "zarr.json").write_text(json.dumps(root))
    drop_chunk_tables(path)


def make_format_4(path: Path) -> None:
    """Make the store at ``path`` look written by format 4: its sample Labels and row
    pointers record no chunk table (format 5 adds them), and its format says 4. The
    content checks of the Labels and row pointers are what find their damage then."""
    root = json.loads((path / "zarr.json").read_text())
    root["attributes"]["metatensor_dask"]["format"] = 4
    for name, document in root["consolidated_metadata"]["metadata"].items():
        if not name.endswith("/values") and TABLE in document.get("attributes", {}):
            del document["attributes"][TABLE]
            (path / name / "zarr.json").write_text(json.dumps(document))
    (path / "zarr.json").write_text(json.dumps(root))
