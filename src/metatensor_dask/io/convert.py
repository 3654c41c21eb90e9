"""Conversion to and from metatensor-core objects (needs ``metatensor-core``)."""

from __future__ import annotations

from typing import Any

import dask
import numpy as np

from ..block import TensorBlock, as_block_array
from ..errors import MetatensorDaskError, MetatensorError
from ..labels import Labels, LabelsEntry
from ..tensor import TensorMap, info_problem
from . import _core_labels
from ._core_library import load_core_library

__all__ = [
    "from_metatensor",
    "load_block_buffer",
    "load_buffer",
    "load_labels_buffer",
    "read_buffer",
    "save_buffer",
    "to_metatensor",
]


def _metatensor() -> Any:
    """metatensor-core, its compiled library loaded (by one thread: conversions in
    several threads of a fresh process crashed it, see :mod:`._core_library`)."""
    try:
        import metatensor
    except ImportError:
        raise ImportError(
            "converting to or from metatensor needs metatensor-core: pip install metatensor-core"
        ) from None
    load_core_library()
    return metatensor


class _SharedLabels:
    """Converts the metatensor Labels of blocks, one metatensor-dask Labels per
    metatensor Labels.

    metatensor hands out a new Python object for every ``block.samples`` (or
    ``properties``, ``components``), but the blocks of a map often hold the *same*
    Labels underneath (a map built with one ``samples`` object for every block, a
    loaded map whose blocks share their Labels): their ``values`` are views of the same
    memory. Such Labels become one metatensor-dask Labels, whose digest, positions and
    derived metadata are then worked out once for all the blocks. Labels are told
    apart by the address, shape, strides and names of their values, memory that the
    blocks converted hold until the conversion ends. Each object handed out is freed
    once read (see :mod:`._core_labels`), and the values are copied.
    """

    def __init__(self) -> None:
        self._converted: dict[tuple[Any, ...], Labels] = {}

    def __call__(self, labels: Any) -> Labels:
        values = labels.values
        names = tuple(labels.names)
        if values.dtype != np.int32 or values.ndim != 2:
            return _core_labels.read(labels)
        key = (values.__array_interface__["data"][0], values.shape, values.strides, names)
        del values
        seen = self._converted.get(key)
        if seen is None:
            seen = self._converted[key] = _core_labels.read(labels)
        else:
            _core_labels.free(labels)
        return seen


def _labels_from(labels: Any) -> Labels:
    """metatensor-dask Labels sharing the values of a user's metatensor ``labels``,
    recorded as repeating an entry when they do (built with ``assume_unique=True``)."""
    return Labels._of_unknown_rows(list(labels.names), np.asarray(labels.values))


def _block_from(block: Any, shared: _SharedLabels) -> TensorBlock:
    gradients = {p: _block_from(g, shared) for p, g in block.gradients()}
    values = np.array(block.values)
    return TensorBlock._trusted(
        as_block_array(values),
        shared(block.samples),
        [shared(c) for c in block.components],
        shared(block.properties),
        gradients,
    )


def from_metatensor(data: Any) -> Any:
    """A metatensor-dask copy of a ``metatensor`` TensorMap, TensorBlock, Labels or
    LabelsEntry (an entry of the keys, to select blocks of a metatensor-dask map).

    Values are copied into single-chunk dask arrays; use ``.rechunk``-aware functions
    such as :func:`metatensor_dask.open_zarr` for data that does not fit in memory.
    Labels that the blocks share in metatensor (the same Labels given to several
    blocks) are one Labels object in the copy too.
    """
    metatensor = _metatensor()
    if isinstance(data, metatensor.Labels):
        return _labels_from(data)
    if isinstance(data, metatensor.LabelsEntry):
        return LabelsEntry(list(data.names), np.array(data.values, dtype=np.int32))
    if isinstance(data, metatensor.TensorBlock):
        return _block_from(data, _SharedLabels())
    if isinstance(data, metatensor.TensorMap):
        shared = _SharedLabels()
        tensor = TensorMap._trusted(
            _core_labels.read(data.keys), [_block_from(b, shared) for b in data.blocks()]
        )
        for key, value in data.info().items():
            # metatensor-core's info() gives None for an empty string value
            tensor.set_info(key, "" if value is None else value)
        return tensor
    raise TypeError(
        f"expected a metatensor TensorMap, TensorBlock or Labels (or a LabelsEntry), "
        f"got {type(data)}"
    )


