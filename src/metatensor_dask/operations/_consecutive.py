"""Pieces whose rows go to consecutive output rows, written by one concatenation.

``keys_to_samples`` places the rows of thousands of tiny pieces at given output rows,
by batches: the pieces are concatenated into a reused array, whose rows are then
scattered to their targets (see :class:`~._stacking.RowTargets`). When pieces go
one after the other to consecutive rows (samples not sorted, or each block's samples
together), that second copy is not needed: the pieces are concatenated straight into
those rows of the output. :func:`consecutive_runs` finds them with a few numpy calls
on the target of every row, whatever the pieces.

Pieces whose rows are interleaved (sorted samples: each sample of every block in
turn) are left to the scatter: written through strided views of the output, one
numpy assignment per piece into rows far apart was measured slower than the
concatenation and the scatter together (the pieces' own memory, read once either
way, costs more than the second copy).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["MIN_BYTES", "Run", "consecutive_runs"]

MIN_BYTES = 16 * 2**10
"""Fewest bytes of a run of pieces concatenated into the output: shorter runs cost
more in calls than their rows scattered."""


def consecutive_runs(
    targets: np.ndarray, counts: np.ndarray, row_bytes: int
) -> tuple[list[Run], np.ndarray]:
    """The runs of pieces whose placed rows go to consecutive output rows, one piece
    after the other, and a mask of the pieces with placed rows in none.

    Parameters
    ----------
    targets
        The output row of every row of the pieces, their rows one after the other, or
        -1 for a row left out. No two rows may have the same target.
    counts
        The rows of each piece.
    row_bytes
        The bytes of one row (runs of fewer than :data:`MIN_BYTES` are left out).
    """
    n_pieces = len(counts)
    alone = np.zeros(n_pieces, bool)
    rows = np.flatnonzero(targets >= 0)
    if not len(rows):
        return [], alone
    target = targets[rows]
    piece = np.repeat(np.arange(n_pieces), counts)[rows]
    # a piece is consecutive when each of its placed rows follows the previous one,
    # in the piece and in the output
    broken = (piece[1:] == piece[:-1]) & (
        (rows[1:] != rows[:-1] + 1) | (target[1:] != target[:-1] + 1)
    )
    opens = np.flatnonzero(np.r_[True, piece[1:] != piece[:-1]])
    placed = np.diff(opens, append=len(rows))
    consecutive = np.bincount(piece[1:][broken], minlength=n_pieces)[piece[opens]] == 0
    alone[piece[opens[~consecutive]]] = True
    chosen = np.flatnonzero(consecutive)
    if not len(chosen):
        return [], alone
    order = chosen[np.argsort(target[opens[chosen]], kind="stable")]
    start, size = target[opens[order]], placed[order]
    first = rows[opens[order]] - (np.cumsum(counts) - counts)[piece[opens[order]]]
    # runs: pieces whose rows follow the previous piece's
    follows = np.r_[False, start[1:] == start[:-1] + size[:-1]]
    bounds = np.flatnonzero(~follows)
    stops = np.r_[bounds[1:], len(order)]
    totals = np.add.reduceat(size, bounds)
    runs = []
    for a, b, total in zip(bounds.tolist(), stops.tolist(), totals.tolist(), strict=True):
        members = piece[opens[order[a:b]]]
        if total * row_bytes < MIN_BYTES:
            alone[members] = True
        else:
            runs.append(Run(members, first[a:b], size[a:b], int(start[a])))
    return runs, alone


class Run:
    """Pieces whose placed rows go one after the other to consecutive output rows.

    Parameters
    ----------
    pieces
        The pieces, in output order.
    first
        The first placed row of each piece.
    size
        The placed rows of each piece (consecutive in it).
    start
        The output row of the first of them.
    """

    __slots__ = ("first", "pieces", "size", "start")

    def __init__(self, pieces: np.ndarray, first: np.ndarray, size: np.ndarray, start: int):
        self.pieces, self.first, self.size, self.start = pieces, first, size, start

    def write(self, arrays: Sequence[np.ndarray], counts: np.ndarray, out: np.ndarray) -> None:
        """The placed rows of the pieces (taken from ``arrays``, ``counts`` rows each)
        concatenated into their output rows."""
        parts = [arrays[i] for i in self.pieces.tolist()]
        # only the first and last pieces of a run of a row chunk may be cut
        cut = np.flatnonzero((self.first != 0) | (self.size != counts[self.pieces]))
        for j in cut.tolist():
            head = int(self.first[j])
            parts[j] = parts[j][head : head + int(self.size[j])]
        total = int(self.size.sum())
        np.concatenate(parts, out=out[self.start : self.start + total])
