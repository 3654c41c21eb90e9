"""Gradient co-partitioning: gradient chunk *i* holds the rows of values chunk *i*.

Values are chunked along samples. A gradient row belongs to the value row given by its
``"sample"`` column. When gradient rows are grouped by that column (non-decreasing, as
metatensor's calculators produce them), the CSR row pointer ``ptr`` (``n_samples + 1``
entries; the gradient rows of value row ``r`` are ``ptr[r]:ptr[r + 1]``) turns any values
chunking into a gradient chunking, so that an operation combining a value row with its
gradient rows runs chunk by chunk with local indices: no gather, no shuffle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import dask.array as da

    from .block import TensorBlock

__all__ = [
    "co_partitioned",
    "gradient_row_chunks",
    "local_sample_index",
    "misplaced_row",
    "row_pointer",
    "split_row_chunks",
    "stored_local_index",
    "stored_sample_column",
]


def row_pointer(sample_column: np.ndarray, n_samples: int) -> np.ndarray | None:
    """The CSR row pointer of a gradient, or ``None`` when its rows are not grouped.

    Parameters
    ----------
    sample_column
        The gradient's ``"sample"`` column.
    n_samples
        Number of value rows.
    """
    column = np.asarray(sample_column)
    if len(column) > 1 and np.any(column[1:] < column[:-1]):
        return None
    return np.searchsorted(column, np.arange(n_samples + 1), side="left").astype(np.int64)


def misplaced_row(column: np.ndarray, counts: np.ndarray, first: int = 0) -> tuple[int, int] | None:
    """The first gradient row that is not where the row pointer puts it, or None.

    Parameters
    ----------
    column
        The ``"sample"`` column of the gradient rows of the value rows ``first``,
        ``first + 1``, ... (consecutive gradient rows, ``sum(counts)`` of them).
    counts
        The number of gradient rows of each of these value rows, by the row pointer
        (``numpy.diff`` of its entries ``first:first + len(counts) + 1``).
    first
        The first of these value rows.

    Returns
    -------
    tuple[int, int] | None
        ``(gradient row within column, value row the pointer gives it)`` for the first
        row whose ``"sample"`` differs, None when all agree.
    """
    expected = np.repeat(np.arange(first, first + len(counts), dtype=np.int64), counts)
    wrong = np.flatnonzero(column != expected)
    if len(wrong) == 0:
        return None
    return int(wrong[0]), int(expected[wrong[0]])


def block_row_pointer(block: TensorBlock, parameter: str) -> np.ndarray | None:
    """The row pointer of ``block.gradient(parameter)``: stored, or built from its samples."""
    gradient = block.gradient(parameter)
    if gradient.row_pointer is None:
        # made and checked (as `set_row_pointer` does) once per gradient samples:
        # the blocks of a map often share them; the gradient has one row per entry
        samples, n_samples = gradient.samples, len(block)

        def make() -> np.ndarray | None:
            from .block import checked_row_pointer

            pointer = row_pointer(samples.column("sample"), n_samples)
            if pointer is None:
                return None
            return checked_row_pointer(pointer, n_samples, len(samples), parameter)

        pointer = samples._derived(("row pointer", n_samples), make)
        if pointer is not None:
            block._set_checked_row_pointer(parameter, pointer)
    return gradient.row_pointer


def gradient_row_chunks(pointer: np.ndarray, value_chunks: tuple[int, ...]) -> tuple[int, ...]:
    """Gradient chunk sizes along rows matching the values chunks ``value_chunks``."""
    bounds = np.concatenate([[0], np.cumsum(value_chunks)]).astype(np.int64)
    return tuple(int(n) for n in np.diff(pointer[bounds]))


def split_row_chunks(
    value_chunks: tuple[int, ...],
    value_row_bytes: int,
    budget: int,
    gradients: tuple[tuple[np.ndarray, int], ...] = (),
) -> tuple[int, ...]:
    """``value_chunks`` cut further so that no chunk holds more than ``budget`` bytes.

    Parameters
    ----------
    value_chunks
        Row chunks of an array (the values of a block).
    value_row_bytes
        Bytes of one of its rows.
    budget
        The most bytes of a chunk.
    gradients
        ``(pointer, row_bytes)`` of gradients co-partitioned with the array: each of
        their chunks (:func:`gradient_row_chunks` of the result) stays within ``budget``
        too.

    Returns
    -------
    tuple[int, ...]
        The new row chunks, each within one of ``value_chunks`` (a chunk keeps at least
        one row, whatever its bytes; empty chunks stay; rows of no bytes set no limit).
    """
    limits = [(np.arange(sum(value_chunks) + 1, dtype=np.int64), value_row_bytes)]
    limits.extend((np.asarray(pointer, np.int64), row_bytes) for pointer, row_bytes in gradients)
    chunks: list[int] = []
    start = 0
    for size in value_chunks:
        stop = start + size
        chunks.extend(_pieces(start, stop, limits, budget) if size else [0])
        start = stop
    return tuple(chunks)


def _pieces(start: int, stop: int, limits: list[tuple[np.ndarray, int]], budget: int) -> list[int]:
    """Sizes of the consecutive pieces of rows ``start:stop`` that keep the rows of every
    ``(pointer, row_bytes)`` of ``limits`` within ``budget`` bytes (at least one row each)."""
    pieces = []
    while start < stop:
        end = stop
        for pointer, row_bytes in limits:
            if row_bytes == 0:
                continue
            rows = budget // row_bytes
            end = min(end, int(np.searchsorted(pointer, pointer[start] + rows, "right")) - 1)
        end = max(end, start + 1)
        pieces.append(end - start)
        start = end
    return pieces


def local_sample_index(pointer: np.ndarray, value_chunks: tuple[int, ...]) -> da.Array:
    """For each gradient row, the index of its value row *within its values chunk*.

    A dask array chunked as :func:`gradient_row_chunks`, built from the pointer alone
    (no sample labels are read).
    """
    import dask.array as da

    # one task per values chunk, each holding only its own slice of the row counts;
    # empty chunks are kept, so that the result lines up with the gradient chunks
    counts = da.from_array(np.diff(pointer), chunks=(tuple(value_chunks),))
    return da.map_blocks(
        _local_rows,
        counts,
        chunks=(gradient_row_chunks(pointer, value_chunks),),
        dtype=np.int64,
        meta=np.empty((0,), np.int64),
    )


def stored_sample_column(block: TensorBlock, parameter: str, pointer: np.ndarray | None) -> Any:
    """The stored ``"sample"`` column of a gradient with a row pointer whose samples
    are still in a store (not loaded), else None.

    With it, chunk-wise tasks read the ``"sample"`` column of their own gradient rows
    and check it against ``pointer`` (see
    :class:`~metatensor_dask.io.zarr_columns.StoredSampleColumn`), so that a damaged
    row pointer raises instead of pairing value rows with the wrong gradient rows.
    Samples in memory are not checked again: those read from a store were checked as a
    whole against its row pointer when read, and otherwise (``.mts`` files, blocks
    built in memory) the pointer was computed from them, or attached with
    :meth:`~metatensor_dask.block.TensorBlock.set_row_pointer`, which is trusted.
    """
    if pointer is None:
        return None
    return block.gradient(parameter).samples._stored_source()


def stored_local_index(
    block: TensorBlock, parameter: str, pointer: np.ndarray | None, value_chunks: tuple[int, ...]
) -> da.Array | None:
    """:func:`local_sample_index`, read from the store and checked by each chunk's task,
    for a gradient with a :func:`stored_sample_column`; None otherwise."""
    source = stored_sample_column(block, parameter, pointer)
    return None if source is None else source.local_index(pointer, value_chunks)


def _local_rows(counts: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(counts), dtype=np.int64), counts)


def co_partitioned(block: TensorBlock, parameter: str) -> tuple[da.Array, da.Array] | None:
    """The values and ``parameter`` gradient, the gradient rechunked so that its chunk
    *i* holds exactly the rows of values chunk *i*; ``None`` when the gradient rows are
    not grouped by sample (use a general path then)."""
    import dask.array as da

    from ._graph import rechunked

    values = da.asarray(block.values)
    gradient = da.asarray(block.gradient(parameter).values)
    pointer = block_row_pointer(block, parameter)
    if pointer is None:
        return None
    chunks = gradient_row_chunks(pointer, values.chunks[0])
    return values, rechunked(gradient, (chunks, *gradient.chunks[1:]))
