"""Hypothesis strategies of metatensor-dask tensors, for property-based tests.

The tensors look like featomic output at a tiny scale: several blocks, 0 to 2
components, float64 (optionally float32) values, a ``"positions"`` gradient (samples
``["sample", "system", "atom"]``, an extra ``xyz`` component, a few rows per sample,
sometimes none) and a ``"strain"`` gradient (one row per sample, extra components
``xyz_2, xyz_1``). Values are chunked at random along samples; gradients are
co-partitioned with them (gradient chunk *i* holds the rows of values chunk *i*), or,
with ``arbitrary_gradient_chunks=True``, chunked at random. ``grouped=False`` shuffles
gradient rows so that they are not grouped by ``"sample"``.

This module needs hypothesis but not metatensor-core. The matching metatensor-core
object of a drawn tensor is ``metatensor_dask.to_metatensor(tensor)`` (which needs
metatensor-core).

Examples
--------
>>> from hypothesis import given
>>> from metatensor_dask.testing import strategies
>>> @given(strategies.tensor_maps())
... def test_something(tensor): ...
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np
from hypothesis import strategies as st

from .._partition import gradient_row_chunks, row_pointer
from ..block import TensorBlock
from ..labels import Labels
from ..tensor import TensorMap

__all__ = ["chunkings", "tensor_maps", "tensor_pairs"]

_COMPONENT_NAMES = ("o3_mu", "spin")


@st.composite
def chunkings(draw: st.DrawFn, n: int, max_chunks: int = 4) -> tuple[int, ...]:
    """Chunk sizes summing to ``n`` (``(0,)`` for ``n == 0``), cut at random places."""
    if n == 0:
        return (0,)
    cuts = draw(
        st.lists(st.integers(1, n - 1), max_size=max_chunks - 1, unique=True)
        if n > 1
        else st.just([])
    )
    bounds = [0, *sorted(cuts), n]
    return tuple(b - a for a, b in itertools.pairwise(bounds))


def _values(
    rng: np.random.Generator, shape: tuple[int, ...], dtype: Any, positive: bool
) -> np.ndarray:
    if positive:
        array = rng.uniform(0.5, 2.0, size=shape)
    else:
        array = rng.uniform(-2.0, 2.0, size=shape)
    return array.astype(dtype)


@st.composite
def _layout(
    draw: st.DrawFn,
    max_blocks: int,
    max_samples: int,
    max_components: int,
    dtypes: Sequence[Any],
    gradients: Sequence[str] | None,
) -> dict[str, Any]:
    """The metadata shared by the tensors of a pair: everything but values and chunks."""
    n_blocks = draw(st.integers(1, max_blocks))
    n_key_dims = draw(st.integers(1, 2))
    key_values = draw(
        st.lists(
            st.tuples(*[st.integers(0, 5)] * n_key_dims),
            min_size=n_blocks,
            max_size=n_blocks,
            unique=True,
        )
    )
    n_components = draw(st.integers(0, max_components))
    component_sizes = [draw(st.integers(1, 3)) for _ in range(n_components)]
    if gradients is None:
        gradients = draw(
            st.sampled_from([(), ("positions",), ("strain",), ("positions", "strain")])
        )
    blocks = []
    for _ in range(n_blocks):
        n_samples = draw(st.integers(0, max_samples))
        n_properties = draw(st.integers(1, 4))
        # gradient rows per value row: 0 to 3 positions rows (distinct atoms)
        rows_per_sample = [draw(st.integers(0, 3)) for _ in range(n_samples)]
        blocks.append((n_samples, n_properties, rows_per_sample))
    return {
        "key_names": ["center_type", "neighbor_type"][:n_key_dims],
        "keys": np.array(key_values, dtype=np.int32).reshape(n_blocks, n_key_dims),
        "component_sizes": component_sizes,
        "dtype": draw(st.sampled_from(list(dtypes))),
        "gradients": tuple(gradients),
        "blocks": blocks,
    }


def _block_labels(n_samples: int, n_properties: int, component_sizes: list[int]) -> tuple:
    samples = Labels(
        ["system", "atom"],
        np.stack([np.arange(n_samples) // 3, np.arange(n_samples) % 3], axis=1).reshape(-1, 2),
    )
    components = [
        Labels([_COMPONENT_NAMES[i]], np.arange(size).reshape(-1, 1))
        for i, size in enumerate(component_sizes)
    ]
    properties = Labels(["n"], np.arange(n_properties).reshape(-1, 1) * 2 + 1)
    return samples, components, properties


def _gradient_samples(parameter: str, samples: Labels, rows_per_sample: list[int]) -> Labels:
    if parameter == "strain":
        return Labels(["sample"], np.arange(len(samples)).reshape(-1, 1))
    rows = []
    for sample, count in enumerate(rows_per_sample):
        system = samples.values[sample, 0]
        for atom in range(count):
            rows.append((sample, system, atom))
    return Labels(["sample", "system", "atom"], np.array(rows, dtype=np.int32).reshape(-1, 3))


def _gradient_components(parameter: str) -> list[Labels]:
    if parameter == "strain":
        return [
            Labels(["xyz_2"], np.arange(3).reshape(-1, 1)),
            Labels(["xyz_1"], np.arange(3).reshape(-1, 1)),
        ]
    return [Labels(["xyz"], np.arange(3).reshape(-1, 1))]


@st.composite
def _tensor(
    draw: st.DrawFn,
    layout: dict[str, Any],
    positive: bool,
    grouped: bool,
    arbitrary_gradient_chunks: bool,
) -> TensorMap:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = layout["dtype"]
    blocks = []
    for n_samples, n_properties, rows_per_sample in layout["blocks"]:
        samples, components, properties = _block_labels(
            n_samples, n_properties, layout["component_sizes"]
        )
        shape = (n_samples, *layout["component_sizes"], n_properties)
        value_chunks = draw(chunkings(n_samples))
        values = da.from_array(
            _values(rng, shape, dtype, positive), chunks=(value_chunks, *shape[1:])
        )
        gradients = {}
        for parameter in layout["gradients"]:
            gradient_samples = _gradient_samples(parameter, samples, rows_per_sample)
            if not grouped and len(gradient_samples) > 1:
                order = np.array(draw(st.permutations(range(len(gradient_samples)))))
                gradient_samples = Labels(gradient_samples.names, gradient_samples.values[order])
            gradient_components = [*_gradient_components(parameter), *components]
            gradient_shape = (
                len(gradient_samples),
                *(len(c) for c in gradient_components),
                n_properties,
            )
            pointer = row_pointer(gradient_samples.column("sample"), n_samples)
            if arbitrary_gradient_chunks or pointer is None:
                row_chunks = draw(chunkings(len(gradient_samples)))
            else:
                row_chunks = gradient_row_chunks(pointer, value_chunks)
            gradient_values = da.from_array(
                _values(rng, gradient_shape, dtype, positive=False),
                chunks=(row_chunks, *gradient_shape[1:]),
            )
            gradients[parameter] = TensorBlock._trusted(
                gradient_values,
                gradient_samples,
                gradient_components,
                properties,
                row_pointer=pointer,
            )
        blocks.append(TensorBlock._trusted(values, samples, components, properties, gradients))
    keys = Labels(layout["key_names"], layout["keys"])
    return TensorMap._trusted(keys, blocks)


def tensor_maps(
    *,
    max_blocks: int = 3,
    max_samples: int = 6,
    max_components: int = 2,
    dtypes: Sequence[Any] = (np.float64,),
    gradients: Sequence[str] | None = None,
    positive: bool = False,
    grouped: bool = True,
    arbitrary_gradient_chunks: bool = False,
) -> st.SearchStrategy[TensorMap]:
    """Small TensorMaps with random metadata, values, gradients and chunkings.

    Parameters
    ----------
    max_blocks, max_samples, max_components
        Upper bounds on the number of blocks, samples per block (0 allowed) and
        components (each of 1 to 3 entries).
    dtypes
        The dtypes to draw from, e.g. ``(np.float64, np.float32)``.
    gradients
        The gradients of every block, among ``"positions"`` and ``"strain"``; ``None``
        draws them.
    positive
        Draw values in ``[0.5, 2)`` (for ``pow``, ``divide``...) instead of ``[-2, 2)``;
        gradient values are always in ``[-2, 2)``.
    grouped
        When False, gradient rows are shuffled so they are not grouped by ``"sample"``.
    arbitrary_gradient_chunks
        Chunk gradient rows at random instead of co-partitioning them with the values.
    """
    layouts = _layout(max_blocks, max_samples, max_components, dtypes, gradients)
    return layouts.flatmap(
        lambda layout: _tensor(layout, positive, grouped, arbitrary_gradient_chunks)
    )


@st.composite
def _pair(
    draw: st.DrawFn,
    layout: dict[str, Any],
    positive: tuple[bool, bool],
    grouped: bool,
    arbitrary_gradient_chunks: bool,
    shuffle_keys: bool,
) -> tuple[TensorMap, TensorMap]:
    if not grouped:
        # both operands must have the same gradient samples in the same order
        seed = draw(st.integers(0, 2**32 - 1))
        first = _shuffled_pair_member(draw, layout, positive[0], seed, arbitrary_gradient_chunks)
        second = _shuffled_pair_member(draw, layout, positive[1], seed, arbitrary_gradient_chunks)
    else:
        first = draw(_tensor(layout, positive[0], True, arbitrary_gradient_chunks))
        second = draw(_tensor(layout, positive[1], True, arbitrary_gradient_chunks))
    if shuffle_keys and len(second) > 1:
        order = draw(st.permutations(range(len(second))))
        keys = Labels(second.keys.names, second.keys.values[list(order)])
        second = TensorMap._trusted(keys, [second.block(i) for i in order])
    return first, second


def _shuffled_pair_member(
    draw: st.DrawFn, layout: dict[str, Any], positive: bool, seed: int, arbitrary: bool
) -> TensorMap:
    """A tensor whose gradient rows are shuffled by a permutation fixed by ``seed``."""
    tensor = draw(_tensor(layout, positive, True, arbitrary))
    rng = np.random.default_rng(seed)
    blocks = []
    for block in tensor.blocks():
        gradients = {}
        for parameter, gradient in block.gradients():
            order = rng.permutation(len(gradient.samples))
            samples = Labels(gradient.samples.names, gradient.samples.values[order])
            # permute the (small, in-memory) data rather than the dask array
            permuted = np.asarray(gradient.values)[order]
            row_chunks = draw(chunkings(len(order))) if arbitrary else gradient.values.chunks[0]
            values = da.from_array(permuted, chunks=(row_chunks, *permuted.shape[1:]))
            gradients[parameter] = TensorBlock._trusted(
                values, samples, gradient.components, gradient.properties
            )
        blocks.append(
            TensorBlock._trusted(
                block.values, block.samples, block.components, block.properties, gradients
            )
        )
    return TensorMap._trusted(tensor.keys, blocks)


def tensor_pairs(
    *,
    max_blocks: int = 3,
    max_samples: int = 6,
    max_components: int = 2,
    dtypes: Sequence[Any] = (np.float64,),
    gradients: Sequence[str] | None = None,
    positive: bool | tuple[bool, bool] = False,
    grouped: bool = True,
    arbitrary_gradient_chunks: bool = False,
    shuffle_keys: bool = False,
) -> st.SearchStrategy[tuple[TensorMap, TensorMap]]:
    """Pairs of TensorMaps with identical metadata, independent values and chunkings.

    The parameters are those of :func:`tensor_maps`; ``positive`` may be one flag per
    tensor, and ``shuffle_keys`` reorders the blocks of the second tensor (binary
    operations look blocks up by key).
    """
    if isinstance(positive, bool):
        positive = (positive, positive)
    layouts = _layout(max_blocks, max_samples, max_components, dtypes, gradients)
    return layouts.flatmap(
        lambda layout: _pair(layout, positive, grouped, arbitrary_gradient_chunks, shuffle_keys)
    )
