"""Metadata checks and block builders shared by the operations.

The checks give metatensor-operations' messages: each ``*_impl`` function returns an
empty string when the check passes and the message metatensor would give otherwise;
the ``*_raise`` forms raise :class:`NotEqualError`. Nothing here computes values:
comparing sample Labels goes through :meth:`Labels.__eq__`, which answers from
identity or recorded digests before reading entries. The builders (:func:`block_like`,
:func:`derived_block`, :func:`pairwise_block`, :func:`scalar_or_tensor_operation`) put
new (lazy) values and gradients on existing metadata, refusing gradients of gradients
as metatensor does; :func:`grouped` and :func:`map_blocks` run the work on tiny blocks
as a few grouped tasks.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .._gc import without_collector
from ..block import TensorBlock
from ..errors import NotEqualError, wrong_type
from ..labels import Labels
from ..tensor import TensorMap
from ._chunkwise import elementwise, gradient_rows
from ._grouping import grouped_tiny_blocks

__all__ = [
    "block_like",
    "blocks_by_key",
    "check_block",
    "check_blocks_impl",
    "check_blocks_raise",
    "check_gradient_presence_raise",
    "check_metadata_names",
    "check_same_gradients_impl",
    "check_same_gradients_raise",
    "check_same_keys_impl",
    "check_same_keys_raise",
    "check_scalar_or_tensor",
    "check_tensor",
    "derived_block",
    "first_order_gradients",
    "grouped",
    "is_scalar",
    "map_blocks",
    "map_blocks_pairwise",
    "no_gradients_of_gradients",
    "pairwise_block",
    "parse_check",
    "raise_not_equal",
    "scalar_or_tensor_operation",
]


def check_tensor(value: object, name: str) -> None:
    """Raise metatensor's ``TypeError`` when ``value`` is not a TensorMap."""
    if not isinstance(value, TensorMap):
        raise wrong_type(f"`{name}` must be a metatensor TensorMap, not {type(value)}", value)


def check_block(value: object, name: str) -> None:
    """Raise a ``TypeError`` when ``value`` is not a TensorBlock."""
    if not isinstance(value, TensorBlock):
        raise wrong_type(f"`{name}` must be a metatensor TensorBlock, not {type(value)}", value)


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


def raise_not_equal(message: str) -> None:
    """Raise :class:`NotEqualError` with ``message`` unless it is empty (a check passed)."""
    if message:
        raise NotEqualError(message)


def check_same_keys_raise(a: TensorMap, b: TensorMap, fname: str) -> None:
    raise_not_equal(check_same_keys_impl(a, b, fname))


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


_METADATA = ("samples", "components", "properties")


def check_metadata_names(check: Sequence[str] | str) -> None:
    """Raise metatensor's ``ValueError`` unless ``check`` names gradient metadata
    (``"all"`` or some of ``samples``, ``components``, ``properties``)."""
    for metadata in parse_check(check):
        if metadata not in _METADATA:
            raise ValueError(
                f"{metadata} is not a valid property to check, "
                "choose from 'samples', 'properties' and 'components'"
            )


def _metadata_difference(a: TensorBlock, b: TensorBlock, metadata: str) -> str:
    """How ``a`` and ``b`` differ in ``metadata`` (one of :data:`_METADATA`): ``""``
    when they agree, ``"count"`` for different numbers of components, ``"order"`` for
    different (or differently ordered) labels."""
    first, second = getattr(a, metadata), getattr(b, metadata)
    if metadata == "components":
        if len(first) != len(second):
            return "count"
        same = all(x == y for x, y in zip(first, second, strict=True))
    else:
        same = first == second
    return "" if same else "order"


def check_blocks_impl(
    a: TensorBlock, b: TensorBlock, fname: str, check: Sequence[str] | str = "all"
) -> str:
    """Same samples, components and/or properties, in the same order."""
    for metadata in parse_check(check):
        if metadata not in _METADATA:
            raise ValueError(
                f"'{metadata}' does not refer to metadata to check, "
                "choose from 'samples', 'properties' and 'components'"
            )
        difference = _metadata_difference(a, b, metadata)
        if difference == "count":
            return f"inputs to '{fname}' have a different number of components"
        if difference:
            return (
                f"inputs to '{fname}' should have the same {metadata}, "
                "but they are not the same or not in the same order"
            )
    return ""


def check_blocks_raise(
    a: TensorBlock, b: TensorBlock, fname: str, check: Sequence[str] | str = "all"
) -> None:
    raise_not_equal(check_blocks_impl(a, b, fname, check))


def _path(path: str, parameter: str) -> str:
    """The path of the gradient ``parameter`` of the gradient at ``path``."""
    return f"{path}/{parameter}" if path else parameter


