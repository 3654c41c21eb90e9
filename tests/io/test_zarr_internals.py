"""zarr's private names are used in one module only, and are still there."""

from __future__ import annotations

import importlib
import pathlib
import re

from metatensor_dask.io import _zarr_internals

SOURCE = pathlib.Path(_zarr_internals.__file__).parent.parent


def test_private_names_still_exist():
    missing = []
    for module, name in _zarr_internals.PRIVATE_NAMES:
        try:
            found = getattr(importlib.import_module(module), name, None)
        except ImportError:
            found = None
        if found is None:
            missing.append(f"{module}.{name}")
    assert not missing, (
        f"this zarr release no longer has {', '.join(missing)}: update "
        "metatensor_dask/io/_zarr_internals.py (and the zarr pin in pyproject.toml)"
    )


def test_no_other_module_imports_private_zarr_names():
    private = re.compile(r"\bzarr\.(core|storage\._|codecs\._)|\b_async_array\b")
    offenders = [
        str(path.relative_to(SOURCE))
        for path in SOURCE.rglob("*.py")
        if path.name != "_zarr_internals.py" and private.search(path.read_text())
    ]
    assert offenders == []
