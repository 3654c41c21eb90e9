"""``drop_blocks``, ``filter_blocks`` and ``drop_empty_blocks``: choose blocks by key."""

from __future__ import annotations

import numpy as np

from ..errors import wrong_type
from ..labels import Labels
from ..tensor import TensorMap
from ._manipulation_utils import (
    check_no_gradients_of_gradients,
)
from ._utils import check_tensor

__all__ = ["drop_blocks", "drop_empty_blocks", "filter_blocks"]


def _check_args(tensor: TensorMap, keys: Labels | None, copy: bool) -> None:
    check_tensor(tensor, "tensor")
    if keys is not None and not isinstance(keys, Labels):
        raise wrong_type(f"`keys` must be a metatensor Labels, not {type(keys)}", keys)
    if not isinstance(copy, bool):
        raise TypeError(f"`copy` must be a boolean, not {type(copy)}")


def _kept(tensor: TensorMap, positions: np.ndarray, copy: bool, keys: Labels) -> TensorMap:
    """The blocks of ``tensor`` at ``positions``, with ``keys`` (their keys)."""
    blocks = []
    for i in positions:
        block = tensor.block_by_id(int(i))
        if copy:
            blocks.append(block.copy())  # with gradients of gradients, as metatensor
        else:
            check_no_gradients_of_gradients(block)
            blocks.append(block)
    return TensorMap._trusted(keys, blocks)


def _keys_at(tensor: TensorMap, positions: np.ndarray) -> Labels:
    """The keys of ``tensor`` at ``positions``, not checked, as metatensor: they repeat
    an entry only if the keys did (see :meth:`Labels._made_from`)."""
    keys = tensor.keys
    return Labels._made_from(keys.names, keys.values[positions], keys)


def drop_blocks(tensor: TensorMap, keys: Labels, copy: bool = False) -> TensorMap:
    """Remove the blocks whose key matches one of ``keys``.

    Parameters
    ----------
    tensor
        The input map; it is not modified.
    keys
        Key entries to remove; they may use a subset of the key names (every block
        matching an entry on those names is removed).
    copy
        Copy numpy arrays of computed blocks (dask arrays are immutable, so they are
        always shared).

    Returns
    -------
    TensorMap
        The remaining blocks, in the order of ``tensor``, with their gradients.

    Notes
    -----
    Gradient rule: kept blocks keep their gradients unchanged. Gradients of gradients
    need ``copy=True`` (metatensor raises ``NotImplementedError`` without it).
    """
    _check_args(tensor, keys, copy)
    removed = np.zeros(len(tensor), bool)
    removed[tensor.keys.select(keys).astype(np.int64)] = True
    positions = np.nonzero(~removed)[0]
    return _kept(tensor, positions, copy, _keys_at(tensor, positions))


def filter_blocks(tensor: TensorMap, keys: Labels, copy: bool = False) -> TensorMap:
    """Keep only the blocks whose key matches one of ``keys``.

    Parameters
    ----------
    tensor
        The input map; it is not modified.
    keys
        Key entries to keep; they may use a subset of the key names.
    copy
        Copy numpy arrays of computed blocks (dask arrays are always shared).

    Returns
    -------
    TensorMap
        The matching blocks with their gradients, in the order of ``tensor``; in the
        order of ``keys`` when ``keys`` has every key dimension, in the same order (as
        metatensor, see :meth:`Labels.select`).

    Notes
    -----
    Gradient rule: kept blocks keep their gradients unchanged. Gradients of gradients
    need ``copy=True`` (metatensor raises ``NotImplementedError`` without it).
    """
    _check_args(tensor, keys, copy)
    positions = tensor.keys.select(keys).astype(np.int64)
    return _kept(tensor, positions, copy, _keys_at(tensor, positions))


def drop_empty_blocks(tensor: TensorMap, copy: bool = False) -> TensorMap:
    """Remove the blocks that have no data (a dimension of size zero).

    Parameters
    ----------
    tensor
        The input map; it is not modified. Shapes are metadata: nothing is computed.
    copy
        Copy numpy arrays of computed blocks (dask arrays are always shared).

    Returns
    -------
    TensorMap
        The non-empty blocks, in order, with their gradients.

    Notes
    -----
    Gradient rule: kept blocks keep their gradients unchanged. Gradients of gradients
    need ``copy=True`` (metatensor raises ``NotImplementedError`` without it).

    As metatensor, the kept keys are checked: keys built with ``assume_unique=True``
    that repeat an entry raise metatensor's error.
    """
    _check_args(tensor, None, copy)
    full = [i for i, block in enumerate(tensor.blocks()) if 0 not in block.shape]
    positions = np.array(full, dtype=np.int64)
    keys = tensor.keys._rebuilt(tensor.keys.names, tensor.keys.values[positions])
    return _kept(tensor, positions, copy, keys)
