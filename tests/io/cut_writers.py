"""Writes killed (SIGKILL) at chosen moments, for the race tests: each runs in a
process of its own (see ``forked_process``), which it kills itself at that moment."""

from __future__ import annotations

import os
import signal

import dask
import metatensor
from race_process import CHUNKS, race_tensor
from zarr_writer_process import make_metatensor

import metatensor_dask as mtd
from metatensor_dask.io import zarr_append


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _append(path: str, seed: int) -> None:
    mtd.from_metatensor(race_tensor(seed)).to_zarr(
        path, append_dim="samples", renumber={"system": "next"}, chunks=CHUNKS
    )


def cut_while_writing_documents(path: str, what: str) -> None:
    """Append ``race_tensor(1)`` to the store ``path`` (or, with ``what`` ``"batches"``
    or ``"first-batch"``, run write_batches into it), killed while it writes its node
    documents (of its second batch, or its first): the others are written, the first
    one is left cut short, as a kill in the middle of its write leaves it."""
    original = zarr_append._store_documents
    commits = []

    def cut(store, items, *args, **kwargs):
        if items and all(key.endswith("/zarr.json") for key in items):
            commits.append(1)
            if len(commits) == (2 if what == "batches" else 1):
                (key, value), *others = items.items()
                original(store, dict(others))
                original(store, {key: value[: len(value) // 2]})
                _die()
        return original(store, items, *args, **kwargs)

    zarr_append._store_documents = cut
    if what == "append":
        _append(path, 1)
    else:
        mtd.write_batches(
            lambda items: race_tensor(items[0]), [1, 2, 3], path, chunks=CHUNKS, quiet=True
        )


def killed_at(path: str, seed: int, moment: str) -> None:
    """Append ``race_tensor(seed)`` to the store ``path``, killed at the ``moment``:
    ``cleaning``, once committed, while it deletes its records, the record of the
    append gone and the chunk records not yet; or ``recorded``, once the append is
    recorded, before it stores anything."""
    set_many, delete_prefix = zarr_append.set_many, zarr_append.delete_prefix

    def cleaning(store, prefix):
        record = os.path.join(path, zarr_append.RECORD)
        if not os.path.exists(record):  # before the append is recorded
            return delete_prefix(store, prefix)
        os.unlink(record)
        _die()

    def recorded(store, items, *args, **kwargs):
        set_many(store, items, *args, **kwargs)
        if zarr_append.RECORD in items:
            _die()

    if moment == "cleaning":
        zarr_append.delete_prefix = cleaning
    else:
        zarr_append.set_many = recorded
    _append(path, seed)


def _dying_when(name: str, when) -> None:
    """``zarr_append.<name>`` kills this process, when ``when(*its arguments)``."""
    original = getattr(zarr_append, name)

    def wrapped(*args, **kwargs):
        if when(*args):
            _die()
        return original(*args, **kwargs)

    setattr(zarr_append, name, wrapped)


def killed_at_step(path: str, moment: str) -> None:
    """Append ``make_metatensor(1)`` to the store ``path`` (3 rows per chunk), killed
    when the append reaches the step ``moment`` of its commit: ``tail``, while it
    replaces a partial last chunk; ``documents``, the data and the node documents
    stored, not the root; ``records``, committed, the records of the append not yet
    deleted."""
    if moment == "tail":
        _dying_when("_replace", lambda store, items: "zarr.json" not in items)
    if moment == "documents":
        _dying_when("_replace", lambda store, items: "zarr.json" in items)
    if moment == "records":
        _dying_when(
            "delete_prefix",
            lambda store, prefix: os.path.exists(f"{path}/{zarr_append.RECORD}"),
        )
    mtd.from_metatensor(make_metatensor(1)).to_zarr(
        path, append_dim="samples", renumber={"system": "next"}, chunks=3
    )
    print("done")


def append_loaded(store: str, source: str, settings: dict) -> None:
    """Append the map that metatensor loads from the file ``source`` to the store
    ``store`` (with the dask ``settings``, 2 rows per chunk); prints ``ready`` once
    loaded, ``done`` once appended."""
    tensor = mtd.from_metatensor(metatensor.load(source))
    print("ready", flush=True)
    with dask.config.set(settings):
        tensor.to_zarr(store, append_dim="samples", renumber={"system": "next"}, chunks=2)
    print("done", flush=True)
