"""metatensor's public surface against metatensor_dask's: the same names, the same
parameters, and the same results and errors on ordinary and edge arguments.

Each comparison runs the same code with ``metatensor`` and with ``metatensor_dask``;
deliberate differences (docs/differences.md) are pinned by their own expectations.
"""

import inspect
import os
import subprocess
import sys

import dask.array as da
import metatensor
import numpy as np
import pytest
from metatensor_compare import run_both

import metatensor_dask as mtd
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes


def labels_of(module, names, rows):
    """Labels of ``names`` with the int32 entries ``rows`` (none when empty)."""
    values = np.array(rows, dtype=np.int32).reshape(len(rows), len(names))
    return module.Labels(names, values)


def small_block(module, samples, properties, seed=0):
    """A block with one component and a ``positions`` gradient (one row per sample)."""
    rng = np.random.default_rng(seed)
    component = labels_of(module, ["c"], [[0], [1]])
    shape = (len(samples), 2, len(properties))
    block = module.TensorBlock(
        rng.random(shape),
        labels_of(module, ["s", "t"], samples),
        [component],
        labels_of(module, ["p"], properties),
    )
    gradient = module.TensorBlock(
        rng.random((len(samples), 3, *shape[1:])),
        labels_of(module, ["sample", "atom"], [[i, 7] for i in range(len(samples))]),
        [labels_of(module, ["xyz"], [[0], [1], [2]]), component],
        labels_of(module, ["p"], properties),
    )
    block.add_gradient("positions", gradient)
    return block


def small_tensor(module):
    """Three blocks of different samples and properties, one of them without samples."""
    keys = labels_of(module, ["k", "l"], [[0, 0], [1, 0], [0, 1]])
    return module.TensorMap(
        keys,
        [
            small_block(module, [[0, 0], [2, 0]], [[0], [3]], seed=1),
            small_block(module, [[1, 0]], [[3], [1]], seed=2),
            small_block(module, [], [[5]], seed=3),
        ],
    )


def renamed(module, axis, old, new):
    return module.rename_dimension(small_tensor(module), axis, old, new)


# -- operations that add a dimension never make Labels with a name twice or a bad name ----------

DUPLICATED_DIMENSION = {
    "keys_to_samples, a name twice": lambda m: small_tensor(m).keys_to_samples(["k", "k"]),
    "keys_to_properties, a name twice": lambda m: small_tensor(m).keys_to_properties(["l", "l"]),
    "join along samples, add_dimension of a sample name": lambda m: m.join(
        [small_tensor(m), small_tensor(m)], "samples", add_dimension="s"
    ),
    "join along properties, add_dimension of a property name": lambda m: m.join(
        [small_tensor(m), small_tensor(m)], "properties", add_dimension="p"
    ),
    "join_blocks, add_dimension of a sample name": lambda m: m.join_blocks(
        [small_tensor(m).block(0), small_tensor(m).block(0)], "samples", add_dimension="t"
    ),
    "unique_metadata, a name twice": lambda m: m.unique_metadata(
        small_tensor(m), "samples", ["s", "s"]
    ),
    "unique_metadata_block, a name twice": lambda m: m.unique_metadata_block(
        small_tensor(m).block(0), "properties", ["p", "p"]
    ),
    "rename_dimension of a component to a gradient component": lambda m: renamed(
        m, "components", "c", "xyz"
    ),
    "join along samples, add_dimension not a string": lambda m: m.join(
        [small_tensor(m), small_tensor(m)], "samples", add_dimension=1
    ),
    "join along properties, add_dimension not an identifier": lambda m: m.join(
        [small_tensor(m), small_tensor(m)], "properties", add_dimension="a b"
    ),
    "join_blocks, add_dimension not a string": lambda m: m.join_blocks(
        [small_tensor(m).block(0), small_tensor(m).block(0)], "samples", add_dimension=2
    ),
}

