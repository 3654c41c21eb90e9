"""Writing metatensor files: the archive is laid out first (every member is STORED, so
its size is known), then each piece of data is written at its offset, dask chunks in
dask tasks, into a temporary file renamed over the target at the end.
"""

from __future__ import annotations

import math
import os
import secrets
import zlib
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
from dask.utils import parse_bytes

from .. import _graph, config
from .._gc import collector_paused
from ..block import TensorBlock
from ..errors import MetatensorDaskError
from ..labels import Labels
from . import _mts_integrity, _npy, _zip
from ._names import check_path_component

__all__ = ["Entry", "block_entries", "labels_bytes", "write_atomically"]


@dataclass
class Entry:
    """One archive member: its name and its pieces, bytes or arrays, in order."""

    name: str
    pieces: list[Any]

    @property
    def size(self) -> int:
        return sum(len(p) if isinstance(p, bytes) else p.nbytes for p in self.pieces)


def labels_bytes(labels: Labels) -> bytes:
    values = np.ascontiguousarray(labels.values, dtype="<i4")
    shape = (len(labels),)
    return _npy.header_bytes(_npy.labels_descr(labels.names), shape) + values.tobytes()


def block_entries(prefix: str, block: TensorBlock, gradient: bool) -> list[Entry]:
    try:
        descr = _npy.values_descr(block.dtype)
    except _npy.NpyError:
        raise MetatensorDaskError(
            f"values of dtype {block.dtype} can not be saved in a metatensor file, which "
            "holds bool, integer, float (16, 32 or 64 bits) or complex values; convert "
            "them first, e.g. with `tensor.to(dtype=np.float64)`"
        ) from None
    values = block.values
    entries = [
        Entry(prefix + "values.npy", [_npy.header_bytes(descr, block.shape), values]),
        Entry(prefix + "samples.npy", [labels_bytes(block.samples)]),
    ]
    for j, component in enumerate(block.components):
        entries.append(Entry(f"{prefix}components/{j}.npy", [labels_bytes(component)]))
    if not gradient:
        entries.append(Entry(prefix + "properties.npy", [labels_bytes(block.properties)]))
    for parameter in sorted(block.gradients_list()):
        # the name becomes a folder of the archive: refused before anything is written
        check_path_component(parameter, "gradient name")
        entries.extend(
            block_entries(f"{prefix}gradients/{parameter}/", block.gradient(parameter), True)
        )
    return entries


def write_atomically(path: str, entries: list[Entry], archive: bool) -> None:
    absolute = os.path.abspath(path)
    directory, name = os.path.split(absolute)
    temporary = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        try:
            if archive:
                _write_archive(fd, temporary, entries)
            else:
                _write_pieces(fd, 0, entries[0].pieces, temporary)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, absolute)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


_BATCH_BYTES = 8 * 2**20
"""Bytes of values that one task writes at most (more when a single chunk is larger)."""


def _pwrite_all(fd: int, data: Any, offset: int) -> None:
    view = memoryview(data).cast("B")
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)


def _little_endian_bytes(array: np.ndarray) -> np.ndarray:
    """The bytes of ``array`` as metatensor stores them (C order, little-endian)."""
    dtype = array.dtype.newbyteorder("<")
    return np.ascontiguousarray(array, dtype=dtype).reshape(-1).view(np.uint8)


class _Gathered:
    """Small writes (headers, Labels) gathered and written in runs of adjacent bytes,
    one system call per run: a map of many tiny blocks has several members per block."""

    #: Bytes joined into one write at most.
    RUN = 16 * 2**20

    def __init__(self, fd: int):
        self.fd = fd
        self.items: list[tuple[int, bytes]] = []

    def add(self, offset: int, data: bytes) -> None:
        self.items.append((offset, data))

    def flush(self) -> None:
        self.items.sort(key=lambda item: item[0])
        run: list[bytes] = []
        start = end = 0
        for offset, data in self.items:
            if run and (offset != end or end - start > self.RUN):
                _pwrite_all(self.fd, b"".join(run), start)
                run = []
            if not run:
                start = end = offset
            run.append(data)
            end += len(data)
        if run:
            _pwrite_all(self.fd, b"".join(run), start)
        self.items = []


