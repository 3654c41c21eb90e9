"""Writing metatensor files: the archive is laid out first (every member is STORED, so
its size is known), then each piece of data is written at its offset, dask chunks in
dask tasks, into a temporary file renamed over the target at the end.
"""

from __future__ import annotations

import errno
import itertools
import math
import os
import stat
import zlib
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np

from .. import _graph, config
from .._collection import GroupItem
from .._member_checks import member_checks
from ..block import TensorBlock
from ..errors import MetatensorDaskError, MetatensorError
from ..labels import Labels
from . import _npy, _zip
from ._file_writes import PIECE_BYTES, no_room, write_all
from ._mts_read import io_error
from ._mts_temporary import clean_stale, temporary_path
from ._names import check_path_component

__all__ = ["Encoder", "Entry", "labels_bytes", "write_atomically"]


@dataclass
class Entry:
    """One archive member: its name and its pieces, bytes or arrays, in order."""

    name: str
    pieces: list[Any]

    @property
    def size(self) -> int:
        return sum(map(_nbytes, self.pieces))


def _nbytes(piece: Any) -> int:
    """Bytes of a piece: bytes, an array, or an item of a group (whose ``nbytes``
    goes through numpy, slow for many thousands)."""
    if isinstance(piece, bytes):
        return len(piece)
    if isinstance(piece, GroupItem):
        return math.prod(piece.shape) * piece.dtype.itemsize
    return int(piece.nbytes)


def labels_bytes(labels: Labels) -> bytes:
    """``labels`` as a ``.npy`` file: a 1-D structured array, one ``<i4`` field per
    dimension. Labels without dimensions have no entry for metatensor, which writes
    them so whatever their number of rows."""
    values = np.ascontiguousarray(labels.values, dtype="<i4")
    descr = _npy.labels_descr(tuple(labels.names))
    count = len(values) if labels.names else 0
    return _npy.header_bytes(descr, (count,)) + values.tobytes()


class Encoder:
    """Turns blocks into archive entries. Labels are encoded once per object (the
    blocks of a map often share their components and properties), and values held in
    memory as one numpy chunk are taken as that array, to be written without dask."""

    def __init__(self) -> None:
        # by id: the Labels are kept alive here, so that no id is reused
        self._labels: dict[int, tuple[Labels, bytes]] = {}
        self._parameters: set[str] = set()  # gradient names already checked

    def labels(self, labels: Labels) -> bytes:
        known = self._labels.get(id(labels))
        if known is None:
            known = self._labels[id(labels)] = (labels, labels_bytes(labels))
        return known[1]

    def block(self, prefix: str, block: TensorBlock, gradient: bool) -> list[Entry]:
        try:
            descr = _npy.values_descr(block.dtype)
        except _npy.NpyError:
            raise MetatensorDaskError(
                f"values of dtype {block.dtype} can not be saved in a metatensor file, which "
                "holds bool, integer, float (16, 32 or 64 bits) or complex values; convert "
                "them first, e.g. with `tensor.to(dtype=np.float64)`"
            ) from None
        # an item of a group (tiny blocks read from a file, or computed by groups) is
        # kept as it is: its group is computed once for all its items (_write_lazy)
        values = block._held_values()
        shape = tuple(values.shape)
        if isinstance(values, da.Array):
            held = _graph.held_chunk(values)
            values = values if held is None else held
        entries = [
            Entry(prefix + "values.npy", [_npy.header_bytes(descr, shape), values]),
            Entry(prefix + "samples.npy", [self.labels(block.samples)]),
        ]
        for j, component in enumerate(block._components):
            entries.append(Entry(f"{prefix}components/{j}.npy", [self.labels(component)]))
        if not gradient:
            entries.append(Entry(prefix + "properties.npy", [self.labels(block.properties)]))
        gradients = block._gradients
        for parameter in sorted(gradients):
            if parameter not in self._parameters:
                # the name becomes a folder of the archive: refused before anything is
                # written
                check_path_component(parameter, "gradient name")
                self._parameters.add(parameter)
            entries.extend(
                self.block(f"{prefix}gradients/{parameter}/", gradients[parameter], True)
            )
        return entries


