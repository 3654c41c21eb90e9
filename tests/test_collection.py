"""TensorMap and TensorBlock as dask collections: compute, persist, shared work, tokens."""

import threading

import dask
import dask.array as da
import numpy as np
import pytest
from dask.base import tokenize

import metatensor_dask as mtd
from metatensor_dask.testing import raise_if_dask_computes


class CountingChunks:
    """A dask array whose chunk function records each call (thread safe)."""

    def __init__(self):
        self.calls = 0
        self._lock = threading.Lock()

    def chunk(self, i, n_rows, n_columns):
        with self._lock:
            self.calls += 1
        return np.arange(n_rows * n_columns, dtype=np.float64).reshape(n_rows, n_columns) + i

    def array(self, n_chunks=3, n_rows=2, n_columns=3):
        pieces = [
            da.from_delayed(
                dask.delayed(self.chunk, pure=True)(i, n_rows, n_columns),
                shape=(n_rows, n_columns),
                dtype=np.float64,
            )
            for i in range(n_chunks)
        ]
        return da.concatenate(pieces)


def block_of(values, gradient_values=None):
    n_samples, n_properties = values.shape
    block = mtd.TensorBlock(
        values, mtd.Labels.range("s", n_samples), [], mtd.Labels.range("p", n_properties)
    )
    if gradient_values is not None:
        block.add_gradient(
            "positions",
            mtd.TensorBlock(
                gradient_values,
                mtd.Labels(["sample"], np.arange(n_samples)[:, None]),
                [mtd.Labels.range("xyz", gradient_values.shape[1])],
                mtd.Labels.range("p", n_properties),
            ),
        )
    return block


def tensor_of(*blocks):
    return mtd.TensorMap(mtd.Labels.range("k", len(blocks)), list(blocks))


def random_tensor(seed=0, n_blocks=2):
    rng = np.random.default_rng(seed)
    blocks = []
    for _ in range(n_blocks):
        values = da.from_array(rng.random((4, 3)), chunks=(2, 3))
        gradient = da.from_array(rng.random((4, 2, 3)), chunks=(2, 2, 3))
        blocks.append(block_of(values, gradient))
    return tensor_of(*blocks)


# -- compute and persist -----------------------------------------------------------------------


def test_compute_returns_a_tensor_of_numpy_arrays():
    tensor = random_tensor()
    tensor.set_info("units", "eV")
    computed = tensor.compute()
    assert type(computed) is mtd.TensorMap
    assert computed.keys == tensor.keys
    assert computed.info() == {"units": "eV"}
    for lazy, block in zip(tensor.blocks(), computed.blocks(), strict=True):
        assert isinstance(block.values, np.ndarray)
        np.testing.assert_array_equal(block.values, lazy.values.compute())
        gradient = block.gradient("positions")
        assert isinstance(gradient.values, np.ndarray)
        np.testing.assert_array_equal(gradient.values, lazy.gradient("positions").values.compute())
        assert gradient.samples == lazy.gradient("positions").samples
        assert block.is_view
    # the lazy tensor is unchanged
    assert isinstance(tensor.block(0).values, da.Array)


def test_dask_compute_and_persist_of_computed_tensors_are_no_ops():
    computed = random_tensor().compute()
    assert computed.__dask_graph__() is None
    (again,) = dask.compute(computed)
    assert again is computed
    assert computed.compute() is computed
    assert computed.persist() is computed


def test_partly_lazy_tensors_compute():
    lazy = random_tensor().block(0)
    in_memory = random_tensor(seed=1).compute().block(1)
    tensor = tensor_of(lazy.copy(), in_memory.copy())
    assert isinstance(tensor.block(1).values, np.ndarray)
    computed = tensor.compute()
    np.testing.assert_array_equal(computed.block(0).values, lazy.values.compute())
    np.testing.assert_array_equal(computed.block(1).values, in_memory.values)
    assert isinstance(computed.block(0).gradient("positions").values, np.ndarray)


