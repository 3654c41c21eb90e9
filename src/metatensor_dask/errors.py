"""Exception types.

metatensor raises ``MetatensorError`` from its native core (with messages prefixed by
``"invalid parameter: "``, ``"serialization format error: "`` or ``"io error: "``), and
plain ``ValueError``/``TypeError``/``IndexError`` from its Python layer. This package
raises the same types with the same wording, so code written against metatensor keeps
catching what it caught. Errors that only this package can raise (storage, chunking,
format versions) derive from :class:`MetatensorDaskError`.
"""

from __future__ import annotations

__all__ = ["MetatensorDaskError", "MetatensorError", "NotEqualError"]


class MetatensorError(Exception):
    """An error with the same meaning and wording as one raised by metatensor-core.

    Parameters
    ----------
    message
        The message, including metatensor's prefix (``"invalid parameter: "`` ...).
    status
        metatensor's status code, kept for compatibility; always ``None`` here.
    """

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.status = status


def invalid_parameter(message: str) -> MetatensorError:
    """A :class:`MetatensorError` for an invalid argument, worded as metatensor's core."""
    return MetatensorError(f"invalid parameter: {message}")


def format_error(message: str) -> MetatensorError:
    """A :class:`MetatensorError` for a malformed file, worded as metatensor's core."""
    return MetatensorError(f"serialization format error: {message}")


class MetatensorDaskError(ValueError):
    """Base class of the errors that only metatensor-dask raises (storage, chunking)."""


class NotEqualError(Exception):
    """Two tensors or blocks differ where an operation needs them to be equal.

    Same name and meaning as ``metatensor.NotEqualError`` (metatensor-operations).
    """
