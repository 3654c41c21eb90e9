"""Records of stored sample Labels that an append extends without reading the store.

Since format 3, the attributes of every ``samples`` array hold, besides its ``names``:

* ``digest``: a *chained* digest (``"c1-<hex>"``): the rows are hashed in blocks of
  :data:`CHAIN_ROWS`, each block into the state left by the ones before it, and the
  digest hashes the last state with the rows of the last, partial block. Appending rows
  needs the stored state and the rows of the partial block only (fewer than
  :data:`CHAIN_ROWS`), never the whole array;
* ``chain``: ``{"rows": r, "state": "<hex>"}``, the state after the first ``r`` rows
  (a multiple of :data:`CHAIN_ROWS`);
* ``max``: the lexicographically largest stored entry (``null`` without entries), so
  that appending entries that all sort after it is known to add no duplicate;
* ``column_max``: the largest stored value of each dimension (``null`` without
  entries), so that ``renumber={dim: "next"}`` costs no read.

The digest depends on the names and entries only (not on the chunking), so that two
stores holding the same samples have the same digest.

The rows of the partial block (up to :data:`CHAIN_ROWS`) are read from the store by
each append; when the samples are chunked in a few rows (a store grown by small
batches), that is thousands of chunk files per append. :class:`ChainTails` keeps them
in the appending process after each append, with the chain that hashed them and their
maxima, so that the next append reads and hashes only the rows stored since (its work
in proportion to the rows appended, not to the up to :data:`CHAIN_ROWS` rows kept);
the rows kept are trusted only when their chain, extended by the rows stored since,
gives the stored digest.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "CHAIN_ROWS",
    "TAILS",
    "Chain",
    "ChainTails",
    "StoredTail",
    "chained_digest",
    "extend_attributes",
    "is_chained",
    "is_entry",
    "records_below",
    "records_problem",
    "sample_attributes",
]

#: Rows hashed per block of the chained digest.
CHAIN_ROWS = 2**16
_PREFIX = "c1-"


def is_chained(digest: str | None) -> bool:
    """Whether ``digest`` is a chained (format 3 sample) digest."""
    return isinstance(digest, str) and digest.startswith(_PREFIX)


def _hasher(*parts: Any) -> Any:
    hasher = hashlib.blake2b(digest_size=16)
    for part in parts:
        hasher.update(part)
    return hasher


def _hash(*parts: Any) -> bytes:
    return _hasher(*parts).digest()


def _rows(values: np.ndarray) -> np.ndarray:
    """The rows as C-ordered little-endian int32, hashed from their own memory (a copy
    only when they are not already so)."""
    return np.ascontiguousarray(values, dtype="<i4")


class Chain:
    """A chained digest being computed, rows fed one piece after the other: the state
    after the whole blocks, and the hasher of the partial block (that state, then its
    rows). The rows are hashed where they are, never gathered into a copy, and each
    once: the digest of a stored tail checked is extended by the rows appended."""

    def __init__(self, state: bytes):
        self.state = state
        self._hasher = _hasher(state)
        #: Rows of the partial block.
        self.partial = 0

    def feed(self, *parts: np.ndarray) -> Chain:
        """Hash the rows of ``parts``, one after the other; returns this chain."""
        for part in parts:
            while len(part):
                piece = part[: CHAIN_ROWS - self.partial]
                self._hasher.update(_rows(piece))
                self.partial += len(piece)
                part = part[len(piece) :]
                if self.partial == CHAIN_ROWS:
                    self.state = self._hasher.digest()
                    self._hasher = _hasher(self.state)
                    self.partial = 0
        return self

    def digest(self) -> str:
        """The chained digest of the rows fed."""
        return _PREFIX + self._hasher.digest().hex()

    def copy(self) -> Chain:
        """An independent chain in the same state: feeding one leaves the other as is."""
        copied = Chain.__new__(Chain)
        copied.state, copied._hasher, copied.partial = self.state, self._hasher.copy(), self.partial
        return copied


def _start(names: list[str]) -> Chain:
    return Chain(_hash(repr(list(names)).encode()))


def chained_digest(names: list[str], values: np.ndarray) -> str:
    """The chained digest of Labels with these ``names`` and ``values``."""
    return _start(names).feed(values).digest()


#: Up to this many rows, :func:`_maxima` compares the rows as lists: a few numpy calls
#: cost more than the comparisons (the samples of maps of many tiny blocks).
_LISTED = 64


def _maxima(values: np.ndarray) -> tuple[list[int] | None, list[int] | None]:
    """The lexicographically largest row of ``values`` and the largest value of each
    column (``None`` without rows), in one pass per column rather than a sort."""
    if len(values) == 0:
        return None, None
    if len(values) <= _LISTED:
        rows = values.tolist()
        return max(rows), [max(column) for column in zip(*rows, strict=True)]
    largest = values
    for column in range(values.shape[1]):
        largest = largest[largest[:, column] == largest[:, column].max()]
    return [int(v) for v in largest[0]], [int(v) for v in values.max(axis=0)]


Maxima = tuple[list[int] | None, list[int] | None]
"""The lexicographically largest row and the largest value of each column of some rows
(both ``None`` without rows), as :func:`_maxima` gives them."""


def _merged(first: Maxima, second: Maxima) -> Maxima:
    """The maxima of two sets of rows, from the maxima of each."""
    if first[0] is None or second[0] is None:
        return second if first[0] is None else first
    assert first[1] is not None and second[1] is not None, "rows have column maxima"
    columns = [max(a, b) for a, b in zip(first[1], second[1], strict=True)]
    return max(first[0], second[0]), columns


def sample_attributes(names: list[str], values: np.ndarray) -> dict[str, Any]:
    """The attributes of a ``samples`` array holding ``values``."""
    chain = _start(names).feed(values)
    largest, columns = _maxima(values)
    return {
        "names": list(names),
        "digest": chain.digest(),
        "chain": {"rows": len(values) - chain.partial, "state": chain.state.hex()},
        "max": largest,
        "column_max": columns,
    }


_STATE = re.compile("[0-9a-f]{32}")
"""A chain state: 16 bytes in lowercase hex."""


def is_entry(value: Any, dims: int) -> bool:
    """Whether ``value``, read from a JSON record, is one Labels entry of ``dims`` ints."""
    return type(value) is list and len(value) == dims and all(type(v) is int for v in value)


def records_problem(attributes: dict[str, Any], rows: int, dims: int) -> str | None:
    """The record of the attributes of a ``samples`` array of ``rows`` entries of ``dims``
    values that is malformed (``"chain"``, ``"max"``, ``"column_max"``), ``None`` when
    all are well formed. Whether they agree with the entries needs the entries."""
    chain = attributes.get("chain")
    hashed = chain.get("rows") if isinstance(chain, dict) else None
    state = chain.get("state") if isinstance(chain, dict) else None
    if (
        type(hashed) is not int
        or hashed % CHAIN_ROWS
        or not 0 <= rows - hashed < CHAIN_ROWS
        or not isinstance(state, str)
        or _STATE.fullmatch(state) is None
    ):
        return "chain"
    for name in ("max", "column_max"):
        value = attributes.get(name, False)
        if (value is not None or rows) and not is_entry(value, dims):
            return name
    return None


def records_below(attributes: dict[str, Any], maxima: Maxima) -> str | None:
    """The record of a ``samples`` array (``"max"``, ``"column_max"``) that some of its
    stored rows exceed, from their ``maxima`` (see :attr:`StoredTail.maxima`), ``None``
    when none does. An append trusts both (to skip the search for duplicates, to
    renumber): one below the entries it reads was edited."""
    largest, columns = maxima
    if largest is None:
        return None
    recorded = attributes.get("max")
    if recorded is None or largest > list(recorded):
        return "max"
    recorded = attributes.get("column_max")
    assert columns is not None, "rows have column maxima"
    if recorded is None or any(a > b for a, b in zip(columns, recorded, strict=True)):
        return "column_max"
    return None


def extend_attributes(
    attributes: dict[str, Any],
    rest: np.ndarray,
    added: np.ndarray,
    hashed: Chain | None = None,
) -> dict[str, Any]:
    """The attributes of a ``samples`` array after appending ``added``.

    Parameters
    ----------
    attributes
        The stored attributes (with ``chain``, ``max`` and ``column_max``).
    rest
        The stored rows after ``attributes["chain"]["rows"]`` (fewer than
        :data:`CHAIN_ROWS`).
    added
        The appended rows.
    hashed
        The stored state with ``rest`` fed already (as :meth:`ChainTails.stored_tail`
        gives it when it checked them), ``None`` to feed them here. It is fed
        ``added``.
    """
    chain = attributes["chain"]
    if hashed is None:
        hashed = Chain(bytes.fromhex(chain["state"])).feed(rest)
    hashed.feed(added)
    largest, columns = _maxima(added)
    if attributes.get("max") is not None and largest is not None:
        largest = max(list(attributes["max"]), largest)
        assert columns is not None, "rows were added, so they have column maxima"
        columns = [max(a, b) for a, b in zip(attributes["column_max"], columns, strict=True)]
    elif largest is None:
        largest, columns = attributes.get("max"), attributes.get("column_max")
    return {
        **attributes,
        "digest": hashed.digest(),
        "chain": {
            "rows": chain["rows"] + len(rest) + len(added) - hashed.partial,
            "state": hashed.state.hex(),
        },
        "max": largest,
        "column_max": columns,
    }


@dataclass
class StoredTail:
    """The stored rows of a samples array after its chain's whole blocks, checked."""

    #: The rows (never to be written to: they may be the memory a process keeps).
    rows: np.ndarray
    #: The stored chain state with :attr:`rows` fed, this caller's own: the caller
    #: compares its digest with the stored one, then feeds it the rows appended.
    chain: Chain
    #: The maxima of :attr:`rows` (see :func:`records_below`).
    maxima: Maxima
    #: The stored rows before :attr:`rows` (the chain's whole blocks).
    start: int
    #: The tail kept whose rows these are, ``None`` for rows read.
    source: _Kept | None = None