def _gradient_metadata_message(
    gradient_a: TensorBlock,
    gradient_b: TensorBlock,
    path: str,
    parameter: str,
    fname: str,
    metadata: str,
) -> str:
    """metatensor's message for the gradients ``parameter`` (of the gradients at
    ``path``) that differ in ``metadata``."""
    if metadata not in _METADATA:
        raise ValueError(
            f"{metadata} is not a valid property to check, "
            "choose from 'samples', 'properties' and 'components'"
        )
    difference = _metadata_difference(gradient_a, gradient_b, metadata)
    if not difference:
        return ""
    name = _path(path, parameter)
    prefix = f"inputs to '{fname}' should have the same gradients: gradient '{name}' "
    if difference == "count":
        return prefix + "have different number of components"
    return prefix + f"{metadata} are not the same or not in the same order"


def check_same_gradients_impl(
    a: TensorBlock,
    b: TensorBlock,
    fname: str,
    check: Sequence[str] | str = "all",
    nested: bool = False,
    path: str = "",
) -> str:
    """Same gradient parameters, and the same samples, components and/or properties for
    each gradient (``check=[]`` compares the parameters only). With ``nested``, the
    gradients of gradients too, each named by its path (``'positions/strain'``);
    ``path`` is the path of ``a`` and ``b`` themselves."""
    metadata_to_check = parse_check(check)
    parameters_a, parameters_b = a.gradients_list(), b.gradients_list()
    if len(parameters_a) != len(parameters_b) or any(p not in parameters_b for p in parameters_a):
        where = f" in '{path}'" if path else ""
        return f"inputs to '{fname}' should have the same gradient parameters{where}"
    deeper = []  # the gradients that have gradients, compared after every other
    for parameter, gradient_a in a.gradients():
        gradient_b = b.gradient(parameter)
        for metadata in metadata_to_check:
            message = _gradient_metadata_message(
                gradient_a, gradient_b, path, parameter, fname, metadata
            )
            if message:
                return message
        if nested and (gradient_a._gradients or gradient_b._gradients):
            deeper.append((parameter, gradient_a, gradient_b))
    for parameter, gradient_a, gradient_b in deeper:
        message = check_same_gradients_impl(
            gradient_a, gradient_b, fname, check, nested=True, path=_path(path, parameter)
        )
        if message:
            return message
    return ""


def check_same_gradients_raise(
    a: TensorBlock, b: TensorBlock, fname: str, check: Sequence[str] | str = "all"
) -> None:
    raise_not_equal(check_same_gradients_impl(a, b, fname, check))


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


def first_order_gradients(
    block: TensorBlock, parameters: Sequence[str] | None = None
) -> Iterator[tuple[str, TensorBlock]]:
    """``(parameter, gradient)`` for each gradient of ``block`` (or for each of
    ``parameters``, in that order), refusing gradients of gradients."""
    for parameter in block.gradients_list() if parameters is None else parameters:
        gradient = block.gradient(parameter)
        no_gradients_of_gradients(gradient)
        yield parameter, gradient


def is_scalar(value: object) -> bool:
    """Whether ``value`` is a real number (Python or numpy), not a bool-like array."""
    return isinstance(value, numbers.Real)


def check_scalar_or_tensor(B: object) -> None:
    """metatensor's ``TypeError`` for a second operand that is neither."""
    if not is_scalar(B) and not isinstance(B, TensorMap):
        raise wrong_type(f"`B` must be a metatensor TensorMap or a scalar value, not {type(B)}", B)


def block_like(
    block: TensorBlock, values: Any, gradients: dict[str, Any], properties: Labels | None = None
) -> TensorBlock:
    """A block with the metadata of ``block`` and new values; ``gradients`` maps each
    kept parameter to its new gradient values (same gradient metadata as ``block``'s).
    ``properties``, when given, replace the properties of values and gradients."""
    new_gradients = {}
    for parameter, gradient_values in gradients.items():
        gradient = block.gradient(parameter)
        new_gradients[parameter] = TensorBlock._trusted(
            gradient_values,
            gradient.samples,
            gradient._components,
            gradient.properties if properties is None else properties,
            row_pointer=gradient.row_pointer,
            path=(parameter,),
        )
    return TensorBlock._trusted(
        values,
        block.samples,
        block._components,
        block.properties if properties is None else properties,
        new_gradients,
    )


