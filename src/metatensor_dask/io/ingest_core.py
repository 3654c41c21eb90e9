"""A metatensor-core result of :func:`~metatensor_dask.io.ingest.write_batches` as an
append plans it: its arrays as they are (numpy views of metatensor's memory, neither
copied nor hashed), its Labels copied (and metatensor's handles of them freed: see
:mod:`._core_labels`), its samples renumbered.

:class:`CoreTensor` and :class:`CoreBlock` have the part of the interface of
:class:`~metatensor_dask.tensor.TensorMap` and :class:`~metatensor_dask.block.TensorBlock`
that :func:`~metatensor_dask.io.zarr_append.plan_append` reads, without dask arrays, and
that :func:`~metatensor_dask.io.zarr_plan.plan_whole` reads for the blocks written whole
(the first batch, a new key): a worker writing batches to a store then never imports
``dask.array`` (nor xarray and pandas, which it imports).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from .._partition import row_pointer
from ..labels import Labels, LabelsEntry
from . import _core_labels
from .zarr_renumber import Renumbering, check_dimension, shift

__all__ = ["CoreBlock", "CoreTensor", "core_view"]


class CoreBlock:
    """One block of a metatensor-core result (or one of its gradients)."""

    def __init__(
        self,
        values: np.ndarray,
        samples: Labels,
        components: list[Labels],
        properties: Labels,
        gradients: dict[str, CoreBlock],
        n_parent: int | None,
    ):
        self.values = values
        self.samples = samples
        self.components = components
        self.properties = properties
        self._gradients = gradients
        #: For a gradient (``n_parent`` rows in its block), its row pointer, ``None``
        #: when its rows are not grouped by sample
        self.row_pointer = (
            None if n_parent is None else row_pointer(samples.column("sample"), n_parent)
        )

    def __len__(self) -> int:
        return len(self.samples)

    def gradients(self) -> Iterator[tuple[str, CoreBlock]]:
        return iter(self._gradients.items())

    def gradients_list(self) -> list[str]:
        return list(self._gradients)

    def gradient(self, parameter: str) -> CoreBlock:
        return self._gradients[parameter]


class CoreTensor:
    """A metatensor-core TensorMap: its keys, :class:`CoreBlock` and info."""

    def __init__(self, keys: Labels, blocks: list[CoreBlock], info: dict[str, str]):
        self.keys = keys
        self._blocks = blocks
        self._info = info

    def __len__(self) -> int:
        return len(self._blocks)

    def blocks(self) -> list[CoreBlock]:
        return list(self._blocks)

    def items(self) -> Iterator[tuple[LabelsEntry, CoreBlock]]:
        return zip(self.keys, self._blocks, strict=True)

    def info(self) -> dict[str, str]:
        return dict(self._info)


def _block(
    block: Any,
    renumber: Renumbering | None,
    n_parent: int | None,
    properties: Labels | None = None,
) -> CoreBlock:
    """The :class:`CoreBlock` of a metatensor-core ``block`` (a gradient of a block of
    ``n_parent`` rows whose ``properties`` are given, which are the gradient's).

    Each of metatensor's ``components`` and ``properties`` takes the block's values
    array from metatensor-core again (for its shape), which costs as much as converting
    the Labels: they are taken only when there are any (components), and once per block
    (properties; metatensor-core refuses gradients with other properties)."""
    values = np.asarray(block.values)
    samples = _core_labels.read(block.samples)
    if renumber is not None:
        samples = shift(samples, *renumber)
    if properties is None:
        properties = _core_labels.read(block.properties)
    n_rows = len(samples)
    return CoreBlock(
        values,
        samples,
        [_core_labels.read(c) for c in block.components] if values.ndim > 2 else [],
        properties,
        {p: _block(g, renumber, n_rows, properties) for p, g in block.gradients()},
        n_parent,
    )


def core_view(tensor: Any, renumber: Renumbering | None) -> CoreTensor:
    """A metatensor-core ``tensor`` seen as an append plans it, with ``offset`` added to
    the sample dimension ``dimension`` of its blocks and gradients when ``renumber`` is
    ``(dimension, offset)`` (and the wording of its error: see
    :func:`~metatensor_dask.io.zarr_renumber.shift`)."""
    blocks = list(tensor.blocks())
    keys = _core_labels.read(tensor.keys)
    if renumber is not None:
        names = []
        if blocks:
            samples = blocks[0].samples
            names = list(samples.names)
            _core_labels.free(samples)
        check_dimension(renumber[0], names, bool(blocks), key_names=keys.names)
    return CoreTensor(keys, [_block(b, renumber, None) for b in blocks], tensor.info())