#: metatensor-core 0.2.6 stops on an internal assertion here (a Rust panic reported as
#: "internal metatensor error"); this package names the clash and the remedy.
DUPLICATED_DIMENSION_METATENSOR_PANICS = {
    "keys_to_samples of a key named as a sample dimension": lambda m: renamed(
        m, "keys", "k", "s"
    ).keys_to_samples("s"),
    "keys_to_properties of a key named as a property dimension": lambda m: renamed(
        m, "keys", "k", "p"
    ).keys_to_properties("p"),
    "components_to_properties of a component named as a property": lambda m: renamed(
        m, "components", "c", "p"
    ).components_to_properties("p"),
}


@pytest.mark.parametrize("build", DUPLICATED_DIMENSION.values(), ids=DUPLICATED_DIMENSION.keys())
def test_a_dimension_added_twice_or_misnamed_raises_as_metatensor(build):
    theirs, ours = run_both(build)
    assert isinstance(theirs, (metatensor.MetatensorError, TypeError)), theirs
    assert type(ours).__name__ == type(theirs).__name__, ours
    assert str(ours) == str(theirs)


@pytest.mark.parametrize(
    "build",
    DUPLICATED_DIMENSION_METATENSOR_PANICS.values(),
    ids=DUPLICATED_DIMENSION_METATENSOR_PANICS.keys(),
)
def test_a_dimension_moved_onto_one_of_the_same_name_raises(build):
    with pytest.raises(
        mtd.MetatensorError,
        match=r"can not move '[sp]' to the (samples|properties): they already have a dimension "
        r"named '[sp]'; rename one of them first \(rename_dimension\)",
    ):
        build(mtd)


# -- the checks switch ----------------------------------------------------------------------


def switch_states(module):
    """The states seen through metatensor's switch in its documented uses."""
    seen = [module.checks_enabled(), repr(module.unsafe_disable_checks())]
    seen.append(module.checks_enabled())
    with module.unsafe_enable_checks() as switch:
        seen += [repr(switch), module.checks_enabled()]
        with module.unsafe_disable_checks():
            seen.append(module.checks_enabled())
        seen.append(module.checks_enabled())
    seen.append(module.checks_enabled())
    seen += [repr(module.unsafe_enable_checks()), module.checks_enabled()]
    return seen


def test_the_checks_switch_behaves_as_metatensors():
    theirs, ours = run_both(switch_states)
    assert ours == theirs
    assert mtd.operations.checks_enabled is mtd.checks_enabled


@pytest.mark.parametrize(("value", "enabled"), [("1", False), ("ON", False), ("0", True)])
def test_the_checks_switch_reads_metatensors_environment_variable(value, enabled):
    code = "import metatensor_dask as mtd; print(mtd.checks_enabled())"
    environment = {**os.environ, "METATENSOR_UNSAFE_DISABLE_CHECKS": value}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(enabled)


# -- text: the print methods give metatensor's text -----------------------------------------


def tensor_of_keys(module, key_rows, names=("k", "long_name")):
    keys = labels_of(module, list(names), key_rows)
    blocks = [
        small_block(module, [[i, 0] for i in range(n % 3)], [[0], [1]], seed=n)
        for n in range(len(key_rows))
    ]
    return module.TensorMap(keys, blocks)


MAPS_TO_PRINT = {
    "three keys": lambda m: small_tensor(m),
    "one key": lambda m: tensor_of_keys(m, [[7, -1]]),
    "no key": lambda m: tensor_of_keys(m, []),
    "twelve keys of different widths": lambda m: tensor_of_keys(
        m, [[10 ** (i % 10) - 1, -i] for i in range(12)]
    ),
    "keys of one dimension": lambda m: tensor_of_keys(m, [[3], [-12], [0]], names=["k"]),
}


@pytest.mark.parametrize("max_keys", [-1, 0, 1, 2, 7, 12, 20])
@pytest.mark.parametrize("build", MAPS_TO_PRINT.values(), ids=MAPS_TO_PRINT.keys())
def test_tensor_map_print_gives_metatensors_text(build, max_keys):
    theirs, ours = run_both(lambda m: build(m).print(max_keys))
    assert ours == theirs


