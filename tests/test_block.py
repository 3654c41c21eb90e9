"""TensorBlock against metatensor-core: construction, gradients and every validation rule."""

import copy

import dask
import dask.array as da
import numpy as np
import pytest
from metatensor_compare import assert_same_error_of, run_both

import metatensor_dask as mtd
from metatensor_dask.testing import raise_if_dask_computes


def labels(module, names, values):
    return module.Labels(names, np.array(values, dtype=np.int32).reshape(-1, len(names)))


def make_block(module, values=None, samples=None, components=None, properties=None):
    """Values (3, 2, 4): samples ``s``, one component ``c``, properties ``p``."""
    return module.TensorBlock(
        np.zeros((3, 2, 4)) if values is None else values,
        labels(module, ["s"], [[0], [1], [2]]) if samples is None else samples,
        [labels(module, ["c"], [[0], [1]])] if components is None else components,
        labels(module, ["p"], [[0], [1], [2], [3]]) if properties is None else properties,
    )


def make_gradient(module, values=None, samples=None, components=None, properties=None):
    """A valid ``positions`` gradient of :func:`make_block`: extra component ``xyz``."""
    samples = labels(module, ["sample", "atom"], [[0, 0], [2, 1]]) if samples is None else samples
    if components is None:
        components = [labels(module, ["xyz"], [[0], [1], [2]]), labels(module, ["c"], [[0], [1]])]
    if properties is None:
        properties = labels(module, ["p"], [[0], [1], [2], [3]])
    if values is None:
        values = np.zeros([len(samples), *(len(c) for c in components), len(properties)])
    return module.TensorBlock(values, samples, components, properties)


def with_gradient(module, **gradient):
    block = make_block(module)
    block.add_gradient("positions", make_gradient(module, **gradient))
    return block


def random_block(rng, n_samples=5, chunks=2):
    """A block with dask values in several chunks and a positions gradient."""
    values = da.from_array(rng.random((n_samples, 3)), chunks=(chunks, 3))
    block = mtd.TensorBlock(values, mtd.Labels.range("s", n_samples), [], mtd.Labels.range("p", 3))
    sample = np.repeat(np.arange(n_samples), 2)
    gradient = mtd.TensorBlock(
        rng.random((len(sample), 3, 3)),
        mtd.Labels(["sample", "atom"], np.stack([sample, np.arange(len(sample))], axis=1)),
        [mtd.Labels.range("xyz", 3)],
        mtd.Labels.range("p", 3),
    )
    block.add_gradient("positions", gradient)
    return block


# -- values and labels -------------------------------------------------------------------------


def test_numpy_values_are_wrapped_into_one_chunk():
    array = np.arange(24.0).reshape(3, 2, 4)
    block = make_block(mtd, values=array)
    assert isinstance(block.values, da.Array)
    assert block.values.chunks == ((3,), (2,), (4,))
    np.testing.assert_array_equal(block.values.compute(), array)


def test_dask_values_are_kept_as_they_are():
    array = da.ones((3, 2, 4), chunks=(1, 2, 4))
    block = make_block(mtd, values=array)
    assert isinstance(block.values, da.Array)
    # the same graph and chunks, not a copy
    assert block.values.name == array.name
    assert block.values.chunks == array.chunks


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int32, np.int64, np.bool_])
def test_shape_dtype_len_same_as_metatensor(dtype):
    theirs, ours = run_both(lambda m: make_block(m, values=np.zeros((3, 2, 4), dtype=dtype)))
    assert ours.shape == theirs.shape == (3, 2, 4)
    assert ours.dtype == theirs.dtype
    assert len(ours) == len(theirs) == 3
    assert ours.device == theirs.device == "cpu"
    assert ours.is_view is theirs.is_view is False


def test_labels_are_returned_unchanged():
    theirs, ours = run_both(make_block)
    assert ours.samples.names == theirs.samples.names
    np.testing.assert_array_equal(ours.samples.values, theirs.samples.values)
    assert [c.names for c in ours.components] == [c.names for c in theirs.components]
    np.testing.assert_array_equal(ours.properties.values, theirs.properties.values)
    assert isinstance(ours.components, list)
    ours.components.append(mtd.Labels.range("x", 1))
    assert len(ours.components) == 1


