"""``equal``: whether two tensors or blocks have the same metadata and values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._gc import without_collector
from ..block import TensorBlock
from ..tensor import TensorMap
from ._compare import array_equal, compare_pairs
from ._utils import (
    blocks_by_key,
    check_block,
    check_blocks_impl,
    check_metadata_names,
    check_same_gradients_impl,
    check_same_keys_impl,
    check_tensor,
    raise_not_equal,
)

__all__ = ["equal", "equal_block", "equal_block_raise", "equal_raise"]


def _same_metadata(a: TensorBlock, b: TensorBlock) -> bool:
    """Whether ``a`` and ``b`` have the same samples, components and properties, and
    gradients with the same parameters and metadata: one pass over each block's
    attributes, where no difference needs a message."""
    if not (
        a._samples == b._samples
        and a._components == b._components
        and a._properties == b._properties
    ):
        return False
    gradients_a, gradients_b = a._gradients, b._gradients
    if len(gradients_a) != len(gradients_b):
        return False
    for parameter, gradient_a in gradients_a.items():
        gradient_b = gradients_b.get(parameter)
        if gradient_b is None or not _same_metadata(gradient_a, gradient_b):
            return False
    return True


@without_collector
def compare_blocks_impl(
    pairs: list[tuple[TensorBlock, TensorBlock]],
    compare: Callable[..., bool],
    kwargs: dict[str, Any],
    fname: str,
    word: str,
    gradient_check: list[str] | str = "all",
) -> list[str]:
    """metatensor's first difference for each pair of blocks ("" when they agree): the
    shapes, the values, the metadata, the gradient metadata, then gradient values.
    Every comparison of values is computed in a single ``dask.compute``."""
    check_metadata_names(gradient_check)
    arrays: list[tuple[Any, Any]] = []
    plans: list[tuple[str, int | None, str, list[tuple[str, int]]]] = []
    for block_1, block_2 in pairs:
        values_1, values_2 = block_1._values, block_2._values
        if values_1.shape != values_2.shape:
            plans.append(("values shapes are different", None, "", []))
            continue
        values = len(arrays)
        arrays.append((values_1, values_2))
        message = ""
        if not _same_metadata(block_1, block_2):
            # the first difference, in metatensor's order and words
            message = check_blocks_impl(block_1, block_2, fname) or check_same_gradients_impl(
                block_1, block_2, fname, gradient_check
            )
        gradients = []
        if not message:
            gradients_2 = block_2._gradients
            for parameter, gradient_1 in block_1._gradients.items():
                gradients.append((parameter, len(arrays)))
                arrays.append((gradient_1._values, gradients_2[parameter]._values))
        plans.append(("", values, message, gradients))
    same = compare_pairs(compare, arrays, kwargs)
    messages = []
    for shape_message, position, message, gradients in plans:
        if shape_message:
            messages.append(shape_message)
        elif position is not None and not same[position]:
            messages.append(f"values are not {word}")
        elif message:
            messages.append(message)
        else:
            failing = [p for p, position in gradients if not same[position]]
            messages.append(f"gradient '{failing[0]}' values are not {word}" if failing else "")
    return messages


@without_collector
def compare_tensors_impl(
    tensor_1: TensorMap,
    tensor_2: TensorMap,
    compare: Callable[..., bool],
    kwargs: dict[str, Any],
    fname: str,
    word: str,
    gradient_check: list[str] | str = "all",
) -> str:
    """metatensor's first difference between two maps, keys in any order (with the
    collector paused: matching the blocks by key made a pass of the young
    generations every few hundred blocks)."""
    check_tensor(tensor_1, "tensor_1")
    check_tensor(tensor_2, "tensor_2")
    message = check_same_keys_impl(tensor_1, tensor_2, fname)
    if message:
        return f"the tensor maps have different keys: {message}"
    pairs = list(zip(tensor_1.blocks(), blocks_by_key(tensor_1, tensor_2), strict=True))
    messages = compare_blocks_impl(pairs, compare, kwargs, fname, word, gradient_check)
    # the key of the first difference only (an entry per key made ten thousand
    # objects on a map of ten thousand blocks)
    first = next((i for i, message in enumerate(messages) if message), None)
    if first is None:
        return ""
    return f"blocks for key {tensor_1.keys.entry(first).print()} are different: {messages[first]}"


def _equal_block_impl(block_1: TensorBlock, block_2: TensorBlock) -> str:
    check_block(block_1, "block_1")
    check_block(block_2, "block_2")
    return compare_blocks_impl([(block_1, block_2)], array_equal, {}, "equal", "equal")[0]


def equal(tensor_1: TensorMap, tensor_2: TensorMap) -> bool:
    """Whether two maps have the same keys (in any order), and blocks with the same
    metadata, values and gradients (exact comparison; NaN differs from itself).

    Computes every comparison of values in one ``dask.compute``.

    Parameters
    ----------
    tensor_1, tensor_2
        The maps to compare.

    Returns
    -------
    bool
        ``True`` when they are equal.
    """
    return not compare_tensors_impl(tensor_1, tensor_2, array_equal, {}, "equal", "equal")


def equal_raise(tensor_1: TensorMap, tensor_2: TensorMap) -> None:
    """As :func:`equal`, raising :class:`NotEqualError` with the first difference.

    Raises
    ------
    NotEqualError
        Naming the first difference, e.g. ``blocks for key (a=0) are different: values
        are not equal``.
    """
    raise_not_equal(compare_tensors_impl(tensor_1, tensor_2, array_equal, {}, "equal", "equal"))


def equal_block(block_1: TensorBlock, block_2: TensorBlock) -> bool:
    """Whether two blocks have the same metadata, values and gradients (exactly)."""
    return not _equal_block_impl(block_1, block_2)


def equal_block_raise(block_1: TensorBlock, block_2: TensorBlock) -> None:
    """As :func:`equal_block`, raising :class:`NotEqualError` with the first difference."""
    raise_not_equal(_equal_block_impl(block_1, block_2))