def test_tensor_map_print_does_not_compute():
    tensor = mtd.from_metatensor(tensor_of_keys(metatensor, [[1, 2], [3, 4]]))
    with raise_if_dask_computes():
        assert tensor.print(-1).splitlines()[-1].endswith("with shape (1, 2, 2)")


# -- the public surface, by introspection ------------------------------------------------------

#: metatensor's public names that this package does not provide, and why.
NOT_PROVIDED = {
    # metatensor's interface to its C library and to arrays of other libraries: values
    # here are dask (or numpy) arrays, which need neither
    "Array": "the array types metatensor's C API takes",
    "ExternalCpuArray": "arrays of other libraries wrapped for metatensor's C API",
    "ExternalCudaArray": "arrays of other libraries wrapped for metatensor's C API",
    "register_external_data_wrapper": "arrays of other libraries for metatensor's C API",
    "utils": "the location of metatensor's C library (cmake_prefix_path)",
    "HAS_METATENSOR_OPERATIONS": "the operations are always part of this package",
    # modules that metatensor's namespace happens to hold
    "importlib": "a standard module",
    "sys": "a standard module",
    "warnings": "a standard module",
    "metatensor_operations": "metatensor's operations package (here: operations)",
}

#: Methods of the C interface: the objects here own no C handle.
C_INTERFACE_METHODS = {
    "release",
    "as_mts_labels_t",
    "as_mts_block_t",
    "as_mts_tensormap_t",
    "unsafe_from_ptr",
    "unsafe_view_from_ptr",
}

#: Functions whose parameters differ on purpose (docs/differences.md), and how.
DIFFERENT_PARAMETERS = {
    # load reads a path lazily, chunk by chunk (no file objects), with a chunking
    "load": "`path` for `file`; `chunks` for `use_numpy`",
    "load_block": "`path` for `file`; `chunks` for `use_numpy`",
    "load_labels": "`path` for `file`",
    "save": "`path` for `file`",
}


def public_names(namespace):
    return sorted(name for name in dir(namespace) if not name.startswith("_"))


def parameter_problems(theirs, ours):
    """Why a call written for ``theirs`` could fail or differ with ``ours``: each of
    metatensor's parameters must be there, same name, kind, position and default;
    ours may add parameters with defaults after them."""
    theirs = list(inspect.signature(theirs).parameters.values())
    ours = list(inspect.signature(ours).parameters.values())
    problems = []
    for position, parameter in enumerate(theirs):
        if position >= len(ours):
            problems.append(f"missing {parameter.name}")
            continue
        mine = ours[position]
        if (mine.name, mine.kind, mine.default) != (
            parameter.name,
            parameter.kind,
            parameter.default,
        ):
            problems.append(f"{parameter} is {mine}")
    for extra in ours[len(theirs) :]:
        if extra.default is inspect.Parameter.empty and extra.kind not in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        ):
            problems.append(f"{extra.name} is required")
    return problems


def test_every_public_name_of_metatensor_exists():
    missing = [
        name
        for name in public_names(metatensor)
        if name not in NOT_PROVIDED and not hasattr(mtd, name)
    ]
    assert missing == []
    assert [n for n in public_names(metatensor.operations) if not hasattr(mtd.operations, n)] == [
        "importlib",
        "sys",
    ]
    # the allow-list names only what is really missing
    assert [name for name in NOT_PROVIDED if hasattr(mtd, name)] == []


FUNCTIONS = [
    name
    for name in public_names(metatensor)
    if name not in NOT_PROVIDED
    and inspect.isfunction(getattr(metatensor, name))
    and name not in DIFFERENT_PARAMETERS
]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_functions_take_metatensors_parameters(name):
    assert parameter_problems(getattr(metatensor, name), getattr(mtd, name)) == []


@pytest.mark.parametrize("name", DIFFERENT_PARAMETERS)
def test_the_allow_list_of_other_parameters_is_needed(name):
    problems = parameter_problems(getattr(metatensor, name), getattr(mtd, name))
    assert problems != [], f"{name} takes metatensor's parameters: leave the allow-list"


def is_dunder(name):
    return name.startswith("__") and name.endswith("__")


