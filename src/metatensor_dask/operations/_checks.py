"""metatensor-operations' switch for its checks: ``checks_enabled``,
``unsafe_enable_checks`` and ``unsafe_disable_checks``.

In metatensor-operations 0.5.0 no operation reads the switch, and here neither: every
operation always checks its arguments. The switch exists so that scripts written for
metatensor (which call it, or use it as a context manager) run unchanged.
"""

from __future__ import annotations

import os
from types import TracebackType

__all__ = ["checks_enabled", "unsafe_disable_checks", "unsafe_enable_checks"]

#: Set to a true value (``1``, ``true``, ``yes``, ``on``), it turns the switch off at import.
_ENVIRONMENT_VARIABLE = "METATENSOR_UNSAFE_DISABLE_CHECKS"


def _disabled_by_environment() -> bool:
    return os.environ.get(_ENVIRONMENT_VARIABLE, "").lower() in ("true", "1", "yes", "on")


#: The switch, under metatensor-operations' name for it (scripts set it directly).
_CHECKS_ENABLED = not _disabled_by_environment()


def checks_enabled() -> bool:
    """Whether the checks switch is on (see the module docstring: every operation of
    this package checks its arguments whatever the switch).

    Returns
    -------
    bool
        ``True`` unless turned off by :class:`unsafe_disable_checks` or by the
        ``METATENSOR_UNSAFE_DISABLE_CHECKS`` environment variable.
    """
    return _CHECKS_ENABLED


def _set(enabled: bool) -> None:
    global _CHECKS_ENABLED
    _CHECKS_ENABLED = enabled


class _ChecksSwitch:
    """Sets the switch when created; as a context manager, restores the state found
    at creation on exit."""

    _enabled: bool

    def __init__(self) -> None:
        self._previous = _CHECKS_ENABLED
        _set(self._enabled)

    def __enter__(self) -> _ChecksSwitch:
        _set(self._enabled)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        _set(self._previous)

    def __repr__(self) -> str:
        return f"checks {'enabled' if self._enabled else 'disabled'}"


class unsafe_enable_checks(_ChecksSwitch):  # metatensor's name (a class, used as a function)
    """Turn the checks switch on: for good when called, or for the ``with`` block."""

    _enabled = True


class unsafe_disable_checks(_ChecksSwitch):  # metatensor's name (a class, used as a function)
    """Turn the checks switch off: for good when called, or for the ``with`` block.

    As in metatensor-operations 0.5.0, the operations still check their arguments.
    """

    _enabled = False
