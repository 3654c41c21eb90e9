"""Labels built with ``assume_unique=True`` repeating an entry, through every operation.

Each operation of ``metatensor_dask.operations`` is given maps (or blocks) whose samples,
a component, the properties, the gradient's samples or the keys repeat an entry. Where
metatensor-operations raises, so must the operation, with the same error. Otherwise its
result must equal metatensor's (values and every gradient), and when the result's Labels
still repeat an entry, ``to_zarr`` and ``save`` must refuse it naming the entry, and
write nothing. The writers only read Labels that record they may repeat an entry: an
operation that lost that record let a store be written that ``open_zarr`` then called
damaged.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import metatensor
import metatensor.operations as metatensor_operations
import numpy as np
import pytest

import metatensor_dask as mtd
import metatensor_dask.operations as mtd_operations

#: Where the Labels repeat an entry.
WHERE = ["samples", "component", "properties", "gradient", "keys"]

#: The side of metatensor and of metatensor-dask: their Labels, blocks, maps and operations.
THEIRS = SimpleNamespace(
    Labels=metatensor.Labels,
    TensorBlock=metatensor.TensorBlock,
    TensorMap=metatensor.TensorMap,
    ops=metatensor_operations,
    keys_to_samples=lambda tensor, names: tensor.keys_to_samples(names),
    keys_to_properties=lambda tensor, names: tensor.keys_to_properties(names),
    components_to_properties=lambda tensor, names: tensor.components_to_properties(names),
)
OURS = SimpleNamespace(
    Labels=mtd.Labels,
    TensorBlock=mtd.TensorBlock,
    TensorMap=mtd.TensorMap,
    ops=mtd_operations,
    keys_to_samples=mtd_operations.keys_to_samples,
    keys_to_properties=mtd_operations.keys_to_properties,
    components_to_properties=mtd_operations.components_to_properties,
)


def _labels(side: Any, names: list[str], rows: list[list[int]]) -> Any:
    values = np.array(rows, dtype=np.int32).reshape(-1, len(names))
    return side.Labels(names, values, assume_unique=True)


def _pick(where: str, here: str, repeated: list[list[int]], unique: list[list[int]]) -> list:
    return repeated if where == here else unique


def _block(side: Any, where: str, index: int, samples: int, components: bool) -> Any:
    """A block of ``samples`` rows, one component (if ``components``), two properties
    and a positions gradient; the Labels of ``where`` repeat an entry."""
    sample_rows = _pick(where, "samples", [[0, 0], [0, 1], [0, 0]], [[0, 0], [0, 1], [1, 0]])
    property_rows = _pick(where, "properties", [[0, 1], [0, 1]], [[0, 0], [0, 1]])
    # one row per sample (metatensor's mean over samples is wrong for fewer), or the
    # last sample's row twice
    unique_rows = [[i, 0] for i in range(samples)]
    gradient_rows = _pick(where, "gradient", [*unique_rows, unique_rows[-1]], unique_rows)
    property_labels = _labels(side, ["p", "n"], property_rows)
    component_labels = []
    if components:
        component_labels = [_labels(side, ["c"], _pick(where, "component", [[0], [0]], [[0], [1]]))]
    shape = (samples, *(2 for _ in component_labels), 2)
    values = np.arange(np.prod(shape), dtype=np.float64).reshape(shape) * (index + 1) + 1
    values[0, ...] += 5.0  # a square block (solve) then has an inverse
    block = side.TensorBlock(
        values,
        _labels(side, ["system", "atom"], sample_rows[:samples]),
        component_labels,
        property_labels,
    )
    gradient_shape = (len(gradient_rows), *shape[1:])
    gradient = side.TensorBlock(
        np.arange(np.prod(gradient_shape), dtype=np.float64).reshape(gradient_shape) - index,
        _labels(side, ["sample", "d"], gradient_rows),
        component_labels,
        property_labels,
    )
    block.add_gradient("positions", gradient)
    return block


def _map(side: Any, where: str, samples: int = 3, components: bool = True) -> Any:
    """A map of two blocks (see :func:`_block`) whose keys repeat an entry if ``where``
    is ``"keys"``."""
    keys = _labels(side, ["k"], _pick(where, "keys", [[0], [0]], [[0], [1]]))
    return side.TensorMap(keys, [_block(side, where, i, samples, components) for i in range(2)])


def _selection(side: Any, names: list[str], rows: list[list[int]]) -> Any:
    return side.Labels(names, np.array(rows, dtype=np.int32))


#: How each operation is called with a side and that side's map.
Call = Callable[[Any, Any], Any]
CALLS: dict[str, Call] = {
    "abs": lambda s, t: s.ops.abs(t),
    "add": lambda s, t: s.ops.add(t, t),
    "allclose": lambda s, t: s.ops.allclose(t, t),
    "allclose_block": lambda s, t: s.ops.allclose_block(t.block(0), t.block(0)),
    "allclose_block_raise": lambda s, t: s.ops.allclose_block_raise(t.block(0), t.block(0)),
    "allclose_raise": lambda s, t: s.ops.allclose_raise(t, t),
    "append_dimension": lambda s, t: s.ops.append_dimension(t, "keys", "new", 4),
    "components_to_properties": lambda s, t: s.components_to_properties(t, "c"),
    "detach": lambda s, t: s.ops.detach(t),
    "detach_block": lambda s, t: s.ops.detach_block(t.block(0)),
    "divide": lambda s, t: s.ops.divide(t, t),
    "dot": lambda s, t: s.ops.dot(t, s.ops.remove_gradients(t)),
    "drop_blocks": lambda s, t: s.ops.drop_blocks(t, _selection(s, ["k"], [[1]])),
    "drop_empty_blocks": lambda s, t: s.ops.drop_empty_blocks(t),
    "empty_like": lambda s, t: s.ops.empty_like(t),
    "empty_like_block": lambda s, t: s.ops.empty_like_block(t.block(0)),
    "equal": lambda s, t: s.ops.equal(t, t),
    "equal_block": lambda s, t: s.ops.equal_block(t.block(0), t.block(0)),
    "equal_block_raise": lambda s, t: s.ops.equal_block_raise(t.block(0), t.block(0)),
    "equal_metadata": lambda s, t: s.ops.equal_metadata(t, t),
    "equal_metadata_block": lambda s, t: s.ops.equal_metadata_block(t.block(0), t.block(0)),
    "equal_metadata_block_raise": lambda s, t: s.ops.equal_metadata_block_raise(
        t.block(0), t.block(0)
    ),
    "equal_metadata_raise": lambda s, t: s.ops.equal_metadata_raise(t, t),
    "equal_raise": lambda s, t: s.ops.equal_raise(t, t),
    "filter_blocks": lambda s, t: s.ops.filter_blocks(t, _selection(s, ["k"], [[0]])),
    "insert_dimension": lambda s, t: s.ops.insert_dimension(
        t, "samples", 0, "new", np.arange(len(t.block(0).samples), dtype=np.int32)
    ),
    "is_contiguous": lambda s, t: s.ops.is_contiguous(t),
    "is_contiguous_block": lambda s, t: s.ops.is_contiguous_block(t.block(0)),
    "join": lambda s, t: s.ops.join([t, t], "properties", add_dimension="tensor"),
    "join_blocks": lambda s, t: s.ops.join_blocks(
        [t.block(0), t.block(1)], "samples", add_dimension="tensor"
    ),
    "keys_to_properties": lambda s, t: s.keys_to_properties(t, "k"),
    "keys_to_samples": lambda s, t: s.keys_to_samples(t, "k"),
    "lstsq": lambda s, t: s.ops.lstsq(t, t, rcond=1e-12),
    "make_contiguous": lambda s, t: s.ops.make_contiguous(t),
    "make_contiguous_block": lambda s, t: s.ops.make_contiguous_block(t.block(0)),
    "mean_over_properties": lambda s, t: s.ops.mean_over_properties(t, "n"),
    "mean_over_properties_block": lambda s, t: s.ops.mean_over_properties_block(t.block(0), "n"),
    "mean_over_samples": lambda s, t: s.ops.mean_over_samples(t, "atom"),
    "mean_over_samples_block": lambda s, t: s.ops.mean_over_samples_block(t.block(0), "atom"),
    "multiply": lambda s, t: s.ops.multiply(t, t),
    "ones_like": lambda s, t: s.ops.ones_like(t),
    "ones_like_block": lambda s, t: s.ops.ones_like_block(t.block(0)),
    "permute_dimensions": lambda s, t: s.ops.permute_dimensions(t, "samples", [1, 0]),
    "pow": lambda s, t: s.ops.pow(t, 2.0),
    "random_uniform_like": lambda s, t: s.ops.random_uniform_like(t),
    "random_uniform_like_block": lambda s, t: s.ops.random_uniform_like_block(t.block(0)),
    "remove_dimension": lambda s, t: s.ops.remove_dimension(t, "properties", "p"),
    "remove_gradients": lambda s, t: s.ops.remove_gradients(t),
    "remove_gradients_block": lambda s, t: s.ops.remove_gradients_block(t.block(0)),
    "rename_dimension": lambda s, t: s.ops.rename_dimension(t, "samples", "atom", "center"),
    "requires_grad": lambda s, t: s.ops.requires_grad(t, False),
    "requires_grad_block": lambda s, t: s.ops.requires_grad_block(t.block(0), False),
    "slice": lambda s, t: s.ops.slice(t, "samples", _selection(s, ["system"], [[0]])),
    "slice_block": lambda s, t: s.ops.slice_block(
        t.block(0), "properties", _selection(s, ["p"], [[0]])
    ),
    "solve": lambda s, t: s.ops.solve(t, t),
    "sort": lambda s, t: s.ops.sort(t),
    "sort_block": lambda s, t: s.ops.sort_block(t.block(0)),
    "split": lambda s, t: s.ops.split(
        t, "samples", [_selection(s, ["atom"], [[0]]), _selection(s, ["atom"], [[1]])]
    ),
    "split_block": lambda s, t: s.ops.split_block(
        t.block(0), "properties", [_selection(s, ["n"], [[1]])]
    ),
    "std_over_properties": lambda s, t: s.ops.std_over_properties(t, "n"),
    "std_over_properties_block": lambda s, t: s.ops.std_over_properties_block(t.block(0), "n"),
    "std_over_samples": lambda s, t: s.ops.std_over_samples(t, "atom"),
    "std_over_samples_block": lambda s, t: s.ops.std_over_samples_block(t.block(0), "atom"),
    "subtract": lambda s, t: s.ops.subtract(t, t),
    "sum_over_properties": lambda s, t: s.ops.sum_over_properties(t, "n"),
    "sum_over_properties_block": lambda s, t: s.ops.sum_over_properties_block(t.block(0), "n"),
    "sum_over_samples": lambda s, t: s.ops.sum_over_samples(t, "atom"),
    "sum_over_samples_block": lambda s, t: s.ops.sum_over_samples_block(t.block(0), "atom"),
    "unique_metadata": lambda s, t: s.ops.unique_metadata(t, "samples", ["system", "atom"]),
    "unique_metadata_block": lambda s, t: s.ops.unique_metadata_block(
        t.block(0), "properties", ["p", "n"]
    ),
    "var_over_properties": lambda s, t: s.ops.var_over_properties(t, "n"),
    "var_over_properties_block": lambda s, t: s.ops.var_over_properties_block(t.block(0), "n"),
    "var_over_samples": lambda s, t: s.ops.var_over_samples(t, "atom"),
    "var_over_samples_block": lambda s, t: s.ops.var_over_samples_block(t.block(0), "atom"),
    "zeros_like": lambda s, t: s.ops.zeros_like(t),
    "zeros_like_block": lambda s, t: s.ops.zeros_like_block(t.block(0)),
}

#: Public operations that take no map or block, so no Labels that may repeat an entry.
TAKE_NO_MAP = {
    "block_from_array": "builds a block from an array, with Labels it makes unique",
    "checks_enabled": "takes no argument",
    "unsafe_disable_checks": "takes no argument",
    "unsafe_enable_checks": "takes no argument",
    "one_hot": "takes Labels and returns an array, no map or Labels",
}


def test_every_public_operation_is_called_or_said_why_not():
    assert sorted([*CALLS, *TAKE_NO_MAP]) == sorted(mtd_operations.__all__)


def _call(side: Any, name: str, where: str) -> Any:
    """``name`` called with ``side``'s map repeating an entry at ``where``: its result,
    or the exception it raised."""
    square = name == "solve"
    plain = name in ("solve", "lstsq", "dot")
    tensor = _map(side, where, samples=2 if square else 3, components=not plain)
    if name in ("solve", "lstsq"):
        tensor = side.ops.remove_gradients(tensor)
    try:
        return CALLS[name](side, tensor)
    except Exception as error:  # compared with the other side's error below
        return error


def _cases() -> list[Any]:
    cases = []
    for name in CALLS:
        for where in WHERE:
            if name in ("solve", "lstsq", "dot") and where == "component":
                reason = "dot, lstsq and solve take blocks without components"
                cases.append(pytest.param(name, where, marks=pytest.mark.skip(reason)))
            else:
                cases.append(pytest.param(name, where))
    return cases


#: Operations that find the block of each key of their inputs by a look-up: metatensor
#: finds the same block for each of the blocks of a repeated key (documented in
#: docs/differences.md), so that its results are not those of the blocks given.
LOOKING_UP_KEYS = [
    *("add", "subtract", "multiply", "divide", "dot", "lstsq", "solve", "sort"),
    *("equal", "equal_raise", "allclose", "allclose_raise"),
]

#: Results that differ from metatensor's on purpose (docs/differences.md), by operation
#: and where the repeated entry is: metatensor's look-ups find the same row for each of
#: the repeated entries, so it fills or drops rows that keep their values here.
DIFFERENT = {
    **{(name, "keys"): "each block of a repeated key is used" for name in LOOKING_UP_KEYS},
    ("keys_to_samples", "samples"): "each repeated sample is kept, metatensor keeps one",
    ("keys_to_samples", "keys"): "each repeated sample is kept, metatensor keeps one",
    ("keys_to_samples", "properties"): "each repeated property has its values",
    ("keys_to_properties", "properties"): "each repeated property is kept, metatensor fails",
    ("keys_to_properties", "keys"): "each repeated property is kept, metatensor keeps one",
    ("keys_to_properties", "samples"): "each repeated sample is kept, metatensor keeps one",
    ("join", "gradient"): "each repeated gradient row has its values",
    **{
        (name, "gradient"): "the gradient of a mean is divided by the number of samples"
        for name in ("mean_over_samples", "mean_over_samples_block")
    },
}

#: Operations whose results are not metatensor's even without a repeated entry
#: (docs/differences.md): only the metadata of their results is compared.
METADATA_ONLY = {
    "empty_like": "values not initialized",
    "empty_like_block": "values not initialized",
    "random_uniform_like": "random values",
    "random_uniform_like_block": "random values",
    "is_contiguous": "a dask array is contiguous only out of make_contiguous",
    "is_contiguous_block": "a dask array is contiguous only out of make_contiguous",
    "std_over_properties": "metatensor fails on blocks with components",
    "std_over_properties_block": "metatensor fails on blocks with components",
    "var_over_properties": "metatensor fails on blocks with components",
    "var_over_properties_block": "metatensor fails on blocks with components",
}


#: Reductions over every property (all of them have ``p=0``) compared with numpy's,
#: metatensor failing on them.
OVER_PROPERTIES = {
    "std_over_properties": np.std,
    "std_over_properties_block": np.std,
    "var_over_properties": np.var,
    "var_over_properties_block": np.var,
}


def _assert_reduced_over_properties(result: Any, where: str, reduce: Callable) -> None:
    """The values of ``result`` are ``reduce`` of each input block's along properties."""
    tensor = _map(OURS, where)
    blocks = result.blocks() if isinstance(result, mtd.TensorMap) else [result]
    for index, block in enumerate(blocks):
        expected = reduce(_array(tensor.block_by_id(index).values), axis=-1, keepdims=True)
        np.testing.assert_allclose(_array(block.values), expected)


