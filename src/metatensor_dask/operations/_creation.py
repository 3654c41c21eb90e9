"""Tensors shaped like others: ``empty_like``, ``zeros_like``, ``ones_like``,
``random_uniform_like`` (and ``_block`` forms), and ``block_from_array``."""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._graph import array_from_tasks, task
from ..block import TensorBlock
from ..errors import wrong_type
from ..labels import Labels
from ..tensor import TensorMap
from ._grouping import TINY_BYTES, active_groups
from ._utils import block_like, check_gradient_presence_raise, first_order_gradients, grouped

__all__ = [
    "block_from_array",
    "empty_like",
    "empty_like_block",
    "ones_like",
    "ones_like_block",
    "random_uniform_like",
    "random_uniform_like_block",
    "zeros_like",
    "zeros_like_block",
]


def _chunks(array: Any) -> tuple[tuple[int, ...], ...]:
    """The chunks of a dask array, or the single chunk of an item of a group."""
    chunks = getattr(array, "chunks", None)
    return chunks if chunks is not None else tuple((int(n),) for n in array.shape)


def _filled(fill: Callable[..., np.ndarray], array: Any) -> Any:
    """An array of ``array``'s shape, dtype and chunks whose chunks are ``fill(shape,
    dtype)`` (a dask array when ``array`` is lazy, else a numpy array)."""
    if isinstance(array, np.ndarray):
        return fill(array.shape, array.dtype)
    return _constant(fill, _chunks(array), np.dtype(array.dtype).str)


@functools.lru_cache(maxsize=256)
def _constant(fill: Callable[..., np.ndarray], chunks: tuple, dtype: str) -> Any:
    """The dask array of chunks ``fill(shape, dtype)``, made once per fill, chunks and
    dtype (the blocks of a map share few shapes; the arrays hold no data)."""
    return _from_chunk_tasks(fill, chunks, np.dtype(dtype), ())


def _from_chunk_tasks(
    fill: Callable[..., np.ndarray], chunks: tuple, dtype: np.dtype, seeds: tuple[int, ...]
) -> Any:
    """The dask array whose chunks are ``fill(shape, dtype, *seed)``, with one seed per
    chunk from ``seeds`` when given.

    The graph is built here instead of by ``dask.array.zeros_like`` and its siblings,
    which tokenise their chunk function with cloudpickle: milliseconds per array, so
    seconds for a map of a thousand blocks. The name digests the fill, chunks, dtype
    and seeds (what the content depends on).
    """
    text = repr((fill.__name__, chunks, dtype.str, seeds)).encode()
    name = f"{fill.__name__}-{hashlib.blake2b(text, digest_size=16).hexdigest()}"
    tasks = {}
    for number, index in enumerate(itertools.product(*(range(len(c)) for c in chunks))):
        shape = tuple(c[i] for c, i in zip(chunks, index, strict=True))
        seed = (seeds[number],) if seeds else ()
        tasks[(name, *index)] = task((name, *index), fill, shape, dtype, *seed)
    return array_from_tasks(name, tasks, [], chunks, dtype)


