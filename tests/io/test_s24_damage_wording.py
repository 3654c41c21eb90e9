"""``verify`` and ``info`` name a store whose root document is damaged as every other
message does: by the path given, not by zarr's ``file://`` rendering of it."""

from __future__ import annotations

import re

import pytest
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.io.inspection import describe_store


def test_a_root_cut_short_is_reported_at_the_path_given(tmp_path):
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(make_metatensor(seed=1, n_samples=(3, 2, 0))).to_zarr(path)
    (path / "zarr.json").write_bytes((path / "zarr.json").read_bytes()[:200])
    expected = f"the store at {path} is damaged: its root 'zarr.json' is not valid JSON"
    (problem,) = mtd.verify(path).problems
    assert problem.startswith(expected)
    with pytest.raises(mtd.DamagedStoreError, match=f"^{re.escape(expected)}"):
        describe_store(str(path))


def test_verify_does_not_tell_to_run_verify(tmp_path):
    """Readers point to ``verify`` to list every problem; verify's own report keeps
    what is wrong and the remedy only."""
    path = tmp_path / "t.zarr"
    mtd.from_metatensor(make_metatensor(seed=1, n_samples=(3, 2, 0))).to_zarr(path)
    chunk = path / "blocks" / "0" / "values" / "c.0.0.0"
    chunk.write_bytes(chunk.read_bytes()[:-1])
    with pytest.raises(mtd.DamagedStoreError, match="`metatensor-dask verify` lists every"):
        mtd.open_zarr(path).block(0).values.compute()
    problems = mtd.verify(path).problems
    assert problems and all("metatensor-dask verify" not in p for p in problems), problems
    assert all(p.endswith("write or convert the tensor again from its source") for p in problems)
