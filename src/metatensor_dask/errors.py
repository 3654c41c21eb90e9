"""Exception types.

metatensor raises ``MetatensorError`` from its native core (with messages prefixed by
``"invalid parameter: "``, ``"serialization format error: "`` or ``"io error: "``), and
plain ``ValueError``/``TypeError``/``IndexError`` from its Python layer. This package
raises the same types with the same wording, so code written against metatensor keeps
catching what it caught. Errors that only this package can raise (storage, chunking,
format versions) derive from :class:`MetatensorDaskError`.
"""

from __future__ import annotations

__all__ = [
    "DamagedFileError",
    "DamagedStoreError",
    "IncompleteStoreError",
    "MetatensorDaskError",
    "MetatensorDaskWarning",
    "MetatensorError",
    "NotEqualError",
    "StoreFormatWarning",
    "StoreLockedError",
    "UnsafeNameError",
]


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


def wrong_type(message: str, value: object) -> TypeError:
    """metatensor's ``TypeError`` for an argument ``value`` of the wrong type.

    When ``value`` is an object of metatensor-core (a script that uses both packages),
    metatensor's message ("must be metatensor Labels, not <class 'metatensor.Labels'>")
    is completed with the remedy.
    """
    module = type(value).__module__
    if module == "metatensor" or module.startswith("metatensor."):
        message += (
            "; this object comes from metatensor-core: convert it with "
            "`metatensor_dask.from_metatensor`"
        )
    return TypeError(message)


def format_error(message: str) -> MetatensorError:
    """A :class:`MetatensorError` for a malformed file, worded as metatensor's core."""
    return MetatensorError(f"serialization format error: {message}")


class MetatensorDaskError(ValueError):
    """Base class of the errors that only metatensor-dask raises (storage, chunking).

    The hierarchy, all catchable as ``MetatensorDaskError`` (and so as ``ValueError``)::

        MetatensorDaskError
        ├── DamagedStoreError      stored bytes or metadata contradict themselves
        │   └── DamagedFileError   ... in a .mts/.npz file (also a MetatensorError)
        ├── IncompleteStoreError   a store whose write has not finished
        ├── StoreLockedError       another writer holds the store
        └── UnsafeNameError        a name that cannot become a path component
    """


class DamagedStoreError(MetatensorDaskError):
    """A store's data or metadata is damaged: a missing chunk or array, a checksum that
    does not match, metadata that contradicts the data or itself.

    The message names the store, the array and the chunk where it can, and the remedy
    (``metatensor-dask verify``, converting the source again).
    """


class DamagedFileError(DamagedStoreError, MetatensorError):
    """A ``.mts``/``.npz`` file is damaged (a CRC-32 that does not match, a truncated or
    edited member). Also a :class:`MetatensorError`, which is what metatensor-core raises
    for such files."""

    def __init__(self, message: str):
        DamagedStoreError.__init__(self, message)
        self.message = message
        self.status = None


class IncompleteStoreError(MetatensorDaskError):
    """A store whose write did not finish (still running, or killed): its completion
    marker is missing. Resume the write with ``resume=True`` or wait for it to end."""


class StoreLockedError(MetatensorDaskError):
    """Another writer holds the store's lock. The message names the holder (owner, host,
    pid, start, last heartbeat) and what to do with a stale lock."""


class UnsafeNameError(MetatensorDaskError):
    """A name (e.g. of a gradient) that would become a path but is not a safe single path
    component (empty, ``.``, ``..``, containing ``/``, ``\\`` or control characters)."""


class NotEqualError(Exception):
    """Two tensors or blocks differ where an operation needs them to be equal.

    Same name and meaning as ``metatensor.NotEqualError`` (metatensor-operations).
    """


class MetatensorDaskWarning(UserWarning):
    """Base class of the warnings that only metatensor-dask emits; filter them with
    ``warnings.filterwarnings("ignore", category=mtd.MetatensorDaskWarning)``."""


class StoreFormatWarning(MetatensorDaskWarning):
    """A store of an older format that gives weaker guarantees. Format 1 stores with a
    compressor or sharding did not store all-zero chunks, so a missing chunk there can
    not be told from damage and reads as zeros; ``metatensor-dask convert OLD NEW``
    writes a store of the current format."""