def write_atomically(path: str, entries: list[Entry], archive: bool) -> None:
    """Write ``entries`` into a temporary file next to ``path``, renamed over it once
    complete; the temporary files of earlier saves of ``path`` killed meanwhile are
    removed (see :mod:`._mts_temporary`).

    As metatensor, which writes into the file in place: a ``path`` that is a symbolic
    link gets its target written (the link stays), and a file replaced keeps its
    permissions.
    """
    # the file that metatensor would write: a link's target, even one not there yet
    absolute = os.path.realpath(path)
    directory, name = os.path.split(absolute)
    clean_stale(directory, name, path)
    temporary = temporary_path(directory, name)
    try:
        if os.path.isdir(absolute):  # would be found by the rename, once all is written
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as error:
        # metatensor's error, naming the file asked for rather than the temporary one
        raise io_error(OSError(error.errno, error.strerror), path) from None
    try:
        try:
            _keep_permissions(fd, absolute)
            if archive:
                _write_archive(fd, temporary, entries)
            else:
                _write_pieces(fd, 0, entries[0].pieces)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, absolute)
    except BaseException as error:
        if os.path.exists(temporary):
            os.unlink(temporary)
        cause = no_room(error)
        if cause is not None and isinstance(error, OSError):
            raise _out_of_room(error, path, cause) from error
        raise


def _out_of_room(error: OSError, path: str, cause: str) -> MetatensorError:
    """metatensor's error for ``error``, a write of ``path`` that found no room, saying
    that ``path`` is as it was and what to do."""
    where = "the file is as it was" if os.path.lexists(path) else "no file was written"
    message = io_error(OSError(error.errno, error.strerror), path)
    return MetatensorError(f"{message}: {cause}, then write it again ({where})")


