"""The value row of each gradient row inside a kernel, without gathering when possible.

Gradient kernels (the product rule of ``multiply``, the power rule of ``pow``, ...)
combine each gradient row with the value row it refers to (its ``"sample"``).
Gathering these rows (``values[index]``) copies as many rows as the gradient has.
:class:`ValueRows` looks at the index of one chunk (a few microseconds: one comparison
per gradient row) and picks how the kernel sees them:

* **regular**: every value row has the same number ``k`` of gradient rows, in order
  (featomic's positions gradients, 1 row per sample for strain gradients): gradient
  arrays are seen as ``(n, k, ...)`` and the value rows as ``(n, 1, ...)``, a
  broadcasting view with no copy;
* **any other layout** (varying counts, rows in any order, empty): value rows are
  gathered block by block.

In both cases the kernel runs over blocks of :data:`ROW_BLOCK_BYTES` of gradient rows,
so that its temporaries stay in the CPU's cache; every element goes through the same
operations as in metatensor's whole-array expression (the same bits).
"""

from __future__ import annotations

import numpy as np

__all__ = ["ROW_BLOCK_BYTES", "ValueRows", "gathered_rows", "one_block", "row_blocks"]

#: Bytes of gradient rows that a kernel computes at a time.
ROW_BLOCK_BYTES = 2**19


def _slices(count: int, row_bytes: int) -> list[slice]:
    """``count`` rows of ``row_bytes`` bytes, :data:`ROW_BLOCK_BYTES` at a time."""
    step = max(1, ROW_BLOCK_BYTES // max(1, row_bytes))
    return [slice(start, min(start + step, count)) for start in range(0, count, step)]


def row_blocks(array: np.ndarray) -> list[slice]:
    """Slices of the rows of ``array``, :data:`ROW_BLOCK_BYTES` at a time.

    A kernel that computes a 64 MiB gradient chunk block by block keeps its temporaries
    in the CPU's cache instead of writing and reading chunk-sized ones: the product rule
    of ``multiply`` ran 35% faster, with the same operations on every element (the same
    bits).
    """
    return _slices(len(array), array.itemsize * int(np.prod(array.shape[1:])))


def one_block(gradient: np.ndarray) -> bool:
    """Whether ``gradient`` fits in one block: kernels then apply metatensor's
    whole-array expression directly (on maps of many tiny blocks, setting up the blocks
    would cost more than the arithmetic)."""
    return gradient.nbytes <= ROW_BLOCK_BYTES


def _regular_count(index: np.ndarray, n_values: int) -> int | None:
    """``k`` when ``index`` is ``0, ..., 0, 1, ..., 1, ...`` with ``k`` of each of the
    ``n_values`` rows (``k`` > 0), else None."""
    rows = len(index)
    if n_values == 0 or rows == 0 or rows % n_values:
        return None
    k = rows // n_values
    grid = np.asarray(index).reshape(n_values, k)
    if not np.array_equal(grid, np.broadcast_to(np.arange(n_values)[:, None], grid.shape)):
        return None
    return k


class ValueRows:
    """How the gradient rows of one chunk meet their value rows, for a kernel.

    Parameters
    ----------
    index
        For each gradient row, its value row among the ``n_values`` handed to the kernel.
    n_values
        The number of value rows.
    gradient_shape
        The shape of the gradient arrays.
    itemsize
        The bytes of one element of the arrays a block holds (sets the block size).

    Notes
    -----
    A kernel takes its gradient-shaped arrays (inputs and result) through
    :meth:`shaped`, loops over :meth:`blocks`, and takes value-shaped arrays through
    :meth:`rows`, which broadcast against ``shaped(gradient)[block]``.
    """

    __slots__ = ("_blocks", "_index", "_k", "_n", "_shape")

    def __init__(
        self, index: np.ndarray, n_values: int, gradient_shape: tuple[int, ...], itemsize: int
    ):
        self._shape = tuple(gradient_shape)
        self._index = index
        self._n = n_values
        self._k = _regular_count(index, n_values)
        row_bytes = itemsize * int(np.prod(self._shape[1:]))
        if self._k is None:
            self._blocks = _slices(len(index), row_bytes)
        else:  # blocks of whole samples, k rows each
            self._blocks = _slices(n_values, row_bytes * self._k)

    @property
    def regular(self) -> bool:
        """Whether every value row has the same number of gradient rows, in order."""
        return self._k is not None

    def shaped(self, array: np.ndarray) -> np.ndarray:
        """A gradient-shaped ``array`` as the blocks cut it: ``(n, k, ...)`` (a view)
        when regular, else as it is."""
        if self._k is None:
            return array
        return array.reshape(self._n, self._k, *array.shape[1:])

    def shaped_all(self, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        """:meth:`shaped` of each of ``arrays``."""
        return tuple(self.shaped(array) for array in arrays)

    def blocks(self) -> list[slice]:
        """Slices along the first axis of :meth:`shaped` arrays."""
        return self._blocks

    def rows(self, values: np.ndarray, block: slice) -> np.ndarray:
        """The rows of ``values`` matching ``shaped(gradient)[block]``, shaped to
        broadcast against it (a view when regular, else a gathered copy)."""
        if self._k is None:
            return gathered_rows(values, self._index[block], len(self._shape))
        taken = values[block]
        extra = len(self._shape) - values.ndim
        return taken.reshape(taken.shape[0], 1, *([1] * extra), *values.shape[1:])

    def scratch(self, array: np.ndarray) -> np.ndarray:
        """An uninitialised array for one block of the :meth:`shaped` ``array``: slice
        it to the length of each block (``scratch[: len(block)]``)."""
        first = self._blocks[0] if self._blocks else slice(0, 0)
        return np.empty_like(self.shaped(array)[first])


def gathered_rows(values: np.ndarray, index: np.ndarray, gradient_ndim: int) -> np.ndarray:
    """``values[index]`` shaped to broadcast against a gradient of ``gradient_ndim``
    axes (its own components become axes of length one), as metatensor builds it."""
    taken = values[index]
    extra = gradient_ndim - values.ndim
    return taken.reshape(taken.shape[0], *([1] * extra), *values.shape[1:])
