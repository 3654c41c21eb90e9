"""``metatensor_dask.operations._checks`` is an attribute of the namespace before any
operation is imported, as ``metatensor.operations._checks`` is (scripts and
metatensor's own tests set ``_checks._CHECKS_ENABLED`` through it)."""

import subprocess
import sys

SCRIPT = """
import metatensor_dask as mtd
mtd.operations._checks._CHECKS_ENABLED = False
assert mtd.checks_enabled() is False
"""


def test_checks_module_reachable_in_a_fresh_process():
    subprocess.run([sys.executable, "-c", SCRIPT], check=True, timeout=120)
