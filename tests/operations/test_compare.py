"""``equal`` and ``allclose`` on maps of many tiny blocks: a few comparison tasks,
whatever the number of blocks, and the same answers as metatensor."""

import dask
import metatensor
import numpy as np
import pytest
from oracle import rechunked
from test_tiny_blocks import tiny

import metatensor_dask as mtd
from metatensor_dask.operations import _compare


class RecordingScheduler:
    """dask's synchronous scheduler, recording the size of each graph it runs."""

    def __init__(self):
        self.sizes = []

    def __call__(self, dsk, keys, **kwargs):
        self.sizes.append(len(dsk.__dask_graph__()))
        return dask.get(dsk, keys, **kwargs)


def graph_size(function, *arguments):
    """``function(*arguments)`` and the size of the one graph it computed."""
    scheduler = RecordingScheduler()
    with dask.config.set(scheduler=scheduler):
        result = function(*arguments)
    assert len(scheduler.sizes) == 1
    return result, scheduler.sizes[0]


@pytest.mark.parametrize("compare", [mtd.equal, mtd.allclose])
def test_graph_does_not_grow_with_blocks(compare):
    sizes = []
    for n_blocks in (10, 300):
        ours = mtd.from_metatensor(tiny(n_blocks))
        same, size = graph_size(compare, ours, mtd.from_metatensor(tiny(n_blocks)))
        assert same
        sizes.append(size)
        # lazy results of grouped operations are read from their groups' results
        product = mtd.multiply(ours, ours)
        same, size = graph_size(compare, product, mtd.multiply(ours, ours))
        assert same
        sizes.append(size)
    assert sizes[:2] == sizes[2:]
    assert max(sizes) <= 3


def test_comparison_tasks_are_bounded_in_bytes(monkeypatch):
    ours = mtd.from_metatensor(tiny(20))
    values, gradient = ours.block(0)._arrays()
    # the arrays of 5 blocks, both sides
    monkeypatch.setattr(_compare, "GROUP_BYTES", 10 * (values.nbytes + gradient.nbytes))
    same, size = graph_size(mtd.equal, ours, ours)
    assert same
    assert size == 4 + 1


def _changed(theirs: metatensor.TensorMap, block: int, gradient: bool) -> metatensor.TensorMap:
    blocks = [b.copy() for b in theirs.blocks()]
    target = blocks[block].gradient("positions") if gradient else blocks[block]
    target.values[1, 0, 0] += 1e-6
    return metatensor.TensorMap(theirs.keys, blocks)


@pytest.mark.parametrize("gradient", [False, True])
@pytest.mark.parametrize("form", ["data", "grouped", "chunked", "computed"])
def test_one_difference_among_many_blocks(gradient, form):
    theirs = tiny(40)
    changed = _changed(theirs, 27, gradient)
    ours, other = mtd.from_metatensor(theirs), mtd.from_metatensor(changed)
    if form == "grouped":
        ours, other = mtd.multiply(ours, 1.0), mtd.multiply(other, 1.0)
    elif form == "chunked":
        other = rechunked(other, 3)
    elif form == "computed":
        other = other.compute()
    what = "gradient 'positions' values" if gradient else "values"
    expected = f"blocks for key (k=27) are different: {what} are not equal"
    with pytest.raises(mtd.NotEqualError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        mtd.equal_raise(ours, other)
    assert not mtd.equal(ours, other)
    assert not mtd.allclose(ours, other, rtol=0, atol=1e-9)
    assert mtd.allclose(ours, other, rtol=0, atol=1e-5)
    assert metatensor.allclose(theirs, changed, rtol=0, atol=1e-5)
    assert mtd.equal(other, other)


def test_grouped_item_against_its_own_array():
    ours = mtd.from_metatensor(tiny(4))
    product = mtd.multiply(ours, ours)
    # one side read from the group's result, the other through its own dask array
    arrays = [b.values for b in product.blocks()]
    blocks = [
        mtd.TensorBlock(values, b.samples, b.components, b.properties)
        for values, b in zip(arrays, product.blocks(), strict=True)
    ]
    alone = mtd.TensorMap(product.keys, blocks)
    assert mtd.equal(mtd.remove_gradients(product), alone)
    np.testing.assert_array_equal(arrays[2].compute(), product.block(2).values.compute())


def _pairs(rng, dtypes, shapes):
    """Pairs of arrays, the second a copy with a few changes (NaN, inf, small and large
    differences) in some pairs."""
    pairs = []
    for i, (dtype, shape) in enumerate(zip(dtypes, shapes, strict=True)):
        a = (rng.normal(size=shape) * 10).astype(dtype)
        b = a.copy()
        if b.size and i % 3 == 1:
            change = rng.choice([1e-14, 1e-6, 1.0, np.nan, np.inf])
            if np.dtype(dtype).kind in "iu":
                change = 1
            b.reshape(-1)[rng.integers(b.size)] += change
        if a.size and i % 5 == 2 and np.dtype(dtype).kind == "f":
            a.reshape(-1)[0] = b.reshape(-1)[0] = np.nan
        pairs.append((a, b))
    # and one that differs whatever the tolerances
    a = np.arange(4, dtype=dtypes[0])
    pairs.append((a, a + 100))
    return pairs


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("mixed", [False, True])
@pytest.mark.parametrize(
    ("func", "kwargs"),
    [
        (_compare.array_equal, {}),
        (np.allclose, {"rtol": 1e-13, "atol": 1e-12, "equal_nan": False}),
        (np.allclose, {"rtol": 0.0, "atol": 1e-5, "equal_nan": True}),
    ],
)
def test_group_of_comparisons_gives_each_pairs_answer(seed, mixed, func, kwargs):
    # a group's pairs are compared together when they share a dtype (one call on all
    # their elements), one by one otherwise: both give each pair's own answer
    rng = np.random.default_rng(seed)
    n = 12
    dtypes = [rng.choice(["float32", "float64", "int64"]) for _ in range(n)] if mixed else None
    dtypes = dtypes or ["float64"] * n
    shapes = [tuple(rng.integers(0, 4, size=rng.integers(1, 4))) for _ in range(n)]
    pairs = _pairs(rng, dtypes, shapes)
    expected = [bool(func(a, b, **kwargs)) for a, b in pairs]
    assert not all(expected)
    chunks = [array for pair in pairs for array in pair]
    got = _compare._compare_group(func, kwargs, (None,) * len(chunks), *chunks)
    assert got == expected
    if not mixed:
        assert _compare._together(_compare._ELEMENTWISE[func], kwargs, chunks) == expected
