"""The lowest versions that pyproject.toml declares for dask, distributed, zarr, numpy and
crc32c.

Prints them as pip constraints (``dask==2025.1.0``); with ``--check``, checks that the
running Python has exactly those versions installed (so that ``make test-lowest`` tests
what it claims to test).
"""

import re
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

PACKAGES = ("dask", "distributed", "zarr", "numpy", "crc32c")


def floors() -> dict[str, str]:
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    found = {}
    for requirement in project["project"]["dependencies"]:
        match = re.match(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*(.*)", requirement)
        name, specifiers = match.group(1).lower(), match.group(3)
        if name in PACKAGES:
            lowest = re.search(r">=\s*([0-9][^,;\s]*)", specifiers)
            if lowest is None:
                sys.exit(f"pyproject.toml: {requirement!r} declares no lower bound")
            found[name] = lowest.group(1)
    missing = set(PACKAGES) - set(found)
    if missing:
        sys.exit(f"pyproject.toml does not declare {sorted(missing)}")
    return found


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        wrong = {n: (v, version(n)) for n, v in floors().items() if version(n) != v}
        if wrong:
            sys.exit(f"not the lowest versions (declared, installed): {wrong}")
        print("lowest versions installed:", ", ".join(f"{n} {v}" for n, v in floors().items()))
    else:
        print("\n".join(f"{name}=={lowest}" for name, lowest in floors().items()))
