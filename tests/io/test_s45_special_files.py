"""Unusual locations: a named pipe in place of a chunk of a compressed or sharded array
(such chunks are read through zarr's own store, which opened the pipe and waited for a
writer forever: it is a missing chunk, as it is for arrays of plain chunks), and URLs
of a protocol no file system is known for."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import dask
import pytest
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd

SETTINGS = {
    "zstd": {"metatensor_dask.compressor": "zstd"},
    "sharded": {"metatensor_dask.shard-chunks": 2},
    "sharded zstd": {"metatensor_dask.compressor": "zstd", "metatensor_dask.shard-chunks": 2},
}

#: long enough for a read of a small store on a loaded machine, not for a hang
PATIENCE = 60


def _refused_without_hanging(store: Path, chunk: Path) -> BaseException | None:
    """What reading every chunk of ``store`` raised (``None`` if nothing), read in a
    thread; a read still waiting after :data:`PATIENCE` seconds is let go (the pipe is
    opened and closed for writing, which ends its wait) and fails the test."""
    raised: list[BaseException | None] = [None]

    def read() -> None:
        try:
            with dask.config.set(scheduler="synchronous"):
                mtd.to_metatensor(mtd.open_zarr(store))
        except BaseException as error:  # given to the test's thread
            raised[0] = error

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(PATIENCE)
    if thread.is_alive():
        os.close(os.open(chunk, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"reading a store with a named pipe in place of {chunk.name} waited for it")
    return raised[0]


@pytest.mark.parametrize("codecs", sorted(SETTINGS))
def test_a_named_pipe_in_place_of_an_encoded_chunk_is_a_missing_chunk(tmp_path, codecs):
    store = tmp_path / "t.zarr"
    with dask.config.set(SETTINGS[codecs]):
        tensor = make_metatensor(seed=1, n_samples=(12, 8), n_properties=(3, 3))
        mtd.from_metatensor(tensor).to_zarr(store, chunks=4)
    chunk = store / "blocks" / "0" / "values" / "c.1.0.0"
    chunk.unlink()
    os.mkfifo(chunk)
    raised = _refused_without_hanging(store, chunk)
    assert isinstance(raised, mtd.DamagedStoreError), raised
    assert "'c.1.0.0'" in str(raised) and "is missing" in str(raised)
    assert any("is missing" in problem for problem in mtd.verify(store).problems)


@pytest.mark.parametrize("mode", ["read", "write"])
def test_an_unknown_url_protocol_names_the_remedy(mode):
    # fsspec's own message, "Protocol not known: bogus", named no remedy
    with pytest.raises(mtd.MetatensorDaskError, match=r"protocol 'bogus' .* check its spelling"):
        if mode == "read":
            mtd.open_zarr("bogus://t.zarr")
        else:
            tensor = make_metatensor(seed=1, n_samples=(2,), n_properties=(1,), nested=False)
            mtd.from_metatensor(tensor).to_zarr("bogus://t.zarr")
