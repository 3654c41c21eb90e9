"""The partial last chunk of a values array extended in place by the batches of
:func:`~metatensor_dask.io.ingest.write_batches`.

An append rewrites the partial chunk its rows start in, with its stored rows, into a
temporary file renamed over it, so that readers see the old chunk or the new one. A run
of ``write_batches`` has no readers (its store is incomplete until its last batch is
committed), so there, the rows of a values array that lists its chunks' checksums
(format 4, see :mod:`.zarr_identity`) are written into the chunk file itself, after
its stored rows, and the chunk's crc32c at its end: no stored byte is read or written
again and no file replaced. Both cost: an append of a few rows to many blocks replaces
one file per array, and on some file systems each replacement waits milliseconds for
the blocks of the old file to be freed; a batch of large structures starts, on
average, in half a chunk of gradients (megabytes), which would be read back from disk.

The root committed before a batch lists the chunk as it was: the crc32c of its stored
rows followed by the zeros padding it. The new chunk's crc32c follows from that one and
from the crc32c of what replaces the zeros (see :mod:`._crc32c_zeros`), so that the
stored rows are not read (:func:`kept_rows`). The new rows and the checksum are
written after them; where a batch killed while it wrote there left bytes that these
do not overwrite, the file is cut right after the stored rows first, so that the
padding is zeros again (see :func:`~.zarr_rows.extend_files`).

Damage to the stored rows is therefore not found by the batch: the chunk it leaves
then holds bytes whose crc32c is not the one it ends with, which every reader refuses
(``open_zarr`` and its computations, ``verify``). While the run is unfinished, ``verify``
checks the stored rows of such a chunk against the checksum listed for it
(:func:`stored_head`).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import DamagedStoreError
from ._crc32c_zeros import extend_zeros
from .zarr_codecs import _chunk_shape, _dtype, chunk_key, is_plain
from .zarr_identity import TABLE, chunk_name
from .zarr_integrity import damaged
from .zarr_rows import Kept

__all__ = ["extended_in_place", "kept_rows", "stored_head"]


def _listed_crc(path: str, document: dict[str, Any], index: int) -> int | None:
    """The checksum that the array's table lists for its chunk ``index``, ``None`` when
    the array has no table, or is not a values array (then its partial chunk is
    replaced, not extended)."""
    if not path.endswith("/values"):
        return None
    table = (document.get("attributes") or {}).get(TABLE)
    if not isinstance(table, list) or index >= len(table):
        return None
    return int(table[index])


def _partial_chunk(path: str, document: dict[str, Any], stored: int) -> tuple[int, int, int] | None:
    """The chunk that row ``stored`` of a plain values array starts in, when the rows
    before it fill it in part and its table lists it: its index, the bytes of its
    stored rows and its listed checksum; ``None`` otherwise."""
    rows = int(document["chunk_grid"]["configuration"]["chunk_shape"][0])
    head, index = stored % rows, stored // rows
    if not head or not all(document["shape"][1:]) or not is_plain(document):
        return None
    crc = _listed_crc(path, document, index)
    if crc is None:
        return None
    return index, head * int(np.prod(document["shape"][1:])) * _dtype(document).itemsize, crc


def extended_in_place(path: str, document: dict[str, Any]) -> bool:
    """Whether a run of ``write_batches`` extends the last chunk of the array in place."""
    return _partial_chunk(path, document, int(document["shape"][0])) is not None


def stored_head(
    root: str, where: str, path: str, document: dict[str, Any], stored: int
) -> tuple[str, np.ndarray] | None:
    """The key and the bytes of the rows before row ``stored`` in the chunk that row
    starts in (a local store at ``root``), checked against the checksum the table lists
    for it (that of these bytes followed by the chunk's zero padding: its file may end
    with what a killed batch wrote after them); ``None`` when they fill no chunk in part,
    or no table lists it.

    Raises
    ------
    DamagedStoreError
        The chunk is missing, shorter, or its stored rows are not those listed.
    """
    from crc32c import crc32c

    found = kept_rows(root, where, path, document, stored)
    if found is None:
        return None
    key, kept = found
    with open(f"{root}/{key}", "rb", buffering=0) as opened:  # found by kept_rows
        data = np.frombuffer(os.pread(opened.fileno(), kept.size, 0), np.uint8)
    padding = int(np.prod(_chunk_shape(document))) * _dtype(document).itemsize - kept.size
    if data.size != kept.size or extend_zeros(crc32c(data.data), padding) != kept.crc:
        rows = int(document["chunk_grid"]["configuration"]["chunk_shape"][0])
        name = chunk_name(path, document, stored // rows)
        raise _damaged(where, path, name, "does not hold the rows the store lists")
    return key, data


def kept_rows(
    root: str, where: str, path: str, document: dict[str, Any], stored: int
) -> tuple[str, Kept] | None:
    """The key of the chunk that row ``stored`` starts in (a local store at ``root``),
    with the bytes of the rows before it and the checksum the table lists for it, to
    be kept in its file and extended; ``None`` when they fill no chunk in part, or no
    table lists it. The rows are not read (see the module's documentation).

    Raises
    ------
    DamagedStoreError
        The chunk is missing or shorter than its stored rows.
    """
    found = _partial_chunk(path, document, stored)
    if found is None:
        return None
    index, size, crc = found
    key = f"{path}/{chunk_key(index, len(document['shape']))}"
    try:
        held = os.stat(f"{root}/{key}").st_size
    except (FileNotFoundError, NotADirectoryError):
        raise _damaged(where, path, chunk_name(path, document, index), "is missing") from None
    if held < size:
        name = chunk_name(path, document, index)
        raise _damaged(where, path, name, f"holds {held} bytes, not its {size} stored")
    return key, Kept(size, crc)


def _damaged(where: str, path: str, name: str, what: str) -> DamagedStoreError:
    return damaged(where, f"the chunk {name} of the array '{path}' {what}")