def members(cls):
    """Public methods, properties and the dunders metatensor defines on ``cls``."""
    return {
        name: inspect.getattr_static(cls, name)
        for name in dir(cls)
        if (not name.startswith("_") or (is_dunder(name) and name in vars(cls)))
        and name not in C_INTERFACE_METHODS
        and name not in ("__dict__", "__weakref__", "__module__", "__doc__", "__init__")
        and name not in ("__annotations__", "__slotnames__", "__copy__", "__deepcopy__")
        and name != "__del__"  # frees the C handle
    }


def kind(member):
    if member is None:
        return "None"
    return type(member).__name__ if isinstance(member, (property, staticmethod)) else "method"


CLASSES = ["Labels", "LabelsEntry", "TensorBlock", "TensorMap"]


@pytest.mark.parametrize("cls", CLASSES)
def test_classes_have_metatensors_members_of_the_same_kind(cls):
    theirs, ours = getattr(metatensor, cls), getattr(mtd, cls)
    expected = {name: kind(member) for name, member in members(theirs).items()}
    found = {
        name: kind(inspect.getattr_static(ours, name)) if hasattr(ours, name) else "missing"
        for name in expected
    }
    assert found == expected


@pytest.mark.parametrize(
    ("cls", "name"),
    [
        (cls, name)
        for cls in CLASSES
        for name, member in members(getattr(metatensor, cls)).items()
        if kind(member) in ("method", "staticmethod")
        and not is_dunder(name)
        and name not in ("save", "load")  # pinned in test_api_general
    ],
)
def test_methods_take_metatensors_parameters(cls, name):
    theirs = inspect.getattr_static(getattr(metatensor, cls), name)
    ours = inspect.getattr_static(getattr(mtd, cls), name)
    unwrap = lambda f: f.__func__ if isinstance(f, staticmethod) else f  # noqa: E731
    assert parameter_problems(unwrap(theirs), unwrap(ours)) == []


# -- info -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [1, None, b"creator"])
def test_get_info_refuses_keys_that_are_not_strings_as_set_info(key):
    # metatensor fails with an AttributeError ('int' object has no attribute 'encode')
    theirs, ours = run_both(lambda m: small_tensor(m).get_info(key))
    assert isinstance(theirs, AttributeError), theirs
    assert isinstance(ours, TypeError), ours
    assert "info keys must be strings" in str(ours)


# -- objects of metatensor-core given to this package --------------------------------------

MIXED_CALLS = {
    "TensorBlock samples": lambda mts: mtd.TensorBlock(
        np.zeros((2, 1)), mts.Labels.range("s", 2), [], mtd.Labels.range("p", 1)
    ),
    "TensorBlock components": lambda mts: mtd.TensorBlock(
        np.zeros((2, 1, 1)),
        mtd.Labels.range("s", 2),
        [mts.Labels.range("c", 1)],
        mtd.Labels.range("p", 1),
    ),
    "add_gradient": lambda mts: small_block(mtd, [[0, 0]], [[0]]).add_gradient(
        "other", small_block(mts, [[0, 0]], [[0]]).gradient("positions")
    ),
    "TensorMap keys": lambda mts: mtd.TensorMap(mts.Labels.range("k", 1), []),
    "TensorMap blocks": lambda mts: mtd.TensorMap(
        mtd.Labels.range("k", 1), [small_block(mts, [[0, 0]], [[0]])]
    ),
    "Labels ==": lambda mts: mtd.Labels.range("k", 1) == mts.Labels.range("k", 1),
    "Labels.union": lambda mts: mtd.Labels.range("k", 1).union(mts.Labels.range("k", 1)),
    "Labels.select": lambda mts: mtd.Labels.range("k", 1).select(mts.Labels.range("k", 1)),
    "add": lambda mts: mtd.add(small_tensor(mts), 1.0),
    "add, second operand": lambda mts: mtd.add(small_tensor(mtd), small_tensor(mts)),
    "TensorMap ==": lambda mts: small_tensor(mtd) == small_tensor(mts),
    "zeros_like": lambda mts: mtd.zeros_like(small_tensor(mts)),
    "zeros_like_block": lambda mts: mtd.zeros_like_block(small_tensor(mts).block(0)),
    "slice": lambda mts: mtd.slice(small_tensor(mtd), "samples", mts.Labels.range("s", 1)),
    "filter_blocks": lambda mts: mtd.filter_blocks(small_tensor(mtd), mts.Labels.range("k", 1)),
    "join": lambda mts: mtd.join([small_tensor(mtd), small_tensor(mts)], "samples"),
    "join_blocks": lambda mts: mtd.join_blocks([small_tensor(mts).block(0)], "samples"),
}


