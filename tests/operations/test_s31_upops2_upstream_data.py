"""Manipulations and reductions of real descriptors against metatensor.

The data are two systems of metatensor's own test files (see ``tests/data/README.md``):
a power spectrum (properties ``l, n_1, n_2``) and a spherical expansion (components
``o3_mu``), with sparse ``positions`` and dense ``strain`` gradients, their empty
blocks dropped (metatensor fails to reduce over every sample name of a map holding
them). The first goes through a Zarr store in chunks of three rows, the second is read
from its file in chunks of four; every result is built lazily, computed at once, and
compared with metatensor's on the same file: labels, dtypes, values and gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes

DATA = Path(__file__).parent.parent / "data"


def _selection(module, name: str, rows: list[int]) -> Any:
    return module.Labels([name], np.array(rows, dtype=np.int32).reshape(-1, 1))


def _halves(module, tensor) -> list[Any]:
    """The map split by system: the first system, then the second."""
    return module.split(tensor, "samples", [_selection(module, "system", [r]) for r in (0, 1)])


def _power_spectrum_cases() -> dict[str, tuple[Callable[[Any, Any], Any], str]]:
    """Each operation on the power spectrum, with what is compared: ``exact`` (bit for
    bit), ``rounding`` (sums over samples whose groups are split across chunks) or
    ``values`` (to rounding, without the gradients of mean and std over samples, which
    metatensor gets wrong for sparse gradients)."""
    return {
        "sum_over_samples": (lambda m, t: m.sum_over_samples(t, "atom"), "rounding"),
        "std_over_samples": (lambda m, t: m.std_over_samples(t, ["system", "atom"]), "values"),
        "mean_over_properties": (lambda m, t: m.mean_over_properties(t, "n_2"), "exact"),
        "keys_to_properties": (
            lambda m, t: t.keys_to_properties(t.keys.names[-2:], fill_value=np.nan),
            "exact",
        ),
        "slice": (lambda m, t: m.slice(t, "samples", _selection(m, "atom", [0, 3, 7])), "exact"),
        "sort": (lambda m, t: m.sort(t, descending=True), "exact"),
        "join": (
            lambda m, t: m.join(_halves(m, t)[::-1], "samples", different_keys="union"),
            "exact",
        ),
        "permute_dimensions": (lambda m, t: m.permute_dimensions(t, "samples", [1, 0]), "exact"),
    }


def _spherical_expansion_cases() -> dict[str, tuple[Callable[[Any, Any], Any], str]]:
    """As :func:`_power_spectrum_cases`, on the spherical expansion."""
    return {
        "mean_over_samples": (lambda m, t: m.mean_over_samples(t, "system"), "values"),
        "sum_over_properties": (lambda m, t: m.sum_over_properties(t, "n"), "exact"),
        "keys_to_samples": (lambda m, t: t.keys_to_samples("center_type"), "exact"),
        "components_to_properties": (lambda m, t: t.components_to_properties("o3_mu"), "exact"),
        "split": (
            lambda m, t: m.split(t, "properties", [_selection(m, "n", [2, 0])])[0],
            "exact",
        ),
        "join_properties": (
            lambda m, t: m.join([t, t], "properties", add_dimension="copy"),
            "exact",
        ),
        "insert_dimension": (lambda m, t: m.insert_dimension(t, "keys", 1, "new", 7), "exact"),
    }


def _read(path: Path, form: str, tmp_path: Path) -> mtd.TensorMap:
    if form == "chunked":
        return mtd.drop_empty_blocks(mtd.load(path, 4))
    store = tmp_path / "map.zarr"
    mtd.to_zarr(mtd.drop_empty_blocks(mtd.load(path)), store, chunks=3)
    return mtd.open_zarr(store)


def _compare(ours: mtd.TensorMap, theirs: metatensor.TensorMap, how: str) -> None:
    if how == "values":
        ours, theirs = mtd.remove_gradients(ours), metatensor.remove_gradients(theirs)
    tolerance = 0.0 if how == "exact" else 1e-13
    assert_equal_to_metatensor(ours, theirs, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize(
    ("name", "form", "cases"),
    [
        ("qm7-power-spectrum-2.mts", "zarr", _power_spectrum_cases),
        ("qm7-spherical-expansion-2.mts", "chunked", _spherical_expansion_cases),
    ],
)
def test_like_metatensor(name, form, cases, tmp_path):
    path = DATA / name
    ours = _read(path, form, tmp_path)
    with raise_if_dask_computes():
        built = {case: function(mtd, ours) for case, (function, _) in cases().items()}
    computed = dict(zip(built, dask.compute(*built.values()), strict=True))
    theirs = metatensor.drop_empty_blocks(metatensor.load(path))
    for case, (function, how) in cases().items():
        _compare(computed[case], function(metatensor, theirs), how)
