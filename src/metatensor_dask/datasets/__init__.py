"""Data shipped with metatensor-dask, and generated data of realistic shape.

* :func:`tutorial_file`: the two files of metatensor's "Managing gradients" tutorial
  (real featomic output, saved by metatensor-core as ``.npz``);
* :func:`featomic_like`: a lazy tensor shaped like featomic's SOAP power spectrum with
  positions and strain gradients, of any size, generated chunk by chunk.
"""

from __future__ import annotations

import os

from .featomic_like import featomic_like, nbytes_per_system, systems_for_size

__all__ = [
    "TUTORIAL_FILES",
    "featomic_like",
    "nbytes_per_system",
    "systems_for_size",
    "tutorial_file",
]

TUTORIAL_FILES = ("radial-spectrum.npz", "spherical-expansion.npz")


def tutorial_file(name: str) -> str:
    """The path of a shipped tutorial file, one of :data:`TUTORIAL_FILES`."""
    if name not in TUTORIAL_FILES:
        raise ValueError(
            f"unknown tutorial file '{name}', choose one of {', '.join(TUTORIAL_FILES)}"
        )
    return os.path.join(os.path.dirname(__file__), name)