def test_compute_gives_numpy_values_and_gradients():
    rng = np.random.default_rng(1)
    block = random_block(rng)
    computed = block.compute()
    assert isinstance(computed, mtd.TensorBlock)
    assert isinstance(computed.values, np.ndarray)
    assert isinstance(computed.gradient("positions").values, np.ndarray)
    np.testing.assert_array_equal(computed.values, block.values.compute())
    np.testing.assert_array_equal(
        computed.gradient("positions").values, block.gradient("positions").values.compute()
    )
    assert computed.samples == block.samples
    assert computed.gradients_list() == ["positions"]
    assert computed.shape == block.shape
    assert computed.dtype == block.dtype
    assert len(computed) == len(block)
    # a computed block is still a valid input
    assert isinstance(
        mtd.TensorBlock(computed.values, block.samples, [], block.properties).values, da.Array
    )


@pytest.mark.parametrize(
    "build",
    [
        lambda m: make_block(m, values=np.zeros((3, 4))),
        lambda m: make_block(m, values=np.zeros((3, 2, 2, 4))),
        lambda m: make_block(m, values=np.zeros((2, 2, 4))),
        lambda m: make_block(m, values=np.zeros((3, 3, 4))),
        lambda m: make_block(m, values=np.zeros((3, 2, 5))),
        lambda m: make_block(m, components=[labels(m, ["x", "y"], [[0, 0], [0, 1]])]),
        lambda m: make_block(
            m, values=np.zeros((3, 0, 4)), components=[labels(m, ["c"], np.zeros((0, 1)))]
        ),
        lambda m: make_block(
            m,
            values=np.zeros((3, 2, 2, 4)),
            components=[labels(m, ["c"], [[0], [1]]), labels(m, ["c"], [[0], [1]])],
        ),
        lambda m: make_block(m, samples=np.zeros((3, 1))),
        lambda m: make_block(m, properties=3),
        lambda m: make_block(m, components=[3]),
        lambda m: make_block(m, components=[None]),
    ],
)
def test_construction_errors_same_as_metatensor(build):
    assert_same_error_of(build)


@pytest.mark.parametrize(
    "build",
    [
        lambda m: make_block(m, components=[labels(m, ["s"], [[0], [1]])]),
        lambda m: make_block(m, values=np.zeros((0, 2, 4)), samples=m.Labels.empty(["s"])),
        lambda m: make_block(m, values=np.zeros((3, 2, 0)), properties=m.Labels.empty(["p"])),
        lambda m: make_block(m, values=np.zeros((3, 4)), components=()),
    ],
)
def test_allowed_blocks_same_as_metatensor(build):
    theirs, ours = run_both(build)
    assert not isinstance(theirs, Exception), theirs
    assert ours.shape == theirs.shape


def test_shape_is_checked_without_computing():
    with raise_if_dask_computes():
        with pytest.raises(mtd.MetatensorError, match="axis 0 is 5 but we have 3 sample"):
            make_block(mtd, values=da.zeros((5, 2, 4)))
        block = make_block(mtd, values=da.zeros((3, 2, 4), chunks=1))
        block.add_gradient("positions", make_gradient(mtd, values=da.zeros((2, 3, 2, 4))))


def test_other_arrays_are_refused_with_a_remedy():
    # metatensor fails with "'list' object has no attribute 'shape'"
    with pytest.raises(TypeError, match=r"must be a dask or numpy array.*numpy\.asarray"):
        make_block(mtd, values=np.zeros((3, 2, 4)).tolist())


def test_values_can_not_be_assigned():
    block = make_block(mtd)
    with pytest.raises(AttributeError, match="Direct assignment to `values` is not possible"):
        block.values = np.ones((3, 2, 4))


def test_to_casts_values_and_gradients():
    block = with_gradient(mtd)
    assert block.to() is block
    assert block.to("cpu") is block
    cast = block.to(dtype=np.float32)
    assert cast.dtype == np.float32
    assert cast.gradient("positions").dtype == np.float32
    assert block.dtype == np.float64
    with pytest.raises(
        ValueError, match="can not move metatensor-dask arrays to non-cpu device: cuda"
    ):
        block.to("cuda")
    with pytest.raises(
        ValueError, match="can not move metatensor-dask arrays to non-cpu device: cuda"
    ):
        block.to(device="cuda")


# -- gradients ---------------------------------------------------------------------------------