def _write_pieces(
    fd: int, offset: int, pieces: list[Any], path: str, gathered: _Gathered | None = None
) -> list[tuple[int, int] | tuple[da.Array, int]]:
    """Write the in-memory pieces at ``offset`` (bytes through ``gathered``, when
    given); returns ``(crc, length)`` per piece written, or ``(dask array, offset)``
    for lazy pieces, left for :func:`_write_lazy`."""
    crcs: list[Any] = []
    for piece in pieces:
        if isinstance(piece, bytes):
            if gathered is None:
                _pwrite_all(fd, piece, offset)
            else:
                gathered.add(offset, piece)
            crcs.append((zlib.crc32(piece), len(piece)))
        elif isinstance(piece, np.ndarray):
            rows = _rows_per_slice(piece)
            for start in range(0, max(len(piece), 1), rows):
                data = _little_endian_bytes(piece[start : start + rows])
                _pwrite_all(fd, data, offset + start * (piece.nbytes // max(len(piece), 1)))
                crcs.append((zlib.crc32(data.data), data.nbytes))
        else:
            crcs.append((piece, offset))
        offset += len(piece) if isinstance(piece, bytes) else piece.nbytes
    return crcs


def _rows_per_slice(array: np.ndarray) -> int:
    size = parse_bytes(config.get("chunk-size"))
    row_bytes = array.nbytes // max(len(array), 1)
    return max(1, size // max(row_bytes, 1))


def _write_archive(fd: int, path: str, entries: list[Entry]) -> None:
    offsets, sizes, offset = [], [], 0
    for entry in entries:
        offsets.append(offset)
        sizes.append(entry.size)
        offset += _zip.local_header_size(entry.name) + sizes[-1]
    os.ftruncate(fd, offset)
    gathered = _Gathered(fd)
    with collector_paused():
        crcs: list[list[Any]] = [
            _write_pieces(
                fd, start + _zip.local_header_size(entry.name), entry.pieces, path, gathered
            )
            for entry, start in zip(entries, offsets, strict=True)
        ]
    _write_lazy(crcs, path)
    records = []
    with collector_paused():
        for entry, start, size, pieces in zip(entries, offsets, sizes, crcs, strict=True):
            crc = 0
            for piece_crc, length in pieces:
                # combining with the CRC of nothing is a no-op, and costs microseconds
                crc = _zip.crc32_combine(crc, piece_crc, length) if crc else piece_crc
            gathered.add(start, _zip.local_header(entry.name, crc, size))
            records.append((entry.name, crc, size, start))
        gathered.add(offset, _zip.central_directory(records, offset))
        gathered.flush()


def _write_lazy(crcs: list[list[Any]], path: str) -> None:
    """Compute the dask pieces and write every chunk at its offset, in dask tasks;
    replace their placeholders in ``crcs`` by the ``(crc, length)`` of each chunk."""
    lazy = [
        (i, j, piece, offset)
        for i, pieces in enumerate(crcs)
        for j, (piece, offset) in enumerate(pieces)
        if isinstance(piece, da.Array)
    ]
    if not lazy:
        return
    arrays = []
    for _, _, array, _ in lazy:
        if any(len(c) > 1 for c in array.chunks[1:]):
            array = array.rechunk({axis: -1 for axis in range(1, array.ndim)})
        arrays.append(array)
    # one plain graph: merging thousands of high-level graphs (or optimizing them one
    # by one) costs seconds for maps of many small blocks
    name = f"mts-save-{os.path.basename(path)}"
    graph: dict[Any, Any] = {}
    counts, batches = [], []
    batch: list[tuple[Any, int, str]] = []
    batch_bytes = 0
    for array, (_, _, _, offset) in zip(arrays, lazy, strict=True):
        row_bytes = math.prod(array.shape[1:]) * array.dtype.itemsize
        descr = array.dtype.newbyteorder("<").str
        counts.append(len(array.chunks[0]))
        for key, rows in zip(_graph.chunk_inputs(array), array.chunks[0], strict=True):
            # consecutive chunks are written by one task up to _BATCH_BYTES: a task per
            # chunk costs more than writing it on maps of many tiny blocks
            if batch and batch_bytes + rows * row_bytes > _BATCH_BYTES:
                batches.append(batch)
                batch, batch_bytes = [], 0
            batch.append((key, offset, descr))
            batch_bytes += rows * row_bytes
            offset += rows * row_bytes
    batches.append(batch)
    batch_keys = []
    for b, batch in enumerate(batches):
        chunk_keys = [key for key, _, _ in batch]
        places = [(offset, descr) for _, offset, descr in batch]
        graph[(name, b)] = (_write_batch, chunk_keys, path, places)
        batch_keys.append((name, b))
    # the CRC checks of the members read whole from a file run with the writes
    checks = _mts_integrity.member_checks(array for _, _, array, _ in lazy)
    graph[name] = (_concatenated, batch_keys)
    graph[f"{name}-checked"] = (_first, name, checks)
    # every layer once: the arrays of a group of tiny blocks share their group's layer
    graph.update(_graph.flat_tasks(arrays))
    results = iter(_graph.flat_delayed(f"{name}-checked", graph, []).compute())
    chunk_crcs = [[next(results) for _ in range(count)] for count in counts]
    # from the end, so that the positions of the placeholders still to replace hold
    for (i, j, _, _), replacement in reversed(list(zip(lazy, chunk_crcs, strict=True))):
        crcs[i][j : j + 1] = replacement


def _first(value: Any, ignored: Any) -> Any:
    """``value``, once ``ignored`` (the checks the task waits for) is computed."""
    return value


def _concatenated(lists: list[list[Any]]) -> list[Any]:
    return [item for items in lists for item in items]


def _write_batch(
    chunks: list[np.ndarray], path: str, places: list[tuple[int, str]]
) -> list[tuple[int, int]]:
    """Write each chunk of values at its ``(offset, descr)`` in ``path``; the CRC-32 and
    length of each."""
    results = []
    fd = os.open(path, os.O_WRONLY)
    try:
        for chunk, (offset, descr) in zip(chunks, places, strict=True):
            data = np.ascontiguousarray(chunk, dtype=np.dtype(descr)).reshape(-1).view(np.uint8)
            if data.nbytes:
                _pwrite_all(fd, data, offset)
            results.append((zlib.crc32(data.data), data.nbytes))
    finally:
        os.close(fd)
    return results
