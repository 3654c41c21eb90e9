"""``verify`` of a store written while it reads it: what it read is no state of the
store, so it reports that write, never damage.

The write falls at a chosen moment: ``verify``'s ``compute`` argument runs it after the
root and metadata were read, before any chunk is.
"""

from __future__ import annotations

from pathlib import Path

import dask
import pytest
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd


def _store(path: Path, seed: int, **kwargs) -> mtd.TensorMap:
    tensor = mtd.from_metatensor(make_metatensor(seed, n_samples=(9, 0, 5)))
    return tensor.to_zarr(path, chunks=2, **kwargs)


def _written_first(write):
    """A ``compute`` for ``verify`` that runs ``write()`` before reading any chunk."""

    def compute(collection):
        write()
        return dask.compute(collection)[0]

    return compute


def _assert_written_meanwhile(report, path: Path) -> None:
    assert len(report.problems) == 1, report.problems
    (problem,) = report.problems
    assert f"{path} was written while verify read it" in problem
    assert "run verify again once the write has finished" in problem
    assert "damaged" not in problem


@pytest.mark.parametrize("n_samples", [(9, 0, 5), (3, 4, 0), (0, 0, 0)])
def test_verify_during_an_overwrite_reports_the_write(tmp_path, n_samples):
    """The store overwritten (``mode="w"``, other shapes or none) between the reads of
    its root and of its chunks: before, verify reported the chunks the new write
    removed or rewrote as missing or damaged."""
    path = tmp_path / "store.zarr"
    _store(path, 0)
    other = mtd.from_metatensor(make_metatensor(1, n_samples=n_samples))

    def overwrite():
        other.to_zarr(path, mode="w", chunks=3)

    _assert_written_meanwhile(mtd.verify(path, compute=_written_first(overwrite)), path)
    assert mtd.verify(path).ok


def test_verify_during_an_append_that_ends_reports_nothing_wrong(tmp_path):
    """An append that ends while verify reads keeps every chunk the root verify read
    lists (the partial last ones rewritten with their rows unchanged): nothing found."""
    path = tmp_path / "store.zarr"
    _store(path, 0)
    more = mtd.from_metatensor(make_metatensor(2, n_samples=(9, 0, 5)))

    def append():
        more.to_zarr(path, append_dim="samples", renumber={"system": "next"}, chunks=2)

    report = mtd.verify(path, compute=_written_first(append))
    assert report.ok, report.problems
    assert report.regions > 0


def test_verify_of_an_intact_store_unwritten_reports_nothing(tmp_path):
    path = tmp_path / "store.zarr"
    _store(path, 0)
    report = mtd.verify(path, compute=_written_first(lambda: None))
    assert report.ok, report.problems
