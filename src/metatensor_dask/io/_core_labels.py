"""metatensor-core Labels read into metatensor-dask's, each handle freed once read.

metatensor-core 0.2's Python ``Labels`` never free what they hold: their ``__del__``
tests for an attribute that no ``Labels`` has (``_labels``) before calling
``mts_labels_free``, so that every ``Labels`` object made in Python keeps a reference
to its labels in metatensor's memory (their values and their index) until the
process ends. Each ``block.samples``, ``block.properties``, ``tensor.keys``... is such
an object, made anew at each access. A worker of ``write_batches`` reading the Labels of
each featomic batch kept ~0.5 MiB of each batch that way (its peak memory grew with
the number of batches), and ``to_metatensor`` of 20,000 tiny blocks left ~150 MiB
behind once the map was deleted.

So the Labels that metatensor-dask makes or reads are freed here as soon as their names
and values are copied (:func:`read`) or handed to metatensor, which keeps a reference
of its own (:func:`free`). A Labels object given by a user is never freed. With a
metatensor-core whose ``Labels`` free themselves, :func:`free` is the same call done
early: a released ``Labels`` has no handle left for its ``__del__``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..labels import Labels

__all__ = ["free", "read"]


def free(labels: Any) -> None:
    """Free the handle of metatensor-core ``labels`` (made or read here, never given by a
    user): metatensor's blocks and maps holding the same labels keep their own. No view
    of its values may be used after this (:func:`read` copies them)."""
    library = getattr(labels, "_lib", None)
    if library is None or getattr(labels, "_ptr", None) is None:
        return
    # a view of the values cached by the object would outlive the handle
    labels._cached_values = None
    library.mts_labels_free(labels.release())


def read(labels: Any) -> Labels:
    """A metatensor-dask copy of metatensor-core ``labels`` (made or read here), whose
    handle is then freed (see :func:`free`); recorded as repeating an entry when they do
    (metatensor-core's Labels built with ``assume_unique=True`` may)."""
    names = list(labels.names)
    values = np.array(labels.values, dtype=np.int32)
    free(labels)
    return Labels._of_unknown_rows(names, values)