def test_persist_keeps_chunks_and_own_keys_only():
    tensor = random_tensor()
    persisted = tensor.persist()
    assert type(persisted) is mtd.TensorMap
    for original, block in zip(tensor.blocks(), persisted.blocks(), strict=True):
        assert isinstance(block.values, da.Array)
        assert block.values.chunks == original.values.chunks
        # each array holds its own (already computed) chunks, not the whole tensor's
        assert len(dict(block.values.dask)) == block.values.npartitions
        gradient = block.gradient("positions").values
        assert len(dict(gradient.dask)) == gradient.npartitions
    with raise_if_dask_computes(max_computes=1):
        computed = persisted.compute()
    expected = tensor.compute()
    for mine, other in zip(computed.blocks(), expected.blocks(), strict=True):
        np.testing.assert_array_equal(mine.values, other.values)


def test_persist_does_not_recompute():
    counter = CountingChunks()
    tensor = tensor_of(block_of(counter.array()))
    persisted = tensor.persist()
    assert counter.calls == 3
    persisted.compute()
    (persisted.block(0).values * 2).compute()
    assert counter.calls == 3


def test_block_is_a_collection_too():
    block = random_tensor().block(0)
    computed, persisted = block.compute(), block.persist()
    assert type(computed) is type(persisted) is mtd.TensorBlock
    assert isinstance(computed.gradient("positions").values, np.ndarray)
    assert isinstance(persisted.gradient("positions").values, da.Array)
    np.testing.assert_array_equal(persisted.values.compute(), computed.values)


def test_clone_renames_and_keeps_values():
    from dask.graph_manipulation import clone

    tensor = random_tensor().persist()
    cloned = clone(tensor)
    assert cloned.block(0).values.name != tensor.block(0).values.name
    np.testing.assert_array_equal(
        cloned.compute().block(1).values, tensor.compute().block(1).values
    )


# -- shared work -------------------------------------------------------------------------------


def test_dask_compute_shares_work_between_tensors():
    counter = CountingChunks()
    base = counter.array()
    first = tensor_of(block_of(base))
    second = tensor_of(block_of(base * 2.0), block_of(base + 1.0))
    one, two = dask.compute(first, second)
    assert counter.calls == 3
    np.testing.assert_array_equal(two.block(0).values, 2 * one.block(0).values)
    np.testing.assert_array_equal(two.block(1).values, one.block(0).values + 1)


def test_values_and_gradients_share_work():
    counter = CountingChunks()
    base = counter.array()
    gradient = da.stack([base, -base], axis=1)
    (computed,) = dask.compute(block_of(base, gradient))
    assert counter.calls == 3
    np.testing.assert_array_equal(computed.gradient("positions").values[:, 1], -computed.values)


def test_separate_computes_repeat_work():
    """The counter does count: two separate computes run the chunks twice."""
    counter = CountingChunks()
    base = counter.array()
    tensor_of(block_of(base)).compute()
    tensor_of(block_of(base * 2.0)).compute()
    assert counter.calls == 6


# -- tokens ------------------------------------------------------------------------------------


def test_tokenize_is_deterministic():
    assert tokenize(random_tensor(seed=3)) == tokenize(random_tensor(seed=3))
    assert tokenize(random_tensor(seed=3).block(1)) == tokenize(random_tensor(seed=3).block(1))
    computed = random_tensor(seed=3).compute()
    assert tokenize(computed) == tokenize(random_tensor(seed=3).compute())


def test_tokenize_changes_with_values():
    assert tokenize(random_tensor(seed=3)) != tokenize(random_tensor(seed=4))
    values = np.zeros((2, 3))
    changed = values.copy()
    changed[1, 2] = 1e-12
    assert tokenize(block_of(values)) != tokenize(block_of(changed))
    assert tokenize(block_of(values).compute()) != tokenize(block_of(changed).compute())


def test_tokenize_changes_with_metadata():
    values = np.zeros((2, 3))
    block = block_of(values)
    renamed = mtd.TensorBlock(values, mtd.Labels.range("t", 2), [], mtd.Labels.range("p", 3))
    shifted = mtd.TensorBlock(
        values, mtd.Labels(["s"], np.array([[1], [0]])), [], mtd.Labels.range("p", 3)
    )
    tokens = {tokenize(block), tokenize(renamed), tokenize(shifted)}
    assert len(tokens) == 3
    tensor, other_keys = tensor_of(block), mtd.TensorMap(mtd.Labels.range("j", 1), [block])
    assert tokenize(tensor) != tokenize(other_keys)
    with_info = tensor_of(block)
    with_info.set_info("units", "eV")
    assert tokenize(tensor) != tokenize(with_info)
    with_gradient = block_of(values, np.zeros((2, 1, 3)))
    assert tokenize(block) != tokenize(with_gradient)
    assert tokenize(block) != tokenize(tensor)


