"""The public calls of Labels, TensorBlock and TensorMap against metatensor-core 0.2.6.

Each case runs the same code with ``metatensor`` and with ``metatensor_dask`` and
compares the results, or the exception types and messages. Cases where this package
differs on purpose (docs/differences.md) are pinned with their own expectations.
"""

import metatensor
import numpy as np
import pytest
from metatensor_compare import assert_same_error_of, run_both

import metatensor_dask as mtd


def labels(module):
    return module.Labels(["a", "b"], np.array([[0, 1], [2, 3], [1, 1]]))


def block(module, dtype=np.float64, index=0):
    values = np.arange(18, dtype=dtype).reshape(3, 3, 2) + index
    result = module.TensorBlock(
        values,
        module.Labels(["s", "t"], np.array([[0, index], [1, index], [2, index]])),
        [module.Labels.range("c", 3)],
        module.Labels.range("p", 2),
    )
    gradient = module.TensorBlock(
        np.ones((2, 3, 2), dtype=dtype),
        module.Labels(["sample", "g"], np.array([[0, 0], [2, 1]])),
        [module.Labels.range("c", 3)],
        module.Labels.range("p", 2),
    )
    result.add_gradient("x", gradient)
    return result


def tensor(module):
    keys = module.Labels(["k", "l"], np.array([[0, 0], [0, 1], [1, 0]]))
    return module.TensorMap(keys, [block(module, index=i) for i in range(3)])


def dtypes(obj):
    """The dtype of the values and of every gradient (of every block), in order."""
    if isinstance(obj, (metatensor.TensorMap, mtd.TensorMap)):
        return [d for b in obj.blocks() for d in dtypes(b)]
    return [np.dtype(obj.values.dtype)] + [d for _, g in obj.gradients() for d in dtypes(g)]


# -- to(): metatensor's positional dtype and device ------------------------------------------


@pytest.mark.parametrize(
    ("build", "args", "kwargs"),
    [
        (block, (np.float32,), {}),
        (block, (np.float32, "cpu"), {}),
        (block, ("cpu", np.dtype("float32")), {}),
        (block, ("cpu",), {"dtype": np.float32}),
        (tensor, (np.float32,), {}),
        (tensor, ("cpu", np.float32), {}),
    ],
)
def test_to_takes_dtype_and_device_as_positional_arguments(build, args, kwargs):
    theirs, ours = run_both(lambda m: dtypes(build(m).to(*args, **kwargs)))
    assert ours == theirs == [np.dtype(np.float32)] * len(theirs)


@pytest.mark.parametrize("build", [labels, block, tensor])
@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((np.float32, np.float64), {}),
        ((np.float32,), {"dtype": np.float64}),
        (("cpu", "cpu"), {}),
        ((3,), {}),
        ((bool,), {}),
        ((), {"arrays": "foo"}),
    ],
)
def test_to_refuses_what_metatensor_refuses(build, args, kwargs):
    if build is labels and not kwargs and args[0] is np.float32:
        args = (np.int32, np.int32)
    assert_same_error_of(lambda m: build(m).to(*args, **kwargs))


@pytest.mark.parametrize("build", [labels, block, tensor])
def test_to_names_the_device_it_can_not_move_to(build):
    for call in (lambda o: o.to("cuda"), lambda o: o.to(device="cuda")):
        with pytest.raises(ValueError, match=r"can not move .* to non-cpu device: cuda"):
            call(build(mtd))


@pytest.mark.parametrize("build", [labels, block, tensor])
def test_to_torch_arrays_points_to_metatensor(build):
    with pytest.raises(ValueError, match="to_metatensor"):
        build(mtd).to(arrays="torch")
    obj = build(mtd)
    assert type(obj.to(arrays="numpy", non_blocking=True)) is type(obj)


# -- Labels.position and `in` ------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry",
    [np.array([[2, 3]]), np.array([[2], [3]]), 1, np.int32(2), None],
)
def test_position_refuses_entries_that_are_not_one_dimensional(entry):
    theirs, _ = run_both(lambda m: labels(m).position(entry))
    assert isinstance(theirs, TypeError)
    for call in (lambda: labels(mtd).position(entry), lambda: entry in labels(mtd)):
        with pytest.raises(TypeError, match="a LabelsEntry or a 1-D sequence of integers"):
            call()


def test_position_of_a_scalar_in_labels_of_one_dimension_is_refused_as_metatensor():
    theirs, _ = run_both(lambda m: m.Labels.range("a", 3).position(1))
    assert isinstance(theirs, TypeError)
    with pytest.raises(TypeError, match=r"use \[1\]"):
        mtd.Labels.range("a", 3).position(1)
    assert mtd.Labels.range("a", 3).position([1]) == 1


# -- TensorMap.block / blocks selections -------------------------------------------------------


@pytest.mark.parametrize("value", [np.array(1), np.array([1]), np.array(1, dtype=np.uint8)])
@pytest.mark.parametrize("method", ["block", "blocks"])
def test_selection_values_may_be_integer_arrays_of_one_value(value, method):
    theirs, ours = run_both(lambda m: list(np.ravel(getattr(tensor(m), method)({"k": value}))))
    found = [[b.samples.values.tolist() for b in r] for r in (theirs, ours)]
    assert found[1] == found[0]


