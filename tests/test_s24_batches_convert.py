"""``convert SRC... DST --append`` of random files against metatensor's join: keys that
come and go between files, files without blocks or rows, gradients with several
parameters, float32, ``--renumber`` on another dimension than ``"system"`` or none,
``.mts`` and Zarr sources mixed, appended in one or two commands; and sources refused
before ``DST`` is created."""

from __future__ import annotations

import metatensor
import numpy as np
import pytest
from ingest_support import renumbered
from test_s24_batches_generated import RandomBatches

import metatensor_dask as mtd
from metatensor_dask.execution.cli import main
from metatensor_dask.testing import assert_equal_to_metatensor


def largest(tensor: metatensor.TensorMap, dimension: str) -> int | None:
    found = [int(np.max(b.samples.column(dimension))) for b in tensor.blocks() if len(b.samples)]
    return max(found, default=None)


def expected(tensors: list[metatensor.TensorMap], renumber: str | None) -> metatensor.TensorMap:
    """The join of ``tensors``, each shifted past the largest ``renumber`` before it."""
    parts, top = [], None
    for tensor in tensors:
        if renumber is not None:
            tensor = renumbered(tensor, 0 if top is None else top + 1, renumber)
            found = largest(tensor, renumber)
            if found is not None:  # a file without samples leaves the numbering as is
                top = found if top is None else max(top, found)
        parts.append(tensor)
    return metatensor.join(parts, axis="samples", different_keys="union")


@pytest.mark.parametrize("seed", range(6))
def test_random_files_appended_equal_the_join(tmp_path, seed):
    rng = np.random.default_rng([seed, 2])
    dimension = str(rng.choice(["system", "structure"]))
    renumber = None if seed % 3 == 0 else dimension
    function = RandomBatches(
        seed,
        dimension=dimension,
        dtype=str(rng.choice(["float64", "float32"])),
        gradients=[("positions",), ("positions", "strain"), ()][seed % 3],
        absolute=renumber is None,
        last=bool(seed % 2),
    )
    tensors, sources = [], []
    for i in range(int(rng.integers(2, 5))):
        items = list(range(10 * i, 10 * i + int(rng.integers(1, 4))))
        tensors.append(function(items))
        path = tmp_path / f"{i}.mts"
        metatensor.save(str(path), tensors[-1])
        if rng.random() < 0.4:  # as a Zarr store
            assert main(["convert", str(path), str(tmp_path / f"{i}.zarr"), "--quiet"]) == 0
            path = tmp_path / f"{i}.zarr"
        sources.append(str(path))
    destination = tmp_path / "out.zarr"
    options = ["--append", "--quiet"] + ([] if renumber is None else ["--renumber", renumber])
    cut = int(rng.integers(0, len(sources)))  # the first ones in a command of their own
    for group in (sources[:cut], sources[cut:]):
        if group:
            assert main(["convert", *group, str(destination), *options]) == 0
    assert_equal_to_metatensor(mtd.open_zarr(destination).compute(), expected(tensors, renumber))
    assert mtd.verify(destination).ok


@pytest.mark.parametrize("problem", ["missing", "damaged", "not a metatensor file"])
def test_a_source_that_can_not_be_read_is_refused_before_the_store_is_created(
    tmp_path, capsys, problem
):
    function = RandomBatches(3, gradients=("positions",))
    first, second = tmp_path / "a.mts", tmp_path / "b.mts"
    metatensor.save(str(first), function([0, 1, 2]))
    if problem == "damaged":
        metatensor.save(str(second), function([3, 4, 5]))
        data = bytearray(second.read_bytes())
        data[len(data) // 3] ^= 0xFF
        second.write_bytes(bytes(data))
    elif problem == "not a metatensor file":
        second.write_text("not a zip archive")
    destination = tmp_path / "out.zarr"
    command = ["convert", str(first), str(second), str(destination), "--append", "--quiet"]
    assert main([*command, "--renumber", "system"]) == 1
    assert "b.mts" in capsys.readouterr().err
    assert not destination.exists()