class _Kept:
    """The tail of one samples array kept by a process: its rows, in a buffer grown
    geometrically so that rows added are copied once, the chain with them fed, their
    maxima, and the chain record (``rows``, ``state``) of the whole blocks before them."""

    def __init__(self, start: int, state: str, rows: np.ndarray, chain: Chain, maxima: Maxima):
        self.start, self.state = start, state
        self.buffer = np.array(rows, dtype=np.int32, order="C")
        self.count = len(rows)
        self.chain, self.maxima = chain, maxima

    @property
    def rows(self) -> np.ndarray:
        return self.buffer[: self.count]

    def add(self, rows: np.ndarray, chain: Chain) -> None:
        """Add ``rows`` after the kept ones, ``chain`` the chain with all of them fed.
        Rows handed out before (views of the buffer) keep their values."""
        if len(rows) == 0:
            self.chain = chain
            return
        needed = self.count + len(rows)
        if needed > len(self.buffer):
            grown = np.empty((max(needed, 2 * len(self.buffer)), rows.shape[1]), np.int32)
            grown[: self.count] = self.rows
            self.buffer = grown
        self.buffer[self.count : needed] = rows
        self.count = needed
        self.chain = chain
        self.maxima = _merged(self.maxima, _maxima(rows))


class ChainTails:
    """The rows after the last chain block of samples arrays this process appended to
    (their *tail*), so that an append reads only the rows stored since it last saw the
    array, instead of up to :data:`CHAIN_ROWS` rows from as many chunk files.

    With them are kept the chain that hashed them and their maxima, so that the work of
    an append is in proportion to the rows stored since and appended, never to the
    rows kept (re-hashing and copying the kept rows at every append made each append of
    small batches cost more, up to 2.5 ms per samples array, as the tail grew towards
    :data:`CHAIN_ROWS`). Kept rows are never trusted blindly: their chain, extended by
    the rows read, must give the stored digest, else the whole tail is read from the
    store (the array was rewritten, or appended to by another process in another way).
    At most ``limit`` bytes of rows are kept, the arrays used last.
    """

    def __init__(self, limit: int = 64 * 2**20):
        self._limit = limit
        self._tails: OrderedDict[Any, _Kept] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def stored_tail(
        self,
        key: Any,
        attributes: dict[str, Any],
        n_rows: int,
        read: Callable[[int, int], np.ndarray],
    ) -> StoredTail:
        """The stored rows after ``attributes["chain"]["rows"]`` of the samples array
        ``key`` (``(where, path)``: the store as messages name it, and the array's path;
        of ``n_rows`` rows, with these attributes); ``read(start, stop)`` reads stored
        rows. With them, the stored state with them fed (see :func:`extend_attributes`),
        whose digest the caller compares with the stored one: rows kept in memory are
        taken when their chain, extended by the rows stored since, gives it, else read
        again, and rows read that do not match it are damage (an entry edited with its
        chunk's checksum, or the ``digest`` or ``chain`` edited), never to be extended
        into a digest of the damaged rows."""
        chain = attributes["chain"]
        start = int(chain["rows"])
        with self._lock:
            kept = self._tails.get(key)
        if kept is not None and (kept.start, kept.state) == (start, chain["state"]):
            known = start + kept.count
            if known <= n_rows:
                since = read(known, n_rows)
                hashed = kept.chain.copy().feed(since)
                matches = hashed.digest() == attributes.get("digest")
                with self._lock:
                    # another thread may have added rows to it since ``known`` was taken
                    if matches and kept.count == known - start:
                        counted = self._tails.get(key) is kept  # (not evicted since)
                        self._bytes -= kept.buffer.nbytes if counted else 0
                        kept.add(since, hashed)
                        self._bytes += kept.buffer.nbytes if counted else 0
                        return StoredTail(kept.rows, hashed.copy(), kept.maxima, start, kept)
        rows = read(start, n_rows)
        hashed = Chain(bytes.fromhex(chain["state"])).feed(rows)
        return StoredTail(rows, hashed, _maxima(rows), start)

    def remember(
        self, key: Any, attributes: dict[str, Any], tail: StoredTail, added: np.ndarray
    ) -> None:
        """Keep the tail of ``key`` after an append that gave it these ``attributes``:
        ``tail`` as :meth:`stored_tail` gave it, its chain since fed the rows ``added``
        (by :func:`extend_attributes`). The rows added to a tail kept are copied once;
        when the append completed a chain block, only the rows after it are kept."""
        start = int(attributes["chain"]["rows"])
        hashed = tail.chain.copy()
        with self._lock:
            kept = self._tails.pop(key, None)
            if kept is not None:
                self._bytes -= kept.buffer.nbytes
            if start != tail.start:  # a block completed: the rest of ``added`` is the tail
                rows = added[start - tail.start - len(tail.rows) :]
                kept = _Kept(start, attributes["chain"]["state"], rows, hashed, _maxima(rows))
            elif kept is not None and kept is tail.source and kept.count == len(tail.rows):
                kept.add(added, hashed)
            else:
                rows = np.concatenate([tail.rows, added])
                kept = _Kept(start, attributes["chain"]["state"], rows, hashed, _maxima(rows))
            if kept.buffer.nbytes > self._limit:
                return
            self._tails[key] = kept
            self._bytes += kept.buffer.nbytes
            while self._bytes > self._limit:
                self._forget(next(iter(self._tails)))

    def _forget(self, key: Any) -> None:
        kept = self._tails.pop(key, None)
        if kept is not None:
            self._bytes -= kept.buffer.nbytes


#: The tails kept by this process (see :class:`ChainTails`).
TAILS = ChainTails()
