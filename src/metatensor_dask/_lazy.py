"""Names of a package imported on first access (PEP 562).

``dask.array`` (which imports xarray and pandas when they are installed) and zarr take
most of this package's import time, and a process that only appends batches to a store
(a worker of ``write_batches``) needs neither. The package and its ``io`` and
``operations`` namespaces therefore import the module of a public name when that name is
first read, then keep it as an ordinary attribute.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(
    namespace: dict[str, Any], where: dict[str, str], submodules: Iterable[str] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of the package of ``namespace``.

    Parameters
    ----------
    namespace
        The package's ``globals()``.
    where
        The relative module (``".io"``, ``"._add"``) of each lazily imported name.
    submodules
        Submodules given as attributes of the package on first access.

    Returns
    -------
    tuple
        ``__getattr__``, which imports a name's module, stores the name in the package's
        namespace (so that it is looked up once) and returns it; and ``__dir__``, which
        lists the lazy names with those already present.
    """
    package = namespace["__name__"]
    submodules = tuple(submodules)

    def __getattr__(name: str) -> Any:
        if name in where:
            value = getattr(importlib.import_module(where[name], package), name)
        elif name in submodules:
            value = importlib.import_module(f".{name}", package)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *where, *submodules})

    return __getattr__, __dir__
