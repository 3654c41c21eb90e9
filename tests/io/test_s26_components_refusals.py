"""Appends whose components or properties are not the stored ones, for the values of a
block or one of its gradients (a spherical expansion's ``o3_mu``, a strain gradient's
two ``xyz`` components): refused before any byte of the store changes, by ``to_zarr``,
``write_batches`` and ``convert --append``, with a message that says which component
differs and how (its name, its number of entries, or the first entry that differs)."""

from __future__ import annotations

from collections.abc import Callable

import metatensor
import numpy as np
import pytest
from test_s24_append_refusals import location_state

import metatensor_dask as mtd
from metatensor_dask.errors import MetatensorDaskError
from metatensor_dask.execution.cli import main
from metatensor_dask.testing import assert_equal_to_metatensor

Labels = metatensor.Labels


def _entries(name: str, values: list[int]) -> Labels:
    return Labels([name], np.array(values, np.int32).reshape(-1, 1))


def _mu(o3_lambda: int) -> Labels:
    return _entries("o3_mu", list(range(-o3_lambda, o3_lambda + 1)))


XYZ = _entries("xyz", [0, 1, 2])
STRAIN = [_entries("xyz_1", [0, 1, 2]), _entries("xyz_2", [0, 1, 2])]


def _block(
    rng: np.random.Generator,
    o3_lambda: int,
    systems: list[int],
    mu: Labels | None = None,
    strain: list[Labels] | None = None,
    xyz: Labels = XYZ,
    properties: Labels | None = None,
    gradients: tuple[str, ...] = ("positions", "strain"),
) -> metatensor.TensorBlock:
    """A block of a spherical expansion: one sample per (system, atom 0 and 1), the
    ``o3_mu`` component, positions and strain gradients (every component as given)."""
    mu = _mu(o3_lambda) if mu is None else mu
    properties = _entries("n", [0, 1, 2]) if properties is None else properties
    strain = STRAIN if strain is None else strain
    samples = Labels(
        ["system", "atom"], np.array([(s, a) for s in systems for a in (0, 1)], np.int32)
    )
    n = len(samples)
    block = metatensor.TensorBlock(
        rng.standard_normal((n, len(mu), len(properties))), samples, [mu], properties
    )
    if "positions" in gradients:
        rows = Labels(
            ["sample", "system", "atom"],
            np.array([(i, *samples.values[i]) for i in range(n)], np.int32).reshape(-1, 3),
        )
        block.add_gradient(
            "positions",
            metatensor.TensorBlock(
                rng.standard_normal((n, len(xyz), len(mu), len(properties))),
                rows,
                [xyz, mu],
                properties,
            ),
        )
    if "strain" in gradients:
        rows = Labels(["sample"], np.arange(n, dtype=np.int32).reshape(-1, 1))
        shape = (n, *(len(c) for c in strain), len(mu), len(properties))
        block.add_gradient(
            "strain",
            metatensor.TensorBlock(rng.standard_normal(shape), rows, [*strain, mu], properties),
        )
    return block


def _tensor(
    systems: list[int], changes: Callable[[int], dict] | None = None
) -> metatensor.TensorMap:
    """Two keys (o3_lambda 0 and 2), each block built with ``changes(o3_lambda)``."""
    rng = np.random.default_rng(len(systems))
    blocks = [
        _block(rng, o3_lambda, systems, **(changes(o3_lambda) if changes else {}))
        for o3_lambda in (0, 2)
    ]
    return metatensor.TensorMap(Labels(["o3_lambda"], np.array([[0], [2]], np.int32)), blocks)


def _in_block_2(**changes) -> Callable[[int], dict]:
    return lambda o3_lambda: changes if o3_lambda == 2 else {}


def _everywhere(**changes) -> Callable[[int], dict]:
    return lambda o3_lambda: changes


