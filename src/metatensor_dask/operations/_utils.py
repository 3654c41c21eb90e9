"""Metadata checks shared by the operations, with metatensor-operations' messages.

Each ``*_impl`` function returns an empty string when the check passes and the message
metatensor would give otherwise; the ``*_raise`` forms raise :class:`NotEqualError`.
Nothing here computes values: comparing sample Labels goes through
:meth:`Labels.__eq__`, which answers from identity or recorded digests before reading
entries.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

from ..block import TensorBlock
from ..errors import NotEqualError
from ..tensor import TensorMap

__all__ = [
    "block_like",
    "blocks_by_key",
    "check_block",
    "check_blocks_impl",
    "check_blocks_raise",
    "check_gradient_presence_raise",
    "check_same_gradients_impl",
    "check_same_gradients_raise",
    "check_same_keys_impl",
    "check_same_keys_raise",
    "check_scalar_or_tensor",
    "check_tensor",
    "is_scalar",
    "map_blocks_pairwise",
    "no_gradients_of_gradients",
    "parse_check",
]


def check_tensor(value: object, name: str) -> None:
    """Raise metatensor's ``TypeError`` when ``value`` is not a TensorMap."""
    if not isinstance(value, TensorMap):
        raise TypeError(f"`{name}` must be a metatensor TensorMap, not {type(value)}")


def check_block(value: object, name: str) -> None:
    """Raise a ``TypeError`` when ``value`` is not a TensorBlock."""
    if not isinstance(value, TensorBlock):
        raise TypeError(f"`{name}` must be a metatensor TensorBlock, not {type(value)}")


def check_same_keys_impl(a: TensorMap, b: TensorMap, fname: str) -> str:
    """Same key names, same number of keys, and every key of ``b`` in ``a`` (in any
    order)."""
    keys_a, keys_b = a.keys, b.keys
    if keys_a.names != keys_b.names:
        return (
            f"inputs to '{fname}' should have the same keys names, "
            f"got '{keys_a.names}' and '{keys_b.names}'"
        )
    if len(keys_a) != len(keys_b):
        return (
            f"inputs to '{fname}' should have the same number of blocks, "
            f"got {len(keys_a)} and {len(keys_b)}"
        )
    if keys_a == keys_b:
        return ""
    if any(keys_a.position(row) is None for row in keys_b.values):
        return f"inputs to '{fname}' should have the same keys"
    return ""


def check_same_keys_raise(a: TensorMap, b: TensorMap, fname: str) -> None:
    message = check_same_keys_impl(a, b, fname)
    if message:
        raise NotEqualError(message)


def blocks_by_key(a: TensorMap, b: TensorMap) -> list[TensorBlock]:
    """The blocks of ``b`` in the order of ``a``'s keys (the keys must match)."""
    if a.keys == b.keys:
        return b.blocks()
    blocks = b.blocks()
    return [blocks[b.keys.position(row)] for row in a.keys.values]  # type: ignore[index]


def parse_check(check: Sequence[str] | str) -> list[str]:
    """The metadata named by ``check`` (``"all"`` or a list)."""
    if isinstance(check, str):
        if check == "all":
            return ["samples", "components", "properties"]
        raise ValueError("`check` must be a list of strings or 'all'")
    return list(check)


def check_blocks_impl(
    a: TensorBlock, b: TensorBlock, fname: str, check: Sequence[str] | str = "all"
) -> str:
    """Same samples, components and/or properties, in the same order."""
    for metadata in parse_check(check):
        if metadata == "samples":
            if a.samples != b.samples:
                return (
                    f"inputs to '{fname}' should have the same samples, "
                    "but they are not the same or not in the same order"
                )
        elif metadata == "properties":
            if a.properties != b.properties:
                return (
                    f"inputs to '{fname}' should have the same properties, "
                    "but they are not the same or not in the same order"
                )
        elif metadata == "components":
            if len(a.components) != len(b.components):
                return f"inputs to '{fname}' have a different number of components"
            for first, second in zip(a.components, b.components, strict=True):
                if first != second:
                    return (
                        f"inputs to '{fname}' should have the same components, "
                        "but they are not the same or not in the same order"
                    )
        else:
            raise ValueError(
                f"'{metadata}' does not refer to metadata to check, "
                "choose from 'samples', 'properties' and 'components'"
            )
    return ""


