"""Renumbered appends next to the int32 limits of Labels, on real stores on disk: what
fits is written exactly (values and gradients), what would wrap around is refused
before anything is written, with the values, the limit and the remedy."""

import hashlib
from pathlib import Path

import dask
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

HIGH, LOW = 2**31 - 1, -(2**31)


def _map(module, systems):
    """One block with a ``"positions"`` gradient; samples ``(system, atom)``."""
    labels = module.Labels
    systems = np.asarray(systems, dtype=np.int64)
    n = len(systems)
    atoms = np.arange(n)
    samples = labels(["system", "atom"], np.stack([systems, atoms], 1).astype(np.int32))
    properties = labels(["n"], np.array([[0], [1]], dtype=np.int32))
    block = module.TensorBlock(np.arange(2.0 * n).reshape(n, 2), samples, [], properties)
    rows = np.stack([np.arange(n), systems, atoms], 1).astype(np.int32)
    block.add_gradient(
        "positions",
        module.TensorBlock(
            np.arange(6.0 * n).reshape(n, 3, 2) + 0.5,
            labels(["sample", "system", "atom"], rows),
            [labels(["xyz"], np.arange(3, dtype=np.int32).reshape(-1, 1))],
            properties,
        ),
    )
    return module.TensorMap(labels(["k"], np.array([[0]], dtype=np.int32)), [block])


def _digest(path: Path) -> str:
    """A hash of every file of a store (names and bytes)."""
    hasher = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        hasher.update(str(file.relative_to(path)).encode())
        hasher.update(file.read_bytes())
    return hasher.hexdigest()


@pytest.mark.parametrize(
    ("stored", "batch", "renumber", "expected"),
    [
        ([HIGH - 4], [0, 1, 2, 3], {"system": "next"}, [HIGH - 4, *range(HIGH - 3, HIGH + 1)]),
        ([HIGH], [-5, -4], {"system": 2**31}, [HIGH, HIGH - 4, HIGH - 3]),
        ([LOW], [LOW + 3], {"system": -2}, [LOW, LOW + 1]),
        ([LOW], [0], {"system": "next"}, [LOW, LOW + 1]),
    ],
)
def test_an_append_that_reaches_a_limit_is_written_exactly(
    tmp_path, stored, batch, renumber, expected
):
    path = tmp_path / "limits.zarr"
    _map(mtd, stored).to_zarr(path)
    _map(mtd, batch).to_zarr(path, append_dim="samples", renumber=renumber)
    shifted = metatensor.join(
        [_map(metatensor, stored), _map(metatensor, np.array(expected[len(stored) :]))],
        "samples",
    )
    assert_equal_to_metatensor(mtd.open_zarr(path), shifted)


@pytest.mark.parametrize(
    ("stored", "batch", "renumber", "match"),
    [
        (
            [HIGH],
            [0],
            {"system": "next"},
            r"'system' by 2147483648 \(one past the largest 'system' stored, for 'next'\) "
            r"goes past the int32 range of Labels: its values, from 0 to 0, would become "
            r"2147483648 to 2147483648, outside \[-2\*\*31, 2\*\*31 - 1\]; number 'system' "
            r"from 0 in each batch and renumber by a smaller offset, or write to another",
        ),
        ([HIGH - 3], [0, 1, 2, 3], {"system": "next"}, r"from 0 to 3, would become 2147483645 "),
        ([0], [HIGH - 1, HIGH], {"system": 2}, r"'system' by 2 goes past .* to 2147483649"),
        ([0], [LOW + 1, 5], {"system": -2}, r"would become -2147483649 to 3, outside"),
        ([0], [1], {"system": 2**70}, r"would become 1180591620717411303425 to "),
    ],
)
def test_an_append_that_would_wrap_around_is_refused_before_writing(
    tmp_path, stored, batch, renumber, match
):
    path = tmp_path / "limits.zarr"
    _map(mtd, stored).to_zarr(path)
    before = _digest(path)
    with pytest.raises(mtd.MetatensorDaskError, match=match):
        _map(mtd, batch).to_zarr(path, append_dim="samples", renumber=renumber)
    assert _digest(path) == before
    assert_equal_to_metatensor(mtd.open_zarr(path), _map(metatensor, stored))


def _near_the_limit(items):
    """A batch whose systems are already near the limit: renumbering by the index of
    its first item takes the fourth batch past it."""
    return _map(metatensor, [HIGH - 2 for _ in items])


def _from_zero(items):
    return _map(metatensor, [0 for _ in items])


def test_write_batches_refuses_the_batch_that_would_wrap_around(tmp_path):
    path = tmp_path / "batches.zarr"
    with dask.config.set(scheduler="synchronous"):
        with pytest.raises(
            mtd.MetatensorDaskError,
            match=r"batch 3 \(items 3 to 3, first item 3\) failed: .*'system' by 3 \(the index "
            r"of the batch's first item\) goes past the int32 range of Labels: its values, "
            r"from 2147483645 to 2147483645, would "
            r"become 2147483648 to 2147483648.*the 3 batches before it are committed",
        ):
            mtd.write_batches(_near_the_limit, list(range(5)), path, quiet=True)
        mtd.write_batches(_from_zero, list(range(5)), path, quiet=True, resume=True)
    systems = [HIGH - 2, HIGH - 1, HIGH, 3, 4]
    expected = metatensor.join([_map(metatensor, [s]) for s in systems], "samples")
    assert_equal_to_metatensor(mtd.open_zarr(path), expected)
