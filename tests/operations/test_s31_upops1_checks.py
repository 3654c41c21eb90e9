"""metatensor-operations keeps its checks switch in ``_checks._CHECKS_ENABLED``, which
scripts (and metatensor's own tests) set directly: the switch here is that variable."""

import metatensor_dask as mtd
from metatensor_dask.operations import _checks


def test_switch_set_directly_is_the_switch_read_and_restored():
    original = _checks._CHECKS_ENABLED
    try:
        _checks._CHECKS_ENABLED = False
        assert mtd.checks_enabled() is False
        with mtd.unsafe_enable_checks():
            assert _checks._CHECKS_ENABLED is True
        assert mtd.checks_enabled() is False
        mtd.unsafe_enable_checks()
        assert _checks._CHECKS_ENABLED is True
    finally:
        _checks._CHECKS_ENABLED = original
