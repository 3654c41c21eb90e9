"""Building results computes no values: every operation, the readers, writes planned
with ``compute=False``, text and HTML output, xarray conversion and Labels methods on
maps read lazily from a Zarr store or a ``.mts`` file of mixed edge shapes. Checked
twice: a dask scheduler that raises, and no chunk file of values opened (Python's
``open`` audit events, which every file read of the package goes through)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import metatensor
import numpy as np
import pytest
from opened_files import VALUES_CHUNK, opened_files

import metatensor_dask as mtd
from metatensor_dask.testing import raise_if_dask_computes

# the maps of mixed edge shapes of the operations' tests
sys.path.insert(0, str(Path(__file__).parents[1] / "operations"))
from test_edge_shapes_general import mixed


@contextlib.contextmanager
def nothing_computed(file: str | None = None) -> Iterator[None]:
    """No dask computation and no chunk file of values (nor ``file``) opened inside."""
    with opened_files() as files, raise_if_dask_computes():
        yield
    opened = [p for p in files if VALUES_CHUNK.search(p) or p == file]
    assert not opened, opened[:3]


def _selection(name: str, values: list[int]) -> mtd.Labels:
    return mtd.Labels([name], np.array(values, dtype=np.int32).reshape(-1, 1))


BUILDS = {
    "multiply": lambda t: mtd.multiply(t, t),
    "divide": lambda t: mtd.divide(t, 2.0),
    "pow": lambda t: mtd.pow(t, 2),
    "subtract": lambda t: mtd.subtract(t, t),
    "sum_over_samples": lambda t: mtd.sum_over_samples(t, "a"),
    "std_over_samples": lambda t: mtd.std_over_samples(t, "a"),
    "mean_over_properties": lambda t: mtd.mean_over_properties(t, "p"),
    "slice": lambda t: mtd.slice(t, "samples", _selection("a", [0])),
    "split": lambda t: mtd.split(t, "properties", [_selection("p", [0]), _selection("p", [2])]),
    "join": lambda t: mtd.join([t, t], "samples", add_dimension="tensor"),
    "keys_to_samples": lambda t: mtd.keys_to_samples(t, "t"),
    "keys_to_properties": lambda t: mtd.keys_to_properties(t, "t"),
    "components_to_properties": lambda t: mtd.components_to_properties(t, "c"),
    "sort": lambda t: mtd.sort(t, "samples", descending=True),
    "zeros_like": lambda t: mtd.zeros_like(t),
    "random_uniform_like": lambda t: mtd.random_uniform_like(t),
    "make_contiguous": lambda t: mtd.make_contiguous(t),
    "rename_dimension": lambda t: mtd.rename_dimension(t, "samples", "a", "b"),
    "drop_empty_blocks": lambda t: mtd.drop_empty_blocks(t),
    "unique_metadata": lambda t: mtd.unique_metadata(t, "samples", "atom", "positions"),
    "equal_metadata": lambda t: mtd.equal_metadata(t, mtd.abs(t)),
    "is_contiguous": lambda t: mtd.is_contiguous(t),
    "to": lambda t: t.to(dtype=np.float32),
    "repr": lambda t: (repr(t), str(t), t._repr_html_()),
    "block repr": lambda t: [(repr(b), b._repr_html_()) for b in t.blocks()],
    "to_xarray": lambda t: [b.gradient("positions").to_xarray() for b in t.blocks()],
    "labels": lambda t: [
        (b.samples.union(t.block(0).samples), b.samples.position((0, 1)), b.samples.column("a"))
        for b in t.blocks()
    ],
    "keys": lambda t: (len(t), t.keys, t.sample_names, t.nbytes, t.npartitions),
}


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("lazy")
    theirs = mixed(8)
    metatensor.save(folder / "mixed.mts", theirs)
    mtd.to_zarr(mtd.from_metatensor(theirs), folder / "mixed.zarr")
    return {"mts": str(folder / "mixed.mts"), "zarr": str(folder / "mixed.zarr")}


def _read(stored: dict[str, str], source: str) -> mtd.TensorMap:
    return mtd.load(stored["mts"]) if source == "mts" else mtd.open_zarr(stored["zarr"])


@pytest.mark.parametrize("source", ["zarr", "mts"])
@pytest.mark.parametrize("name", list(BUILDS))
def test_building_computes_and_reads_no_values(stored, source, name):
    tensor = _read(stored, source)
    with nothing_computed(stored["mts"]):
        BUILDS[name](tensor)


@pytest.mark.parametrize("source", ["zarr", "mts"])
def test_planned_writes_read_no_values(stored, source, tmp_path):
    tensor = _read(stored, source)
    with nothing_computed(stored["mts"]):
        delayed = mtd.to_zarr(mtd.multiply(tensor, 2.0), tmp_path / "out.zarr", compute=False)
    delayed.compute()
    expected = metatensor.multiply(mtd.to_metatensor(tensor), 2.0)
    assert metatensor.equal(mtd.to_metatensor(mtd.open_zarr(tmp_path / "out.zarr")), expected)


def test_the_audit_check_sees_a_read(stored):
    tensor = _read(stored, "zarr")
    with pytest.raises(AssertionError):
        with nothing_computed():
            np.asarray(tensor.block(2).values.compute(scheduler="sync"))