@pytest.mark.parametrize("value", [np.array([0, 1]), np.array(1.0), np.array([[1]])])
def test_selection_values_refuse_other_arrays(value):
    with pytest.raises(TypeError, match="expected integer values in selection"):
        tensor(mtd).block(k=value)


@pytest.mark.parametrize(
    "call",
    [
        lambda t: t.block({"k": 1}, l=0),
        lambda t: t.block(t.keys[0], k=1),
        lambda t: t.block(0, l=1),
        lambda t: t.blocks({"k": 0}, l=1),
        lambda t: t.blocks(0, l=1),
        lambda t: t.blocks([0], l=1),
    ],
)
def test_a_selection_and_keywords_together_are_refused(call):
    # metatensor ignores the keywords when given a selection (differences.md)
    with pytest.raises(ValueError, match="either as an argument or as keywords, not both"):
        call(tensor(mtd))


# -- save and load as methods ------------------------------------------------------------------

MAKERS = {"Labels": labels, "TensorBlock": block, "TensorMap": tensor}


@pytest.mark.parametrize("kind", list(MAKERS))
@pytest.mark.parametrize("use_numpy", [False, True])
def test_save_method_writes_the_bytes_of_metatensor(kind, use_numpy, tmp_path):
    # with use_numpy, metatensor writes its zip with numpy (other headers): this
    # package always writes metatensor's default bytes
    extra = {} if kind == "Labels" else {"use_numpy": use_numpy}
    MAKERS[kind](metatensor).save(tmp_path / "theirs.mts")
    MAKERS[kind](mtd).save(tmp_path / "ours.mts", **extra)
    assert (tmp_path / "ours.mts").read_bytes() == (tmp_path / "theirs.mts").read_bytes()


@pytest.mark.parametrize("kind", list(MAKERS))
def test_load_static_method_reads_what_metatensor_wrote(kind, tmp_path):
    MAKERS[kind](metatensor).save(tmp_path / "data.mts")
    loaded = getattr(mtd, kind).load(tmp_path / "data.mts")
    assert type(loaded) is getattr(mtd, kind)
    assert mtd.to_metatensor(loaded.compute() if kind != "Labels" else loaded) == (
        getattr(metatensor, kind).load(tmp_path / "data.mts")
    )


@pytest.mark.parametrize("kind", list(MAKERS))
def test_buffers_round_trip_through_metatensor(kind):
    buffer = MAKERS[kind](mtd).save_buffer()
    assert bytes(buffer) == bytes(MAKERS[kind](metatensor).save_buffer())
    loaded = getattr(mtd, kind).load_buffer(buffer)
    assert type(loaded) is getattr(mtd, kind)
    assert bytes(loaded.save_buffer()) == bytes(buffer)


# -- arguments of the wrong type: TypeError (metatensor fails with AttributeError) ------------


@pytest.mark.parametrize(
    "call",
    [
        lambda m: labels(m).union(3),
        lambda m: labels(m).intersection(None),
        lambda m: labels(m).difference([[0, 1]]),
        lambda m: labels(m).select({"a": 1}),
        lambda m: block(m).add_gradient("y", 3),
        lambda m: block(m).add_gradient(1, block(m).gradient("x").copy()),
        lambda m: block(m).gradient(0),
        lambda m: tensor(m).set_info("a", 1),
        lambda m: block(m) == 3,
        lambda m: tensor(m) == 3,
    ],
)
def test_arguments_of_the_wrong_type_raise_type_error(call):
    theirs, ours = run_both(call)
    assert isinstance(theirs, AttributeError), theirs
    assert isinstance(ours, TypeError), ours
    assert "must be" in str(ours) or "can only" in str(ours), ours


def test_labels_entry_needs_one_name_per_value():
    theirs = metatensor.LabelsEntry(["a", "b"], np.array([1], dtype=np.int32))
    assert theirs.names == ["a", "b"]  # metatensor accepts it
    with pytest.raises(ValueError, match="one name per value"):
        mtd.LabelsEntry(["a", "b"], np.array([1], dtype=np.int32))


@pytest.mark.parametrize("kind", list(MAKERS))
def test_save_writes_to_file_objects_as_metatensor(kind, tmp_path):
    import io

    theirs, ours = io.BytesIO(), io.BytesIO()
    metatensor.save(theirs, MAKERS[kind](metatensor))
    mtd.save(ours, MAKERS[kind](mtd))
    assert ours.getvalue() == theirs.getvalue()
    with open(tmp_path / "data.mts", "wb") as file:
        MAKERS[kind](mtd).save(file)
    assert (tmp_path / "data.mts").read_bytes() == theirs.getvalue()
    assert list(tmp_path.iterdir()) == [tmp_path / "data.mts"]


def test_save_and_load_name_the_remedy_for_other_objects():
    import io

    with pytest.raises(TypeError, match=r"TensorMap.load_buffer\(file.read\(\)\)"):
        mtd.load(io.BytesIO(b"data"))
    with pytest.raises(TypeError, match="a file object open for writing"):
        mtd.save(3, labels(mtd))
