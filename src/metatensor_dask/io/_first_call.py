"""The first batch computed alone, before the others run beside it.

Libraries that batch functions use often set themselves up on first use without a
lock: featomic 0.6 (as metatensor-core 0.2, see :mod:`._core_library`) loads its
compiled library and publishes it before it declares the signatures of its functions,
so that a second thread calculating meanwhile gets functions that take pointers as
plain ints (``ctypes.ArgumentError: expected LP_featomic_calculator_t instance instead
of int``, or a segmentation fault); ase reads its collection of molecules on first
use, which another thread can see half read (a ``KeyError``). With sixteen threads
and a switch interval of a microsecond, 2 runs of ``write_batches`` computing
featomic's SOAP in 12 failed so, and 8 in 10 building ase's molecules; none once the
first batch ran alone. Which libraries a function uses is not known here:
its first call in a process runs alone, and the calls of the other threads wait for
it to end, so that every set-up on first use happens in one thread. This costs at
most the time of one batch: once per call of ``write_batches`` on threads, once per
function in a cluster's worker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["FirstCallAlone"]


class FirstCallAlone:
    """``function`` (of a batch's items), whose first call runs alone: calls made by
    other threads meanwhile wait for it to end (to fail, too), then run together."""

    def __init__(self, function: Callable[[list[Any]], Any]):
        self.function = function
        self._lock = threading.Lock()
        self._done = False

    def __call__(self, items: list[Any]) -> Any:
        if not self._done:
            with self._lock:
                if not self._done:
                    try:
                        return self.function(items)
                    finally:
                        self._done = True
        return self.function(items)
