"""Chunks of plain arrays written from the memory of their rows, without encoding copies.

A plain chunk (see :func:`~metatensor_dask.io.zarr_codecs.is_plain`) is the C-order
bytes of its rows, padded with zeros to the chunk's size, then (with a checksum) the
crc32c of those bytes. Rather than copying each chunk into an encoded buffer, a chunk
is described here by its *parts*, views of the rows' own memory followed by the padding
and the checksum, and a local file is written from them (with ``writev``, in calls of
at most 128 KiB and 1,024 buffers: see :mod:`._file_writes`). Appends use
this, and so do the write tasks of ``to_zarr`` (:func:`write_regions`): a batch of tens
of MiB, or a 64 MiB chunk, would otherwise be copied once more into freshly allocated
memory, whose page faults cost more than writing the bytes to the page cache.

The zero padding of an edge chunk is a view of one buffer of zeros kept for the
process and never written (its pages all map the kernel's page of zeros): a local file
skips it, leaving a hole that reads as zeros, so that it costs neither fresh memory nor
page cache (an edge chunk of a batch is, on average, half padding).

The bytes stored are exactly those of
:func:`~metatensor_dask.io.zarr_codecs.encode_chunks`.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _page_cache
from ._crc32c_zeros import extend_zeros, replace_zeros
from ._direct_writes import suits as direct_writes_suit
from ._direct_writes import write_new_file
from ._file_holes import reads_as_zeros
from ._file_writes import open_own, write_all
from ._zarr_internals import sync
from .zarr_codecs import ChunkFormat, _dtype, _plain_format, chunk_key
from .zarr_layout import batch_record
from .zarr_store import ArrayRef, _bounded, _local_root, set_many, write_files

if TYPE_CHECKING:
    from zarr.abc.store import Store

__all__ = [
    "Kept",
    "Parts",
    "chunk_parts",
    "extend_files",
    "row_bytes",
    "trailing_crcs",
    "write_parts",
    "write_regions",
]

#: One encoded chunk: byte arrays whose concatenation is the chunk.
Parts = list[np.ndarray]


@dataclass(frozen=True)
class Kept:
    """The stored rows at the start of a chunk that an append extends in place: the
    ``size`` of their bytes, kept in the chunk's file, and ``crc``, the crc32c that the
    store lists for the chunk (these bytes followed by zeros: see
    :mod:`.zarr_in_place`)."""

    size: int
    crc: int


#: The buffers of zeros padding edge chunks (see :func:`_zeros`), the largest last.
#: The smaller ones are kept: parts made before a larger one was needed are views of
#: them, and must still be known as padding (their pages map the kernel's page of
#: zeros: they cost no memory).
_ZEROS: list[np.ndarray] = [np.zeros(0, np.uint8)]
#: The ``id`` of each buffer of :data:`_ZEROS` (kept alive there: an id is not reused).
_ZERO_IDS = {id(_ZEROS[0])}


def _zeros(count: int) -> np.ndarray:
    """``count`` zero bytes, a view of a buffer of :data:`_ZEROS` (a larger one made
    when too small, never written): no fresh memory for each padding, and
    :func:`_write` knows them (:func:`_is_padding`).

    A new buffer is known as padding before other threads can see it: registered
    after, the paddings that they took from it meanwhile were written as bytes of
    zeros rather than holes, and their checksums computed by reading them."""
    zeros = _ZEROS[-1]
    if zeros.size < count:
        zeros = np.zeros(max(count, 2 * zeros.size), np.uint8)
        zeros.flags.writeable = False
        _ZERO_IDS.add(id(zeros))
        _ZEROS.append(zeros)
    return zeros[:count]


def _is_padding(part: np.ndarray) -> bool:
    """Whether ``part`` is zeros of :func:`_zeros` (one look-up: an append asks it of
    each part of each chunk, thousands of times for batches of many small blocks)."""
    return id(part.base) in _ZERO_IDS


def row_bytes(values: Any, document: dict[str, Any]) -> np.ndarray:
    """The C-order little-endian bytes of ``values`` for the array ``document``, as a
    flat ``uint8`` view of their memory (a copy only when they are not already so)."""
    return _bytes_of(values, _dtype(document))


def _bytes_of(values: Any, dtype: np.dtype) -> np.ndarray:
    values = np.ascontiguousarray(values, dtype=dtype)
    return values.reshape(-1).view(np.uint8)


def _crc(parts: Parts) -> int:
    """The crc32c of the concatenated ``parts``; the zeros of :func:`_zeros` are
    accounted for without being read (see :mod:`._crc32c_zeros`)."""
    from crc32c import crc32c

    crc = 0
    for part in parts:
        crc = extend_zeros(crc, part.size) if _is_padding(part) else crc32c(part.data, crc)
    return crc


def _with_crc(parts: Parts, crc: int) -> Parts:
    return [*parts, np.frombuffer(crc.to_bytes(4, "little"), np.uint8)]


def chunk_parts(
    path: str,
    document: dict[str, Any],
    values: Any,
    first: int,
    stored: np.ndarray | None = None,
    kept: Kept | None = None,
    chunks: ChunkFormat | None = None,
) -> dict[str, Parts]:
    """The parts of the chunks holding ``values`` (rows of the array ``document`` at
    ``path``, from the start of chunk ``first``), by store key; ``chunks`` is
    :meth:`~metatensor_dask.io.zarr_codecs.ChunkFormat.of` the ``document``, when known.

    ``stored`` (bytes, see :func:`row_bytes`) are rows already stored at the start of
    chunk ``first``, which ``values`` follow. With ``kept`` instead, those rows are
    kept in the chunk's file and are not among its parts, which start with the new
    rows: its checksum follows from the one listed for it (see :class:`Kept`).
    """
    assert stored is None or kept is None, "stored rows are given or kept"
    encoding = chunks or _plain_format(document)
    checksum = encoding.checksum
    chunk = encoding.shape
    data = _bytes_of(values, encoding.dtype)
    if data.size == 0:
        return {}
    shape = np.shape(values)
    # chunks are wider than their array only along empty axes
    assert chunk[1:] == tuple(shape[1:]), "a chunk holds whole rows"
    row_size = data.size // int(shape[0])
    chunk_size = encoding.size
    before = stored.size if stored is not None else kept.size if kept is not None else 0
    found: dict[str, Parts] = {}
    position, index = 0, first
    while position < data.size:
        room = chunk_size - (before if index == first else 0)
        piece = data[position : position + room]
        parts = [stored, piece] if index == first and stored is not None else [piece]
        if piece.size < room:
            parts.append(_zeros(room - piece.size))
        if index == first and kept is not None:
            assert checksum, "a chunk extended in place has its checksum listed"
            parts = _with_crc(parts, replace_zeros(kept.crc, room, _crc(parts)))
        elif checksum:
            parts = _with_crc(parts, _crc(parts))
        found[f"{path}/{chunk_key(index, len(chunk))}"] = parts
        position += piece.size
        index += 1
    assert (chunk_size - before) % row_size == 0, "stored rows are whole rows"
    return found


def _write(
    name: Any, parts: Parts, write_back: bool = False, kept: int = 0, direct: bool = False
) -> None:
    """Write a file from ``parts``; the padding of :func:`_zeros` is skipped (a hole).
    With ``write_back``, its write to disk starts at once (see :mod:`._page_cache`).
    With ``direct``, a new file of at least :data:`~._page_cache.SMALLEST_FILE` bytes
    is written past the page cache where the file system allows it (see
    :mod:`._direct_writes`).

    With ``kept``, the file exists and its first ``kept`` bytes are kept as they are,
    and the parts are written from there (see :func:`_cut_unless_clean`). Without, a
    file with other names (hard links) is created anew, not written into (see
    :func:`~._file_writes.open_own`)."""
    if direct and not kept and sum(part.size for part in parts) >= _page_cache.SMALLEST_FILE:
        pieces = [part.size if _is_padding(part) else part.data for part in parts if part.size]
        if write_new_file(str(name), pieces) is not None:
            return
    if kept:
        descriptor = os.open(name, os.O_RDWR)
    else:
        descriptor = open_own(str(name))
    try:
        if kept:
            _cut_unless_clean(descriptor, kept, parts)
            os.lseek(descriptor, kept, os.SEEK_SET)
        pending: list[memoryview] = []
        size = kept
        for part in parts:
            if part.size and _is_padding(part):
                size += write_all(descriptor, pending)
                pending = []
                size = os.lseek(descriptor, part.size, os.SEEK_CUR)
            elif part.size:
                pending.append(part.data)
        size += write_all(descriptor, pending)
        if parts and _is_padding(parts[-1]):
            # a hole at the end: the file's size, which a seek does not set
            os.ftruncate(descriptor, size)
        if write_back:
            _page_cache.start_write_back(descriptor, size, str(name))
    finally:
        os.close(descriptor)


def _cut_unless_clean(descriptor: int, kept: int, parts: Parts) -> None:
    """Cut the file after its first ``kept`` bytes, unless what ``parts`` leave of it
    (written after them, their padding skipped) already reads as the parts: the file
    ends where they do, and where their padding falls it reads as zeros.

    What a batch killed while it extended the chunk wrote is then removed, and the
    holes of the padding read as zeros. A file as the last batch left it needs no
    cut: on ext4, cutting a file whose last bytes are being written to disk waits for
    them (milliseconds, in the serial commit of a batch)."""
    end = kept + sum(part.size for part in parts)
    clean = os.fstat(descriptor).st_size <= end
    position = kept
    for part in parts:
        if clean and part.size and _is_padding(part):
            clean = reads_as_zeros(descriptor, position, position + part.size)
        position += part.size
    if not clean:
        os.ftruncate(descriptor, kept)


def _replace_file(name: str, parts: Parts, write_back: bool = False, direct: bool = False) -> None:
    """Write the file ``name`` from ``parts`` (see :func:`_write`) atomically: into a
    temporary file renamed over it, so that readers see the old file or the new one.
    A write that fails removes its temporary file (one killed leaves it, for the writer
    taking its lock over, see :func:`~.zarr_store.remove_temporaries`)."""
    temporary = f"{name}.{uuid.uuid4().hex}.partial"
    try:
        _write(temporary, parts, write_back, direct=direct)
        os.replace(temporary, name)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def write_parts(
    store: Store,
    items: dict[str, Parts],
    atomic: bool = False,
    drop_behind: int | None = None,
) -> None:
    """Store each chunk given by its parts; with ``atomic``, each replaces the stored one
    at once (on local disks: written to a temporary file renamed over it).

    ``drop_behind`` (bytes, see :mod:`._page_cache`): local files are dropped from the
    page cache once on disk, but for the newest files of this process holding at most
    this many bytes; those of 1 MiB or more are written past it on local disks when
    the ``direct-writes`` setting says so (see :mod:`._direct_writes`).
    """
    root = _local_root(store)
    if root is None or store.read_only:
        set_many(
            store, {key: b"".join(p.data for p in parts) for key, parts in items.items()}, atomic
        )
        return
    write = _replace_file if atomic else _write
    # from a few threads: replacing a file waits for the file system to free the old
    # one's blocks, milliseconds each on some disks, and an append replaces the last
    # chunk of every array it extends
    dropped = drop_behind is not None
    direct = dropped and direct_writes_suit(str(root))
    write_files(root, items, partial(write, write_back=dropped, direct=direct), atomic)
    if drop_behind is not None:
        for key, parts in items.items():
            size = sum(part.size for part in parts if not _is_padding(part))
            _page_cache.written(f"{root}/{key}", size, drop_behind)


def extend_files(
    store: Store, items: dict[str, tuple[Parts, int]], drop_behind: int | None
) -> None:
    """Write chunks of a local store in place, from a few threads (``items``: key to
    the parts written after the first bytes of its file and the number of those bytes,
    kept, see :func:`_write`); ``drop_behind`` as in :func:`write_parts`."""
    root = _local_root(store)
    assert root is not None, "chunks are extended in place in local stores only"

    def extend(name: str, item: tuple[Parts, int]) -> None:
        _write(name, item[0], drop_behind is not None, kept=item[1])

    write_files(root, items, extend, waits=True)
    if drop_behind is not None:
        for key, (parts, _) in items.items():
            size = sum(part.size for part in parts if not _is_padding(part))
            _page_cache.written(f"{root}/{key}", size, drop_behind)


def trailing_crcs(chunks: dict[str, Parts]) -> dict[str, int]:
    """The crc32c ending each chunk (by key) of an array whose chunks end with one (the
    last part of each, see :func:`chunk_parts`)."""
    return {key: int.from_bytes(parts[-1].tobytes(), "little") for key, parts in chunks.items()}


def write_regions(
    refs: list[ArrayRef],
    regions: list[tuple[slice, ...]],
    data: list[np.ndarray],
    markers: list[str],
    drop_behind: int | None = None,
) -> dict[str, int]:
    """A dask task: store chunks (or shards) of several arrays, then record them
    (``markers``, see :func:`~metatensor_dask.io.zarr_layout.progress_marker`) in one
    record (see :func:`~metatensor_dask.io.zarr_layout.batch_record`). Returns the
    crc32c ending each plain chunk file it stored with a checksum, by key.

    Small chunks of many small blocks are grouped into one task, stored concurrently
    where their files are slow to write (see :func:`~.zarr_store.write_files`); plain
    chunks are written from the memory of their rows (see :func:`chunk_parts`), and
    leave the page cache once on disk with ``drop_behind`` (see :func:`write_parts`).
    """

    async def write(ref: ArrayRef, region: tuple[slice, ...], values: np.ndarray) -> None:
        await ref.async_array().setitem(region, values)

    plain: dict[str, Parts] = {}
    crcs: dict[str, int] = {}
    others = []
    for ref, region, values in zip(refs, regions, data, strict=True):
        chunks = ChunkFormat.of(ref.document)
        if chunks is not None:
            first = region[0].start // chunks.shape[0]
            parts = chunk_parts(ref.path, ref.document, values, first, chunks=chunks)
            plain.update(parts)
            if chunks.checksum:
                crcs.update(trailing_crcs(parts))
        else:
            others.append((ref, region, values))
    write_parts(refs[0].store, plain, drop_behind=drop_behind)
    if others:  # (a round trip to zarr's event loop otherwise)
        sync(_bounded(write(*item) for item in others))
    set_many(refs[0].store, batch_record(markers))
    return crcs
