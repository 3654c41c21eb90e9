"""Whether numpy asks the kernel for transparent huge pages (the ``huge-pages`` setting).

On Linux, numpy advises the kernel to back each array of 4 MiB or more with huge pages
(2 MiB blocks; ``madvise(MADV_HUGEPAGE)``). On a virtual machine whose kernel hands
free memory back to its host (virtio-balloon free page reporting), the blocks handed
back are exactly such 2 MiB blocks, so a huge page new to the process is memory the
host must find again before it can be written. Measured on such a machine (1 GiB of
new arrays, after ten seconds of rest): 2.7 to 3.2 s of system time with huge pages,
0.5 to 0.6 s without; the results of ``keys_to_samples`` at 100,000 blocks (916 MiB)
took 2.4 s of system time with them and 1.1 s without.

The setting is ``true`` (numpy's default), ``false``, or ``auto`` (the default):
``false`` where a virtio balloon reports free pages to the host, numpy's default
elsewhere. numpy's choice is one for the whole process; it is made when
``metatensor_dask`` is imported, in each process that imports it (a cluster's workers
import it with the first task that uses it), from that process's configuration (a
configuration file or an environment variable reaches the workers; ``dask.config.set``
in the client does not).
"""

from __future__ import annotations

import glob
from typing import Any

from . import config
from .errors import MetatensorDaskError

__all__ = ["apply", "free_page_reporting"]

_BALLOON_FEATURES = "/sys/bus/virtio/drivers/virtio_balloon/*/features"
_REPORTING_BIT = 5  # VIRTIO_BALLOON_F_REPORTING, in the virtio specification


def free_page_reporting(features: str = _BALLOON_FEATURES) -> bool:
    """Whether a virtio balloon of this machine reports free pages to its host.

    ``features`` is the pattern of the devices' feature files: one character ``0`` or
    ``1`` per feature bit, the first for bit 0."""
    for path in glob.glob(features):
        try:
            with open(path) as file:
                bits = file.read().strip()
        except OSError:
            continue
        if len(bits) > _REPORTING_BIT and bits[_REPORTING_BIT] == "1":
            return True
    return False


def _wanted(setting: Any) -> bool | None:
    """Huge pages or not for a value of the setting; ``None`` for numpy's default."""
    if isinstance(setting, str):
        setting = {"true": True, "false": False, "auto": "auto"}.get(setting.lower(), setting)
    if setting is True:
        return None
    if setting is False:
        return False
    if setting == "auto":
        return False if free_page_reporting() else None
    raise MetatensorDaskError(
        f"the setting metatensor_dask.huge-pages must be true, false or auto, not "
        f"{setting!r}: change it in the dask configuration (a YAML file, or the "
        "environment variable DASK_METATENSOR_DASK__HUGE_PAGES)"
    )


def _numpy_switch() -> Any:
    """numpy's function that sets its huge-page advice, or ``None`` when it has none."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy without the module
        return None
    return getattr(multiarray, "_set_madvise_hugepage", None)


def apply() -> bool | None:
    """Set numpy's huge-page advice from the setting; whether numpy now advises huge
    pages (``None`` when numpy's choice was left as it is)."""
    wanted = _wanted(config.get("huge-pages"))
    switch = _numpy_switch()
    if wanted is None or switch is None:
        return None
    switch(wanted)
    return wanted
