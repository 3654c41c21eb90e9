"""metatensor-core's compiled library, loaded in one thread before batches run in many,
and before a conversion to or from metatensor makes its first metatensor objects (on a
cluster, by each worker as it joins: see :mod:`._core_library_plugin`).

metatensor-core 0.2 loads its library on first use (``metatensor._c_lib._get_library``)
and publishes it before it declares the signatures of its functions. A thread that
calls metatensor meanwhile gets functions that return plain ints for pointers and take
their arguments undeclared: a segmentation fault, or a ``TypeError`` such as
``expected LP_mts_labels_t instance, got int``. The first metatensor objects of a
process are often made by the batches of ``write_batches`` in parallel threads (a
featomic calculator computing, a function building maps), so the process crashed now
and then on a loaded machine, where a thread is more often switched out in the middle
of that setup (reproduced with a switch interval of a microsecond: 4 crashes in 20
processes of four threads making Labels; none once loaded first). Conversions
(``to_metatensor``, ``load_buffer``...) called by several threads of a fresh process at
once crashed it so too.
"""

from __future__ import annotations

import threading

__all__ = ["load_core_library"]

_LOCK = threading.Lock()
_loaded = False


def load_core_library() -> None:
    """Load metatensor-core's library in this thread, once per process, when metatensor
    is installed (importing it: a batch function may import it only when it runs);
    nothing when it is not. A library that fails to load (another version) is left to
    fail in the batches that use it, with metatensor's own error."""
    global _loaded
    if _loaded:
        return
    with _LOCK:
        if _loaded:
            return
        try:
            from metatensor._c_lib import _get_library
        except ImportError:  # not installed, or a release that loads otherwise
            _loaded = True
            return
        try:
            _get_library()
        except Exception:  # a function that uses metatensor gets the error itself
            pass
        _loaded = True
