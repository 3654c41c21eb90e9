"""A Labels file of Labels without dimensions: metatensor counts no entry in them and
writes a `.npy` array of no entry, whatever their number of rows; `save` writes the
same bytes."""

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd


@pytest.mark.parametrize("rows", [0, 3])
def test_labels_without_dimensions_are_written_as_metatensor_writes_them(tmp_path, rows):
    written = []
    for module in (metatensor, mtd):
        path = tmp_path / f"{module.__name__}.mts"
        module.save(str(path), module.Labels([], np.zeros((rows, 0), dtype=np.int32)))
        written.append(path.read_bytes())
    assert written[1] == written[0]
    assert len(mtd.load_labels(str(tmp_path / "metatensor.mts"))) == 0