def derived_block(
    blocks: Sequence[TensorBlock],
    values: Any,
    gradient: Callable[[str, list[Any]], Any],
    properties: Labels | None = None,
) -> TensorBlock:
    """A block like ``blocks[0]`` (see :func:`block_like`) with new ``values`` and, for
    each of its gradient parameters, ``gradient(parameter, arrays)`` as gradient
    values, where ``arrays`` holds that gradient's values in every block of ``blocks``
    (which must all have it). Gradients of gradients are refused."""
    first, others = blocks[0], blocks[1:]
    gradients = {}
    for parameter, gradient_first in first_order_gradients(first):
        pieces = [gradient_first]
        for other in others:
            pieces.append(other.gradient(parameter))
            no_gradients_of_gradients(pieces[-1])
        gradients[parameter] = gradient(parameter, [piece.values for piece in pieces])
    return block_like(first, values, gradients, properties)


def map_blocks_pairwise(
    A: TensorMap,
    B: TensorMap,
    fname: str,
    function: Callable[[TensorBlock, TensorBlock], TensorBlock],
) -> TensorMap:
    """``function`` on each pair of blocks with the same key, after metatensor's checks
    (same keys, same block metadata, same gradients); the result has ``A``'s keys."""
    return TensorMap._trusted(A.keys, _pairwise_blocks(A, B, fname, function))


def _pairwise_blocks(
    A: TensorMap,
    B: TensorMap,
    fname: str,
    function: Callable[[TensorBlock, TensorBlock], TensorBlock],
) -> list[TensorBlock]:
    """The blocks of :func:`map_blocks_pairwise`."""
    check_same_keys_raise(A, B, fname)
    blocks = []
    for block_a, block_b in zip(A.blocks(), blocks_by_key(A, B), strict=True):
        if block_b is not block_a:  # (a block has its own metadata: `A op A`)
            check_blocks_raise(block_a, block_b, fname)
            check_same_gradients_raise(block_a, block_b, fname)
        blocks.append(function(block_a, block_b))
    return blocks


def pairwise_block(
    block_1: TensorBlock,
    block_2: TensorBlock,
    function: Callable[[Any, Any], Any],
    gradient_kernel: Callable[..., Any] | None = None,
) -> TensorBlock:
    """``function(values_1, values_2)`` element-wise, with ``block_1``'s metadata.

    Gradients are ``function(gradient_1, gradient_2)`` for a linear ``function``
    (``gradient_kernel`` is ``None``), otherwise ``gradient_kernel(values_1, values_2,
    gradient_1, gradient_2, index)`` on gradient rows (see :func:`gradient_rows`).
    """
    operands = [block_1.values, block_2.values]

    def gradient(parameter: str, gradients: list[Any]) -> Any:
        if gradient_kernel is None:
            return elementwise(function, gradients)
        return gradient_rows(gradient_kernel, operands, gradients, block_1, parameter)

    return derived_block([block_1, block_2], elementwise(function, operands), gradient)


def scalar_or_tensor_operation(
    A: TensorMap,
    B: object,
    fname: str,
    with_scalar: Callable[[TensorBlock, float], TensorBlock],
    function: Callable[[Any, Any], Any],
    gradient_kernel: Callable[..., Any] | None = None,
) -> TensorMap:
    """``A op B`` for a scalar or TensorMap ``B``, after metatensor's type checks:
    ``with_scalar(block, float(B))`` on each block of ``A``, or :func:`pairwise_block`
    with ``function`` and ``gradient_kernel`` on each pair of blocks (see
    :func:`map_blocks_pairwise`, checked under the name ``fname``). Tiny blocks are
    computed by a few grouped tasks (see :func:`grouped_tiny_blocks`)."""
    check_tensor(A, "A")
    check_scalar_or_tensor(B)
    if is_scalar(B):
        constant = float(B)  # type: ignore[arg-type]
        return map_blocks(A, lambda block: with_scalar(block, constant))
    with_tensor = functools.partial(
        pairwise_block, function=function, gradient_kernel=gradient_kernel
    )
    return grouped(A.keys, lambda: _pairwise_blocks(A, B, fname, with_tensor))  # type: ignore[arg-type]


@without_collector
def grouped(
    keys: Labels, build: Callable[[], list[TensorBlock]], info: dict[str, str] | None = None
) -> TensorMap:
    """The map of ``keys`` (and ``info``) and the blocks ``build()`` makes, where the work on tiny
    single-chunk blocks is done by a few grouped tasks instead of one task per array
    (see :func:`grouped_tiny_blocks`)."""
    with grouped_tiny_blocks() as groups:
        blocks = build()
        arrays: list[Any] = []
        for block in blocks:
            block._collect_arrays(arrays)
        finished = iter(groups.finish(arrays))
        views = [block._rebuilt(finished, view=True) for block in blocks]
        return TensorMap._trusted(keys, views, info)


def map_blocks(A: TensorMap, function: Callable[[TensorBlock], TensorBlock]) -> TensorMap:
    """``function`` on each block of ``A``, tiny blocks grouped (see :func:`grouped`);
    the result has ``A``'s keys."""
    return grouped(A.keys, lambda: [function(block) for block in A.blocks()])
