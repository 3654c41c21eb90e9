"""A format 4 store whose root format number was edited down: read as the older
format, its chunks would skip the checks of format 4 (the chunk tables, and for
format 1 with a compressor the refusal of missing chunks), so that a second damage
reads as other numbers. The root keeps the store id only format 4 writes, which gives
the edit away: every reader refuses the store."""

from __future__ import annotations

import json
from pathlib import Path

import dask
import pytest
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd

EDITED = "the format number was edited"


def _swap_two_chunks(path: Path) -> None:
    """Swap the first two values chunks of block 0 (same size, other numbers)."""
    first, second = path / "blocks/0/values/c.0.0.0", path / "blocks/0/values/c.1.0.0"
    data = first.read_bytes()
    assert len(data) == second.stat().st_size and data != second.read_bytes()
    first.write_bytes(second.read_bytes())
    second.write_bytes(data)


def _lose_a_chunk(path: Path) -> None:
    (path / "blocks/0/values/c.1.0.0").unlink()


CASES = {
    "format 3, swapped chunks": (3, {}, _swap_two_chunks),
    "format 2, swapped chunks": (2, {}, _swap_two_chunks),
    "format 1, swapped chunks": (1, {}, _swap_two_chunks),
    "format 1 with zstd, a chunk lost": (
        1,
        {"metatensor_dask.compressor": "zstd"},
        _lose_a_chunk,
    ),
}


def _write_edited(path: Path, case: str, without_id: bool = False) -> None:
    version, settings, damage = CASES[case]
    tensor = make_metatensor(seed=5, n_samples=(9, 0, 5), n_properties=(2, 2, 0))
    with dask.config.set(settings):
        mtd.from_metatensor(tensor).to_zarr(path, chunks=3)
    root = json.loads((path / "zarr.json").read_text())
    root["attributes"]["metatensor_dask"]["format"] = version
    if without_id:
        del root["attributes"]["metatensor_dask"]["store_id"]
    (path / "zarr.json").write_text(json.dumps(root))
    damage(path)


@pytest.mark.parametrize("without_id", [False, True], ids=["store id kept", "store id removed"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_format_number_edited_down_is_refused(tmp_path, case, without_id):
    """With the store id removed as well, the chunk tables of the values arrays,
    which only format 4 writes, still give the edit away."""
    path = tmp_path / "t.zarr"
    _write_edited(path, case, without_id)
    with pytest.raises(mtd.DamagedStoreError, match=EDITED):
        with dask.config.set(scheduler="synchronous"):
            mtd.open_zarr(path).block(0).values.compute()
    report = mtd.verify(path)
    assert not report.ok
    assert any(EDITED in problem for problem in report.problems)
    # (appends to formats 1 and 2 are refused before the layout is read)
    refusal = EDITED if CASES[case][0] == 3 else "storage format"
    appended = make_metatensor(seed=6, n_samples=(2, 1, 1), n_properties=(2, 2, 0))
    with pytest.raises(mtd.MetatensorDaskError, match=refusal):
        mtd.from_metatensor(appended).to_zarr(
            path, append_dim="samples", renumber={"system": "next"}
        )
