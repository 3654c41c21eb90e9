"""``python -m metatensor_dask``: the ``metatensor-dask`` command line."""

import sys

from .execution.cli import main

if __name__ == "__main__":
    sys.exit(main())
