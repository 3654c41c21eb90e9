"""An append checks every Labels document it reads: one equal (by ``==``) to a valid
document of another block, but not of the same JSON types (``false`` or ``0.0`` for
``0``), is refused as damaged, as a store read from scratch refuses it."""

from __future__ import annotations

import dask
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask.errors import DamagedStoreError
from metatensor_dask.io import zarr_root_cache


def _tensor(first: int, keys: list[int]) -> metatensor.TensorMap:
    """Blocks of the same two samples (numbered from ``first``), so that their samples
    documents are written byte for byte the same."""
    samples = metatensor.Labels(["system"], np.arange(first, first + 2, dtype=np.int32)[:, None])
    blocks = [
        metatensor.TensorBlock(
            np.full((2, 2), float(k)), samples, [], metatensor.Labels.range("p", 2)
        )
        for k in keys
    ]
    return metatensor.TensorMap(metatensor.Labels(["k"], np.array(keys, np.int32)[:, None]), blocks)


def _append(path, tensor: metatensor.TensorMap) -> None:
    with dask.config.set(scheduler="synchronous"):
        mtd.from_metatensor(tensor).to_zarr(path, append_dim="samples")


@pytest.mark.parametrize("written", [b'"rows":false,', b'"rows":0.0,'])
def test_a_labels_document_equal_to_a_valid_one_is_checked(tmp_path, written):
    path = tmp_path / "equal.zarr"
    _append(path, _tensor(0, [0, 1, 2, 3]))
    raw = (path / "zarr.json").read_bytes()
    at = raw.index(b'"blocks/2/samples":')
    end = raw.index(b'"blocks/3"', at)
    assert raw[at:end].count(b'"rows":0,') == 1
    edited = raw[:at] + raw[at:end].replace(b'"rows":0,', written) + raw[end:]
    (path / "zarr.json").write_bytes(edited)
    zarr_root_cache._RUNS_READ.clear()  # as a process that has not read the root
    with pytest.raises(DamagedStoreError, match="'blocks/2/samples' has no valid 'chain'"):
        _append(path, _tensor(2, [0, 4]))
    assert (path / "zarr.json").read_bytes() == edited


@pytest.mark.parametrize("place", [b"{", b'"blocks/1/values":{'])
@pytest.mark.parametrize("warm", [False, True])
def test_values_nested_deeper_than_the_stack_are_damage(tmp_path, place, warm):
    """A root holding values nested deeper than Python's stack allows (in its own
    document, or in a node's) is a damaged store for readers and appends, not a
    ``RecursionError``; the refused append writes nothing."""
    path = tmp_path / "deep.zarr"
    _append(path, _tensor(0, [0, 1]))
    if not warm:
        zarr_root_cache._RUNS_READ.clear()  # as a process that has not read the root
    raw = (path / "zarr.json").read_bytes()
    deep = b'"deep":' + b"[" * 100_000 + b"]" * 100_000 + b","
    at = raw.index(place) + len(place)  # (the root's own document opens the file)
    edited = raw[:at] + deep + raw[at:]
    (path / "zarr.json").write_bytes(edited)
    with pytest.raises(DamagedStoreError, match=r"'zarr.json' can not be read .*recursion"):
        mtd.open_zarr(path)
    with pytest.raises(DamagedStoreError, match=r"'zarr.json' can not be read .*recursion"):
        _append(path, _tensor(2, [0, 2]))
    assert (path / "zarr.json").read_bytes() == edited
