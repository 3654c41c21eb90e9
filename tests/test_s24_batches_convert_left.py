"""convert: a source found damaged while it streams names what the write left in the
destination, and the remedies."""

from __future__ import annotations

import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.execution.cli import main


def tensor(start: int, n: int) -> metatensor.TensorMap:
    samples = np.arange(start, start + n, dtype=np.int32).reshape(n, 1)
    block = metatensor.TensorBlock(
        np.arange(n * 3, dtype=np.float64).reshape(n, 3),
        metatensor.Labels(["system"], samples),
        [],
        metatensor.Labels.range("p", 3),
    )
    return metatensor.TensorMap(metatensor.Labels.range("k", 1), [block])


def damaged_store(tmp_path):
    """A Zarr source, one of whose values chunks is damaged, and how to repair it."""
    path = tmp_path / "source.zarr"
    mtd.from_metatensor(tensor(0, 20)).to_zarr(path, chunks=5)
    chunk = path / "blocks" / "0" / "values" / "c.2.0"
    good = chunk.read_bytes()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    chunk.write_bytes(bytes(bad))
    return path, lambda: chunk.write_bytes(good)


@pytest.mark.parametrize("append", [True, False])
def test_a_source_damaged_while_it_streams_names_the_destination_left(tmp_path, capsys, append):
    source, repair = damaged_store(tmp_path)
    first = tmp_path / "first.mts"
    metatensor.save(str(first), tensor(0, 4))
    destination = tmp_path / "out.zarr"
    sources = [str(first), str(source)] if append else [str(source)]
    options = ["--append", "--renumber", "system"] if append else []
    assert main(["convert", *sources, str(destination), "--quiet", *options]) == 1
    message = capsys.readouterr().err
    assert "source.zarr is damaged" in message
    if append:
        assert "out.zarr is left with this append unfinished: finish it with the same " in message
        assert "--resume once the sources can be read" in message
        assert "metatensor_dask.discard_append" in message
    else:
        assert "out.zarr is left incomplete: finish it with the same command" in message
        assert "--overwrite" in message
    repair()
    assert main(["convert", *sources, str(destination), "--quiet", "--resume", *options]) == 0
    assert mtd.verify(destination).ok
