"""The arguments of ``to()`` on Labels, blocks and maps, read as metatensor reads them."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["to_arguments"]


def to_arguments(context: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The ``dtype`` asked of ``to(*args, **kwargs)`` (None to keep it), after checking
    the device and the array backend.

    As metatensor: positional arguments are a device (a string) or a dtype (anything
    numpy reads as a numeric dtype), in any order, each at most once, also counting the
    ``dtype=`` and ``device=`` keywords; ``arrays`` is ``"numpy"``, ``"torch"`` or None;
    ``non_blocking`` and other keywords are ignored.

    Parameters
    ----------
    context
        The method, for messages: ``"`TensorBlock.to`"``.
    args, kwargs
        The arguments of ``to()``.

    Raises
    ------
    ValueError
        For a device other than the cpu, ``arrays="torch"`` (dask arrays can not be
        torch tensors) or an unknown backend, a dtype or device given twice.
    TypeError
        For a positional argument that is neither a device nor a numeric dtype.
    """
    dtype = kwargs.get("dtype")
    device = kwargs.get("device")
    for argument in args:
        if isinstance(argument, str):
            if device is not None:
                raise ValueError(f"can not give a device twice in {context}")
            device = argument
            continue
        if _is_numeric_dtype(argument):
            if dtype is not None:
                raise ValueError(f"can not give a dtype twice in {context}")
            dtype = argument
            continue
        raise TypeError(f"unexpected type in {context}: {type(argument)}")
    arrays = kwargs.get("arrays")
    if arrays == "torch":
        raise ValueError(
            "can not convert metatensor-dask data to `torch` arrays: convert it to "
            "metatensor with `mtd.to_metatensor(...)`, then call `.to(arrays='torch')` there"
        )
    if arrays not in (None, "numpy"):
        raise ValueError(f"unknown array backend: '{arrays}'")
    if device is not None and str(device) != "cpu":
        raise ValueError(
            f"can not move metatensor-dask arrays to non-cpu device: {device}; dask arrays "
            "live on the cpu (convert to metatensor with `mtd.to_metatensor(...)` for torch)"
        )
    return dtype


def _is_numeric_dtype(argument: Any) -> bool:
    if isinstance(argument, np.dtype):
        return True
    try:
        dtype = np.dtype(argument)
    except TypeError:
        return False
    return bool(np.issubdtype(dtype, np.number))
