"""What other tools see of a store whose write was interrupted, as the Zarr format page
says: a values array with a chunk table has no document of its own yet (xarray without
consolidated metadata shows its block without values), one without a table has its
document from the start and reads as zeros where not written. And the remedy given when
several sources of one append can not be joined because of gradients of gradients."""

from __future__ import annotations

from pathlib import Path

import dask
import dask.array as da
import metatensor
import numpy as np
import pytest
import xarray as xr
import zarr

import metatensor_dask as mtd
from metatensor_dask.execution.cli import main

DOCS = Path(mtd.__file__).resolve().parents[2] / "docs" / "zarr-format.md"


def _failing_tensor() -> mtd.TensorMap:
    """A map of one block whose values fail to compute after their first chunk of 2."""

    def fail(chunk: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        if block_info is not None and block_info[0]["chunk-location"][0] > 0:
            raise ValueError("this write can not be computed")
        return chunk

    values = da.from_array(np.arange(1.0, 19.0).reshape(6, 3), chunks=2)
    block = mtd.TensorBlock(
        values.map_blocks(fail, dtype=values.dtype),
        mtd.Labels.range("system", 6),
        [],
        mtd.Labels.range("n", 3),
    )
    return mtd.TensorMap(mtd.Labels.range("key", 1), [block])


def _interrupted(path: Path, checksum: bool) -> None:
    with dask.config.set({"metatensor_dask.checksum": checksum}):
        with pytest.raises(ValueError, match="can not be computed"):
            _failing_tensor().to_zarr(path, chunks=2)
    assert zarr.open_group(path, mode="r").attrs["metatensor_dask"]["complete"] is False


def _consolidated_section() -> str:
    text = " ".join(DOCS.read_text().split())
    return text.split("## Consolidated metadata", 1)[1].split("## ", 1)[0]


# zarr, listing the store without consolidated metadata, warns of the folders without
# document: the writer's `.progress/`, and `values` and `samples` of the table store
@pytest.mark.filterwarnings("ignore:Object at .* is not recognized:zarr.errors.ZarrUserWarning")
def test_an_interrupted_write_seen_by_other_tools_is_as_documented(tmp_path):
    with_table, without = tmp_path / "table.zarr", tmp_path / "plain.zarr"
    _interrupted(with_table, checksum=True)
    _interrupted(without, checksum=False)

    with pytest.raises(zarr.errors.ArrayNotFoundError):
        da.from_zarr(str(with_table), component="blocks/0/values")
    tree = xr.open_datatree(with_table, engine="zarr", consolidated=False)
    assert set(tree["blocks/0"].data_vars) == {"properties"}  # samples have a table too

    stored = da.from_zarr(str(without), component="blocks/0/values").compute()
    assert stored.shape == (6, 3) and not stored[2:].any()  # rows 2: were never written
    tree = xr.open_datatree(without, engine="zarr", consolidated=False)
    assert "values" in tree["blocks/0"].data_vars

    section = _consolidated_section()
    assert "xarray opening the store with `consolidated=False` shows its group without" in section
    assert "Other values arrays (`checksum: false`," in section


def _nested(first_system: int) -> metatensor.TensorMap:
    """A metatensor map of one block of 2 systems, whose positions gradient has a
    gradient of its own (``cell``)."""
    rng = np.random.default_rng(first_system)
    systems = np.arange(first_system, first_system + 2, dtype=np.int32)
    block = metatensor.TensorBlock(
        rng.random((2, 1)),
        metatensor.Labels(["system"], systems[:, None]),
        [],
        metatensor.Labels.range("n", 1),
    )
    rows = metatensor.Labels(["sample", "system"], np.stack([[0, 1], systems], axis=1))
    positions = metatensor.TensorBlock(rng.random((2, 1)), rows, [], block.properties)
    cell_rows = metatensor.Labels(["sample"], np.array([[0], [1]], np.int32))
    positions.add_gradient(
        "cell", metatensor.TensorBlock(rng.random((2, 1)), cell_rows, [], block.properties)
    )
    block.add_gradient("positions", positions)
    return metatensor.TensorMap(metatensor.Labels.range("key", 1), [block])


def test_sources_with_gradients_of_gradients_are_told_to_append_one_by_one(tmp_path, capsys):
    """``join`` does not take gradients of gradients, so neither does one append of
    several such sources; the error said to give them the same labels and gradients
    (which they have), and now says to append them one at a time, which works."""
    files = []
    for i in range(3):
        files.append(str(tmp_path / f"{i}.mts"))
        metatensor.save(files[-1], _nested(0))
    store = str(tmp_path / "t.zarr")
    assert main(["convert", files[0], store, "-q"]) == 0
    assert main(["convert", *files[1:], store, "--append", "--renumber", "system", "-q"]) != 0
    error = capsys.readouterr().err
    assert "gradients of gradients are not yet supported" in error
    assert "Append them one at a time instead" in error
    assert len(mtd.open_zarr(store).block(0).samples) == 2  # nothing appended
    for file in files[1:]:
        assert main(["convert", file, store, "--append", "--renumber", "system", "-q"]) == 0
    block = mtd.open_zarr(store).block(0)
    np.testing.assert_array_equal(block.samples.values[:, 0], np.arange(6))
    cell = block.gradient("positions").gradient("cell")
    expected = np.concatenate(
        [_nested(0).block(0).gradient("positions").gradient("cell").values] * 3
    )
    np.testing.assert_array_equal(cell.values.compute(), expected)
