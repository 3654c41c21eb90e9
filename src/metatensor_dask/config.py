"""Configuration through ``dask.config``, under the ``metatensor_dask`` namespace.

The defaults live in ``metatensor_dask.yaml`` beside this module; users override them
as any dask setting: a YAML file in dask's config directories,
``dask.config.set({"metatensor_dask.chunk-size": "128MiB"})``, or an environment
variable such as ``DASK_METATENSOR_DASK__CHUNK_SIZE=128MiB``. Values are read at call
time, but for ``huge-pages``, read at import (see :mod:`._huge_pages`).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import dask.config
import yaml
from dask.utils import parse_bytes

from .errors import MetatensorDaskError

__all__ = ["chunk_size", "get"]

_DEFAULTS_FILE = os.path.join(os.path.dirname(__file__), "metatensor_dask.yaml")

with open(_DEFAULTS_FILE) as file:
    _DEFAULTS = yaml.safe_load(file)

dask.config.update_defaults(_DEFAULTS)


def get(name: str) -> Any:
    """The current value of the setting ``metatensor_dask.<name>``."""
    return dask.config.get(f"metatensor_dask.{name}")


def chunk_size() -> int:
    """The ``chunk-size`` setting in bytes; a value that is not a positive size is
    refused, naming the setting."""
    return _positive_bytes(get("chunk-size"))


@functools.lru_cache(maxsize=16)
def _positive_bytes(value: Any) -> int:
    try:
        size = int(parse_bytes(value))
    except (ValueError, TypeError, AttributeError):
        size = 0
    if size < 1:
        raise MetatensorDaskError(
            f"invalid setting metatensor_dask.chunk-size={value!r}: use a size such as '64MiB'"
        )
    return size