def check_blocks_raise(
    a: TensorBlock, b: TensorBlock, fname: str, check: Sequence[str] | str = "all"
) -> None:
    message = check_blocks_impl(a, b, fname, check)
    if message:
        raise NotEqualError(message)


def check_same_gradients_impl(
    a: TensorBlock, b: TensorBlock, fname: str, check: Sequence[str] | str = "all"
) -> str:
    """Same gradient parameters, and the same samples, components and/or properties for
    each gradient (``check=[]`` compares the parameters only)."""
    metadata_to_check = parse_check(check)
    parameters_a, parameters_b = a.gradients_list(), b.gradients_list()
    if len(parameters_a) != len(parameters_b) or any(p not in parameters_b for p in parameters_a):
        return f"inputs to '{fname}' should have the same gradient parameters"
    prefix = f"inputs to '{fname}' should have the same gradients: "
    for parameter, gradient_a in a.gradients():
        gradient_b = b.gradient(parameter)
        for metadata in metadata_to_check:
            different = (
                f"gradient '{parameter}' {metadata} are not the same or not in the same order"
            )
            if metadata == "samples":
                if gradient_a.samples != gradient_b.samples:
                    return prefix + different
            elif metadata == "properties":
                if gradient_a.properties != gradient_b.properties:
                    return prefix + different
            elif metadata == "components":
                if len(gradient_a.components) != len(gradient_b.components):
                    return prefix + f"gradient '{parameter}' have different number of components"
                for first, second in zip(gradient_a.components, gradient_b.components, strict=True):
                    if first != second:
                        return prefix + different
            else:
                raise ValueError(
                    f"{metadata} is not a valid property to check, "
                    "choose from 'samples', 'properties' and 'components'"
                )
    return ""


def check_same_gradients_raise(
    a: TensorBlock, b: TensorBlock, fname: str, check: Sequence[str] | str = "all"
) -> None:
    message = check_same_gradients_impl(a, b, fname, check)
    if message:
        raise NotEqualError(message)


def check_gradient_presence_raise(block: TensorBlock, parameters: list[str], fname: str) -> None:
    """Raise metatensor's ``ValueError`` for a requested gradient the block lacks."""
    existing = block.gradients_list()
    for parameter in parameters:
        if parameter not in existing:
            raise ValueError(
                f"requested gradient '{parameter}' in '{fname}' is not defined in this tensor"
            )


def no_gradients_of_gradients(gradient: TensorBlock) -> None:
    """Raise metatensor's ``NotImplementedError`` for a gradient with gradients."""
    if gradient.gradients_list():
        raise NotImplementedError("gradients of gradients are not supported")


def is_scalar(value: object) -> bool:
    """Whether ``value`` is a real number (Python or numpy), not a bool-like array."""
    return isinstance(value, numbers.Real)


def check_scalar_or_tensor(B: object) -> None:
    """metatensor's ``TypeError`` for a second operand that is neither."""
    if not is_scalar(B) and not isinstance(B, TensorMap):
        raise TypeError(f"`B` must be a metatensor TensorMap or a scalar value, not {type(B)}")


def block_like(block: TensorBlock, values: Any, gradients: dict[str, Any]) -> TensorBlock:
    """A block with the metadata of ``block`` and new values; ``gradients`` maps each
    kept parameter to its new gradient values (same gradient metadata as ``block``'s)."""
    new_gradients = {}
    for parameter, gradient_values in gradients.items():
        gradient = block.gradient(parameter)
        new_gradients[parameter] = TensorBlock._trusted(
            gradient_values,
            gradient.samples,
            gradient.components,
            gradient.properties,
            row_pointer=gradient._row_pointer,
        )
    return TensorBlock._trusted(
        values, block.samples, block.components, block.properties, new_gradients
    )


def map_blocks_pairwise(
    A: TensorMap,
    B: TensorMap,
    fname: str,
    function: Callable[[TensorBlock, TensorBlock], TensorBlock],
) -> TensorMap:
    """``function`` on each pair of blocks with the same key, after metatensor's checks
    (same keys, same block metadata, same gradients); the result has ``A``'s keys."""
    check_same_keys_raise(A, B, fname)
    blocks = []
    for block_a, block_b in zip(A.blocks(), blocks_by_key(A, B), strict=True):
        check_blocks_raise(block_a, block_b, fname)
        check_same_gradients_raise(block_a, block_b, fname)
        blocks.append(function(block_a, block_b))
    return TensorMap._trusted(A.keys, blocks)
