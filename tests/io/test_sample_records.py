"""The records of stored samples that appends extend (chained digest, tails kept,
maxima), computed from pieces of rows without gathering them into copies, against
their definition."""

from __future__ import annotations

import hashlib

import dask
import metatensor
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import metatensor_dask as mtd
from metatensor_dask.io.zarr_samples import (
    CHAIN_ROWS,
    ChainTails,
    chained_digest,
    extend_attributes,
    sample_attributes,
)

NAMES = ["system", "atom", "sample"]


def _blake(*parts: bytes) -> bytes:
    hasher = hashlib.blake2b(digest_size=16)
    for part in parts:
        hasher.update(part)
    return hasher.digest()


def _defined_digest(names: list[str], values: np.ndarray) -> str:
    """The chained digest as defined: blocks of CHAIN_ROWS rows (little-endian int32
    bytes) hashed into the state, then the state and the rows left."""
    state = _blake(repr(names).encode())
    data = values.astype("<i4")
    full = len(data) - len(data) % CHAIN_ROWS
    for start in range(0, full, CHAIN_ROWS):
        state = _blake(state, data[start : start + CHAIN_ROWS].tobytes())
    return "c1-" + _blake(state, data[full:].tobytes()).hex()


def _rows(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(-3, 50, size=(count, 3)).astype(np.int32)


@pytest.mark.parametrize(
    "sizes",
    [[0], [5], [CHAIN_ROWS], [CHAIN_ROWS - 1, 1], [3, CHAIN_ROWS - 3, 2], [40_000, 40_000, 60_000]],
)
def test_appended_records_are_those_of_the_whole(sizes):
    """Records extended batch after batch (the stored tail and the new rows hashed as
    pieces) equal the records of all rows at once, and the digest its definition."""
    pieces = [_rows(n, seed) for seed, n in enumerate(sizes)]
    attributes = sample_attributes(NAMES, pieces[0])
    stored = pieces[0]
    for added in pieces[1:]:
        rest = stored[attributes["chain"]["rows"] :]
        attributes = extend_attributes(attributes, rest, added)
        stored = np.concatenate([stored, added])
    assert attributes == sample_attributes(NAMES, stored)
    assert attributes["digest"] == chained_digest(NAMES, stored)
    assert attributes["digest"] == _defined_digest(NAMES, stored)
    assert attributes["chain"]["rows"] == len(stored) - len(stored) % CHAIN_ROWS


def test_digest_of_rows_not_contiguous_or_not_int32():
    values = _rows(1000, 7)
    wide = values.astype(np.int64)
    strided = np.asfortranarray(values)
    expected = _defined_digest(NAMES, values)
    assert chained_digest(NAMES, wide) == expected
    assert chained_digest(NAMES, strided) == expected
    assert chained_digest(NAMES, values[::-1][::-1]) == expected


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(-2, 2), st.integers(-2, 2), st.integers(-2, 2)),
        min_size=1,
        max_size=40,
    )
)
def test_maxima_are_the_lexicographic_and_column_largest(entries):
    values = np.array(entries, dtype=np.int32)
    attributes = sample_attributes(NAMES, values)
    assert attributes["max"] == list(max(entries))
    assert attributes["column_max"] == [max(column) for column in zip(*entries, strict=True)]


def test_maxima_extended_by_rows_sorting_before_and_after():
    stored = np.array([[3, 1, 0], [3, 2, 0]], np.int32)
    attributes = sample_attributes(NAMES, stored)
    after = extend_attributes(attributes, stored, np.array([[2, 9, 9], [3, 2, 1]], np.int32))
    assert after["max"] == [3, 2, 1] and after["column_max"] == [3, 9, 9]
    before = extend_attributes(attributes, stored, np.array([[1, 7, 7]], np.int32))
    assert before["max"] == [3, 2, 0] and before["column_max"] == [3, 7, 7]


