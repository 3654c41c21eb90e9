"""Refusing damage on the read side: missing chunks, and the messages naming it.

Since format 2 every chunk of every array is stored, all-zero ones too (and every inner
chunk of a shard), so a chunk that is not there always means damage. zarr itself reads
a missing chunk as the fill value; :class:`CheckedStore` is the store arrays are read
through, and turns a missing chunk (or, in a local store, anything but a regular file in
its place), or a shard whose index lists a missing inner chunk, into a
:class:`~metatensor_dask.errors.DamagedStoreError` before any data is decoded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from zarr.abc.store import RangeByteRequest, SuffixByteRequest
from zarr.storage import LocalStore, WrapperStore

from .._partition import misplaced_row
from ..errors import DamagedStoreError
from ..labels import Labels, repeats_an_entry
from ._file_reads import is_special
from .zarr_samples import chained_digest, is_chained

__all__ = [
    "CheckedStore",
    "checked_labels",
    "damaged",
    "index_pairs",
    "misplaced_message",
    "missing_chunk",
]

#: An empty entry (offset and length) of a shard index.
_EMPTY = np.uint64(2**64 - 1)


#: The part of a damaged store's message that points to ``verify`` (which drops it).
VERIFY_HINT = "; `metatensor-dask verify` lists every problem"


def damaged(where: str, message: str) -> DamagedStoreError:
    """The error for a damaged store: what is wrong, and what to do about it."""
    return DamagedStoreError(
        f"the store at {where} is damaged: {message}{VERIFY_HINT}; write or convert the "
        "tensor again from its source"
    )


def missing_chunk(where: str, path: str, key: str) -> DamagedStoreError:
    return damaged(where, f"the chunk '{key}' of the array '{path}' is missing")


def index_pairs(index: bytes, entries: int) -> list[tuple[int, int]]:
    """The (offset, length) of each inner chunk listed by a shard ``index``."""
    pairs = np.frombuffer(index[: 16 * entries], dtype="<u8").reshape(entries, 2)
    return [(int(offset), int(length)) for offset, length in pairs]


def shard_index_entries(document: dict[str, Any]) -> int | None:
    """Inner chunks per shard of a sharded array (``None`` when not sharded)."""
    codecs = document.get("codecs") or [{}]
    if codecs[0].get("name") != "sharding_indexed":
        return None
    outer = document["chunk_grid"]["configuration"]["chunk_shape"]
    inner = codecs[0]["configuration"]["chunk_shape"]
    return int(np.prod([o // i for o, i in zip(outer, inner, strict=True)]))


#: The names of the blosc codec, whose frames state their own size (bytes 12 to 16 of
#: their header, little endian).
_BLOSC = ("blosc", "numcodecs.blosc")


def blosc_tail(document: dict[str, Any]) -> int | None:
    """For an array whose chunks (or inner chunks) are each one blosc frame, the bytes
    that follow the frame in a chunk (4 with a ``crc32c``, else 0); ``None`` for
    other arrays."""
    codecs = document.get("codecs") or [{}]
    if codecs[0].get("name") == "sharding_indexed":
        codecs = codecs[0]["configuration"].get("codecs") or [{}]
    names = [codec.get("name") for codec in codecs[1:]]
    if names and names[0] in _BLOSC and names[1:] in ([], ["crc32c"]):
        return 4 * len(names[1:])
    return None


def missing_inner_chunks(index: bytes, document: dict[str, Any], shard: int) -> int:
    """Inner chunks of shard ``shard`` that hold rows of the array but are listed as
    missing in its ``index`` (pairs of ``<u8`` per inner chunk, then a checksum).

    Arrays are chunked along their first axis only, so inner chunk ``j`` holds the rows
    from ``shard * shard_rows + j * inner_rows``; those past the end of the array are
    never stored.
    """
    entries = shard_index_entries(document) or 0
    pairs = np.frombuffer(index[: 16 * entries], dtype="<u8").reshape(entries, 2)
    outer = int(document["chunk_grid"]["configuration"]["chunk_shape"][0])
    inner = int(document["codecs"][0]["configuration"]["chunk_shape"][0])
    starts = shard * outer + inner * np.arange(entries)
    holding = starts < int(document["shape"][0])
    return int(np.count_nonzero(holding & (pairs[:, 0] == _EMPTY)))


class CheckedStore(WrapperStore[Any]):
    """A read-only view of a store for reading one array, where a missing chunk (or
    inner chunk of a shard) raises :class:`DamagedStoreError`, unless ``missing_ok``,
    and so does a blosc frame whose header states another size than it has.

    Parameters
    ----------
    store
        The store.
    path
        The array's path in it.
    document
        The array's metadata document.
    where
        The store's description, for messages.
    identity
        The chunk table the reader opened (format 4, see
        :class:`~metatensor_dask.io.zarr_identity.ChunkIdentity`), which every chunk
        file read whole (the index of a shard) is checked against; ``None`` for none.
    missing_ok
        Read a missing chunk as zarr does, as the fill value (the arrays of format 1
        stores with a compressor or sharding, which skipped all-zero chunks).
    """

    def __init__(
        self,
        store: Any,
        path: str,
        document: dict[str, Any],
        where: str,
        identity: Any = None,
        missing_ok: bool = False,
    ):
        super().__init__(store)
        self._missing_ok = missing_ok
        self._path = path
        self._document = document
        self._where = where
        self._entries = shard_index_entries(document)
        self._identity = identity
        self._blosc_tail = blosc_tail(document)
        #: The (offset, length) of the inner chunks of each shard, by the index read
        #: last (before its chunks), to know which chunk a range read is.
        self._indexes: dict[str, list[tuple[int, int]]] = {}

    def _with_store(self, store: Any) -> CheckedStore:
        return type(self)(
            store, self._path, self._document, self._where, self._identity, self._missing_ok
        )

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        found = None
        if not self._special(key):
            found = await self._store.get(key, prototype, byte_range)
        if key.endswith("zarr.json"):
            return found
        if found is None:
            if self._missing_ok:
                return None
            raise missing_chunk(self._where, self._path, key.rpartition("/")[2])
        whole = byte_range is None or (
            isinstance(byte_range, SuffixByteRequest)
            and self._entries is not None
            and byte_range.suffix == 16 * self._entries + 4
        )
        if self._entries is not None and whole:
            size = 16 * self._entries + 4
            name = key.rpartition("/")[2]
            if len(found) < size:
                raise damaged(
                    self._where,
                    f"the shard '{name}' of the array '{self._path}' is truncated "
                    f"({len(found)} bytes)",
                )
            index = found.as_numpy_array()[-size:].tobytes()
            empty = missing_inner_chunks(index, self._document, int(name.split(".")[1]))
            if empty and not self._missing_ok:
                raise damaged(
                    self._where,
                    f"{empty} chunk(s) of the shard '{name}' of the array '{self._path}' are "
                    "missing",
                )
        if self._identity is None and self._blosc_tail is None:
            return found
        chunks = self._whole_chunks(key, byte_range, found.as_numpy_array(), whole)
        if self._blosc_tail is not None:
            for index, chunk in chunks:
                self._check_blosc(key, index, chunk)
        if self._identity is not None:
            # checked against the table of the chunks (see
            # :class:`~.zarr_identity.ChunkIdentity`)
            for index, chunk in chunks:
                if len(chunk) >= 4:
                    await self._check(index, chunk)
        return found

    def _special(self, key: str) -> bool:
        """Whether a local store holds something other than a file at ``key``: a
        missing chunk, which zarr's local store would open and read (a named pipe
        waits for a writer forever)."""
        store = self._store
        return isinstance(store, LocalStore) and is_special(str(store.root / key))

    def _whole_chunks(
        self, key: str, byte_range: Any, raw: np.ndarray, whole: bool
    ) -> list[tuple[int, np.ndarray]]:
        """Each whole chunk in ``raw`` (what was read of ``key``), with its index in the
        array: a chunk file read whole, the inner chunks of a shard read whole, or one
        inner chunk read by its range, which the shard's index (read before it)
        locates."""
        file = int(key.rpartition("/")[2].split(".")[1])
        if self._entries is None:
            return [(file, raw)] if byte_range is None else []
        if whole:
            pairs = index_pairs(raw[-16 * self._entries - 4 :].tobytes(), self._entries)
            self._indexes[key] = pairs
            if byte_range is not None:
                return []
            return [
                (file * self._entries + j, raw[offset : offset + length])
                for j, (offset, length) in enumerate(pairs)
                if offset != int(_EMPTY)
            ]
        if isinstance(byte_range, RangeByteRequest):
            place = (byte_range.start, byte_range.end - byte_range.start)
            pairs = self._indexes.get(key, [])
            if place in pairs:
                return [(file * self._entries + pairs.index(place), raw)]
        return []

    def _check_blosc(self, key: str, index: int, chunk: np.ndarray) -> None:
        """Refuse a blosc frame whose header states another size than it has: blosc's
        decoder trusts the header, reading past the end of a frame cut short, and
        returns what it finds there without an error."""
        frame = chunk[: len(chunk) - (self._blosc_tail or 0)]
        stated = int.from_bytes(frame[12:16].tobytes(), "little") if len(frame) >= 16 else None
        if stated != len(frame):
            name = key.rpartition("/")[2]
            what = (
                f"the chunk '{name}'"
                if self._entries is None
                else f"the chunk {index % self._entries} of the shard '{name}'"
            )
            told = "less than a header" if stated is None else f"its header states {stated}"
            raise damaged(
                self._where,
                f"{what} of the array '{self._path}' is a blosc frame of {len(frame)} "
                f"bytes where {told}: cut short or written over",
            )

    async def _check(self, index: int, chunk: np.ndarray) -> None:
        crc = int.from_bytes(chunk[-4:].tobytes(), "little")
        await self._identity.check_async(index, crc, chunk[:-4])


def checked_labels(
    where: str,
    path: str,
    names: list[str],
    values: np.ndarray,
    digest: str | None,
    parent_rows: int | None = None,
    pointer: np.ndarray | None = None,
    chunk_rows: int | None = None,
) -> Labels:
    """Labels read from a store, after checking that they are what was written.

    Parameters
    ----------
    where, path
        The store's description and the array's path, for messages.
    names, values
        The Labels' names and entries as read.
    digest
        The digest recorded at write time (``None`` for none).
    parent_rows
        For gradient samples, the number of rows of the parent block: the ``sample``
        column must index them.
    pointer
        For gradient samples grouped by sample, the stored row pointer, which must
        agree with the ``sample`` column.
    chunk_rows
        Rows per stored chunk of the Labels, to name the chunk of a misplaced row.

    Raises
    ------
    DamagedStoreError
        When the entries do not match the recorded digest, repeat an entry, or (for
        gradient samples) do not index the parent's rows as the row pointer says.
    """
    labels = Labels._trusted(names, np.asarray(values, dtype=np.int32))
    actual = chained_digest(names, labels.values) if is_chained(digest) else labels.digest()
    if digest is not None and actual != digest:
        raise damaged(where, f"the Labels '{path}' do not match the digest recorded when written")
    rows = labels.values
    if repeats_an_entry(rows):
        raise damaged(where, f"the Labels '{path}' have repeated entries")
    if parent_rows is not None and len(rows):
        column = rows[:, 0]
        low, high = int(column.min()), int(column.max())
        if low < 0 or high >= parent_rows:
            raise damaged(
                where,
                f"the gradient samples '{path}' refer to the sample rows [{low}, {high}] of a "
                f"parent with {parent_rows} rows",
            )
        misplaced = None if pointer is None else misplaced_row(column, np.diff(pointer))
        if misplaced is not None:
            row, value_row = misplaced
            chunk = "" if chunk_rows is None else f" (in its stored chunk {row // chunk_rows})"
            raise damaged(
                where,
                f"the gradient samples '{path}' disagree with the stored row pointer: "
                f"{misplaced_message(row, int(column[row]), value_row)}{chunk}",
            )
    return labels


def misplaced_message(row: int, sample: int, value_row: int) -> str:
    """What is wrong with gradient row ``row`` (see
    :func:`~metatensor_dask._partition.misplaced_row`)."""
    return (
        f"the gradient row {row} has the sample {sample}, where the row pointer puts it in "
        f"the value row {value_row}"
    )
