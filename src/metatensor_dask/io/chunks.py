"""Chunk sizes along samples: the ``chunks=`` argument, size targets, regular grids.

The one parser of ``chunks=`` for every reader and writer (``load``, ``open_zarr``,
``to_zarr``).

A block's values are chunked along samples only; its gradients follow (co-partitioning,
see :mod:`metatensor_dask._partition`). A size target applies to the *largest*
co-partitioned array of the block: usually a gradient, which has many rows per sample.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from dask.utils import parse_bytes

from .. import config
from ..errors import MetatensorDaskError

if TYPE_CHECKING:
    import dask.array as da

__all__ = ["ChunkRequest", "aligned", "parse_chunks", "regular", "target_rows"]


@dataclass(frozen=True)
class ChunkRequest:
    """A parsed ``chunks=`` argument: ``"keep"`` the stored (or existing) chunking,
    ``amount`` value ``"rows"`` per chunk, or ``amount`` ``"bytes"`` per chunk of the
    largest co-partitioned array."""

    kind: Literal["keep", "rows", "bytes"]
    amount: int = 0

    def or_default(self) -> ChunkRequest:
        """This request, with ``"keep"`` read as the ``chunk-size`` setting."""
        return ChunkRequest("bytes", default_target()) if self.kind == "keep" else self


def parse_chunks(chunks: Any) -> ChunkRequest:
    """``None``: stored (or existing) chunking; an int: value rows per chunk; a size
    string such as ``"64MiB"``, or ``"auto"`` for the ``chunk-size`` setting: target
    bytes of the largest co-partitioned array."""
    if chunks is None:
        return ChunkRequest("keep")
    if isinstance(chunks, (int, np.integer)) and not isinstance(chunks, bool):
        if chunks < 1:
            raise MetatensorDaskError(f"`chunks` must be at least one row per chunk, got {chunks}")
        return ChunkRequest("rows", int(chunks))
    if chunks == "auto":
        return ChunkRequest("bytes", config.chunk_size())
    if isinstance(chunks, str):
        if _is_number(chunks):
            # dask reads a number without a unit as bytes: '1.5' would be chunks of one row
            raise MetatensorDaskError(
                f"`chunks` {chunks!r} has no unit: give a size with its unit, such as "
                "'64MiB', or a whole number of rows (an int, 1000 on the command line)"
            )
        try:
            amount = parse_bytes(chunks)
        except (ValueError, TypeError):
            amount = 0
        if amount < 1:
            raise MetatensorDaskError(
                f"`chunks` must be a size such as '64MiB' or a number of rows, got {chunks!r}"
            )
        return ChunkRequest("bytes", int(amount))
    raise TypeError(
        f"`chunks` must be None, a number of rows or a size such as '64MiB', got "
        f"{type(chunks).__name__}"
    )


def _is_number(text: str) -> bool:
    """Whether ``text`` is a number alone (``"1.5"``, ``"1e6"``, ``"1_000"``, ``"1 000"``),
    without a unit: what dask's ``parse_bytes`` reads as bytes (it drops the spaces,
    then reads what no letter ends as a float)."""
    try:
        float(text.replace(" ", ""))
    except ValueError:
        return False
    return True


def default_target() -> int:
    """The ``chunk-size`` setting, in bytes."""
    return config.chunk_size()


def row_bytes(shape: tuple[int, ...], dtype: Any) -> int:
    """Bytes of one row (first axis) of an array."""
    return math.prod(int(n) for n in shape[1:]) * np.dtype(dtype).itemsize


def data_sizes(block: Any) -> list[tuple[int, int]]:
    """``(rows, bytes per row)`` of the values of ``block`` and of every (nested)
    gradient, as :func:`target_rows` takes them.

    ``block`` is a :class:`~metatensor_dask.block.TensorBlock` (a tensor being written)
    or the :class:`~metatensor_dask.io.zarr_layout.BlockLayout` of a stored one (a store
    being opened): both have ``values`` with a shape and dtype, and gradients (a method
    giving ``(parameter, gradient)`` pairs, or a mapping).
    """
    values = block.values
    sizes = [(values.shape[0], row_bytes(values.shape, values.dtype))]
    gradients = block.gradients
    children = gradients.values() if isinstance(gradients, dict) else (g for _, g in gradients())
    for gradient in children:
        sizes.extend(data_sizes(gradient))
    return sizes


def target_rows(
    n_rows: int, arrays: Iterable[tuple[int, int]], target: int, most: int | None = None
) -> int:
    """Value rows per chunk so that every co-partitioned array meets ``target`` bytes,
    at most ``most`` (``n_rows`` when not given).

    Rows of no bytes (a block without properties, and its gradients) meet any target:
    they get ``most`` rows per chunk, whatever the target, never one chunk per row.

    Parameters
    ----------
    n_rows
        Rows of the values.
    arrays
        ``(rows, bytes per row)`` of the values and of every (nested) gradient; a
        chunk of ``r`` value rows holds on average ``r * rows / n_rows`` of their rows.
    target
        Bytes per chunk.
    most
        The most value rows per chunk; ``n_rows`` when ``None``.
    """
    if n_rows == 0:
        return 1
    limit = n_rows if most is None else most
    per_value_row = max((rows / n_rows) * size for rows, size in arrays)
    if per_value_row <= 0:
        return limit
    return min(int(max(target // per_value_row, 1)), limit)


def regular(n: int, step: int) -> tuple[int, ...]:
    """Chunk sizes of ``n`` rows in chunks of ``step`` (a smaller last one)."""
    if n == 0:
        return (0,)
    step = max(int(step), 1)
    full, rest = divmod(n, step)
    return (step,) * full + ((rest,) if rest else ())


def unpointed_gradient_rows(shape: tuple[int, ...], chunk_rows: int) -> tuple[int, ...]:
    """The row chunks in which a stored gradient whose rows are not grouped by sample
    (it has no row pointer) is opened: its stored chunks, whatever the values' chunks
    (no values chunk tells where its rows go)."""
    return regular(shape[0], chunk_rows)


def is_regular(chunks: tuple[int, ...]) -> bool:
    """Whether chunk sizes form a regular grid: all equal but a smaller last one."""
    if len(chunks) <= 1:
        return True
    return len(set(chunks[:-1])) == 1 and chunks[-1] <= chunks[0]


def aligned(array: da.Array, rows: int) -> da.Array:
    """``array`` rechunked to ``rows`` rows per chunk, whole along the other axes.

    This makes every dask chunk exactly one zarr chunk (or shard) of the target
    array, so that no two tasks write to the same chunk.
    """
    from .._graph import rechunked  # imports dask.array, which this module does not

    wanted = (regular(array.shape[0], rows), *tuple((n,) for n in array.shape[1:]))
    return rechunked(array, wanted)


def check_aligned(chunks: tuple[int, ...], rows: int, path: str) -> None:
    """Refuse a chunking that would let two tasks write into one zarr chunk or shard."""
    if tuple(chunks) != regular(sum(chunks), rows):
        raise MetatensorDaskError(
            f"the dask chunks of '{path}' ({chunks[:4]}{'...' if len(chunks) > 4 else ''} "
            f"rows) do not coincide with its zarr chunks or shards of {rows} rows: writing "
            f"them in parallel would corrupt data; rechunk the array to {rows} rows per "
            "chunk (`array.rechunk({0: rows})`) before writing"
        )


def count(n: int, step: int) -> int:
    """Number of chunks of ``step`` rows in ``n`` rows (at least one)."""
    return max(math.ceil(n / max(step, 1)), 1)
