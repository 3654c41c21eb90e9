"""A ``KeyboardInterrupt`` (Ctrl-C in a notebook) landing while a pause of the garbage
collector ends: the process lives on, and must keep collecting its garbage cycles."""

from __future__ import annotations

import gc

import pytest

from metatensor_dask import _gc
from metatensor_dask._gc import collector_paused


@pytest.fixture
def _restored():
    """The collector running and nothing frozen after the test, whatever it left."""
    assert gc.isenabled() and gc.get_freeze_count() == 0
    yield
    gc.unfreeze()
    gc.enable()


def _interrupted(made: int) -> None:
    """A Ctrl-C landing while every object is frozen (it is raised where the end of the
    pause counts them)."""
    raise KeyboardInterrupt


@pytest.mark.usefixtures("_restored")
def test_an_interrupt_ending_a_pause_leaves_the_collector_running(monkeypatch):
    monkeypatch.setattr(_gc, "_moved_unexamined", _interrupted)
    with pytest.raises(KeyboardInterrupt), collector_paused():
        # enough objects for the end of the pause to move them to the oldest generation
        made = [[] for _ in range(_gc._FEW + 100)]
    del made
    left = (gc.isenabled(), gc.get_freeze_count())
    assert left == (True, 0)
    monkeypatch.undo()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