def _array(values: Any) -> np.ndarray:
    return np.asarray(values)


def _assert_same_labels(ours: Any, theirs: Any) -> None:
    assert list(ours.names) == list(theirs.names)
    np.testing.assert_array_equal(_array(ours.values), _array(theirs.values))


def _assert_same_block(ours: Any, theirs: Any, values: bool) -> None:
    _assert_same_labels(ours.samples, theirs.samples)
    assert len(ours.components) == len(theirs.components)
    for mine, other in zip(ours.components, theirs.components, strict=True):
        _assert_same_labels(mine, other)
    _assert_same_labels(ours.properties, theirs.properties)
    assert ours.values.shape == theirs.values.shape
    if values:
        np.testing.assert_allclose(_array(ours.values), _array(theirs.values), equal_nan=True)
    assert sorted(ours.gradients_list()) == sorted(theirs.gradients_list())
    for parameter in ours.gradients_list():
        _assert_same_block(ours.gradient(parameter), theirs.gradient(parameter), values)


def _assert_same(ours: Any, theirs: Any, values: bool = True, keys: bool = True) -> None:
    """``ours`` (an operation's result) equals ``theirs`` (metatensor's); only their
    metadata unless ``values``, their blocks only unless ``keys``."""
    if isinstance(theirs, metatensor.TensorMap):
        assert isinstance(ours, mtd.TensorMap), type(ours)
        assert len(ours.keys) == len(theirs.keys)
        if keys:
            _assert_same_labels(ours.keys, theirs.keys)
        for index in range(len(theirs.keys)):
            _assert_same_block(ours.block_by_id(index), theirs.block_by_id(index), values)
    elif isinstance(theirs, metatensor.TensorBlock):
        assert isinstance(ours, mtd.TensorBlock), type(ours)
        _assert_same_block(ours, theirs, values)
    elif isinstance(theirs, metatensor.Labels):
        assert isinstance(ours, mtd.Labels), type(ours)
        _assert_same_labels(ours, theirs)
    elif isinstance(theirs, list):
        assert len(ours) == len(theirs)
        for mine, other in zip(ours, theirs, strict=True):
            _assert_same(mine, other, values)
    elif values:
        assert ours == theirs


