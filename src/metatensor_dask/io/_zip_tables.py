"""ZIP records of many members laid out at once: each member's fixed fields (a row of
a table), its name, and fixed fields after the name, one member after the other.

Laid out through rows of a window over the output (one index entry per member) and a
mask of the name bytes (one byte per byte): an index of every byte written (8 bytes per
byte) would be hundreds of MiB of new memory for the 800,000 members of a file of
100,000 blocks, touched once.
"""

from __future__ import annotations

import numpy as np

__all__ = ["with_names"]


def with_names(
    rows: np.ndarray, names: bytes, lengths: np.ndarray, tails: np.ndarray
) -> np.ndarray:
    """The bytes of member ``k``'s ``rows[k]``, its name (the next ``lengths[k]`` bytes
    of ``names``, the names one after the other) and ``tails[k]``, for every member in
    order.

    Parameters
    ----------
    rows, tails
        ``uint8`` arrays of one row per member (``tails`` may have rows of 0 bytes).
    names
        The names' bytes, one after the other.
    lengths
        Bytes of each name.
    """
    count, width = rows.shape
    tail = tails.shape[1]
    sizes = width + lengths + tail
    out = np.empty(int(sizes.sum()), np.uint8)
    if not count:
        return out
    starts = np.cumsum(sizes) - sizes
    is_name = np.ones(len(out), bool)
    _window(out, width)[starts] = rows
    _window(is_name, width)[starts] = False
    if tail:
        _window(out, tail)[starts + width + lengths] = tails
        _window(is_name, tail)[starts + width + lengths] = False
    # in order: the name bytes are the positions left
    np.place(out, is_name, np.frombuffer(names, np.uint8))
    return out


def _window(array: np.ndarray, width: int) -> np.ndarray:
    """Writable rows of ``width`` bytes of ``array``, one starting at each position."""
    return np.lib.stride_tricks.sliding_window_view(array, width, writeable=True)
