"""For the tests of stores inside zip archives: a store folder zipped, a file left out."""

from __future__ import annotations

import zipfile
from pathlib import Path


def zip_store(folder: Path, archive: Path, leave_out: str | None = None) -> None:
    """Write every file of the store at ``folder`` into the zip ``archive`` under its
    path relative to the folder, but ``leave_out`` (such a path): a damaged copy."""
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(folder.rglob("*")):
            name = path.relative_to(folder).as_posix()
            if path.is_file() and name != leave_out:
                zipped.write(path, name)