def _labels_to(labels: Labels, metatensor: Any) -> Any:
    """metatensor's copy of ``labels``, built with ``assume_unique=True`` as they were
    when they may repeat an entry (metatensor would refuse the repeated one)."""
    values = np.array(labels.values)
    return metatensor.Labels(labels.names, values, assume_unique=labels._may_repeat)


def _block_to(block: TensorBlock, metatensor: Any) -> Any:
    made = [
        _labels_to(block.samples, metatensor),
        [_labels_to(c, metatensor) for c in block.components],
        _labels_to(block.properties, metatensor),
    ]
    result = metatensor.TensorBlock(np.array(block.values), *made)
    _free_all(made)
    for parameter, gradient in block.gradients():
        result.add_gradient(parameter, _block_to(gradient, metatensor))
    return result


def _free_all(made: list[Any]) -> None:
    """Free the metatensor Labels made for a block or map (and lists of them), which
    holds them now (see :mod:`._core_labels`)."""
    for labels in made:
        for each in labels if isinstance(labels, list) else [labels]:
            _core_labels.free(each)


def to_metatensor(data: Any) -> Any:
    """A ``metatensor`` TensorMap, TensorBlock or Labels holding the computed data.

    This computes every array (in one ``dask.compute`` call) and loads everything into
    memory. A map whose info metatensor can not hold (a NUL character, which it cuts
    the text at, or an unpaired surrogate; such info comes from a store written by
    other tools) is refused first.
    """
    metatensor = _metatensor()
    if isinstance(data, Labels):
        return _labels_to(data, metatensor)
    if isinstance(data, TensorBlock):
        (computed,) = dask.compute(data)
        return _block_to(computed, metatensor)
    if isinstance(data, TensorMap):
        problem = info_problem(data.info())
        if problem:
            raise MetatensorDaskError(f"{problem}; nothing was computed")
        (computed,) = dask.compute(data)
        keys = _labels_to(computed.keys, metatensor)
        tensor = metatensor.TensorMap(keys, [_block_to(b, metatensor) for b in computed.blocks()])
        _free_all([keys])
        for key, value in computed.info().items():
            tensor.set_info(key, value)
        return tensor
    raise TypeError(
        f"expected a metatensor_dask TensorMap, TensorBlock or Labels, got {type(data)}"
    )


def save_buffer(data: TensorMap | TensorBlock | Labels, use_numpy: bool = False) -> memoryview:
    """The bytes of ``metatensor.save`` for ``data``, in memory, written by metatensor.

    A buffer holds everything in memory: the arrays are computed, converted with
    :func:`to_metatensor`, and serialized by metatensor-core (needed). Save to a file
    with :func:`metatensor_dask.save` for data bigger than memory. ``use_numpy`` is
    accepted as in metatensor, and ignored (the bytes are the same).
    """
    return to_metatensor(data).save_buffer()


def load_buffer(buffer: bytes | bytearray | memoryview, use_numpy: bool = False) -> TensorMap:
    """A TensorMap from the bytes of ``metatensor.save`` (see :func:`read_buffer`)."""
    return read_buffer("TensorMap", buffer)


def load_block_buffer(
    buffer: bytes | bytearray | memoryview, use_numpy: bool = False
) -> TensorBlock:
    """A TensorBlock from the bytes of ``metatensor.save`` (see :func:`read_buffer`)."""
    return read_buffer("TensorBlock", buffer)


def load_labels_buffer(buffer: bytes | bytearray | memoryview) -> Labels:
    """Labels from the bytes of ``metatensor.save`` (see :func:`read_buffer`)."""
    return read_buffer("Labels", buffer)


def read_buffer(kind: str, buffer: bytes | bytearray | memoryview) -> Any:
    """A ``kind`` (``"TensorMap"``, ``"TensorBlock"`` or ``"Labels"``) from bytes
    written by ``metatensor.save``, read by metatensor-core (needed) and converted with
    :func:`from_metatensor`. Load files with :func:`metatensor_dask.load`, which reads
    no values until they are needed.

    metatensor-core's errors (a buffer of another kind, damaged bytes) are raised as
    :class:`~metatensor_dask.MetatensorError`, with metatensor's message."""
    metatensor = _metatensor()
    try:
        loaded = getattr(metatensor, kind).load_buffer(buffer)
    except metatensor.MetatensorError as error:
        raise MetatensorError(error.message) from error
    return from_metatensor(loaded)