GRADIENT_ERRORS = {
    "first sample name": lambda m: with_gradient(
        m, samples=labels(m, ["atom", "sample"], [[0, 0], [2, 1]])
    ),
    "no sample dimension": lambda m: with_gradient(m, samples=labels(m, ["atom"], [[0], [2]])),
    "sample out of range": lambda m: with_gradient(
        m, samples=labels(m, ["sample", "atom"], [[0, 0], [5, 1]])
    ),
    "sample equal to the count": lambda m: with_gradient(
        m, samples=labels(m, ["sample", "atom"], [[0, 0], [3, 1]])
    ),
    "negative sample": lambda m: with_gradient(
        m, samples=labels(m, ["sample", "atom"], [[0, 0], [-1, 1]])
    ),
    "negative and out of range": lambda m: with_gradient(
        m, samples=labels(m, ["sample", "atom"], [[5, 0], [-1, 1]])
    ),
    "fewer components": lambda m: with_gradient(m, components=[]),
    "extra components last": lambda m: with_gradient(
        m, components=[labels(m, ["c"], [[0], [1]]), labels(m, ["xyz"], [[0], [1], [2]])]
    ),
    "component values": lambda m: with_gradient(
        m, components=[labels(m, ["xyz"], [[0], [1], [2]]), labels(m, ["c"], [[1], [0]])]
    ),
    "component names": lambda m: with_gradient(
        m, components=[labels(m, ["xyz"], [[0], [1], [2]]), labels(m, ["d"], [[0], [1]])]
    ),
    "property values": lambda m: with_gradient(
        m, properties=labels(m, ["p"], [[0], [1], [2], [4]])
    ),
    "property names": lambda m: with_gradient(m, properties=labels(m, ["q"], [[0], [1], [2], [3]])),
    "property order": lambda m: with_gradient(m, properties=labels(m, ["p"], [[1], [0], [2], [3]])),
    "property count": lambda m: with_gradient(m, properties=labels(m, ["p"], [[0], [1], [2]])),
    "dtype f32": lambda m: with_gradient(m, values=np.zeros((2, 3, 2, 4), np.float32)),
    "dtype i64": lambda m: with_gradient(m, values=np.zeros((2, 3, 2, 4), np.int64)),
    "dtype bool": lambda m: with_gradient(m, values=np.zeros((2, 3, 2, 4), np.bool_)),
    "dtype u8": lambda m: with_gradient(m, values=np.zeros((2, 3, 2, 4), np.uint8)),
    "dtype f16": lambda m: with_gradient(m, values=np.zeros((2, 3, 2, 4), np.float16)),
    "dtype complex": lambda m: with_gradient(m, values=np.zeros((2, 3, 2, 4), np.complex128)),
    "duplicate parameter": lambda m: with_gradient(m).add_gradient("positions", make_gradient(m)),
    "missing gradient": lambda m: make_block(m).gradient("nope"),
    "add to a gradient view": lambda m: (
        with_gradient(m).gradient("positions").add_gradient("x", make_gradient(m))
    ),
}


@pytest.mark.parametrize("build", GRADIENT_ERRORS.values(), ids=GRADIENT_ERRORS.keys())
def test_gradient_errors_same_as_metatensor(build):
    theirs, ours = run_both(build)
    assert isinstance(theirs, Exception), theirs
    assert type(ours).__name__ == type(theirs).__name__, (ours, theirs)
    if "view" in str(theirs):
        # same message, followed by the remedy
        assert str(ours).startswith(str(theirs) + "; use `block.copy()`")
    else:
        assert str(ours) == str(theirs)


GRADIENTS_ALLOWED = {
    "unsorted samples": lambda m: with_gradient(
        m, samples=labels(m, ["sample", "atom"], [[2, 0], [0, 1]])
    ),
    "no rows": lambda m: with_gradient(m, samples=m.Labels.empty(["sample", "atom"])),
    "no extra component": lambda m: with_gradient(m, components=[labels(m, ["c"], [[0], [1]])]),
    "only sample dimension": lambda m: with_gradient(m, samples=labels(m, ["sample"], [[0], [1]])),
}


@pytest.mark.parametrize("build", GRADIENTS_ALLOWED.values(), ids=GRADIENTS_ALLOWED.keys())
def test_allowed_gradients_same_as_metatensor(build):
    theirs, ours = run_both(build)
    assert not isinstance(theirs, Exception), theirs
    assert not isinstance(ours, Exception), ours
    assert ours.gradient("positions").shape == theirs.gradient("positions").shape


