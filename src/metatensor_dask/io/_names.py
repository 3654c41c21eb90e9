"""Names that become paths: one safe path component each, checked before any write.

A gradient name becomes a folder of a Zarr store (``blocks/<i>/gradients/<name>``) and
part of a member name in a ``.mts`` archive (``blocks/<i>/gradients/<name>/values.npy``).
metatensor accepts any string there, so ``"../../x"`` would write outside the store and
``"a/b"`` would read back as a nested gradient. Such names are refused up front.
"""

from __future__ import annotations

import functools
import os
import unicodedata
from typing import Any

from ..errors import UnsafeNameError

__all__ = [
    "ZARR_DOCUMENT",
    "check_gradient_names",
    "check_path_component",
    "is_metatensor_file",
]

_RESERVED = {"", ".", ".."}

#: The document of every Zarr group: a gradient of that name would be written over it.
ZARR_DOCUMENT = "zarr.json"


def check_path_component(name: object, what: str) -> None:
    """Raise :class:`~metatensor_dask.errors.UnsafeNameError` unless ``name`` is a string
    usable as one path component on every platform and in a zip member name.

    Parameters
    ----------
    name
        The name to check.
    what
        What the name is, for the message (e.g. ``"gradient name"``).
    """
    if not isinstance(name, str):
        raise UnsafeNameError(f"{what} must be a string, got {type(name).__name__}")
    if not _is_safe(name):
        raise UnsafeNameError(
            f"{what} {name!r} cannot be stored: it must be a single path component "
            "(not empty, '.' or '..', without '/', '\\', control characters or leading "
            "or trailing spaces); rename it, e.g. with a plain word such as 'positions'"
        )


@functools.lru_cache(maxsize=4096)
def _is_safe(name: str) -> bool:
    """Whether ``name`` is a safe path component (cached: the member names of a file of
    many blocks repeat the same few components)."""
    bad = [
        char
        for char in name
        if char in "/\\" or unicodedata.category(char) in {"Cc", "Cf", "Cs", "Co", "Cn"}
    ]
    return not (name in _RESERVED or bad or name != name.strip())


def check_gradient_names(block: Any, zarr: bool) -> None:
    """Raise :class:`~metatensor_dask.errors.UnsafeNameError` unless every gradient name
    of ``block`` (nested ones too) is a safe path component, and, for a Zarr store
    (``zarr``), not :data:`ZARR_DOCUMENT`.

    Parameters
    ----------
    block
        A block of metatensor-dask, or of a metatensor-core batch (anything whose
        ``gradients()`` gives ``(name, gradient)`` pairs).
    zarr
        Whether the names become folders of a Zarr store.
    """
    for parameter, gradient in block.gradients():
        check_path_component(parameter, "gradient name")
        if zarr and parameter == ZARR_DOCUMENT:
            raise UnsafeNameError(
                f"gradient name {parameter!r} cannot be stored in Zarr, where it names the "
                "document of every group; rename the gradient"
            )
        check_gradient_names(gradient, zarr)


def is_metatensor_file(location: Any) -> bool:
    """Whether ``location`` is a path or URL named as a metatensor file (``.mts``, or
    numpy's ``.npz`` of older metatensor versions) rather than a Zarr store."""
    return isinstance(location, (str, os.PathLike)) and os.fspath(location).lower().endswith(
        (".mts", ".npz")
    )
