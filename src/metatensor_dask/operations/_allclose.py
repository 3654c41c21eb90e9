"""``allclose``: whether two tensors or blocks have the same metadata and close values."""

from __future__ import annotations

import numbers

import numpy as np

from ..block import TensorBlock
from ..tensor import TensorMap
from ._equal import block_message, compare_blocks_impl, compare_tensors_impl
from ._utils import check_block, raise_not_equal

__all__ = ["allclose", "allclose_block", "allclose_block_raise", "allclose_raise"]


# metatensor checks gradient metadata in this order in `allclose`
_GRADIENT_CHECK = ["samples", "properties", "components"]


def _options(rtol: float, atol: float, equal_nan: bool) -> dict:
    """The tolerances for ``numpy.allclose``, checked before anything is computed."""
    for name, value in (("rtol", rtol), ("atol", atol)):
        if not isinstance(value, numbers.Real):
            raise TypeError(f"`{name}` must be a real number, not {type(value)}")
    return {"rtol": rtol, "atol": atol, "equal_nan": equal_nan}


def _tensor_impl(
    tensor_1: TensorMap, tensor_2: TensorMap, rtol: float, atol: float, equal_nan: bool
) -> str:
    options = _options(rtol, atol, equal_nan)
    return compare_tensors_impl(
        tensor_1, tensor_2, np.allclose, options, "allclose", "allclose", _GRADIENT_CHECK
    )


def _block_impl(
    block_1: TensorBlock, block_2: TensorBlock, rtol: float, atol: float, equal_nan: bool
) -> str:
    check_block(block_1, "block_1")
    check_block(block_2, "block_2")
    options = _options(rtol, atol, equal_nan)
    return block_message(
        compare_blocks_impl(
            [(block_1, block_2)], np.allclose, options, "allclose", "allclose", _GRADIENT_CHECK
        )
    )


def allclose(
    tensor_1: TensorMap,
    tensor_2: TensorMap,
    rtol: float = 1e-13,
    atol: float = 1e-12,
    equal_nan: bool = False,
) -> bool:
    """Whether two maps have the same keys (in any order) and blocks with the same
    metadata and values (and gradients, gradients of gradients included) equal within
    ``numpy.allclose`` tolerances.

    Keys, shapes and metadata (gradients' included) are compared first: maps that
    differ there are told different without computing anything. Else every
    comparison of values is computed in one ``dask.compute``.

    Parameters
    ----------
    tensor_1, tensor_2
        The maps to compare.
    rtol, atol
        Relative and absolute tolerances: ``|a - b| <= atol + rtol * |b|``.
    equal_nan
        Whether NaNs at the same place compare equal.

    Returns
    -------
    bool
        ``True`` when they are close.
    """
    return not _tensor_impl(tensor_1, tensor_2, rtol, atol, equal_nan)


def allclose_raise(
    tensor_1: TensorMap,
    tensor_2: TensorMap,
    rtol: float = 1e-13,
    atol: float = 1e-12,
    equal_nan: bool = False,
) -> None:
    """As :func:`allclose`, raising :class:`NotEqualError` with the first difference.

    A difference of keys, shapes or metadata is raised without computing anything,
    naming the first block that differs there, as :func:`equal_raise` does.

    Raises
    ------
    NotEqualError
        Naming the first difference, e.g. ``blocks for key (a=0) are different: values
        are not allclose``.
    """
    raise_not_equal(_tensor_impl(tensor_1, tensor_2, rtol, atol, equal_nan))


def allclose_block(
    block_1: TensorBlock,
    block_2: TensorBlock,
    rtol: float = 1e-13,
    atol: float = 1e-12,
    equal_nan: bool = False,
) -> bool:
    """Whether two blocks have the same metadata and close values and gradients."""
    return not _block_impl(block_1, block_2, rtol, atol, equal_nan)


def allclose_block_raise(
    block_1: TensorBlock,
    block_2: TensorBlock,
    rtol: float = 1e-13,
    atol: float = 1e-12,
    equal_nan: bool = False,
) -> None:
    """As :func:`allclose_block`, raising :class:`NotEqualError` with the first
    difference (of shapes or metadata without computing anything, as
    :func:`equal_block_raise`)."""
    raise_not_equal(_block_impl(block_1, block_2, rtol, atol, equal_nan))