def test_gradient_accessors_same_as_metatensor():
    def build(m):
        block = make_block(m)
        block.add_gradient("positions", make_gradient(m))
        block.add_gradient("cell", make_gradient(m))
        return block

    theirs, ours = run_both(build)
    assert ours.gradients_list() == theirs.gradients_list() == ["positions", "cell"]
    assert [p for p, _ in ours.gradients()] == [p for p, _ in theirs.gradients()]
    for (_, mine), (_, other) in zip(ours.gradients(), theirs.gradients(), strict=True):
        assert mine.shape == other.shape
        assert mine.is_view is other.is_view is True
    assert ours.has_gradient("cell") is theirs.has_gradient("cell") is True
    assert ours.has_gradient("strain") is theirs.has_gradient("strain") is False
    gradient = ours.gradient("positions")
    assert gradient.samples.names == ["sample", "atom"]
    assert [c.names[0] for c in gradient.components] == ["xyz", "c"]
    assert gradient.properties == ours.properties
    assert gradient.gradients_list() == []


def test_gradient_parameter_must_be_a_string():
    with pytest.raises(TypeError, match="`parameter` must be a string"):
        make_block(mtd).add_gradient(3, make_gradient(mtd))


def test_gradient_must_be_a_block():
    # metatensor: AttributeError "'int' object has no attribute 'release'"
    with pytest.raises(TypeError, match="`gradient` must be a metatensor TensorBlock"):
        make_block(mtd).add_gradient("positions", 3)


def nested(module, components=None, samples=None, values=None):
    """``positions`` gradient with a ``cell`` gradient of its own; returns the outer block."""
    block = make_block(module)
    gradient = make_gradient(module)
    samples = labels(module, ["sample", "cell"], [[0, 0], [1, 0]]) if samples is None else samples
    if components is None:
        components = [
            labels(module, ["abc"], [[0], [1]]),
            labels(module, ["xyz"], [[0], [1], [2]]),
            labels(module, ["c"], [[0], [1]]),
        ]
    if values is None:
        values = np.zeros([len(samples), *(len(c) for c in components), 4])
    inner = module.TensorBlock(
        values, samples, components, labels(module, ["p"], [[0], [1], [2], [3]])
    )
    gradient.add_gradient("cell", inner)
    block.add_gradient("positions", gradient)
    return block


def test_nested_gradients_same_as_metatensor():
    theirs, ours = run_both(nested)
    mine = ours.gradient("positions").gradient("cell")
    other = theirs.gradient("positions").gradient("cell")
    assert mine.shape == other.shape == (2, 2, 3, 2, 4)
    assert ours.gradient("positions").gradients_list() == ["cell"]
    assert mine.is_view and other.is_view


@pytest.mark.parametrize(
    "build",
    [
        # a gradient of a gradient repeats its parent's components (xyz too)
        lambda m: nested(
            m, components=[labels(m, ["abc"], [[0], [1]]), labels(m, ["c"], [[0], [1]])]
        ),
        lambda m: nested(m, samples=labels(m, ["sample", "cell"], [[0, 0], [2, 0]])),
        lambda m: nested(m, values=np.zeros((2, 2, 3, 2, 4), np.float32)),
        lambda m: (
            nested(m).gradient("positions").gradient("cell").add_gradient("x", make_gradient(m))
        ),
    ],
)
def test_nested_gradient_errors_same_as_metatensor(build):
    theirs, ours = run_both(build)
    assert isinstance(theirs, Exception), theirs
    assert type(ours).__name__ == type(theirs).__name__
    assert str(ours).startswith(str(theirs))


def test_nested_gradients_compute():
    computed = nested(mtd).compute()
    inner = computed.gradient("positions").gradient("cell")
    assert isinstance(inner.values, np.ndarray)
    assert inner.shape == (2, 2, 3, 2, 4)


# -- documented differences: nothing is consumed -----------------------------------------------


def test_add_gradient_does_not_consume_the_gradient():
    block = make_block(mtd)
    gradient = make_gradient(mtd)
    block.add_gradient("positions", gradient)
    # metatensor releases `gradient`: using it raises "this block has been released..."
    assert gradient.shape == (2, 3, 2, 4)
    assert not gradient.is_view
    gradient.add_gradient(
        "cell",
        make_gradient(
            mtd,
            samples=mtd.Labels(["sample"], np.array([[0], [1]])),
            components=[
                mtd.Labels.range("abc", 2),
                mtd.Labels.range("xyz", 3),
                mtd.Labels.range("c", 2),
            ],
        ),
    )
    # the block's copy is independent of later changes to the original
    assert block.gradient("positions").gradients_list() == []
    other = make_block(mtd)
    other.add_gradient("positions", gradient)
    assert other.gradient("positions").gradients_list() == ["cell"]