@pytest.mark.parametrize("call", MIXED_CALLS.values(), ids=MIXED_CALLS.keys())
def test_objects_of_metatensor_core_are_refused_with_the_remedy(call):
    with pytest.raises(TypeError, match=r"convert it with `metatensor_dask\.from_metatensor`"):
        call(metatensor)


def test_other_wrong_types_keep_metatensors_message():
    with pytest.raises(TypeError) as error:
        mtd.TensorMap(1, [])
    assert str(error.value) == "`keys` must be metatensor Labels, not <class 'int'>"


@pytest.mark.parametrize("count", [0, 1, 2, 3, 5])
@pytest.mark.parametrize("max_entries", [-1, 0, 1, 2, 3])
@pytest.mark.parametrize("indent", [0, 3])
def test_labels_print_gives_metatensors_text_at_small_limits(count, max_entries, indent):
    # a limit below 2 counts as 2, and the '...' line stays even when nothing is left out
    rows = [[i, 10 * i - 7] for i in range(count)]
    theirs, ours = run_both(lambda m: labels_of(m, ["a", "bcd"], rows).print(max_entries, indent))
    assert ours == theirs


# -- block selection ------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["block", "blocks"])
def test_a_selection_without_entries_is_named(method):
    # metatensor fails with numpy's "index 0 is out of bounds for axis 0 with size 0"
    theirs, ours = run_both(lambda m: getattr(small_tensor(m), method)(m.Labels.empty(["k"])))
    assert isinstance(theirs, IndexError), theirs
    assert isinstance(ours, ValueError), ours
    assert str(ours).startswith("the selection has no entries (Labels of ['k'])")


# -- edge calls on a map of different properties, a block without samples and components ----

SAME_RESULT = {
    "keys_to_samples": lambda m: small_tensor(m).keys_to_samples("k"),
    "keys_to_samples, fill and block order": lambda m: small_tensor(m).keys_to_samples(
        ["l"], fill_value=-2.5, sort_samples=False
    ),
    "keys_to_properties": lambda m: small_tensor(m).keys_to_properties("k"),
    "keys_to_properties of every key": lambda m: small_tensor(m).keys_to_properties(["k", "l"]),
    "components_to_properties": lambda m: small_tensor(m).components_to_properties(["c"]),
    "copy": lambda m: small_tensor(m).copy(),
    "to float32": lambda m: small_tensor(m).to(np.float32),
    "zeros_like of one gradient": lambda m: m.zeros_like(small_tensor(m), gradients="positions"),
    "ones_like_block without gradients": lambda m: m.ones_like_block(
        small_tensor(m).block(2), gradients=[]
    ),
    "filter_blocks in key order": lambda m: m.filter_blocks(
        small_tensor(m), labels_of(m, ["l"], [[1], [0]])
    ),
    "split along samples": lambda m: m.split(
        small_tensor(m), "samples", [labels_of(m, ["s"], [[2], [1]]), labels_of(m, ["t"], [[0]])]
    )[0],
    "sort descending": lambda m: m.sort(m.drop_empty_blocks(small_tensor(m)), descending=True),
    "sort_block of samples": lambda m: m.sort_block(small_tensor(m).block(0), "samples", True),
}


@pytest.mark.parametrize("build", SAME_RESULT.values(), ids=SAME_RESULT.keys())
def test_edge_calls_give_metatensors_result(build):
    theirs, ours = run_both(build)
    for result in (theirs, ours):
        if isinstance(result, Exception):
            raise result
    assert_equal_to_metatensor(ours, theirs)