def _empty_chunk(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    return np.empty(shape, dtype)


def _zeros_chunk(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    return np.zeros(shape, dtype)


def _ones_chunk(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    return np.ones(shape, dtype)


def _below_one(drawn: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``drawn`` (float64 in [0, 1)) as ``dtype``, still below one.

    Casting rounds to nearest, so a float64 draw within half a unit of one rounds up to
    exactly 1.0 in a narrower float (float32: one draw in 2**25). metatensor's
    ``np.random.rand(...).astype(dtype)`` returns these ones; the interval is [0, 1), so
    they become the largest ``dtype`` value below one instead (float64 draws are kept).
    """
    values = drawn.astype(dtype)
    if values.dtype.kind == "f":
        below = np.nextafter(values.dtype.type(1), values.dtype.type(0))
        np.minimum(values, below, out=values)
    return values


def _uniform_chunk(shape: tuple[int, ...], dtype: np.dtype, seed: int) -> np.ndarray:
    return _below_one(np.random.default_rng(seed).random(shape), dtype)


def _empty(array: Any) -> Any:
    return _filled(_empty_chunk, array)


def _zeros(array: Any) -> Any:
    return _filled(_zeros_chunk, array)


def _ones(array: Any) -> Any:
    return _filled(_ones_chunk, array)


def _uniform(array: Any) -> Any:
    if isinstance(array, np.ndarray):
        # numpy's global generator, as metatensor
        return _below_one(np.random.rand(*array.shape), array.dtype)
    chunks = _chunks(array)
    dtype = np.dtype(array.dtype)
    n_chunks = int(np.prod([len(c) for c in chunks]))
    # one seed per chunk drawn from numpy's global generator, as dask's random arrays
    seeds = tuple(np.random.randint(0, 2**31 - 1, size=n_chunks, dtype=np.int64).tolist())
    grouped_chunk = _grouped_uniform(chunks, dtype, seeds)
    if grouped_chunk is not None:
        return grouped_chunk
    return _from_chunk_tasks(_uniform_chunk, chunks, dtype, seeds)


def _grouped_uniform(chunks: tuple, dtype: np.dtype, seeds: tuple[int, ...]) -> Any:
    """The single tiny chunk of ``chunks`` drawn from its seed as a grouped call (see
    :func:`~._grouping.grouped_tiny_blocks`), or None for an array of several chunks,
    a larger one, or outside grouping. The group's size counts the bytes drawn (the
    call reads none)."""
    groups = active_groups()
    if groups is None or any(len(c) != 1 for c in chunks):
        return None
    shape = tuple(int(c[0]) for c in chunks)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > TINY_BYTES:
        return None
    extra = (shape, dtype, seeds[0])
    return groups.record("uniform-chunk", _uniform_chunk, [], extra, shape, dtype, nbytes)


def _like_block(
    block: TensorBlock, gradients: Sequence[str] | str | None, fill: Callable, fname: str
) -> TensorBlock:
    if isinstance(block, TensorMap) or not isinstance(block, TensorBlock):
        raise wrong_type(f"`block` must be a metatensor TensorBlock, not {type(block)}", block)
    if isinstance(gradients, str):
        gradients = [gradients]
    if gradients is not None:
        # numpy strings (the items of `np.array(["positions"])`) become str, as in metatensor
        gradients = [str(name) if isinstance(name, str) else name for name in gradients]
        check_gradient_presence_raise(block, gradients, fname)
    new_gradients = {
        parameter: fill(gradient._held_values())
        for parameter, gradient in first_order_gradients(block, gradients)
    }
    return block_like(block, fill(block._held_values()), new_gradients)


def _like_tensor(
    tensor: TensorMap, gradients: Sequence[str] | str | None, fill: Callable, fname: str
) -> TensorMap:
    if not isinstance(tensor, TensorMap):
        raise wrong_type(f"`tensor` must be a metatensor TensorMap, not {type(tensor)}", tensor)
    return grouped(
        tensor.keys, lambda: [_like_block(b, gradients, fill, fname) for b in tensor.blocks()]
    )


_DOC = """{summary}

    Gradients (all of them, or those named by ``gradients``) are created the same way,
    with the gradient metadata of ``{what}``.

    Parameters
    ----------
    {what}
        The {what} whose metadata, dtype and chunks are used.
    gradients
        The gradients to create: a name, a list of names, or ``None`` for all of them.
    requires_grad
        Accepted for compatibility with metatensor; does nothing (as for numpy arrays).

    Raises
    ------
    ValueError
        If a requested gradient does not exist.
    """


def _like_functions(
    fill: Callable, name: str, filled: str
) -> tuple[Callable[..., TensorMap], Callable[..., TensorBlock]]:
    """The ``name`` and ``name_block`` functions, creating arrays with ``fill``;
    ``filled`` describes their values in the docstrings."""

    def like_tensor(
        tensor: TensorMap,
        gradients: Sequence[str] | str | None = None,
        requires_grad: bool = False,
    ) -> TensorMap:
        return _like_tensor(tensor, gradients, fill, name)

    def like_block(
        block: TensorBlock,
        gradients: Sequence[str] | str | None = None,
        requires_grad: bool = False,
    ) -> TensorBlock:
        return _like_block(block, gradients, fill, name)

    for function, function_name, what in [
        (like_tensor, name, "tensor"),
        (like_block, f"{name}_block", "block"),
    ]:
        function.__name__ = function.__qualname__ = function_name
        kind = "map" if what == "tensor" else "block"
        summary = f"A {kind} like ``{what}`` {filled}, lazily."
        function.__doc__ = _DOC.format(summary=summary, what=what)
    return like_tensor, like_block


empty_like, empty_like_block = _like_functions(_empty, "empty_like", "with uninitialised values")
zeros_like, zeros_like_block = _like_functions(_zeros, "zeros_like", "filled with zeros")
ones_like, ones_like_block = _like_functions(_ones, "ones_like", "filled with ones")
random_uniform_like, random_uniform_like_block = _like_functions(
    _uniform,
    "random_uniform_like",
    "with values drawn uniformly in [0, 1) (from numpy's global generator for computed "
    "arrays, as metatensor)",
)


def _product_labels(names: list[str], shape: Sequence[int]) -> Labels:
    values = np.array(list(itertools.product(*(range(n) for n in shape))), dtype=np.int32)
    return Labels._trusted(names, values.reshape(-1, len(names)))


def _reshapable(array: Any) -> Any:
    """``array`` in chunks that dask's ``reshape`` flattens correctly: without chunks
    of zero entries (dask's reshape fails on them, or reshapes the wrong entries), and
    in a single chunk when it has no entry at all. Numpy arrays are returned as given."""
    chunks = getattr(array, "chunks", None)
    if chunks is None:
        return array
    if math.prod(array.shape) == 0:
        return array.rechunk(-1)
    if all(0 not in sizes for sizes in chunks):
        return array
    return array.rechunk(tuple(tuple(n for n in sizes if n) for sizes in chunks))


def block_from_array(
    array: Any,
    sample_names: list[str] | None = None,
    component_names: list[str] | None = None,
    property_names: list[str] | None = None,
) -> TensorBlock:
    """A block (without gradients) around ``array``, with labels counting its entries.

    The first ``len(sample_names)`` axes are samples and the last
    ``len(property_names)`` axes are properties; several of them are flattened into
    one axis whose labels are the cartesian product of the ranges. The axes in between
    are components.

    Parameters
    ----------
    array
        A numpy or dask array with at least two dimensions (a dask array stays lazy).
    sample_names
        Defaults to ``["sample"]``.
    component_names
        Defaults to ``["component_1", "component_2", ...]``.
    property_names
        Defaults to ``["property"]``.

    Returns
    -------
    TensorBlock
        The new block.

    Raises
    ------
    ValueError
        If ``array`` has fewer than two dimensions, or fewer than the names require.
    """
    shape = tuple(int(n) for n in array.shape)
    n_dimensions = len(shape)
    if n_dimensions < 2:
        raise ValueError(
            "the array provided to `block_from_array`             must have at least two "
            f"dimensions. Too few provided: {n_dimensions}"
        )
    sample_names = ["sample"] if sample_names is None else list(sample_names)
    property_names = ["property"] if property_names is None else list(property_names)
    d_samples, d_properties = len(sample_names), len(property_names)
    d_components = n_dimensions - d_samples - d_properties
    if d_components < 0:
        raise ValueError(
            f"the array provided to `block_from_array` with shape {shape} does not have "
            "enough dimensions to match the sample and property names"
        )
    if component_names is None:
        component_names = [f"component_{i + 1}" for i in range(d_components)]
    if len(component_names) != d_components:
        raise ValueError(
            f"the array provided to `block_from_array` with shape {shape} does not have "
            "enough dimensions to match the given sample, component, and property names"
        )
    samples = Labels(sample_names, _product_labels(sample_names, shape[:d_samples]).values)
    component_shape = shape[d_samples : n_dimensions - d_properties]
    components = [
        Labels([name], np.arange(n, dtype=np.int32).reshape(-1, 1))
        for name, n in zip(component_names, component_shape, strict=True)
    ]
    properties = Labels(
        property_names, _product_labels(property_names, shape[-d_properties:]).values
    )
    if d_samples > 1 or d_properties > 1:
        array = _reshapable(array).reshape(len(samples), *component_shape, len(properties))
    return TensorBlock(array, samples, components, properties)
