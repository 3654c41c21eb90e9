"""A damaged sample Labels chunk, computed on a ``distributed`` cluster: the user gets
the store's :class:`~metatensor_dask.errors.DamagedStoreError`, with the message the
same Labels give on threads, and nothing reaches the scheduler. Before, the client's
``TypeError`` ("Could not serialize object ...") was raised, the store's error being
only its ``__cause__``. A healthy store reads nothing more than before: on threads the
sample Labels stay unread.

A ``.mts`` file damaged the same way is refused when loaded (its Labels are read and
checked then), on a cluster as on threads.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import dask
import metatensor
import pytest
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor

pytestmark = pytest.mark.xdist_group("serial")

DAMAGED = "blocks/2/gradients/positions/samples"


def _tensor() -> metatensor.TensorMap:
    return make_metatensor(seed=5, n_samples=(6, 0, 7), n_properties=(2, 3, 1))


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x10
    path.write_bytes(bytes(data))


def _damaged_store(path: Path) -> Path:
    mtd.from_metatensor(_tensor()).to_zarr(path)
    (chunk,) = (path / DAMAGED).glob("c.*")
    _flip_last_byte(chunk)
    return path


def _threads_message(path: Path) -> str:
    """The message of the damaged Labels, first used after a threaded compute."""
    # the threaded scheduler's function: dask 2025.1 warns of scheduler="threads"
    # while a client is active
    computed = mtd.open_zarr(path).compute(scheduler=dask.threaded.get)
    with pytest.raises(mtd.DamagedStoreError) as raised:
        computed.block(2).gradient("positions").samples.values  # noqa: B018
    return str(raised.value)


def _transitions(client) -> int:
    return client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.transition_counter)


def test_damaged_samples_raise_the_store_error_before_anything_is_sent(tmp_path, client):
    path = _damaged_store(tmp_path / "damaged.zarr")
    message = _threads_message(path)
    assert DAMAGED in message
    before = _transitions(client)
    with pytest.raises(mtd.DamagedStoreError) as raised:
        mtd.open_zarr(path).compute()
    assert str(raised.value) == message
    assert _transitions(client) == before


def test_damaged_samples_raise_the_store_error_through_dask_compute(tmp_path, client):
    path = _damaged_store(tmp_path / "damaged.zarr")
    message = _threads_message(path)
    with pytest.raises(mtd.DamagedStoreError) as raised:
        dask.compute(mtd.open_zarr(path).block(2))
    assert str(raised.value) == message


def test_a_client_given_to_compute_is_recognised(tmp_path, client):
    from distributed import Client

    path = _damaged_store(tmp_path / "damaged.zarr")
    message = _threads_message(path)
    # dask's default is not a client here: only the one given to compute() is
    with (
        Client(client.scheduler.address, set_as_default=False) as other,
        dask.config.set(scheduler="threads"),
        pytest.raises(mtd.DamagedStoreError) as raised,
    ):
        mtd.open_zarr(path).compute(scheduler=other)
    assert str(raised.value) == message


def test_healthy_store_on_the_cluster_and_on_threads(tmp_path, client):
    expected = _tensor()
    path = tmp_path / "healthy.zarr"
    mtd.from_metatensor(expected).to_zarr(path)
    assert_equal_to_metatensor(mtd.open_zarr(path).compute(), expected)
    # with a client active, a threaded compute still reads no sample Labels (given as
    # the threaded scheduler's function: dask 2025.1 warns of scheduler="threads" then)
    computed = mtd.open_zarr(path).compute(scheduler=dask.threaded.get)
    assert not any(block.samples.is_loaded for block in computed.blocks())
    assert_equal_to_metatensor(computed, expected)


def _member_data_end(path: Path, name: str) -> int:
    """The offset just past the stored bytes of member ``name`` of the ZIP at ``path``."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    with path.open("rb") as file:
        file.seek(info.header_offset + 26)
        name_length, extra_length = struct.unpack("<HH", file.read(4))
    return info.header_offset + 30 + name_length + extra_length + info.compress_size


def test_damaged_mts_samples_are_refused_when_loaded(tmp_path, client):
    path = tmp_path / "damaged.mts"
    metatensor.save(str(path), _tensor())
    end = _member_data_end(path, "blocks/2/samples.npy")
    data = bytearray(path.read_bytes())
    data[end - 1] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(mtd.DamagedFileError, match=r"blocks/2/samples\.npy"):
        mtd.load(path)
