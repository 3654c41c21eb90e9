"""Configuration through ``dask.config``, under the ``metatensor_dask`` namespace.

The defaults live in ``metatensor_dask.yaml`` beside this module; users override them
as any dask setting: a YAML file in dask's config directories,
``dask.config.set({"metatensor_dask.chunk-size": "128MiB"})``, or an environment
variable such as ``DASK_METATENSOR_DASK__CHUNK_SIZE=128MiB``. Values are read at call
time, but for ``huge-pages``, read at import (see :mod:`._huge_pages`).

``dask.config.set`` changes a setting for every thread of the process; the writes of
this package that must use other settings than the user's (an append keeps the codecs
of its store) set them with :func:`overridden`, for their own thread only.
"""

from __future__ import annotations

import contextvars
import difflib
import functools
import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import dask.config
import yaml
from dask.utils import parse_bytes

from .errors import MetatensorDaskError

__all__ = ["chunk_size", "get", "overridden"]

_DEFAULTS_FILE = os.path.join(os.path.dirname(__file__), "metatensor_dask.yaml")

with open(_DEFAULTS_FILE) as file:
    _DEFAULTS = yaml.safe_load(file)

dask.config.update_defaults(_DEFAULTS)


def _environment_first(name: str, value: Any) -> Any:
    """``value``, the setting ``name`` as ``dask.config`` holds it, or the value of its
    ``DASK_METATENSOR_DASK__*`` environment variable where dask's merge kept a YAML
    file's mapping over it.

    Environment variables come before YAML files, as dask documents, but its merge
    keeps a file's mapping (a ``compressor`` given as ``{name: ..., configuration:
    ...}``) over a variable's name or ``null``: at import and at every
    ``dask.config.refresh()``. A mapping that is not the files' one was set by
    ``dask.config.set``, which comes first."""
    if not isinstance(value, dict):
        return value
    environment = _environment()
    if name not in environment or isinstance(environment[name], dict):
        return value
    given = json.dumps(value, sort_keys=True, default=repr)
    return environment[name] if _given_by_files(name, given) else value


@functools.cache
def _environment() -> dict[str, Any]:
    """Our settings given by ``DASK_METATENSOR_DASK__*`` environment variables, read
    once per process (collecting them costs tens of microseconds, and a write of many
    blocks reads its settings for every array): changing the environment of a running
    process is not seen here."""
    return _ours(dask.config.collect_env())


@functools.lru_cache(maxsize=64)
def _given_by_files(name: str, value: str) -> bool:
    """Whether dask's YAML files give the setting ``name`` the value of JSON ``value``,
    read once per value and process (reading them for every array a write plans cost
    milliseconds each)."""
    files = _ours(dask.config.collect(env={}))
    return json.dumps(files.get(name), sort_keys=True, default=repr) == value


def _environment_over_files() -> None:
    """What :func:`_environment_first` reads, set in ``dask.config`` at import, so that
    ``dask.config.get`` gives it too (until a ``dask.config.refresh()``)."""
    for name, value in _environment().items():
        current = dask.config.get(f"metatensor_dask.{name}", None)
        if isinstance(current, dict) and not isinstance(value, dict):
            dask.config.set({f"metatensor_dask.{name}": value})


def _ours(collected: dict[str, Any]) -> dict[str, Any]:
    """The ``metatensor_dask`` settings of ``collected`` configuration, by canonical name."""
    ours = collected.get("metatensor_dask")
    if not isinstance(ours, dict):
        return {}
    return {_canonical(key): value for key, value in ours.items()}


#: The settings :func:`overridden` gives the current thread (context), by name.
_OVERRIDES: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "metatensor_dask_overridden_settings", default=None
)


@contextmanager
def overridden(settings: dict[str, Any]) -> Iterator[None]:
    """Within the block, :func:`get` gives ``settings`` (name without the
    ``metatensor_dask.`` prefix: value) in this thread (context) only, whatever
    ``dask.config`` holds: other threads of the process keep reading their own."""
    named = {_canonical(name): value for name, value in settings.items()}
    token = _OVERRIDES.set({**(_OVERRIDES.get() or {}), **named})
    try:
        yield
    finally:
        _OVERRIDES.reset(token)


def _canonical(name: str) -> str:
    """``name`` spelt with hyphens, as the defaults spell it (dask reads ``chunk_size``
    as ``chunk-size``)."""
    return name.replace("_", "-")


def get(name: str) -> Any:
    """The current value of the setting ``metatensor_dask.<name>`` (``_`` or ``-``
    between words, as in dask).

    Raises
    ------
    MetatensorDaskError
        For a value of ``progress`` that is not true or false, of ``window-tasks`` that
        is not a positive number of tasks (the other settings are checked where their
        value is read as what it means: a size, a duration, a codec...).
    """
    _warn_unknown()
    name = _canonical(name)
    overrides = _OVERRIDES.get() or {}
    if name in overrides:
        value = overrides[name]
    else:
        value = _environment_first(name, dask.config.get(f"metatensor_dask.{name}"))
    check = _CHECKS.get(name)
    if check is not None and not check(value):
        raise MetatensorDaskError(
            f"invalid setting metatensor_dask.{name}={value!r}: use {_EXPECTED[name]}"
        )
    return value


#: The names of the settings, as the defaults give them.
_KNOWN = frozenset(_DEFAULTS["metatensor_dask"])
#: The unknown names warned about, each once per process.
_WARNED: set[str] = set()


def _warn_unknown() -> None:
    """Warn, once per name, of a ``metatensor_dask`` setting that metatensor-dask does
    not read (a misspelled name would otherwise leave its default in use).

    The names are copied before they are looked at: dask's ``config.set`` adds and
    removes names in the same mapping, in place, and another thread doing so meanwhile
    made the loop fail (``RuntimeError: dictionary changed size during iteration``)."""
    for key in list(dask.config.get("metatensor_dask", {})):
        name = key.replace("_", "-")
        if name in _KNOWN or name in _WARNED:
            continue
        _WARNED.add(name)
        close = difflib.get_close_matches(name.lower(), sorted(_KNOWN), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        warnings.warn(
            f"unknown setting metatensor_dask.{key}, which is not used: {hint}the settings "
            f"are {', '.join(sorted(_KNOWN))}",
            UserWarning,
            stacklevel=3,
        )


def _is_boolean(value: Any) -> bool:
    return isinstance(value, bool)


def _is_positive_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


_CHECKS = {"progress": _is_boolean, "window-tasks": _is_positive_integer}
_EXPECTED = {"progress": "true or false", "window-tasks": "a positive number of tasks such as 500"}


def chunk_size() -> int:
    """The ``chunk-size`` setting in bytes; a value that is not a positive size is
    refused, naming the setting."""
    value = get("chunk-size")
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # such as 1e6, which an environment variable gives as a float
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        _refuse_chunk_size(value)
    return _positive_bytes(value)


@functools.lru_cache(maxsize=16)
def _positive_bytes(value: str | int) -> int:
    try:
        size = int(parse_bytes(value))
    except (ValueError, TypeError, AttributeError):
        size = 0
    if size < 1:
        _refuse_chunk_size(value)
    return size


def _refuse_chunk_size(value: Any) -> NoReturn:
    raise MetatensorDaskError(
        f"invalid setting metatensor_dask.chunk-size={value!r}: use a size such as '64MiB'"
    )


_environment_over_files()
