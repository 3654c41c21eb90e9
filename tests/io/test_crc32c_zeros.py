"""The crc32c arithmetic of ``_crc32c_zeros`` against google_crc32c: bytes followed by
zeros, and zeros replaced by other bytes, on random data and lengths."""

from __future__ import annotations

import google_crc32c
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metatensor_dask.io._crc32c_zeros import extend_zeros, replace_zeros


@settings(max_examples=200, deadline=None)
@given(head=st.binary(max_size=300), count=st.integers(0, 5000))
def test_extend_zeros_is_the_crc_of_the_zeros_appended(head, count):
    crc = google_crc32c.value(head)
    assert extend_zeros(crc, count) == google_crc32c.value(head + bytes(count))


@settings(max_examples=200, deadline=None)
@given(head=st.binary(max_size=300), tail=st.binary(max_size=3000))
def test_replace_zeros_is_the_crc_of_the_new_tail(head, tail):
    padded = google_crc32c.value(head + bytes(len(tail)))
    found = replace_zeros(padded, len(tail), google_crc32c.value(tail))
    assert found == google_crc32c.value(head + tail)


@pytest.mark.parametrize("count", [0, 1, 2**20 + 3, 13 * 2**20 + 1, 2**27 + 5])
def test_large_paddings(count):
    """Paddings of chunks of megabytes and more (one call of google_crc32c over as many
    zeros as reference)."""
    rng = np.random.default_rng(count)
    head = rng.integers(0, 256, 1000, dtype=np.uint8).tobytes()
    zeros = np.zeros(count, np.uint8)
    crc = google_crc32c.extend(google_crc32c.value(head), zeros)
    assert extend_zeros(google_crc32c.value(head), count) == crc
    tail = rng.integers(0, 256, min(count, 2**20), dtype=np.uint8)
    tail = np.concatenate([tail, zeros[tail.size :]])
    new = google_crc32c.extend(google_crc32c.value(head), tail)
    assert replace_zeros(crc, count, google_crc32c.value(tail)) == new


def test_no_bytes():
    assert extend_zeros(0, 0) == 0 == google_crc32c.value(b"")
    assert replace_zeros(google_crc32c.value(b"abc"), 0, 0) == google_crc32c.value(b"abc")