def test_tokenize_uses_recorded_digests_of_lazy_labels():
    def fail():
        raise AssertionError("sample labels were loaded")

    values = np.zeros((2, 3))
    samples = mtd.Labels.lazy(["s"], 2, fail, digest="0123")
    block = mtd.TensorBlock(values, samples, [], mtd.Labels.range("p", 3))
    other = mtd.TensorBlock(
        values, mtd.Labels.lazy(["s"], 2, fail, digest="4567"), [], mtd.Labels.range("p", 3)
    )
    assert tokenize(block) == tokenize(
        mtd.TensorBlock(
            values, mtd.Labels.lazy(["s"], 2, fail, digest="0123"), [], mtd.Labels.range("p", 3)
        )
    )
    assert tokenize(block) != tokenize(other)
    assert not samples.is_loaded


# -- laziness ----------------------------------------------------------------------------------


def test_building_and_printing_never_compute():
    with raise_if_dask_computes():
        tensor = random_tensor()
        block = tensor.block(1)
        for text in (
            str(tensor),
            repr(tensor),
            tensor._repr_html_(),
            str(block),
            repr(block),
            block._repr_html_(),
            str(block.gradient("positions")),
        ):
            assert text
        tokenize(tensor)
        tensor.copy()
        tensor.to(dtype=np.float32)
        tensor.blocks(k=1)


def test_raise_if_dask_computes_does_raise():
    from metatensor_dask.testing import DaskComputed

    tensor = random_tensor()
    with pytest.raises(DaskComputed, match="dask computed 1 times, expected at most 0"):
        with raise_if_dask_computes():
            tensor.compute()
    with raise_if_dask_computes(max_computes=1):
        tensor.compute()
    with pytest.raises(DaskComputed, match="computed 2 times"):
        with raise_if_dask_computes(max_computes=1):
            tensor.compute()
            tensor.block(0).compute()


def lazy_samples_tensor():
    def fail():
        raise AssertionError("sample labels were loaded")

    samples = mtd.Labels.lazy(["system", "atom"], 4, fail)
    values = da.zeros((4, 3), chunks=2)
    block = mtd.TensorBlock(values, samples, [], mtd.Labels.range("n", 3))
    gradient = mtd.TensorBlock(
        da.zeros((4, 3, 3), chunks=2),
        mtd.Labels(["sample", "atom"], np.array([[0, 0], [1, 0], [2, 1], [3, 1]])),
        [mtd.Labels.range("xyz", 3)],
        mtd.Labels.range("n", 3),
    )
    block.add_gradient("positions", gradient)
    return mtd.TensorMap(mtd.Labels.range("k", 1), [block]), samples


def test_printing_never_loads_lazy_sample_labels():
    tensor, samples = lazy_samples_tensor()
    with raise_if_dask_computes():
        texts = [str(tensor), repr(tensor), tensor._repr_html_()]
        block = tensor.block(0)
        texts += [str(block), repr(block), block._repr_html_()]
    assert "samples (4): ['system', 'atom']" in texts[3]
    assert not samples.is_loaded
    with pytest.raises(AssertionError, match="sample labels were loaded"):
        str(samples)


def test_computing_does_not_load_lazy_sample_labels():
    tensor, samples = lazy_samples_tensor()
    computed = tensor.compute()
    assert isinstance(computed.block(0).values, np.ndarray)
    assert not samples.is_loaded


def test_distributed_client_is_used_when_active():
    distributed = pytest.importorskip("distributed")
    with distributed.Client(
        processes=False, n_workers=1, threads_per_worker=1, dashboard_address="127.0.0.1:0"
    ) as client:
        tensor = random_tensor()
        computed = tensor.compute()
        persisted = tensor.persist()
        # persisted on the cluster: the arrays now hold futures, one per chunk
        n_chunks = sum(a.npartitions for a in persisted._arrays())
        assert len(distributed.futures_of(persisted)) == n_chunks
        assert all(f.client is client for f in distributed.futures_of(persisted))
        np.testing.assert_array_equal(persisted.compute().block(0).values, computed.block(0).values)
