"""Seeded fuzzing of metatensor files: damaged bytes never give wrong numbers.

Each case changes a real file with gradients (bit flips, truncations, overwritten
spans, inserted and deleted bytes). Reading it (load, then computing the whole map, and
:func:`check_file`) must either raise one of the package's named errors or give exactly
the original data: no silent wrong result, no raw exception from deep inside.
"""

from __future__ import annotations

from pathlib import Path

import dask
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.datasets import featomic_like, tutorial_file
from metatensor_dask.io.mts import check_file

# named errors: metatensor's (DamagedFileError is one) and metatensor-dask's own
NAMED = (mtd.MetatensorError, mtd.MetatensorDaskError)


def _flip(data: bytes, rng: np.random.Generator) -> bytes:
    changed = bytearray(data)
    changed[rng.integers(len(data))] ^= 1 << int(rng.integers(8))
    return bytes(changed)


def _truncate(data: bytes, rng: np.random.Generator) -> bytes:
    return data[: rng.integers(len(data))]


def _overwrite(data: bytes, rng: np.random.Generator) -> bytes:
    start = int(rng.integers(len(data)))
    span = rng.bytes(int(rng.integers(1, 16)))
    return data[:start] + span + data[start + len(span) :]


def _insert(data: bytes, rng: np.random.Generator) -> bytes:
    start = int(rng.integers(len(data)))
    return data[:start] + rng.bytes(int(rng.integers(1, 8))) + data[start:]


def _delete(data: bytes, rng: np.random.Generator) -> bytes:
    start = int(rng.integers(len(data)))
    return data[:start] + data[start + int(rng.integers(1, 8)) :]


EDITS = {"flip": (_flip, 100), "truncate": (_truncate, 20), "overwrite": (_overwrite, 40)}
EDITS.update({"insert": (_insert, 20), "delete": (_delete, 20)})


def _same(tensor: mtd.TensorMap, expected: metatensor.TensorMap) -> bool:
    """Whether ``tensor`` (computed) holds exactly ``expected``: labels, dtypes, bits."""
    if tensor.keys.names != expected.keys.names or not np.array_equal(
        tensor.keys.values, expected.keys.values
    ):
        return False
    return all(_same_block(a, b) for a, b in zip(tensor.blocks(), expected.blocks(), strict=True))


def _same_block(block, expected) -> bool:
    labels = [(block.samples, expected.samples), (block.properties, expected.properties)]
    labels += list(zip(block.components, expected.components, strict=True))
    for mine, theirs in labels:
        if mine.names != theirs.names or not np.array_equal(mine.values, theirs.values):
            return False
    values = np.asarray(block.values)
    if values.dtype != expected.values.dtype or values.tobytes() != expected.values.tobytes():
        return False
    if sorted(block.gradients_list()) != sorted(expected.gradients_list()):
        return False
    return all(
        _same_block(block.gradient(p), expected.gradient(p)) for p in expected.gradients_list()
    )


def _verdict(path: Path, expected: metatensor.TensorMap, chunks: int | None) -> str:
    """``"error"`` for a named error, ``"same"`` for the original data; anything else
    fails the test."""
    try:
        with dask.config.set(scheduler="sync"):
            tensor = mtd.load(path, chunks=chunks).compute()
    except NAMED:
        loaded = "error"
    else:
        assert _same(tensor, expected), f"{path}: wrong data returned without an error"
        loaded = "same"
    try:
        check_file(path)
    except NAMED:
        return "error"
    assert loaded == "same", f"{path}: check_file accepts a file that does not load"
    return loaded


@pytest.fixture(scope="module", params=["spherical-expansion", "float32"])
def source(request, tmp_path_factory) -> Path:
    """The tutorial file (float64), or a small featomic-like map of float32 with
    gradients written by metatensor-dask."""
    if request.param == "spherical-expansion":
        return Path(tutorial_file("spherical-expansion.npz"))
    path = tmp_path_factory.mktemp("fuzz") / "float32.mts"
    tensor = featomic_like(2, 3, neighbors=(2, 3), dtype=np.float32)
    properties = tensor.block(0).properties
    few = mtd.Labels(properties.names, properties.values[:4])
    mtd.save(path, mtd.slice(tensor, "properties", few))
    return path


@pytest.mark.parametrize("edit", list(EDITS))
def test_damaged_bytes_never_give_wrong_numbers(tmp_path, source, edit):
    original = source.read_bytes()
    expected = metatensor.load(str(source))
    function, count = EDITS[edit]
    rng = np.random.default_rng(list(EDITS).index(edit))
    verdicts = {"error": 0, "same": 0}
    for case in range(count):
        path = tmp_path / f"{edit}-{case}.npz"
        path.write_bytes(function(original, rng))
        # one value row per chunk: members of several chunks, checked by combining CRCs
        ours = _verdict(path, expected, chunks=[None, 1][case % 2])
        verdicts[ours] += 1
    assert verdicts["error"] > 0
