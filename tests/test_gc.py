"""The pause of the cyclic garbage collector (``metatensor_dask._gc``)."""

import gc
import subprocess
import sys
import threading

import pytest

from metatensor_dask._gc import collector_paused, without_collector


@pytest.fixture(autouse=True)
def _collector_running():
    assert gc.isenabled()
    yield
    gc.enable()


def test_paused_then_resumed_even_on_error():
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError
    assert gc.isenabled()


def test_nested_pauses_resume_at_the_outermost_end():
    with collector_paused():
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_disabled_by_the_caller_stays_disabled():
    gc.disable()
    with collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_overlapping_pauses_of_threads_resume_when_the_last_ends():
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = []

    def first():
        with collector_paused():
            first_in.set()
            second_in.wait()
        first_out.set()

    def second():
        first_in.wait()
        with collector_paused():
            second_in.set()
            first_out.wait()
            seen.append(gc.isenabled())  # the first pause ended, this one runs

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [False]
    assert gc.isenabled()


def test_without_collector_runs_the_function_paused():
    @without_collector
    def state(value):
        """Documented."""
        return value, gc.isenabled()

    assert state(3) == (3, False)
    assert gc.isenabled()
    assert state.__doc__ == "Documented."

    @without_collector
    def failing():
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        failing()
    assert gc.isenabled()


def _in_a_generation(target: object) -> bool:
    """Whether the collector tracks ``target`` in one of its generations (frozen
    objects are in none of them)."""
    return any(found is target for generation in range(3) for found in gc.get_objects(generation))


def test_objects_frozen_by_the_program_stay_frozen():
    # a frozen object of the test's own, rather than the count of frozen objects: the
    # threads of other tests may free frozen objects meanwhile
    frozen = [object()]
    gc.freeze()
    try:
        assert not _in_a_generation(frozen)
        with collector_paused():
            made = [[] for _ in range(1000)]
        assert not _in_a_generation(frozen), "the pause thawed the program's frozen objects"
        assert made
    finally:
        gc.unfreeze()
    assert _in_a_generation(frozen)


class _Cycle:
    """An object in a reference cycle, noted in ``freed`` when collected."""

    def __init__(self, freed: list) -> None:
        self.me = self
        self.freed = freed

    def __del__(self) -> None:
        self.freed.append(True)


@pytest.mark.parametrize("disabled_by_caller", [False, True])
def test_young_collected_frees_the_cycles_of_the_pauses_when_the_last_ends(disabled_by_caller):
    if disabled_by_caller:
        gc.disable()
    freed = []
    with collector_paused(young_collected=True):
        with collector_paused():  # a pause that asks for nothing inside it
            _Cycle(freed)
        _Cycle(freed)
        assert freed == []
    assert freed == [True, True]
    assert gc.isenabled() is not disabled_by_caller


def test_without_young_collected_cycles_wait_for_a_collection():
    thresholds = gc.get_threshold()
    gc.set_threshold(10**6)  # no young pass triggered by the test's own objects
    try:
        freed = []
        with collector_paused():
            _Cycle(freed)
        assert freed == []
        gc.collect()
        assert freed == [True]
    finally:
        gc.set_threshold(*thresholds)


def test_a_loop_of_small_pauses_keeps_no_garbage():
    # the objects of pauses that made few are left to the collector's young passes,
    # which free the cycles among them that died since: a loop of small operations
    # kept them all (in the oldest generation, which no full pass looked at)
    freed = []
    for _ in range(3000):
        with collector_paused():
            cycle = _Cycle(freed)
        del cycle
    assert len(freed) >= 2000


_LARGE_PAUSES = """
from metatensor_dask._gc import _FEW, collector_paused

freed = []


class Cycle:
    def __init__(self):
        self.me = self
        self.items = [[] for _ in range(_FEW)]

    def __del__(self):
        freed.append(True)


for _ in range(100):
    with collector_paused():
        cycle = Cycle()
    del cycle
print(len(freed))
"""


def test_garbage_of_large_pauses_is_freed_by_full_passes():
    # pauses that made many objects move them to the oldest generation unexamined: a
    # full pass runs once those outnumber eight times the objects alive (a process of
    # its own, whose heap is small and known)
    result = subprocess.run(
        [sys.executable, "-c", _LARGE_PAUSES], capture_output=True, text=True, check=True
    )
    assert int(result.stdout) >= 50