@pytest.mark.parametrize("dimensions", [1, None, [1], labels_of(mtd, ["c"], [])])
def test_components_to_properties_names_its_argument_type(dimensions):
    # metatensor fails on len() of an int, or on an internal assertion for empty Labels;
    # Labels of no entries were taken here for "no components to move"
    with pytest.raises(TypeError, match="`dimensions` must be a string or a sequence of strings"):
        mtd.components_to_properties(small_tensor(mtd), dimensions)


@pytest.mark.parametrize("descending", ["no", None, 0.5, [True]])
@pytest.mark.parametrize("function", ["sort", "sort_block"])
def test_sort_refuses_a_descending_that_is_not_a_boolean(function, descending):
    # metatensor refuses them in list.sort (TypeError); a truthy "no" sorted in reverse
    argument = small_tensor(mtd) if function == "sort" else small_tensor(mtd).block(0)
    with pytest.raises(TypeError, match="`descending` must be a boolean"):
        getattr(mtd, function)(argument, descending=descending)


@pytest.mark.parametrize("descending", [True, 1, np.True_, False, 0])
def test_sort_takes_booleans_and_integers_as_descending(descending):
    theirs = metatensor.sort(metatensor.drop_empty_blocks(small_tensor(metatensor)), "all", True)
    if not descending:
        theirs = metatensor.sort(theirs)
    ours = mtd.sort(mtd.drop_empty_blocks(small_tensor(mtd)), "all", descending)
    assert_equal_to_metatensor(ours, theirs)


# -- dask arrays of unknown sizes -----------------------------------------------------------


def test_values_of_unknown_size_name_the_remedy():
    array = da.from_array(np.arange(12.0).reshape(6, 2), chunks=3)
    masked = array[array[:, 0] > 2]
    build = lambda values: mtd.TensorBlock(  # noqa: E731
        values, mtd.Labels.range("s", 4), [], mtd.Labels.range("p", 2)
    )
    with pytest.raises(mtd.MetatensorDaskError, match=r"compute_chunk_sizes\(\)"):
        build(masked)
    block = build(masked.compute_chunk_sizes())
    np.testing.assert_array_equal(block.values.compute(), np.arange(4.0, 12.0).reshape(4, 2))


def test_the_files_of_metatensor_io_take_its_arguments(tmp_path):
    """``use_numpy`` is accepted (and ignored) by position and by name, and the buffer
    functions of ``metatensor.io`` are in ``metatensor_dask.io``."""
    for name in ["save", "load", "load_block", "load_labels"]:
        problems = parameter_problems(getattr(metatensor.io, name), getattr(mtd.io, name))
        assert all(problem.startswith("file:") for problem in problems[:1]), problems
    theirs = metatensor.TensorMap(
        metatensor.Labels.range("k", 1),
        [
            metatensor.TensorBlock(
                np.arange(6.0).reshape(3, 2),
                metatensor.Labels.range("s", 3),
                [],
                metatensor.Labels.range("p", 2),
            )
        ],
    )
    path = str(tmp_path / "t.mts")
    mtd.save(path, mtd.from_metatensor(theirs), True)
    mtd.save(path, mtd.from_metatensor(theirs), use_numpy=True)
    for loaded in [mtd.load(path, True), mtd.load(path, use_numpy=True), mtd.load(path, False)]:
        assert metatensor.equal(mtd.to_metatensor(loaded), theirs)
    block = mtd.io.load_block_buffer(theirs.block(0).save_buffer(), use_numpy=True)
    assert metatensor.equal_block(mtd.to_metatensor(block), theirs.block(0))
    buffer = mtd.io.save_buffer(mtd.from_metatensor(theirs), use_numpy=True)
    assert metatensor.equal(mtd.to_metatensor(mtd.io.load_buffer(buffer)), theirs)
    assert mtd.io.load_labels_buffer(theirs.keys.save_buffer()) == mtd.from_metatensor(theirs.keys)
    for name in ["save_buffer", "load_buffer", "load_block_buffer", "load_labels_buffer"]:
        assert parameter_problems(getattr(metatensor.io, name), getattr(mtd.io, name)) == []