def test_metatensor_consumes_gradients():
    import metatensor

    block, gradient = make_block(metatensor), make_gradient(metatensor)
    block.add_gradient("positions", gradient)
    with pytest.raises(ValueError, match="has been released"):
        _ = gradient.shape


# -- copies ------------------------------------------------------------------------------------


def test_copy_of_a_view_accepts_gradients():
    view = with_gradient(mtd).gradient("positions")
    assert view.is_view
    own = view.copy()
    assert not own.is_view
    own.add_gradient("cell", nested(mtd).gradient("positions").gradient("cell").copy())
    assert own.gradients_list() == ["cell"]
    assert view.gradients_list() == []
    assert str(own).splitlines()[0] == "TensorBlock"


def test_copies_of_computed_blocks():
    computed = with_gradient(mtd).compute()
    deep = computed.copy()
    shallow = computed.copy(deep=False)
    assert deep.values is not computed.values
    assert np.shares_memory(shallow.values, computed.values)
    assert not np.shares_memory(deep.values, computed.values)
    assert not np.shares_memory(
        deep.gradient("positions").values, computed.gradient("positions").values
    )
    np.testing.assert_array_equal(deep.values, computed.values)
    assert not np.shares_memory(copy.deepcopy(computed).values, computed.values)
    assert np.shares_memory(copy.copy(computed).values, computed.values)


def test_copies_of_lazy_blocks_share_the_dask_arrays():
    block = with_gradient(mtd)
    for duplicate in (block.copy(), block.copy(deep=False), copy.copy(block), copy.deepcopy(block)):
        assert duplicate.values.name == block.values.name
        gradient_name = block.gradient("positions").values.name
        assert duplicate.gradient("positions").values.name == gradient_name
        assert duplicate.gradients_list() == ["positions"]
        assert duplicate.samples == block.samples


def test_dask_compute_of_a_block_returns_a_block():
    rng = np.random.default_rng(2)
    block = random_block(rng)
    (computed,) = dask.compute(block)
    assert isinstance(computed, mtd.TensorBlock)
    assert isinstance(computed.values, np.ndarray)
    persisted = block.persist()
    assert isinstance(persisted.values, da.Array)
    assert persisted.values.chunks == block.values.chunks
    np.testing.assert_array_equal(persisted.values.compute(), computed.values)


# -- row pointer, bytes and chunks --------------------------------------------------------


def _block_with_gradient(chunks=2):
    """Values (3, 2, 4) in chunks of ``chunks`` rows; gradient rows point at 0, 2, 2."""
    block = make_block(mtd, values=da.ones((3, 2, 4), chunks=(chunks, 2, 4)))
    samples = labels(mtd, ["sample", "atom"], [[0, 0], [2, 1], [2, 3]])
    block.add_gradient("positions", make_gradient(mtd, samples=samples))
    return block


def test_row_pointer_is_none_until_attached_then_read_only():
    block = _block_with_gradient()
    assert block.gradient("positions").row_pointer is None
    block.set_row_pointer("positions", [0, 1, 1, 3])
    pointer = block.gradient("positions").row_pointer
    assert pointer.dtype == np.int64
    np.testing.assert_array_equal(pointer, [0, 1, 1, 3])
    with pytest.raises(ValueError, match="read-only"):
        pointer[0] = 1
    # a block inside a map takes a pointer too, and keeps it through copies and compute
    tensor = mtd.TensorMap(mtd.Labels.range("key", 1), [block])
    np.testing.assert_array_equal(
        tensor.block(0).copy().gradient("positions").row_pointer, [0, 1, 1, 3]
    )
    computed = tensor.compute().block(0).gradient("positions")
    np.testing.assert_array_equal(computed.row_pointer, [0, 1, 1, 3])


