"""Which chunk is where (format 4): the table of chunk checksums, and the store's id.

A chunk's trailing crc32c covers its bytes, not its place nor its version: two chunk
files of the same size swapped, or an older copy of a chunk put back, decode without
error. Since format 4, every values array whose chunks end with a crc32c (since format
5, every sample Labels array and row pointer too: see :func:`has_table`) records in its
document the crc32c ending each chunk, in order (:data:`TABLE`; for a sharded array,
each inner chunk: the checksum of a shard's index depends on the sizes of its chunks
only), and the root an id (:data:`STORE_ID`) that every whole write (``mode="w"``,
``"w-"``, ``"r+"``) sets anew, a digest of what it stored (:func:`content_id`: two
writes of the same tensor give the same store, byte for byte), and that appends and
``mode="a"`` keep.

A reader keeps the table it opened with, and compares each chunk it decodes with it
(the trailing crc32c, which the checksum check reads anyway). A mismatch reads the
current root (:meth:`ChunkIdentity.decide`): another store id means the store was
overwritten since it was opened; the same id and the current table listing the chunk
mean an append rewrote the partial last chunk, keeping the rows already stored;
anything else is damage.

The writers read the checksums from the chunk files they wrote (the last 4 bytes of
each, or of each inner chunk of a shard, see :func:`with_tables`), in the commit that
writes the documents; a whole write's storing tasks report those of the plain chunk
files they stored, and each such file read back must still end with its own (missing,
cut short or written over, it keeps the store incomplete). The other Labels arrays
(keys, components, properties), always read whole, are not listed: their content is
covered by their digests.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import mmap
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import numpy as np

from ..errors import DamagedStoreError, MetatensorDaskError
from . import _page_cache
from ._crc32c_zeros import extend_zeros
from ._zarr_internals import sync
from .zarr_integrity import damaged, index_pairs

__all__ = [
    "APPENDED",
    "FIRST_FORMAT",
    "LABELS_FORMAT",
    "STORE_ID",
    "TABLE",
    "ChunkIdentity",
    "check_listed",
    "check_not_overwritten",
    "check_partial_chunks",
    "chunk_end_crc",
    "chunk_file_key",
    "chunk_name",
    "chunk_rows",
    "content_id",
    "has_table",
    "last_crc",
    "note",
    "noted",
    "noted_crc",
    "opened_id",
    "overwrite_told",
    "records_table",
    "rewritten_key",
    "table_problem",
    "with_tables",
]

#: The first format version recording chunk tables and store ids.
FIRST_FORMAT = 4
#: The first format version recording chunk tables for the sample Labels and row
#: pointers too (:data:`_LABELS_TABLED`).
LABELS_FORMAT = 5
#: The ends of the paths of the arrays, besides values, that record a chunk table
#: since :data:`LABELS_FORMAT`: tasks read their chunks one by one, which their
#: Labels digests (checked only when Labels are read whole) do not cover.
_LABELS_TABLED = ("/samples", "/row_pointer")
#: Array attribute: the crc32c ending each chunk (inner chunk of a shard) of a values
#: array, in order.
TABLE = "chunk_crc32c"
#: Root attribute (under ``metatensor_dask``): the id of the store's last whole write.
STORE_ID = "store_id"
#: Root attribute (under ``metatensor_dask``) listing the tokens of the appends stored
#: since the store was last written whole, oldest first.
APPENDED = "appended"
#: Between the store id and the token of the last append of an :func:`opened_id`.
_AFTER = "+"


def content_id(nodes: dict[str, Any]) -> str:
    """The id of a store written whole with the node documents ``nodes``: a digest of
    their attributes, which list the crc32c of every values chunk (see
    :func:`with_tables`) and the digests of every Labels array. Another tensor written
    gives another id (but for chunks with the same crc32c)."""
    attributes = {path: document.get("attributes") for path, document in nodes.items()}
    text = json.dumps(attributes, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _sharding(document: dict[str, Any]) -> dict[str, Any] | None:
    """The configuration of the sharding codec of ``document`` (``None``: unsharded)."""
    codecs = document.get("codecs") or [{}]
    first = codecs[0] if isinstance(codecs[0], dict) else {}
    return first.get("configuration") if first.get("name") == "sharding_indexed" else None


def has_table(path: str, document: dict[str, Any], version: int) -> bool:
    """Whether the array ``path`` of a store of format ``version`` records a chunk
    table: arrays whose chunks (inner chunks of shards) end with a crc32c, among the
    values arrays (of blocks and gradients) since format 4, and the sample Labels and
    row pointers (read chunk by chunk) since format 5."""
    return _tabled_path(path, version) and _crc_ended(document)


def _tabled_path(path: str, version: int) -> bool:
    """Whether the array ``path`` is of a kind that records a chunk table in a store of
    format ``version``, when its chunks end with a crc32c (see :func:`has_table`)."""
    if path.endswith("/values"):
        return version >= FIRST_FORMAT
    return version >= LABELS_FORMAT and path.endswith(_LABELS_TABLED)


def records_table(document: dict[str, Any]) -> bool:
    """Whether an array's ``document`` records a chunk table (as every array that
    :func:`has_table` names does, in a store a reader checked)."""
    return TABLE in (document.get("attributes") or {})


def _inner_codecs(document: dict[str, Any]) -> Any:
    """The codecs of the chunks (inner chunks of shards) of ``document``, as found."""
    sharding = _sharding(document)
    return (document.get("codecs") or [{}]) if sharding is None else sharding.get("codecs")


def _crc_ended(document: dict[str, Any]) -> bool:
    """Whether the chunks (inner chunks of shards) of ``document`` end with a crc32c."""
    codecs = _inner_codecs(document)
    last = codecs[-1] if isinstance(codecs, list) and codecs else {}
    return isinstance(last, dict) and last.get("name") == "crc32c"


def _rows(document: dict[str, Any]) -> tuple[int, int]:
    """Rows per chunk (inner chunk of a shard) and per chunk file (shard)."""
    grid = int(document["chunk_grid"]["configuration"]["chunk_shape"][0])
    sharding = _sharding(document)
    return (grid if sharding is None else int(sharding["chunk_shape"][0])), grid


def chunk_rows(document: dict[str, Any]) -> int:
    """Rows per chunk (inner chunk of a shard): the unit a table lists."""
    return _rows(document)[0]


def _chunks(document: dict[str, Any]) -> int:
    """The number of chunks (inner chunks of shards) holding rows of an array chunked
    along its first axis."""
    if not all(int(n) for n in document["shape"]):
        return 0
    return -(-int(document["shape"][0]) // _rows(document)[0])


def chunk_file_key(path: str, document: dict[str, Any], index: int) -> str:
    """The key of the file holding chunk ``index`` (its shard, for sharded arrays)."""
    return _file_key(path, *_rows(document), len(document["shape"]), index)


def _file_key(path: str, chunk: int, grid: int, ndim: int, index: int) -> str:
    """:func:`chunk_file_key` of an array of ``ndim`` dimensions, of ``chunk`` rows per chunk and
    ``grid`` per file."""
    return f"{path}/c." + ".".join([str(index * chunk // grid)] + ["0"] * (ndim - 1))


def chunk_name(path: str, document: dict[str, Any], index: int) -> str:
    """Chunk ``index`` of an array, for messages: its file, and its place in its shard."""
    chunk, grid = _rows(document)
    name = f"'{chunk_file_key(path, document, index).rpartition('/')[2]}'"
    return name if chunk == grid else f"{index % (grid // chunk)} of the shard {name}"


def table_problem(document: dict[str, Any]) -> str | None:
    """What is wrong with the chunk table of an array that must have one."""
    table = (document.get("attributes") or {}).get(TABLE)
    if type(table) is not list or not all(type(crc) is int and 0 <= crc < 2**32 for crc in table):
        return f"no valid '{TABLE}' attribute"
    if len(table) != _chunks(document):
        return f"a '{TABLE}' of {len(table)} entries for {_chunks(document)} chunks"
    return None


#: Store requests in flight at once when reading the ends of chunks.
_CONCURRENCY = 64


async def _get(store: Any, key: str, byte_range: Any = None) -> bytes | None:
    from zarr.buffer import default_buffer_prototype

    found = await store.get(key, prototype=default_buffer_prototype(), byte_range=byte_range)
    return None if found is None else found.to_bytes()


async def _file_crcs(store: Any, key: str, sharded: int | None, count: int) -> list[int | None]:
    """The crc32c ending each of the first ``count`` chunks of the file ``key``: the
    file's last 4 bytes, or for a shard of ``sharded`` inner chunks, the last 4 bytes of
    each inner chunk its index lists (``None`` for a missing one)."""
    from zarr.abc.store import RangeByteRequest, SuffixByteRequest

    if sharded is None:
        raw = await _get(store, key, SuffixByteRequest(4))
        return [int.from_bytes(raw, "little") if raw is not None and len(raw) == 4 else None]
    pairs = await _shard_index(store, key, sharded)
    if pairs is None:
        return [None] * count
    found: list[int | None] = []
    for offset, length in pairs[:count]:
        raw = None
        if offset != _EMPTY and length >= 4:
            end = offset + length
            raw = await _get(store, key, RangeByteRequest(end - 4, end))
        found.append(int.from_bytes(raw, "little") if raw is not None and len(raw) == 4 else None)
    return found


async def _shard_index(store: Any, key: str, entries: int) -> list[tuple[int, int]] | None:
    """The (offset, length) of each of the ``entries`` inner chunks of the shard ``key``,
    from its index; ``None`` when the index can not be read whole."""
    from zarr.abc.store import SuffixByteRequest

    index = await _get(store, key, SuffixByteRequest(16 * entries + 4))
    if index is None or len(index) != 16 * entries + 4:
        return None
    return index_pairs(index, entries)


def _local_file_crcs(name: str, sharded: int | None, count: int, drop: bool) -> list[int | None]:
    """:func:`_file_crcs` of a local file, with plain system calls. With ``drop`` (the
    ``drop-behind`` setting), the pages read leave the page cache again (without
    read-ahead): the file may have been dropped from it once written (files smaller
    than :data:`~._page_cache.SMALLEST_FILE` never are, and are read as they are)."""
    try:
        descriptor = os.open(name, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return [None] * count
    try:
        size = os.fstat(descriptor).st_size
        drop = drop and size >= _page_cache.SMALLEST_FILE
        if drop:
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_RANDOM)
        if sharded is None:
            ends = [size]
        else:
            footer = 16 * sharded + 4
            index = _pread(descriptor, footer, size - footer, drop) if size >= footer else b""
            if len(index) != footer:
                return [None] * count
            # an index that is not one (a shard cut short) may point past the file
            ends = [
                offset + length
                if offset != _EMPTY and 4 <= length and offset + length <= size
                else -1
                for offset, length in index_pairs(index, sharded)[:count]
            ]
        raws = [_pread(descriptor, 4, end - 4, drop) if end >= 4 else b"" for end in ends]
    finally:
        os.close(descriptor)
    return [int.from_bytes(raw, "little") if len(raw) == 4 else None for raw in raws]


_PAGE = mmap.PAGESIZE


def _pread(descriptor: int, length: int, offset: int, drop: bool) -> bytes:
    """``length`` bytes at ``offset``; with ``drop``, the pages holding them are then
    dropped from the page cache (whole pages: the kernel keeps partly covered ones)."""
    raw = os.pread(descriptor, length, offset)
    if drop:
        start, end = offset - offset % _PAGE, -(-(offset + length) // _PAGE) * _PAGE
        os.posix_fadvise(descriptor, start, end - start, os.POSIX_FADV_DONTNEED)
    return raw


def _crcs(store: Any, files: list[tuple[str, int | None, int]]) -> list[list[int | None]]:
    """:func:`_file_crcs` of each file (key, inner chunks per shard, chunks), concurrently."""
    from zarr.storage import LocalStore

    if isinstance(store, LocalStore):
        root = str(store.root)
        drop = _page_cache.budget() is not None
        return [
            _local_file_crcs(os.path.join(root, key), sharded, count, drop)
            for key, sharded, count in files
        ]
    semaphore = asyncio.Semaphore(_CONCURRENCY)

    async def one(key: str, sharded: int | None, count: int) -> list[int | None]:
        async with semaphore:
            return await _file_crcs(store, key, sharded, count)

    async def every() -> list[list[int | None]]:
        return await asyncio.gather(*(one(*file) for file in files))

    return sync(every())


#: An empty entry (offset and length) of a shard index.
_EMPTY = 2**64 - 1


def with_tables(
    store: Any,
    where: str,
    nodes: dict[str, Any],
    starts: dict[str, int],
    version: int,
    known: dict[str, int] | None = None,
    written: dict[str, int] | None = None,
) -> dict[str, dict[str, Any]]:
    """New documents of the arrays ``starts`` (path: the first row a write stored; the
    chunks of the files before it keep their entries) that record a table in a store
    of format ``version`` (see :func:`has_table`), with their table: the crc32c ending
    each chunk, read from the store once the write stored them (the last 4 bytes of
    each chunk file; of each inner chunk of a shard, which its index locates), but for
    the chunk files (not shards) in ``known`` (key: the crc32c ending the file), which
    the caller wrote from its own process.

    The chunk files (not shards) in ``written`` (key: the crc32c ending the file) are
    those that the write's tasks stored and reported: read too, each must still end
    with that crc32c.

    Raises
    ------
    DamagedStoreError
        When a chunk the write stored is missing, or a file in ``written`` no longer
        ends with its crc32c (cut short or changed after it was written).
    """
    # what the documents of a kind of array share (their nested values, as the plan of
    # a write makes them), worked out once: arrays of many blocks are of a few kinds
    kinds: dict[tuple[int, ...], tuple[bool, int, int, int, str, bool]] = {}

    def kind(document: dict[str, Any]) -> tuple[bool, int, int, int, str, bool]:
        """Whether it has a table, rows per chunk and per file, chunks, the end of its
        chunk keys (a zero per dimension after the first, see :func:`_file_key`), and
        whether it is sharded."""
        shared = (document.get("codecs"), document.get("chunk_grid"), document.get("shape"))
        key = tuple(map(id, shared))
        found = kinds.get(key)
        if found is None:
            found = (False, 0, 0, 0, "", False)
            if _crc_ended(document):
                chunk, grid = _rows(document)
                ending = ".0" * (len(document["shape"]) - 1)
                sharded = _sharding(document) is not None
                found = (True, chunk, grid, _chunks(document), ending, sharded)
            kinds[key] = found
        return found

    given = known or {}
    plans = []  # (path, its first chunk stored, its chunks, the keys of their files)
    files: list[tuple[str, int | None, int]] = []  # read: key, inner chunks per shard, chunks
    for path in sorted(starts):
        if not _tabled_path(path, version):
            continue
        has, chunk, grid, chunks, ending, sharded = kind(nodes[path])
        if not has:
            continue
        per_file = grid // chunk
        first = min(starts[path] // grid * per_file, chunks)
        keys = [f"{path}/c.{index // per_file}{ending}" for index in range(first, chunks, per_file)]
        plans.append((path, first, chunks, keys))
        if not sharded:  # (a shard of one chunk ends with its index)
            files += [(key, None, 1) for key in keys if key not in given]
        else:
            files += [
                (key, per_file, min(per_file, chunks - index))
                for key, index in zip(keys, range(first, chunks, per_file), strict=True)
            ]
    read = dict(zip([file[0] for file in files], _crcs(store, files), strict=True))
    reported = written or {}
    documents = {}
    for path, first, chunks, keys in plans:
        document = nodes[path]
        kept = list((document.get("attributes") or {}).get(TABLE) or [])[:first]
        if len(kept) != first:
            raise damaged(where, f"the array '{path}' has no valid '{TABLE}' to extend")
        for key in keys:
            found = read.get(key)
            if found is None:
                found = [given[key]]
            elif None in found:
                index = len(kept) + found.index(None)
                raise damaged(
                    where,
                    f"the chunk {chunk_name(path, document, index)} of the array '{path}' is "
                    "missing after it was written",
                )
            elif key in reported and found[0] != reported[key]:
                raise damaged(
                    where,
                    f"the chunk {chunk_name(path, document, len(kept))} of the array "
                    f"'{path}' changed after it was written (cut short, or written over)",
                )
            kept += found
        assert len(kept) == chunks, "a table lists every chunk"
        documents[path] = {**document, "attributes": {**document["attributes"], TABLE: kept}}
    return documents


def check_listed(store: Any, where: str, chunks: list[tuple[str, dict[str, Any], int]]) -> None:
    """Check that each chunk ``(path, document, index)`` of an array with a table (see
    :func:`has_table`) ends with the crc32c its table lists: the comparison of 4 bytes
    a reader makes of each chunk it decodes, without reading the chunk (one small read
    per chunk: its file's last 4 bytes, or its inner chunk's, which its shard's index
    locates).

    Raises
    ------
    DamagedStoreError
        For a chunk that is missing, or does not end with the crc32c listed (cut
        short, written over, swapped with another, an older copy put back).
    """
    files = []  # (key, inner chunks per shard, chunks read)
    for path, document, index in chunks:
        chunk, grid = _rows(document)
        sharded = _sharding(document) is not None
        per_file = grid // chunk
        key = chunk_file_key(path, document, index)
        files.append((key, per_file if sharded else None, index % per_file + 1))
    for (path, document, index), crcs in zip(chunks, _crcs(store, files), strict=True):
        name = chunk_name(path, document, index)
        if crcs[-1] is None:
            raise damaged(where, f"the chunk {name} of the array '{path}' is missing or cut short")
        if crcs[-1] != document["attributes"][TABLE][index]:
            raise _not_listed(where, path, name, ", or cut short or written over")


def last_crc(raw: Any) -> int:
    """The little-endian uint32 ending ``raw`` (bytes or a uint8 array)."""
    return int.from_bytes(bytes(memoryview(raw)[-4:]), "little")


#: The root attribute of the package (``zarr_layout.ATTRIBUTE``) and the record of an
#: append in progress (``zarr_layout.APPEND_KEY``), which the layout module, importing
#: this one, defines.
_ATTRIBUTE = "metatensor_dask"
_PROGRESS = ".progress/"
_APPEND_KEY = _PROGRESS + "append.json"


def opened_id(ours: dict[str, Any]) -> str:
    """The id a reader is bound to when it opens a complete format 4 store whose root
    attributes (under ``metatensor_dask``) are ``ours``: the store id, followed by the
    token of the last append the store holds, if any.

    Appends keep the store id, and a whole write of a tensor written before gives its
    id again: the store id alone would take a store rewritten then appended to with
    other rows for the store opened before (its chunks listed by the current tables,
    read as the rows opened). The token of the append opened last tells them apart
    (see :func:`_is_opened`)."""
    store_id = ours.get(STORE_ID)
    appended = ours.get(APPENDED)
    if isinstance(appended, list) and appended and isinstance(appended[-1], str):
        return f"{store_id}{_AFTER}{appended[-1]}"
    return store_id  # type: ignore[return-value]


def _is_opened(current: dict[str, Any], opened: str) -> bool:
    """Whether a store whose current root attributes are ``current`` is still the one
    opened with the id ``opened`` (a store id, or an :func:`opened_id`): the same store
    id, and the last append opened still listed (appends add their tokens to the list,
    a whole write starts it again)."""
    store_id, _, token = opened.partition(_AFTER)
    if current.get(STORE_ID) != store_id:
        return False
    appended = current.get(APPENDED)
    return not token or (isinstance(appended, list) and token in appended)


def _current(root: bytes | None, node: bytes | None, path: str) -> tuple[Any, Any, bool]:
    """The root attributes (under ``metatensor_dask``), the document of ``path`` (from
    the array's own ``zarr.json`` ``node`` when the root holds no inline metadata) and
    whether the store is complete, by a store's current ``root``; no attributes for a
    store without root."""
    try:
        parsed = json.loads(root) if root is not None else {}
        ours = parsed["attributes"][_ATTRIBUTE]
        nodes = (parsed.get("consolidated_metadata") or {}).get("metadata")
        document = nodes.get(path) if isinstance(nodes, dict) else None
        if document is None and node is not None:
            document = json.loads(node)
        if not isinstance(ours, dict):
            return {}, document, False
        return ours, document, ours.get("complete") is True
    except (ValueError, TypeError, KeyError, AttributeError):
        return {}, None, False


def _overwritten(where: str, what: str) -> MetatensorDaskError:
    return MetatensorDaskError(
        f"the store at {where} was overwritten (or is being written) since this tensor "
        f"was opened: {what} is not the one it was opened with; open the store again "
        "(computations reading a store must end before it is rewritten)"
    )


def check_not_overwritten(store: Any, where: str, store_id: str, what: str) -> None:
    """Raise when the store's current id is not ``store_id`` (its id when a tensor was
    opened, or an :func:`opened_id`): for Labels read on first use that do not match
    their digest, ``what``."""
    if not _is_opened(_current_attributes(store), store_id):
        raise _overwritten(where, what)


def _current_attributes(store: Any) -> dict[str, Any]:
    """The attributes (under ``metatensor_dask``) of the store's current root (``{}``
    without one)."""
    current, _, _ = _current(sync(_get(store, "zarr.json")), None, "")
    return current


@contextmanager
def overwrite_told(store: Any, where: str, store_id: str | None, what: str) -> Iterator[None]:
    """Around a read of a store opened with the id ``store_id`` (``None``: a store
    without id, format 3 or older): a :class:`DamagedStoreError` raised inside, while
    the store's current id is another one, is raised as the store overwritten since it
    was opened (see :func:`check_not_overwritten`; ``what`` names what was read). An
    overwrite with other shapes leaves chunks missing or of other sizes, and other row
    pointers and samples, which are not damage."""
    try:
        yield
    except DamagedStoreError as error:
        if store_id is not None and not _is_opened(_current_attributes(store), store_id):
            raise _overwritten(where, what) from error
        raise


class ChunkIdentity:
    """The chunk table of a values array as a reader opened it, and the check of each
    chunk it decodes against it.

    Parameters
    ----------
    store, path, document
        The store, the array's path and its document when the store was opened.
    store_id
        The store's id then.
    where
        The store's description, for messages.
    strict
        Whether the partial last chunk must be the one listed while an append is in
        progress too: for the append itself, which merges its rows with its own.
    """

    def __init__(
        self,
        store: Any,
        path: str,
        document: dict[str, Any],
        store_id: str,
        where: str,
        strict: bool = False,
    ):
        self.store = store
        self.path = path
        self.document = document
        self.store_id = store_id
        self.where = where
        self.strict = strict
        self.table: list[int] = document["attributes"][TABLE]

    def check(self, index: int, crc: int, covered: Any) -> None:
        """Check the chunk ``index``, which ends with ``crc``, the checksum of its bytes
        ``covered`` (verified: see :meth:`decide`)."""
        if index < len(self.table) and self.table[index] != crc:
            sync(self.decide(index, crc, covered))

    async def check_async(self, index: int, crc: int, covered: Any) -> None:
        """:meth:`check` on zarr's event loop, before zarr checks that ``crc`` is the
        crc32c of the bytes it ``covered`` (the chunk, but its last 4 bytes): a chunk
        whose bytes do not match it is damage that zarr's codec reports (checked here
        only when ``crc`` is not the one listed: the codec checks it anyway)."""
        if index < len(self.table) and self.table[index] != crc:
            from crc32c import crc32c

            if crc32c(covered) == crc:
                await self.decide(index, crc, covered)

    async def decide(self, index: int, crc: int, covered: Any) -> None:
        """Decide about the chunk ``index``, whose trailing crc32c ``crc`` (of its
        bytes ``covered``) is not the one the table lists, from the store's current
        root.

        Returns when an append rewrote the chunk, which keeps the rows stored before
        it: the current table lists it, or an append in progress (or interrupted:
        its record is left, or the store is incomplete, in a run of
        ``write_batches``) replaced the partial last chunk the reader knows with
        this one (:meth:`_rewritten`).

        Raises
        ------
        MetatensorDaskError
            When the store was overwritten since it was opened.
        DamagedStoreError
            When the chunk is not the one the store lists.
        """
        # the record first: an append writes it, its chunks, its documents, then
        # deletes it; read after the chunk, a record found gone means that the root
        # and the node read next list what the append wrote
        record = await _get(self.store, _APPEND_KEY)
        root, node = await asyncio.gather(
            _get(self.store, "zarr.json"), _get(self.store, f"{self.path}/zarr.json")
        )
        current, document, complete = _current(root, node, self.path)
        if not _is_opened(current, self.store_id):
            name = chunk_name(self.path, self.document, index)
            raise _overwritten(self.where, f"the chunk {name} of the array '{self.path}'")
        attributes = document.get("attributes") if isinstance(document, dict) else None
        table = attributes.get(TABLE) if isinstance(attributes, dict) else None
        if isinstance(table, list) and index < len(table) and table[index] == crc:
            return
        rows = int(self.document["shape"][0])
        appending = not self.strict and (record is not None or not complete)
        last = index == _chunks(self.document) - 1
        if appending and rows % _rows(self.document)[0] and last:
            if await self._rewritten(index, crc, covered):
                return
        raise _not_listed(self.where, self.path, chunk_name(self.path, self.document, index))

    async def _rewritten(self, index: int, crc: int, covered: Any) -> bool:
        """Whether the partial last chunk ``index``, which ends with ``crc`` (of its
        bytes ``covered``), is the one an append in progress (or interrupted) wrote in
        its place, keeping its rows: a plain chunk begins with the rows its listed
        checksum covers (the chunk listed holds them followed by the zeros padding it;
        an older copy put back holds zeros in their place); a compressed one, whose
        checksum covers its compressed bytes, ends with the checksum the append noted
        before it wrote it (see :func:`rewritten_key`)."""
        if _plain_sizes(self.document) is not None:
            return _begins_with_rows(self.document, covered, self.table[index])
        noted = await _get(self.store, rewritten_key(self.path, index))
        return noted_crc(noted) == crc


def rewritten_key(path: str, index: int) -> str:
    """The key where an append notes the crc32c ending the partial last chunk
    ``index`` of the compressed array ``path`` that it writes in its place, before it
    writes it: while the append is in progress or interrupted, readers accept that
    chunk, the chunk listed, and no other (the checksum of a compressed chunk covers its
    compressed bytes: the rows it keeps can not be checked against the one listed)."""
    return f"{_PROGRESS}rewritten-{quote(f'{path}/{index}', safe='')}.json"


def noted(document: dict[str, Any]) -> bool:
    """Whether an append notes the partial last chunk of the array it writes in its
    place (see :func:`rewritten_key`): an array with a table whose chunks are not
    plain (compressed), which readers can not check by its rows."""
    return records_table(document) and _plain_sizes(document) is None


def note(crc: int) -> bytes:
    """The content of a :func:`rewritten_key`: ``{"crc32c": crc}``."""
    return json.dumps({"crc32c": crc}).encode()


def noted_crc(raw: bytes | None) -> int | None:
    """The crc32c a note of :func:`note` holds (``None``: no note, or not one)."""
    try:
        found = json.loads(raw)["crc32c"] if raw is not None else None
    except (ValueError, TypeError, KeyError):
        return None
    return found if type(found) is int else None


def chunk_end_crc(document: dict[str, Any], raw: bytes, index: int) -> int | None:
    """The crc32c ending the chunk ``index`` of an array in ``raw``, the bytes of the
    file holding it (its shard: the inner chunk its index locates); ``None`` when it
    does not hold it."""
    sharding = _sharding(document)
    if sharding is None:
        return last_crc(raw) if len(raw) >= 4 else None
    chunk, grid = _rows(document)
    entries = grid // chunk
    footer = 16 * entries + 4
    if len(raw) < footer:
        return None
    offset, length = index_pairs(raw[-footer:], entries)[index % entries]
    if offset == _EMPTY or length < 4 or offset + length > len(raw):
        return None
    return last_crc(raw[offset : offset + length])


def _begins_with_rows(document: dict[str, Any], covered: Any, listed: int) -> bool:
    """Whether the partial last chunk of the plain array ``document``, whose bytes but
    its checksum are ``covered``, begins with the rows of the chunk listed with the
    crc32c ``listed`` (see :meth:`ChunkIdentity._rewritten`)."""
    sizes = _plain_sizes(document)
    assert sizes is not None, "the chunks are plain"
    head, whole = sizes
    data = memoryview(covered).cast("B")
    if data.nbytes != whole:
        return False
    from crc32c import crc32c

    return extend_zeros(crc32c(data[:head]), whole - head) == listed


def check_partial_chunks(
    store: Any, where: str, nodes: dict[str, dict[str, Any]], found: dict[str, dict[str, Any]]
) -> None:
    """Check the chunks of the arrays ``found`` (path: the array's document, its table
    as :func:`with_tables` read it from the chunks stored) whose entries are not those
    of the arrays' listed documents ``nodes``, as an interrupted append left them: only
    the partial last chunk of an array may differ, and it must be the one the append
    wrote in its place, as a reader checks it (see :meth:`ChunkIdentity._rewritten`):
    a plain one still begins with the rows listed (an older copy put back holds zeros
    in their place), a compressed one ends with the checksum the append noted.

    Raises
    ------
    DamagedStoreError
        For another chunk that differs, or a partial last chunk that is not the one the
        append wrote.
    """
    changed = []  # (path, index, crc): partial last chunks not listed
    for path, document in found.items():
        listed, stored = nodes[path]["attributes"][TABLE], document["attributes"][TABLE]
        last = _chunks(nodes[path]) - 1
        partial = int(nodes[path]["shape"][0]) % _rows(nodes[path])[0] != 0
        for index, (before, now) in enumerate(zip(listed, stored, strict=True)):
            if before != now and (index != last or not partial):
                raise _not_listed(where, path, chunk_name(path, nodes[path], index))
        if listed[last] != stored[last]:
            changed.append((path, last, int(stored[last])))
    checks = [(nodes[path], path, index, crc) for path, index, crc in changed]
    fine = sync(_each_rewritten(store, checks))
    for (path, index, _), good in zip(changed, fine, strict=True):
        if not good:
            raise _not_listed(where, path, chunk_name(path, nodes[path], index))


#: Chunks read at once by :func:`check_partial_chunks` (each held whole while checked).
_CHECKED_AT_ONCE = 4


async def _each_rewritten(
    store: Any, chunks: list[tuple[dict[str, Any], str, int, int]]
) -> list[bool]:
    """For each chunk (the array's listed document, path, index, the crc32c ending it),
    whether it is the one an append wrote in its place (see
    :meth:`ChunkIdentity._rewritten`), plain ones read a few at once."""
    semaphore = asyncio.Semaphore(_CHECKED_AT_ONCE)

    async def one(document: dict[str, Any], path: str, index: int, crc: int) -> bool:
        if _plain_sizes(document) is None:
            return noted_crc(await _get(store, rewritten_key(path, index))) == crc
        async with semaphore:
            covered = await _chunk_bytes(store, path, document, index)
            listed = document["attributes"][TABLE][index]
            return covered is not None and _begins_with_rows(document, covered, listed)

    return await asyncio.gather(*(one(*chunk) for chunk in chunks))


async def _chunk_bytes(store: Any, path: str, document: dict[str, Any], index: int) -> bytes | None:
    """The bytes but its checksum of chunk ``index`` of an array: its file, or its
    range of its shard, which the shard's index locates; ``None`` when missing."""
    from zarr.abc.store import RangeByteRequest

    key = chunk_file_key(path, document, index)
    if _sharding(document) is None:
        raw = await _get(store, key)
        return raw[:-4] if raw is not None and len(raw) >= 4 else None
    chunk, grid = _rows(document)
    entries = grid // chunk
    pairs = await _shard_index(store, key, entries)
    if pairs is None:
        return None
    offset, length = pairs[index % entries]
    if offset == _EMPTY or length < 4:
        return None
    raw = await _get(store, key, RangeByteRequest(offset, offset + length))
    return raw[:-4] if raw is not None and len(raw) == length else None


def _plain_sizes(document: dict[str, Any]) -> tuple[int, int] | None:
    """For an array whose chunks (inner chunks of its shards) hold its rows' bytes and
    their crc32c, nothing else: the bytes of the rows of its partial last chunk and of
    a whole chunk, without the checksum; ``None`` for other codecs."""
    sharding = _sharding(document)
    codecs = _inner_codecs(document)
    if not isinstance(codecs, list):
        return None
    if [codec.get("name") if isinstance(codec, dict) else None for codec in codecs] != [
        "bytes",
        "crc32c",
    ]:
        return None
    shape = [int(n) for n in document["shape"]]
    chunk = sharding["chunk_shape"] if sharding is not None else _grid(document)
    if [int(n) for n in chunk[1:]] != shape[1:]:
        return None
    row = math.prod(shape[1:]) * np.dtype(document["data_type"]).itemsize
    rows = int(chunk[0])
    return shape[0] % rows * row, rows * row


def _grid(document: dict[str, Any]) -> list[Any]:
    """The chunk shape of the array's regular grid."""
    return document["chunk_grid"]["configuration"]["chunk_shape"]


def _not_listed(where: str, path: str, name: str, also: str = "") -> DamagedStoreError:
    """The error for a chunk that is not the one the table lists (``also``: what else
    it may be)."""
    return damaged(
        where,
        f"the chunk {name} of the array '{path}' is not the chunk the store lists: "
        f"swapped with another, or an older copy put back{also}",
    )
