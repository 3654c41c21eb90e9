"""Configuration through ``dask.config``, under the ``metatensor_dask`` namespace.

The defaults live in ``metatensor_dask.yaml`` beside this module; users override them
as any dask setting: a YAML file in dask's config directories,
``dask.config.set({"metatensor_dask.chunk-size": "128MiB"})``, or an environment
variable such as ``DASK_METATENSOR_DASK__CHUNK_SIZE=128MiB``. Values are read at call
time, but for ``huge-pages``, read at import (see :mod:`._huge_pages`).
"""

from __future__ import annotations

import os
from typing import Any

import dask.config
import yaml

__all__ = ["get"]

_DEFAULTS_FILE = os.path.join(os.path.dirname(__file__), "metatensor_dask.yaml")

with open(_DEFAULTS_FILE) as file:
    _DEFAULTS = yaml.safe_load(file)

dask.config.update_defaults(_DEFAULTS)


def get(name: str) -> Any:
    """The current value of the setting ``metatensor_dask.<name>``."""
    return dask.config.get(f"metatensor_dask.{name}")
