"""A root whose ``info`` attribute is not a mapping of strings (an edited document):
writes that keep the stored info (``mode="a"``, ``"r+"``, their resume) refuse it
before writing anything, as readers do, and ``mode="w"``, the remedy, replaces it."""

from __future__ import annotations

import json

import pytest
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

INFOS = {"a list": [-3], "a string": "x", "a number value": {"a": 1}}
KEEPING = {
    "a": {"mode": "a"},
    "r+": {"mode": "r+"},
    "a, resumed": {"mode": "a", "resume": True},
}


def _store_with_info(path, info):
    tensor = make_metatensor(seed=4, n_samples=(5, 3), n_properties=(2, 1), nested=False)
    mtd.from_metatensor(tensor).to_zarr(path, chunks=2)
    root = json.loads((path / "zarr.json").read_text())
    root["attributes"]["info"] = info
    (path / "zarr.json").write_text(json.dumps(root))
    return tensor


@pytest.mark.parametrize("write, info", list(zip(KEEPING, INFOS, strict=True)))
def test_writes_keeping_the_info_refuse_one_that_is_not_strings(tmp_path, write, info):
    path = tmp_path / "t.zarr"
    tensor = _store_with_info(path, INFOS[info])
    before = (path / "zarr.json").read_bytes()
    with pytest.raises(mtd.DamagedStoreError, match="the 'info' attribute must map strings"):
        mtd.from_metatensor(tensor).to_zarr(path, **KEEPING[write])
    assert (path / "zarr.json").read_bytes() == before


@pytest.mark.parametrize("info", list(INFOS))
def test_mode_w_replaces_a_store_whose_info_is_not_strings(tmp_path, info):
    path = tmp_path / "t.zarr"
    tensor = _store_with_info(path, INFOS[info])
    mtd.from_metatensor(tensor).to_zarr(path, mode="w")
    assert_equal_to_metatensor(mtd.open_zarr(path), tensor)
    assert mtd.verify(path).ok