@pytest.mark.parametrize(
    ("pointer", "problem"),
    [
        ([[0, 1, 1, 3]], "1-D integer array"),
        ([0.0, 1.0, 1.0, 3.0], "1-D integer array"),
        ([0, 1, 3], "must have 4 entries"),
        ([1, 1, 1, 3], "start at 0 and end at the 3 gradient rows"),
        ([0, 1, 1, 2], "start at 0 and end at the 3 gradient rows"),
        ([0, 2, 1, 3], "non-decreasing"),
    ],
)
def test_invalid_row_pointers_are_refused_naming_the_gradient(pointer, problem):
    block = _block_with_gradient()
    with pytest.raises(mtd.MetatensorDaskError, match=problem) as error:
        block.set_row_pointer("positions", np.array(pointer))
    assert "'positions' gradient" in str(error.value)
    assert block.gradient("positions").row_pointer is None


def test_row_pointer_for_a_missing_gradient_is_metatensors_error():
    block = _block_with_gradient()
    with pytest.raises(mtd.MetatensorError, match="can not find gradients with respect to 'x'"):
        block.set_row_pointer("x", [0, 1, 1, 3])


def test_operations_attach_the_pointer_they_build():
    block = _block_with_gradient()
    tensor = mtd.TensorMap(mtd.Labels.range("key", 1), [block])
    mtd.multiply(tensor, tensor)
    np.testing.assert_array_equal(tensor.block(0).gradient("positions").row_pointer, [0, 1, 1, 3])


def test_nbytes_and_npartitions_count_values_and_gradients_without_computing():
    block = _block_with_gradient(chunks=2)
    with raise_if_dask_computes():
        # values: 3 * 2 * 4 float64 in 2 chunks; gradient: 3 * 3 * 2 * 4 numpy (1 chunk)
        assert block.nbytes == (24 + 72) * 8
        assert block.npartitions == 3
        tensor = mtd.TensorMap(mtd.Labels.range("key", 2), [block, block.copy()])
        assert tensor.nbytes == 2 * block.nbytes
        assert tensor.npartitions == 6
    computed = tensor.compute()
    assert computed.nbytes == tensor.nbytes
    assert computed.npartitions == 4
    empty = mtd.TensorMap(mtd.Labels.range("key", 0), [])
    assert (empty.nbytes, empty.npartitions) == (0, 0)


def test_sizes_of_grouped_tiny_blocks_need_no_dask_array_per_block():
    block = _block_with_gradient(chunks=3)
    tensor = mtd.TensorMap(mtd.Labels.range("key", 2), [block, block.copy()])
    product = mtd.multiply(tensor, tensor)
    held = product.block(0)._values
    assert held.__class__.__name__ == "GroupItem"
    with raise_if_dask_computes():
        assert product.nbytes == tensor.nbytes
        assert product.npartitions == 4
    assert held._array is None


def test_row_pointer_of_a_stored_block_is_read_only(tmp_path):
    block = _block_with_gradient()
    mtd.TensorMap(mtd.Labels.range("key", 1), [block]).to_zarr(tmp_path / "t.zarr")
    pointer = mtd.open_zarr(tmp_path / "t.zarr").block(0).gradient("positions").row_pointer
    np.testing.assert_array_equal(pointer, [0, 1, 1, 3])
    assert not pointer.flags.writeable


def test_blocks_and_maps_hold_no_instance_dictionary():
    # a map of many blocks holds two blocks per block (values and gradient): their
    # attributes are slots, not a dictionary each; copies and pickles keep working
    import pickle

    tensor = _one_block_map()
    block = tensor.block(0)
    for container in (tensor, block, block.gradient("positions")):
        assert not hasattr(container, "__dict__")
    again = pickle.loads(pickle.dumps(tensor))
    assert mtd.equal(again, tensor)
    copied = block.copy()
    copied.add_gradient("other", block.gradient("positions").copy())
    assert copied.gradients_list() == ["positions", "other"]
    with pytest.raises(AttributeError):
        block.anything = 1


def _one_block_map():
    block = mtd.TensorBlock(
        np.arange(12.0).reshape(2, 2, 3),
        mtd.Labels.range("s", 2),
        [mtd.Labels.range("c", 2)],
        mtd.Labels.range("p", 3),
    )
    block.add_gradient(
        "positions",
        mtd.TensorBlock(
            np.ones((2, 2, 3)),
            mtd.Labels(["sample"], np.array([[0], [1]], dtype=np.int32)),
            [mtd.Labels.range("c", 2)],
            mtd.Labels.range("p", 3),
        ),
    )
    return mtd.TensorMap(mtd.Labels.range("k", 1), [block])
