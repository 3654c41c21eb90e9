"""featomic's output appended batch by batch (systems numbered from 0 in every call,
keys coming and going with the species of the batch), on plain and sharded-compressed
stores: the store reads as metatensor's join of the renumbered batches."""

from __future__ import annotations

import dask
import pytest
from ingest_support import soap
from test_zarr_append import assert_equal_to_join, shifted
from test_zarr_append_codecs import codec_settings

import metatensor_dask as mtd

pytest.importorskip("featomic")


@pytest.mark.parametrize("codecs", ["default", "sharded-zstd"])
def test_featomic_batches_appended(tmp_path, codecs):
    batches = [soap([0, 1]), soap([2, 3]), soap([4, 5, 6])]  # the last one has N
    path = tmp_path / "soap.zarr"
    expected, systems = [], 0
    with dask.config.set(codec_settings(codecs)):
        for batch in batches:
            mtd.from_metatensor(batch).to_zarr(
                path, append_dim="samples", renumber={"system": "next"}, chunks=7
            )
            expected.append(shifted(batch, systems))
            systems += len({int(s) for block in batch for s in block.samples.column("system")})
    assert len(expected[2].keys) > len(expected[0].keys)
    report = mtd.verify(path)
    assert report.ok, report.problems
    assert_equal_to_join(mtd.open_zarr(path), expected)
    assert_equal_to_join(mtd.open_zarr(path, chunks=4), expected)
