"""Free heap memory given back to the system after building a graph."""

import sys

import psutil
import pytest

from metatensor_dask.execution._memory import give_back_free_memory

# measures memory or the page cache: one such test at a time
pytestmark = pytest.mark.xdist_group("serial")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_free_heap_memory_given_back():
    """Blocks freed in the middle of the heap (the last one kept, so the heap's top
    cannot shrink) stay resident until given back."""
    process = psutil.Process()
    blocks = [bytearray(1000) for _ in range(200_000)]  # from malloc, not Python's arenas
    kept = blocks[::100]
    del blocks
    before = process.memory_info().rss
    assert give_back_free_memory()
    after = process.memory_info().rss
    assert before - after > 100 * 2**20, (before, after)
    assert len(kept) == 2000
