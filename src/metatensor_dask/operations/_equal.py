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


def _metadata_message(
    block_1: TensorBlock, block_2: TensorBlock, fname: str, gradient_check: list[str] | str
) -> str:
    """metatensor's message for the first difference of shapes or metadata of two
    blocks (their gradients' included), "" when there is none."""
    if block_1._values.shape != block_2._values.shape:
        return "values shapes are different"
    if _same_metadata(block_1, block_2):
        return ""
    return check_blocks_impl(block_1, block_2, fname) or check_same_gradients_impl(
        block_1, block_2, fname, gradient_check, nested=True
    )


def _gather_gradients(
    block_1: TensorBlock,
    block_2: TensorBlock,
    path: str,
    arrays: list[tuple[Any, Any]],
    paths: list[str],
) -> None:
    """Append the pair of values of each gradient of two blocks of the same metadata
    to ``arrays``, and its path to ``paths`` (``'positions/strain'`` for a gradient of
    a gradient), each followed by those of its own gradients."""
    gradients_2 = block_2._gradients
    for parameter, gradient_1 in block_1._gradients.items():
        gradient_2 = gradients_2[parameter]
        name = f"{path}/{parameter}" if path else parameter
        arrays.append((gradient_1._values, gradient_2._values))
        paths.append(name)
        if gradient_1._gradients:
            _gather_gradients(gradient_1, gradient_2, name, arrays, paths)


@without_collector
def compare_blocks_impl(
    pairs: list[tuple[TensorBlock, TensorBlock]],
    compare: Callable[..., bool],
    kwargs: dict[str, Any],
    fname: str,
    word: str,
    gradient_check: list[str] | str = "all",
) -> tuple[int, str] | None:
    """The first pair of blocks that differ and metatensor's message for it, None when
    they all agree.

    Shapes and metadata are compared first, for every pair: a difference there is
    told without computing anything. Else the values and gradients of every pair are
    compared in a single ``dask.compute``, and the first pair whose values differ is
    told, or else the first whose gradient values do (gradients of gradients
    included, named by their path: ``'positions/strain'``)."""
    check_metadata_names(gradient_check)
    for position, (block_1, block_2) in enumerate(pairs):
        message = _metadata_message(block_1, block_2, fname, gradient_check)
        if message:
            return position, message
    arrays: list[tuple[Any, Any]] = []
    paths: list[list[str]] = []
    for block_1, block_2 in pairs:
        arrays.append((block_1._values, block_2._values))
        paths.append([])
        _gather_gradients(block_1, block_2, "", arrays, paths[-1])
    same = iter(compare_pairs(compare, arrays, kwargs))
    for position, block_paths in enumerate(paths):
        if not next(same):
            return position, f"values are not {word}"
        failing = [path for path in block_paths if not next(same)]
        if failing:
            return position, f"gradient '{failing[0]}' values are not {word}"
    return None


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
    generations every few hundred blocks); see :func:`compare_blocks_impl`."""
    check_tensor(tensor_1, "tensor_1")
    check_tensor(tensor_2, "tensor_2")
    message = check_same_keys_impl(tensor_1, tensor_2, fname)
    if message:
        return f"the tensor maps have different keys: {message}"
    pairs = list(zip(tensor_1.blocks(), blocks_by_key(tensor_1, tensor_2), strict=True))
    first = compare_blocks_impl(pairs, compare, kwargs, fname, word, gradient_check)
    if first is None:
        return ""
    position, message = first
    return f"blocks for key {tensor_1.keys.entry(position).print()} are different: {message}"


def block_message(first: tuple[int, str] | None) -> str:
    """The message of :func:`compare_blocks_impl` for one pair of blocks."""
    return "" if first is None else first[1]


def _equal_block_impl(block_1: TensorBlock, block_2: TensorBlock) -> str:
    check_block(block_1, "block_1")
    check_block(block_2, "block_2")
    return block_message(
        compare_blocks_impl([(block_1, block_2)], array_equal, {}, "equal", "equal")
    )


def equal(tensor_1: TensorMap, tensor_2: TensorMap) -> bool:
    """Whether two maps have the same keys (in any order), and blocks with the same
    metadata, values and gradients, gradients of gradients included (exact
    comparison; NaN differs from itself).

    Keys, shapes and metadata (gradients' included) are compared first: maps that
    differ there are told different without computing anything. Else every
    comparison of values is computed in one ``dask.compute``.

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

    A difference of keys, shapes or metadata is raised without computing anything:
    the first block (in the order of ``tensor_1``) that differs there is named, even
    where the values of this or an earlier block differ too (metatensor names the
    first block whose values, shapes or metadata differ, and the values first).

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
    """As :func:`equal_block`, raising :class:`NotEqualError` with the first difference
    (of shapes or metadata without computing anything, even where the values differ
    too: metatensor names the values first)."""
    raise_not_equal(_equal_block_impl(block_1, block_2))