def _labels_of(data: Any) -> list[Any]:
    """Every Labels of a map, block (its gradients' too) or Labels."""
    if isinstance(data, mtd.Labels):
        return [data]
    if isinstance(data, mtd.TensorMap):
        return [data.keys, *(labels for block in data.blocks() for labels in _labels_of(block))]
    found = [data.samples, *data.components, data.properties]
    for _, gradient in data.gradients():
        found.extend(_labels_of(gradient))
    return found


def _repeated_entries(data: Any) -> list[str]:
    """Each entry that some Labels of ``data`` hold more than once, as the writers name
    it (``{'name': value, ...}``)."""
    entries = []
    for labels in _labels_of(data):
        values = _array(labels.values)
        if len(values) < 2 or values.shape[1] == 0:
            continue
        rows, counts = np.unique(values, axis=0, return_counts=True)
        for row in rows[counts > 1]:
            shown = dict(zip(labels.names, (int(v) for v in row), strict=True))
            entries.append(str(shown))
    return entries


def _files(path: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _assert_refused(write: Callable[[], Any], target: Path, entries: list[str]) -> None:
    """``write()`` raises the writers' error naming one of the repeated ``entries``, and
    leaves ``target`` as it was (absent, or a store of the same files and bytes)."""
    before = _files(target) if target.exists() else None
    with pytest.raises(mtd.MetatensorDaskError, match="nothing was written") as error:
        write()
    message = str(error.value)
    assert any(f"hold the entry {entry} twice" in message for entry in entries), message
    if before is None:
        assert not target.exists()
    else:
        assert _files(target) == before


def _assert_written_only_without_repeats(result: Any, tmp_path: Path) -> None:
    """The writers refuse each map, block or Labels of ``result`` whose Labels repeat an
    entry; they write the others."""
    for index, data in enumerate(result if isinstance(result, list) else [result]):
        if isinstance(data, (mtd.TensorMap, mtd.TensorBlock, mtd.Labels)):
            _assert_written_if_unrepeated(
                data, tmp_path / f"{index}.zarr", tmp_path / f"{index}.mts"
            )


def _assert_written_if_unrepeated(data: Any, store: Path, file: Path) -> None:
    """``data`` written to ``store`` (a map) and ``file`` if its Labels repeat no entry,
    else refused by both writers."""
    entries = _repeated_entries(data)
    if entries:
        if isinstance(data, mtd.TensorMap):
            _assert_refused(lambda: data.to_zarr(store), store, entries)
        _assert_refused(lambda: mtd.save(file, data), file, entries)
        return
    if isinstance(data, mtd.TensorMap):
        data.to_zarr(store)
        assert mtd.verify(store).problems == []
    mtd.save(file, data)


@pytest.mark.parametrize(("name", "where"), _cases())
def test_an_operation_on_labels_repeating_an_entry_raises_or_gives_an_unwritable_result(
    name, where, tmp_path
):
    """Operations rebuilt the Labels of their results without recording that they may
    repeat an entry (``sort``, ``slice``, ``keys_to_samples``, ``keys_to_properties``,
    ``components_to_properties``, ``drop_blocks``...), so that ``to_zarr`` and ``save``,
    which only check Labels recording it, wrote stores that ``open_zarr`` then called
    damaged; ``drop_empty_blocks`` and ``join(add_dimension=...)`` kept entries that
    metatensor refuses. Each operation raises metatensor's error where metatensor does;
    otherwise its result is metatensor's, and is written only without repeated entries."""
    theirs = _call(THEIRS, name, where)
    ours = _call(OURS, name, where)
    compared = (name, where) not in DIFFERENT
    if isinstance(theirs, Exception) and compared and name not in METADATA_ONLY:
        assert isinstance(ours, Exception), f"metatensor raised {theirs!r}"
        assert type(ours).__name__ == type(theirs).__name__
        assert str(ours).startswith(str(theirs)), (str(ours), str(theirs))
        return
    if isinstance(ours, Exception):
        raise ours
    if compared and not isinstance(theirs, Exception):
        _assert_same(ours, theirs, values=name not in METADATA_ONLY)
    if name in OVER_PROPERTIES:
        _assert_reduced_over_properties(ours, where, OVER_PROPERTIES[name])
    if where == "keys" and name in LOOKING_UP_KEYS:
        # each block as metatensor computes it when its key is not repeated
        _assert_same(ours, _call(THEIRS, name, "nowhere"), keys=False)
    _assert_written_only_without_repeats(ours, tmp_path)


#: metatensor-dask with Labels checked unique (``assume_unique`` ignored).
CHECKED = SimpleNamespace(
    **{**vars(OURS), "Labels": lambda names, values, assume_unique=False: mtd.Labels(names, values)}
)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_results_of_labels_checked_unique_are_not_checked_again_by_the_writers(name):
    """The record that Labels may repeat an entry costs the writers a read of every
    entry: results made from Labels checked unique do not carry it (a map of 100,000
    tiny blocks is written without reading its Labels again)."""
    result = _call(CHECKED, name, "nowhere")
    assert not isinstance(result, Exception), result
    for data in result if isinstance(result, list) else [result]:
        if isinstance(data, (mtd.TensorMap, mtd.TensorBlock, mtd.Labels)):
            assert not [labels for labels in _labels_of(data) if labels._may_repeat]


@pytest.mark.parametrize("name", ["sort", "keys_to_samples", "keys_to_properties", "slice"])
@pytest.mark.parametrize("where", ["samples", "keys"])
def test_an_append_of_a_result_repeating_an_entry_leaves_the_store_unchanged(tmp_path, name, where):
    """Appending such a result (``mode="a"``, ``append_dim="samples"``) to a store of
    the same operation's result on unrepeated Labels extended the store with the
    repeated entry; it is refused, every file of the store left as it was."""
    store = tmp_path / "stored.zarr"
    _call(OURS, name, "nowhere").to_zarr(store)
    result = _call(OURS, name, where)
    entries = _repeated_entries(result)
    assert entries, "the result repeats an entry"
    _assert_refused(lambda: result.to_zarr(store, mode="a", append_dim="samples"), store, entries)


def _converted(kind: str, where: str) -> Any:
    """metatensor's map (``kind="map"``), its first block, or the Labels of ``where``,
    repeating an entry at ``where``, converted by ``from_metatensor``."""
    tensor = _map(THEIRS, where)
    if kind == "map":
        return tensor, mtd.from_metatensor(tensor)
    block = tensor.block(0)
    if kind == "block":
        return block, mtd.from_metatensor(block)
    labels = {"samples": block.samples, "properties": block.properties}[where]
    return labels, mtd.from_metatensor(labels)


_CONVERTED = [
    *(("map", where) for where in WHERE),
    *(("block", where) for where in WHERE if where != "keys"),
    ("labels", "samples"),
    ("labels", "properties"),
]


@pytest.mark.parametrize(("kind", "where"), _CONVERTED)
def test_metatensor_data_repeating_an_entry_is_converted_as_it_is_and_not_written(
    tmp_path, kind, where
):
    """metatensor's Labels built with ``assume_unique=True`` may repeat an entry, and do
    not tell: ``from_metatensor`` made Labels of metatensor-dask that do not record it,
    which ``to_zarr`` and ``save`` then wrote. The conversion keeps every row (as
    metatensor holds them), and records the repetition, so that the writers refuse it."""
    theirs, ours = _converted(kind, where)
    _assert_same(ours, theirs)
    entries = _repeated_entries(ours)
    assert entries
    if kind == "map":
        store = tmp_path / "out.zarr"
        _assert_refused(lambda: ours.to_zarr(store), store, entries)
    file = tmp_path / "out.mts"
    _assert_refused(lambda: mtd.save(file, ours), file, entries)


def _metatensor_batch(items: list[int]) -> metatensor.TensorMap:
    """metatensor's map whose samples repeat an entry in the batch of item 1."""
    return _map(THEIRS, "samples" if items[0] == 1 else "nowhere")


def _renumbered_batch(items: list[int]) -> mtd.TensorMap:
    """A map whose samples repeat an entry in the batch of item 1 (renumbered there)."""
    return _map(OURS, "samples" if items[0] == 1 else "nowhere")


@pytest.mark.parametrize(
    ("function", "renumber"),
    [(_metatensor_batch, None), (_metatensor_batch, "system"), (_renumbered_batch, "system")],
)
def test_write_batches_refuses_a_batch_repeating_an_entry(tmp_path, function, renumber):
    """A batch of metatensor's maps (whose Labels were taken as never repeating an
    entry), or one renumbered (which lost the record that its samples may repeat one),
    was stored with its repeated samples, and the store then found damaged: the batch is
    refused, the store left with the batch before it."""
    store = tmp_path / "out.zarr"
    with pytest.raises(mtd.MetatensorDaskError, match=r"batch 1 .*hold the entry") as error:
        mtd.write_batches(function, [0, 1], store, batch_size=1, renumber=renumber, quiet=True)
    assert "nothing was written" in str(error.value)
    assert mtd.verify(store).problems == [
        "the store is incomplete: a write stopped before the end (1 of 2 batches committed); "
        "finish it with `write_batches(..., resume=True)` and the same arguments"
    ]


@pytest.mark.parametrize("axis", ["samples", "properties"])
def test_join_of_an_input_repeating_an_entry_names_that_input_not_two(axis):
    """``join`` of inputs with entries of their own, one of which repeats an entry
    (``assume_unique=True``), raised metatensor's error with the remedy of two inputs
    holding the same entry (``add_dimension="tensor"``, which then fails too): the
    remedy now names one input holding an entry twice."""

    def block(rows: list[list[int]]) -> mtd.TensorBlock:
        labels = mtd.Labels(["i"], np.array(rows, dtype=np.int32), assume_unique=True)
        other = mtd.Labels.range("j", 1)
        samples, properties = (labels, other) if axis == "samples" else (other, labels)
        return mtd.TensorBlock(np.ones((len(samples), len(properties))), samples, [], properties)

    tensors = [
        mtd.TensorMap(mtd.Labels.range("k", 1), [block(rows)]) for rows in ([[0], [0]], [[1]])
    ]
    with pytest.raises(mtd.MetatensorError) as error:
        mtd_operations.join(tensors, axis)
    assert str(error.value) == (
        "invalid parameter: can not have the same label entry multiple times: [0] is already "
        f"present: an input of `join` holds an entry of its {axis} twice (Labels built with "
        "assume_unique=True); keep one row per entry"
    )


def test_maps_repeating_an_entry_go_to_metatensor_and_back():
    """to_metatensor builds metatensor's Labels as the user built them (with
    assume_unique=True) instead of refusing the repeated entry, and from_metatensor of
    the result still records it, so the writers refuse it."""
    samples = mtd.Labels(["s"], np.array([[0], [1], [0]]), assume_unique=True)
    block = mtd.TensorBlock(np.arange(3.0)[:, None], samples, [], mtd.Labels.range("p", 1))
    tensor = mtd.TensorMap(mtd.Labels.range("k", 1), [block])
    theirs = mtd.to_metatensor(tensor)
    np.testing.assert_array_equal(theirs.block(0).samples.values, [[0], [1], [0]])
    np.testing.assert_array_equal(theirs.block(0).values, [[0.0], [1.0], [2.0]])
    back = mtd.from_metatensor(theirs)
    assert back.block(0).samples._repeated_entry() is not None