def test_tails_kept_from_pieces_and_checked():
    """The tail kept after an append holds exactly the rows after the chain's whole
    blocks; the next append takes it with the rows stored since, and reads everything
    again when the kept chain, extended by them, does not give the stored digest."""
    first = _rows(CHAIN_ROWS - 10, 1)
    attributes = sample_attributes(NAMES, first)
    tails = ChainTails()
    tail = tails.stored_tail("key", attributes, len(first), lambda a, b: first[a:b])
    added = _rows(30, 2)  # crosses a block: 20 rows left
    extended = extend_attributes(attributes, tail.rows, added, tail.chain)
    tails.remember("key", extended, tail, added)
    stored = np.concatenate([first, added])
    np.testing.assert_array_equal(tails._tails["key"].rows, stored[CHAIN_ROWS:])
    assert tails._tails["key"].rows.dtype == np.int32
    since = _rows(7, 3)  # appended by another process
    later = extend_attributes(extended, stored[CHAIN_ROWS:], since)
    stored = np.concatenate([stored, since])
    reads: list[tuple[int, int]] = []

    def read(start: int, stop: int) -> np.ndarray:
        reads.append((start, stop))
        return stored[start:stop]

    tail = tails.stored_tail("key", later, len(stored), read)
    np.testing.assert_array_equal(tail.rows, stored[CHAIN_ROWS:])
    assert tail.maxima == _maxima_of(stored[CHAIN_ROWS:])
    assert reads == [(len(stored) - 7, len(stored))]
    # the tail checked is hashed once: its chain extended gives the records of all rows
    assert tail.chain.digest() == later["digest"]
    more = _rows(CHAIN_ROWS, 4)  # crosses the next block
    whole = sample_attributes(NAMES, np.concatenate([stored, more]))
    assert extend_attributes(later, tail.rows, more, tail.chain.copy()) == whole
    assert extend_attributes(later, tail.rows, more) == whole
    rewritten = stored.copy()  # the same rows but one after the chain's block
    rewritten[CHAIN_ROWS, 0] += 1
    edited = sample_attributes(NAMES, rewritten)
    reads.clear()
    stored = rewritten
    tail = tails.stored_tail("key", edited, len(stored), read)
    np.testing.assert_array_equal(tail.rows, rewritten[CHAIN_ROWS:])
    assert reads == [(len(stored), len(stored)), (CHAIN_ROWS, len(stored))]
    # read again, and checked: its chain extended gives the records of all rows too
    assert extend_attributes(edited, tail.rows, more, tail.chain) == sample_attributes(
        NAMES, np.concatenate([rewritten, more])
    )


def _maxima_of(rows: np.ndarray) -> tuple[list[int], list[int]]:
    """The lexicographically largest row and the largest value of each column, sorted."""
    ordered = sorted(rows.tolist())
    return ordered[-1], [int(v) for v in rows.max(axis=0)]


def test_batches_across_chain_blocks_give_the_digest_of_their_join(tmp_path):
    """Appends whose samples cross chained blocks, on a real store: the stored digest is
    that of all the samples, and reopening the store checks them."""

    def batch(items: list[int]) -> metatensor.TensorMap:
        rows = 25_000
        samples = metatensor.Labels(
            ["system", "atom"],
            np.stack([np.full(rows, 0, np.int32), np.arange(rows, dtype=np.int32)], axis=1),
        )
        block = metatensor.TensorBlock(
            np.full((rows, 1), float(items[0])),
            samples,
            [],
            metatensor.Labels.range("p", 1),
        )
        return metatensor.TensorMap(metatensor.Labels.range("k", 1), [block])

    with dask.config.set(scheduler="synchronous"):
        mtd.write_batches(batch, list(range(4)), tmp_path / "s.zarr", quiet=True)
    tensor = mtd.open_zarr(tmp_path / "s.zarr")
    samples = tensor.block(0).samples
    assert len(samples) == 100_000
    assert samples.digest() == _defined_digest(["system", "atom"], samples.values)


def test_a_tail_extended_by_another_thread_meanwhile_is_read_again():
    """Two appends of one process taking the same kept tail at once: the rows one adds
    while the other checks its own are not added twice (the second reads the tail from
    the store instead)."""
    first = _rows(CHAIN_ROWS - 10, 1)
    attributes = sample_attributes(NAMES, first)
    tails = ChainTails()
    tail = tails.stored_tail("key", attributes, len(first), lambda a, b: first[a:b])
    tails.remember("key", attributes, tail, np.empty((0, 3), np.int32))
    since = _rows(5, 2)  # appended by another process
    stored = np.concatenate([first, since])
    later = sample_attributes(NAMES, stored)

    class Interleaved(dict):
        """The stored attributes, whose digest is looked up after the first thread
        hashed the rows stored since, and before it adds them: the second thread
        takes the same tail then."""

        seen = False

        def get(self, name, default=None):
            if name == "digest" and not Interleaved.seen:
                Interleaved.seen = True
                tails.stored_tail("key", later, len(stored), lambda a, b: stored[a:b])
            return super().get(name, default)

    tail = tails.stored_tail("key", Interleaved(later), len(stored), lambda a, b: stored[a:b])
    assert Interleaved.seen
    np.testing.assert_array_equal(tail.rows, stored)
    assert tail.chain.digest() == later["digest"]
    np.testing.assert_array_equal(tails._tails["key"].rows, stored)
