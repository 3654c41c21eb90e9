"""Folders that can not be written, for tests of refused writes."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def unwritable(folder: Path) -> Iterator[Path]:
    """``folder`` through a read-only bind mount (as root, who ignores permissions),
    else with the write permission removed."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
        for path, mode in modes.items():
            path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        try:
            yield folder
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
        return
    view = folder.with_name(f"{folder.name} (read-only)")
    view.mkdir()
    mounted = subprocess.run(["mount", "--bind", "-o", "ro", folder, view], capture_output=True)
    if mounted.returncode != 0:
        view.rmdir()
        pytest.skip(f"no read-only bind mount here: {mounted.stderr.decode().strip()}")
    try:
        yield view
    finally:
        subprocess.run(["umount", view], check=True)
        view.rmdir()
