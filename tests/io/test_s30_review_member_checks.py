"""A damaged member of a metatensor file read in several chunks is found by any
computation that reads it whole, through operations that combine two files, split and
join, persist, or slice out every row."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from test_mts_integrity import GRADIENT, SPHERICAL, _flip

import metatensor_dask as mtd


def _joined(good: mtd.TensorMap, bad: mtd.TensorMap) -> mtd.TensorMap:
    return mtd.join([good, bad], "samples", add_dimension="file")


def _split_joined(_: mtd.TensorMap, bad: mtd.TensorMap) -> mtd.TensorMap:
    first = mtd.Labels(["system"], np.array([[0]]))
    rest = mtd.Labels(["system"], np.arange(1, 100).reshape(-1, 1))
    return mtd.join(mtd.split(bad, "samples", [first, rest]), "samples", add_dimension="part")


def _every_row(_: mtd.TensorMap, bad: mtd.TensorMap) -> mtd.TensorMap:
    return mtd.slice(bad, "samples", bad.block(8).samples)


DERIVED = {
    "join-of-two-files": _joined,
    "split-then-join": _split_joined,
    "persist-then-multiply": lambda _, bad: mtd.multiply(bad.persist(), 2.0),
    "slice-of-every-row": _every_row,
}


@pytest.mark.parametrize("derive", DERIVED)
def test_a_derived_computation_reading_a_damaged_member_whole_fails(tmp_path, derive):
    source = Path(shutil.copy(SPHERICAL, tmp_path / "source.npz"))
    bad = mtd.load(_flip(source, GRADIENT, 1500), chunks=1)
    assert bad.block(8).gradient("positions").values.npartitions > 1
    with pytest.raises(mtd.DamagedFileError, match=f"in member '{GRADIENT}'"):
        DERIVED[derive](mtd.load(SPHERICAL, chunks=1), bad).compute()
