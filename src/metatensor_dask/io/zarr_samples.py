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
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import numpy as np

__all__ = [
    "CHAIN_ROWS",
    "chained_digest",
    "extend_attributes",
    "is_chained",
    "is_entry",
    "records_problem",
    "sample_attributes",
]

#: Rows hashed per block of the chained digest.
CHAIN_ROWS = 2**16
_PREFIX = "c1-"


def is_chained(digest: str | None) -> bool:
    """Whether ``digest`` is a chained (format 3 sample) digest."""
    return isinstance(digest, str) and digest.startswith(_PREFIX)


def _hash(*parts: bytes) -> bytes:
    hasher = hashlib.blake2b(digest_size=16)
    for part in parts:
        hasher.update(part)
    return hasher.digest()


def _rows(values: np.ndarray) -> bytes:
    return np.ascontiguousarray(values, dtype="<i4").tobytes()


def _advance(state: bytes, values: np.ndarray) -> tuple[bytes, np.ndarray]:
    """The state after hashing the whole blocks of ``values``, and the rows left over."""
    full = len(values) - len(values) % CHAIN_ROWS
    for start in range(0, full, CHAIN_ROWS):
        state = _hash(state, _rows(values[start : start + CHAIN_ROWS]))
    return state, values[full:]


def _finish(state: bytes, rest: np.ndarray) -> str:
    return _PREFIX + _hash(state, _rows(rest)).hex()


def chained_digest(names: list[str], values: np.ndarray) -> str:
    """The chained digest of Labels with these ``names`` and ``values``."""
    state, rest = _advance(_hash(repr(list(names)).encode()), values)
    return _finish(state, rest)


def _maxima(values: np.ndarray) -> tuple[list[int] | None, list[int] | None]:
    if len(values) == 0:
        return None, None
    order = np.lexsort(values.T[::-1])
    return [int(v) for v in values[order[-1]]], [int(v) for v in values.max(axis=0)]


def sample_attributes(names: list[str], values: np.ndarray) -> dict[str, Any]:
    """The attributes of a ``samples`` array holding ``values``."""
    start = _hash(repr(list(names)).encode())
    state, rest = _advance(start, values)
    largest, columns = _maxima(values)
    return {
        "names": list(names),
        "digest": _finish(state, rest),
        "chain": {"rows": len(values) - len(rest), "state": state.hex()},
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


def extend_attributes(
    attributes: dict[str, Any], rest: np.ndarray, added: np.ndarray
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
    """
    chain = attributes["chain"]
    state, left = _advance(bytes.fromhex(chain["state"]), np.concatenate([rest, added]))
    largest, columns = _maxima(added)
    if attributes.get("max") is not None and largest is not None:
        largest = max(list(attributes["max"]), largest)
        assert columns is not None, "rows were added, so they have column maxima"
        columns = [max(a, b) for a, b in zip(attributes["column_max"], columns, strict=True)]
    elif largest is None:
        largest, columns = attributes.get("max"), attributes.get("column_max")
    return {
        **attributes,
        "digest": _finish(state, left),
        "chain": {"rows": chain["rows"] + len(rest) + len(added) - len(left), "state": state.hex()},
        "max": largest,
        "column_max": columns,
    }