CASES = {
    "mu in another order": (
        _in_block_2(mu=_entries("o3_mu", [2, 1, 0, -1, -2])),
        "the block (o3_lambda=2) has other components than the stored ones: its component "
        "0 (o3_mu): entry 0 is (2,), the store's (-2,)",
    ),
    "mu of another size": (
        _in_block_2(mu=_mu(1)),
        "the block (o3_lambda=2) has other components than the stored ones: its component "
        "0 (o3_mu): 3 entries, the store's 5",
    ),
    "mu under another name": (
        lambda o3_lambda: {"mu": _entries("m", list(range(-o3_lambda, o3_lambda + 1)))},
        "the block (o3_lambda=0) has other components than the stored ones: its components "
        "are ['m'], the store's ['o3_mu']",
    ),
    "strain components swapped": (
        _everywhere(strain=STRAIN[::-1]),
        "the block (o3_lambda=0), gradient 'strain' has other components than the stored "
        "ones: its components are ['xyz_2', 'xyz_1', 'o3_mu'], the store's ['xyz_1', "
        "'xyz_2', 'o3_mu']",
    ),
    "positions xyz in another order": (
        _in_block_2(xyz=_entries("xyz", [0, 2, 1])),
        "the block (o3_lambda=2), gradient 'positions' has other components than the stored "
        "ones: its component 0 (xyz): entry 1 is (2,), the store's (1,)",
    ),
    "properties in another order": (
        _in_block_2(properties=_entries("n", [0, 2, 1])),
        "the block (o3_lambda=2) has other properties than the stored ones: its "
        "properties: entry 1 is (2,), the store's (1,)",
    ),
    "properties of another size": (
        _in_block_2(properties=_entries("n", [0, 1])),
        "the block (o3_lambda=2) has other properties than the stored ones: its "
        "properties: 2 entries, the store's 3",
    ),
    "gradient missing": (
        _everywhere(gradients=("positions",)),
        "the block (o3_lambda=0) has the gradients ['positions'], the store ['positions', "
        "'strain']",
    ),
}


def _stored(path) -> metatensor.TensorMap:
    first = _tensor([0, 1])
    mtd.from_metatensor(first).to_zarr(path, chunks=3)
    return first


def _assert_refused(call: Callable[[], object], path, message: str) -> None:
    before = location_state(path)
    with pytest.raises(MetatensorDaskError) as error:
        call()
    assert message in str(error.value)
    assert "nothing was written" in str(error.value)
    assert location_state(path) == before


@pytest.mark.parametrize("case", sorted(CASES))
def test_to_zarr_append_names_the_component_that_differs(tmp_path, case):
    changes, message = CASES[case]
    path = tmp_path / "expansion.zarr"
    first = _stored(path)
    appended = mtd.from_metatensor(_tensor([2, 3], changes))
    _assert_refused(
        lambda: appended.to_zarr(path, append_dim="samples", renumber={"system": "next"}),
        path,
        message,
    )
    assert_equal_to_metatensor(mtd.open_zarr(path), first)
    assert mtd.verify(path).ok


class _Batches:
    """Batches of two systems each, numbered from 0; the one of ``changed`` with
    ``changes``."""

    def __init__(self, changed: int, changes: Callable[[int], dict]):
        self.changed = changed
        self.changes = changes

    def __call__(self, items: list[int]) -> metatensor.TensorMap:
        changes = self.changes if items[0] == self.changed else None
        return _tensor(list(range(len(items))), changes)


@pytest.mark.parametrize("case", ["mu in another order", "strain components swapped"])
def test_write_batches_names_the_component_of_the_batch_that_differs(tmp_path, case):
    changes, message = CASES[case]
    path = tmp_path / "batches.zarr"
    with pytest.raises(MetatensorDaskError) as error:
        mtd.write_batches(_Batches(4, changes), list(range(6)), path, batch_size=2, quiet=True)
    assert message in str(error.value)
    assert "batch 2 (items 4 to 5" in str(error.value)
    report = mtd.verify(path)
    assert not report.ok
    assert "2 of 3 batches committed" in report.problems[0]


def test_convert_append_names_the_component_of_the_source_that_differs(tmp_path, capsys):
    """The command line's ``main`` in this process (what ``metatensor-dask convert``
    runs): the refusal and its message are the command's, not the interpreter's."""
    changes, _ = CASES["mu of another size"]
    path = tmp_path / "expansion.zarr"
    _stored(path)
    sources = [tmp_path / "first.mts", tmp_path / "second.mts"]
    metatensor.save(str(sources[0]), _tensor([0, 1], changes))
    metatensor.save(str(sources[1]), _tensor([0, 1, 2], changes))
    before = location_state(path)
    code = main(["convert", *map(str, sources), str(path), "--append", "--renumber", "system"])
    stderr = capsys.readouterr().err
    assert code != 0
    assert "the block (o3_lambda=2) has other components than the stored ones: its " in stderr
    assert "component 0 (o3_mu): 3 entries, the store's 5" in stderr
    assert location_state(path) == before
