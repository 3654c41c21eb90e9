"""``equal_metadata``: whether two tensors or blocks have the same metadata."""

from __future__ import annotations

from collections.abc import Sequence

from ..block import TensorBlock
from ..errors import wrong_type
from ..tensor import TensorMap
from ._utils import (
    blocks_by_key,
    check_blocks_impl,
    check_same_gradients_impl,
    check_same_keys_impl,
    raise_not_equal,
)

__all__ = [
    "equal_metadata",
    "equal_metadata_block",
    "equal_metadata_block_raise",
    "equal_metadata_raise",
]

# metatensor names this function in every message, for maps and blocks alike
_FNAME = "equal_metadata_block_raise"


def _not_a(name: str, expected: type, value: object) -> str:
    """metatensor's message for an argument ``value`` that is not an ``expected``,
    with the remedy when ``value`` comes from metatensor-core; empty when it is one."""
    if isinstance(value, expected):
        return ""
    return str(
        wrong_type(f"`{name}` must be a metatensor {expected.__name__}, not {type(value)}", value)
    )


def _block_impl(
    block_1: TensorBlock, block_2: TensorBlock, check: Sequence[str] | str, check_gradients: bool
) -> str:
    message = _not_a("block_1", TensorBlock, block_1) or _not_a("block_2", TensorBlock, block_2)
    if message:
        return message
    message = check_blocks_impl(block_1, block_2, _FNAME, check=check)
    if message or not check_gradients:
        return message
    return check_same_gradients_impl(block_1, block_2, _FNAME, check=check, nested=True)


def _tensor_impl(
    tensor_1: TensorMap, tensor_2: TensorMap, check: Sequence[str] | str, check_gradients: bool
) -> str:
    message = _not_a("tensor_1", TensorMap, tensor_1) or _not_a("tensor_2", TensorMap, tensor_2)
    if message:
        return message
    message = check_same_keys_impl(tensor_1, tensor_2, "equal_metadata_raise")
    if message:
        return message
    for block_1, block_2 in zip(tensor_1.blocks(), blocks_by_key(tensor_1, tensor_2), strict=True):
        message = _block_impl(block_1, block_2, check, check_gradients)
        if message:
            return message
    return ""


def equal_metadata(
    tensor_1: TensorMap,
    tensor_2: TensorMap,
    check: Sequence[str] | str = "all",
    check_gradients: bool = True,
) -> bool:
    """Whether two maps have the same keys (in any order) and blocks with the same
    metadata. No values are computed (lazy sample labels may be read).

    Parameters
    ----------
    tensor_1, tensor_2
        The maps to compare; anything else makes the answer ``False``.
    check
        ``"all"`` or a list among ``"samples"``, ``"components"``, ``"properties"``.
    check_gradients
        Also compare the gradients' parameters and metadata, and those of their
        gradients (gradients of gradients).

    Returns
    -------
    bool
        ``True`` when the metadata agree.

    Raises
    ------
    ValueError
        If ``check`` names something else.
    """
    return not _tensor_impl(tensor_1, tensor_2, check, check_gradients)


def equal_metadata_raise(
    tensor_1: TensorMap,
    tensor_2: TensorMap,
    check: Sequence[str] | str = "all",
    check_gradients: bool = True,
) -> None:
    """As :func:`equal_metadata`, raising :class:`NotEqualError` with the difference.

    Raises
    ------
    NotEqualError
        Naming the first difference (in metatensor's words).
    """
    raise_not_equal(_tensor_impl(tensor_1, tensor_2, check, check_gradients))


def equal_metadata_block(
    block_1: TensorBlock,
    block_2: TensorBlock,
    check: Sequence[str] | str = "all",
    check_gradients: bool = True,
) -> bool:
    """Whether two blocks have the same metadata (see :func:`equal_metadata`)."""
    return not _block_impl(block_1, block_2, check, check_gradients)


def equal_metadata_block_raise(
    block_1: TensorBlock,
    block_2: TensorBlock,
    check: Sequence[str] | str = "all",
    check_gradients: bool = True,
) -> None:
    """As :func:`equal_metadata_block`, raising :class:`NotEqualError`."""
    raise_not_equal(_block_impl(block_1, block_2, check, check_gradients))
