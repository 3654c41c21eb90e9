"""An append to a complete store whose root lost the consolidated document of its
keys: the reader refuses the store, and the append must refuse it too instead of
writing the appended tensor over the stored blocks as if the store were new."""

from __future__ import annotations

import json
from pathlib import Path

import metatensor
import pytest
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd

DROPS = {
    "keys": lambda nodes: nodes.pop("keys"),
    "every node": lambda nodes: nodes.clear(),
}


def _files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


@pytest.mark.xfail(
    strict=True,
    reason="an append plans a complete store whose root lists no keys as a new store",
)
@pytest.mark.parametrize("drop", list(DROPS))
def test_an_append_refuses_a_complete_store_whose_root_lost_its_keys(tmp_path, drop):
    path = tmp_path / "t.zarr"
    stored = make_metatensor(seed=3, n_samples=(7, 0, 4), n_properties=(2, 2, 0))
    mtd.from_metatensor(stored).to_zarr(path, chunks=3)
    root = json.loads((path / "zarr.json").read_text())
    DROPS[drop](root["consolidated_metadata"]["metadata"])
    (path / "zarr.json").write_text(json.dumps(root))
    before = _files(path)
    with pytest.raises(mtd.DamagedStoreError, match="keys"):
        mtd.open_zarr(path)
    appended = metatensor.remove_gradients(make_metatensor(seed=4, n_samples=(2, 1, 3)))
    with pytest.raises(mtd.DamagedStoreError, match="keys"):
        mtd.from_metatensor(appended).to_zarr(
            path, append_dim="samples", renumber={"system": "next"}
        )
    assert _files(path) == before