def _keep_permissions(fd: int, path: str) -> None:
    """Give the file open as ``fd`` the permissions of the file at ``path``, when there
    is one (metatensor writes into it, which keeps them)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    os.fchmod(fd, stat.S_IMODE(mode))


_BATCH_BYTES = 8 * 2**20
"""Bytes of values that one task writes at most (more when a single chunk is larger)."""

_GATHER_BYTES = 2**16
"""In-memory arrays up to this size are written with the headers and Labels around
them, in gathered writes; larger ones in slices of the chunk size, on their own."""


def _stored_bytes(array: np.ndarray) -> memoryview:
    """The bytes of a small ``array`` as metatensor stores them (C order, little-endian):
    a view of the array itself when they are its bytes (no copy of all the values of a
    map held in memory)."""
    return _little_endian_bytes(array).data


def _little_endian_bytes(array: np.ndarray) -> np.ndarray:
    """The bytes of ``array`` as metatensor stores them (C order, little-endian)."""
    dtype = array.dtype.newbyteorder("<")
    return np.ascontiguousarray(array, dtype=dtype).reshape(-1).view(np.uint8)


class _Gathered:
    """Small writes (headers, Labels, small arrays) gathered and written in runs of
    adjacent bytes, a few system calls per run (see :mod:`._file_writes`): a map of many
    tiny blocks has several members per block. Each item is a list of pieces written one
    after the other from its offset, after the local header of member ``header`` when
    it is not -1 (the headers of all members are laid out at once, once their CRC-32s
    are known, and sliced only as they are written)."""

    def __init__(self, fd: int):
        self.fd = fd
        self.items: list[tuple[int, int, list[Any], int]] = []

    def add(self, offset: int, data: Any) -> None:
        self.items.append((offset, len(data), [data], -1))

    def add_member(self, header: int, offset: int, length: int, pieces: list[Any]) -> None:
        """Write the local header of member ``header`` at ``offset``, then ``pieces``
        (``length`` bytes in all, the header's included)."""
        self.items.append((offset, length, pieces, header))

    def flush(self, headers: bytes, bounds: list[int]) -> None:
        """Write the items added; the local header of member ``k`` is
        ``headers[bounds[k]:bounds[k + 1]]``."""
        # added in file order, but for a few
        self.items.sort(key=_offset)
        run: list[Any] = []
        start = end = 0
        for offset, length, pieces, header in self.items:
            if run and offset != end:
                self._write_run(run, start, end - start)
                run = []
            if not run:
                start = end = offset
            if header >= 0:
                run.append(headers[bounds[header] : bounds[header + 1]])
            run.extend(pieces)
            end += length
        if run:
            self._write_run(run, start, end - start)
        self.items = []

    def _write_run(self, run: list[Any], start: int, length: int) -> None:
        """Write the pieces of ``run`` (``length`` bytes) from ``start``: a short run
        (a few headers and Labels between two arrays written by dask, in a map of tiny
        blocks) joined and written in one call."""
        if length > PIECE_BYTES:
            write_all(self.fd, run, start)
            return
        data = b"".join(run)
        written = os.pwrite(self.fd, data, start)
        if written < length:
            write_all(self.fd, [memoryview(data)[written:]], start + written)


def _offset(item: tuple[int, int, list[Any], int]) -> int:
    return item[0]


def _in_memory(pieces: list[Any]) -> list[bytes | memoryview] | None:
    """The bytes of ``pieces`` when they are all bytes or small in-memory arrays (to be
    gathered), else None."""
    found: list[bytes | memoryview] = []
    for piece in pieces:
        if type(piece) is bytes:
            found.append(piece)
        elif isinstance(piece, np.ndarray) and piece.nbytes <= _GATHER_BYTES:
            found.append(_stored_bytes(piece))
        else:
            return None
    return found


@dataclass
class _Lazy:
    """A dask piece of a member (a dask array, or an item of a group), to be written at
    ``offset`` by :func:`_write_lazy`.
    ``seed`` is the CRC-32 of the ``prefix`` bytes of the member before it (its header):
    the task writing the first chunk continues that CRC, so that no combination is
    needed for a member of one chunk."""

    array: da.Array | GroupItem
    offset: int
    seed: int
    prefix: int


def _write_pieces(
    fd: int, offset: int, pieces: list[Any], gathered: _Gathered | None = None
) -> list[Any]:
    """Write the in-memory pieces at ``offset`` (small ones through ``gathered``, when
    given). Returns the member's segments in order: ``(crc, length)`` of runs of bytes
    written, and a :class:`_Lazy` for each dask piece (which takes in the run before
    it), left for :func:`_write_lazy`."""
    segments: list[Any] = []
    crc = length = 0
    for piece in pieces:
        if isinstance(piece, (da.Array, GroupItem)):
            segments.append(_Lazy(piece, offset, crc, length))
            crc = length = 0
            offset += _nbytes(piece)
            continue
        if isinstance(piece, np.ndarray):
            if piece.nbytes > _GATHER_BYTES or gathered is None:
                crc, length = _write_array(fd, offset, piece, crc, length)
                offset += piece.nbytes
                continue
            piece = _stored_bytes(piece)
        if gathered is None:
            write_all(fd, [piece], offset)
        else:
            gathered.add(offset, piece)
        crc = zlib.crc32(piece, crc)
        length += len(piece)
        offset += len(piece)
    if length or not segments:
        segments.append((crc, length))
    return segments


def _write_array(fd: int, offset: int, array: np.ndarray, crc: int, length: int) -> tuple[int, int]:
    """Write ``array`` at ``offset`` in slices of the chunk size; the CRC-32 ``crc`` of
    the ``length`` bytes before it, continued over it."""
    rows = _rows_per_slice(array)
    row_bytes = array.nbytes // max(len(array), 1)
    for start in range(0, max(len(array), 1), rows):
        data = _little_endian_bytes(array[start : start + rows])
        write_all(fd, [data], offset + start * row_bytes)
        crc = zlib.crc32(data.data, crc)
        length += data.nbytes
    return crc, length


def _rows_per_slice(array: np.ndarray) -> int:
    size = config.chunk_size()
    row_bytes = array.nbytes // max(len(array), 1)
    return max(1, size // max(row_bytes, 1))


def _write_archive(fd: int, path: str, entries: list[Entry]) -> None:
    """Write the archive of ``entries`` in one pass over the members, in file order:
    the bytes of a member held in memory join those of its neighbours in one write, the
    members with dask pieces are computed, then the local headers of all members are
    laid out at once (their CRC-32s known) and written with the bytes around them."""
    gathered = _Gathered(fd)
    names = [entry.name for entry in entries]
    header_sizes = _zip.local_header_sizes(names).tolist()
    # the segments of the members with dask pieces, by their position in ``entries``
    # (none kept for the members written at once: most of a map of tiny blocks)
    segments: dict[int, list[Any]] = {}
    crcs, sizes, offsets = [], [], []
    offset = 0
    for k, entry in enumerate(entries):
        data_start = offset + header_sizes[k]
        data = _in_memory(entry.pieces)
        if data is not None:
            # the common case for a map of tiny blocks: the whole member at once
            crc = size = 0
            for piece in data:
                crc = zlib.crc32(piece, crc)
                size += len(piece)
            gathered.add_member(k, offset, header_sizes[k] + size, data)
        else:
            size = entry.size
            gathered.add_member(k, offset, header_sizes[k], [])
            pieces = _write_pieces(fd, data_start, entry.pieces, gathered)
            if len(pieces) == 1 and not isinstance(pieces[0], _Lazy):
                crc = pieces[0][0]
            else:
                crc = 0
                segments[k] = pieces
        crcs.append(crc)
        sizes.append(size)
        offsets.append(offset)
        offset = data_start + size
    os.ftruncate(fd, offset)
    if segments:
        _write_lazy(list(segments.values()), path)
        for k, pieces in segments.items():
            crc = 0
            for piece_crc, length in pieces:
                # combining with the CRC of nothing is a no-op, and costs microseconds
                crc = _zip.crc32_combine(crc, piece_crc, length) if crc else piece_crc
            crcs[k] = crc
    gathered.add(offset, _zip.central_directory(names, crcs, sizes, offsets, offset))
    headers = _zip.local_headers(names, crcs, sizes)
    gathered.flush(headers, list(itertools.accumulate(header_sizes, initial=0)))


def _write_lazy(segments: list[list[Any]], path: str) -> None:
    """Compute the dask pieces and write every chunk at its offset, in dask tasks;
    replace each :class:`_Lazy` in ``segments`` by the ``(crc, length)`` of its chunks
    (the first one including the bytes before it, see :class:`_Lazy`).

    The chunks of dask arrays are written in batches of consecutive chunks; the items
    of a group (the tiny blocks of a loaded file) by one task per group, which takes
    the group's result: a map of many tiny blocks is saved by a few tasks."""
    lazy = [
        (i, j, piece)
        for i, pieces in enumerate(segments)
        for j, piece in enumerate(pieces)
        if isinstance(piece, _Lazy)
    ]
    if not lazy:
        return
    # one plain graph: merging thousands of high-level graphs (or optimizing them one
    # by one) costs seconds for maps of many small blocks
    name = f"mts-save-{os.path.basename(path)}"
    plan = _WritePlan(name, path)
    for index, (_, _, piece) in enumerate(lazy):
        if isinstance(piece.array, GroupItem):
            plan.add_item(index, piece.array, piece)
        else:
            plan.add_array(index, piece.array, piece)
    results = plan.compute()
    replacements = []
    for (_, _, piece), chunk_crcs in zip(lazy, results, strict=True):
        crc, length = chunk_crcs[0]
        chunk_crcs[0] = (crc, length + piece.prefix)
        replacements.append(chunk_crcs)
    # from the end, so that the positions of the pieces still to replace hold
    for (i, j, _), replacement in reversed(list(zip(lazy, replacements, strict=True))):
        segments[i][j : j + 1] = replacement


class _WritePlan:
    """The write tasks of the dask pieces of one save, and where their results go.

    Each write task returns the ``(crc, length)`` of the chunks it writes; ``targets``
    says, for each task, which piece and chunk each result is."""

    def __init__(self, name: str, path: str):
        self.name, self.path = name, path
        self.writes: list[tuple[Any, list[tuple[int, int]]]] = []
        self.counts: list[int] = []
        self.arrays: list[da.Array] = []
        self.batch: list[tuple[Any, tuple[int, str, int]]] = []
        self.batch_targets: list[tuple[int, int]] = []
        self.batch_bytes = 0
        # by group key: its layer, and the items to write (place and target)
        self.groups: dict[str, tuple[Any, list[tuple[int, int, str, int]], list[Any]]] = {}

    def add_array(self, index: int, array: da.Array, piece: _Lazy) -> None:
        """Piece ``index``, a dask array: its chunks join the batches."""
        if any(len(c) > 1 for c in array.chunks[1:]):
            array = _graph.rechunked(array, (array.chunks[0], *((n,) for n in array.shape[1:])))
        self.arrays.append(array)
        row_bytes = math.prod(array.shape[1:]) * array.dtype.itemsize
        descr = array.dtype.newbyteorder("<").str
        self.counts.append(len(array.chunks[0]))
        offset, seed = piece.offset, piece.seed
        chunks = zip(_graph.chunk_inputs(array), array.chunks[0], strict=True)
        for c, (key, rows) in enumerate(chunks):
            # consecutive chunks are written by one task up to _BATCH_BYTES: a task per
            # chunk costs more than writing it on maps of many tiny blocks
            if self.batch and self.batch_bytes + rows * row_bytes > _BATCH_BYTES:
                self._close_batch()
            self.batch.append((key, (offset, descr, seed)))
            self.batch_targets.append((index, c))
            self.batch_bytes += rows * row_bytes
            offset += rows * row_bytes
            seed = 0

    def add_item(self, index: int, item: GroupItem, piece: _Lazy) -> None:
        """Piece ``index``, an item of a group: written by its group's write task."""
        self.counts.append(1)
        descr = item.dtype.newbyteorder("<").str
        _, places, targets = self.groups.setdefault(item.group_key, (item.layer, [], []))
        places.append((item.position, piece.offset, descr, piece.seed))
        targets.append((index, 0))

    def _close_batch(self) -> None:
        chunk_keys = [key for key, _ in self.batch]
        places = [place for _, place in self.batch]
        self.writes.append(((_write_batch, chunk_keys, self.path, places), self.batch_targets))
        self.batch, self.batch_targets, self.batch_bytes = [], [], 0

    def compute(self) -> list[list[tuple[int, int]]]:
        """Run the writes; the ``(crc, length)`` of each chunk of each piece."""
        if self.batch:
            self._close_batch()
        graph: dict[Any, Any] = {}
        write_keys = []
        for b, (task, _) in enumerate(self.writes):
            graph[(self.name, b)] = task
            write_keys.append((self.name, b))
        group_tasks, renamed = self._group_tasks()
        graph.update(group_tasks)
        for g, (group_key, (_, places, _)) in enumerate(self.groups.items()):
            key = (f"{self.name}-group", g)
            group = _graph.ref(renamed.get(group_key, group_key))
            graph[key] = _graph.task(key, _write_group, group, self.path, places)
            write_keys.append(key)
        # the CRC checks of the members read from a file run with the writes (a
        # group's task checks its members itself)
        checks = member_checks(self.arrays)
        graph[self.name] = (_concatenated, write_keys)
        graph[f"{self.name}-checked"] = (_first, self.name, checks)
        # every layer once: the arrays of a group of tiny blocks share their group's layer
        graph.update(_graph.flat_tasks(self.arrays))
        flat = iter(_graph.flat_delayed(f"{self.name}-checked", graph, []).compute())
        results: list[list[Any]] = [[None] * count for count in self.counts]
        targets = [target for _, target in self.writes]
        targets += [group_targets for _, _, group_targets in self.groups.values()]
        for task_targets in targets:
            for piece, chunk in task_targets:
                results[piece][chunk] = next(flat)
        return results

    def _group_tasks(self) -> tuple[dict[Any, Any], dict[Any, Any]]:
        """The tasks of the groups, each task that depends on others renamed for the
        save, and the new key of each (see :func:`~metatensor_dask._graph.private_tasks`:
        dask gives a group computed from others another task when it computes or
        persists the map, which a scheduler still holding it would be given here)."""
        if not self.groups:
            return {}, {}
        layers: dict[Any, Any] = {}
        for layer in {id(layer): layer for layer, _, _ in self.groups.values()}.values():
            layers.update(_graph.layer_tasks(layer))
        return _graph.private_tasks(layers, list(self.groups), "save")


def _first(value: Any, ignored: Any) -> Any:
    """``value``, once ``ignored`` (the checks the task waits for) is computed."""
    return value


def _concatenated(lists: list[list[Any]]) -> list[Any]:
    return [item for items in lists for item in items]


def _write_group(
    arrays: tuple[np.ndarray, ...], path: str, places: list[tuple[int, int, str, int]]
) -> list[tuple[int, int]]:
    """Write items of a group's result ``arrays`` at their ``(position, offset, descr,
    seed)`` in ``path`` (see :func:`_write_batch`)."""
    chunks = [arrays[position] for position, _, _, _ in places]
    return _write_batch(chunks, path, [(offset, descr, seed) for _, offset, descr, seed in places])


def _write_batch(
    chunks: list[np.ndarray], path: str, places: list[tuple[int, str, int]]
) -> list[tuple[int, int]]:
    """Write each chunk of values at its ``(offset, descr, seed)`` in ``path``; the
    CRC-32 (continued from ``seed``) and length of each."""
    results = []
    fd = os.open(path, os.O_WRONLY)
    try:
        for chunk, (offset, descr, seed) in zip(chunks, places, strict=True):
            data = np.ascontiguousarray(chunk, dtype=np.dtype(descr)).reshape(-1).view(np.uint8)
            if data.nbytes:
                write_all(fd, [data], offset)
            results.append((zlib.crc32(data.data, seed), data.nbytes))
    finally:
        os.close(fd)
    return results
