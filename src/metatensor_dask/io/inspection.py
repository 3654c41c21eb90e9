"""Looking into a stored tensor: what it holds (``info``) and whether it is intact (``verify``).

Both work from the store's metadata documents (the root ``zarr.json`` holds every node's
metadata), so that ``info`` reads no values and no labels, and ``verify`` can report a
damaged store that :func:`metatensor_dask.open_zarr` would refuse to open.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import numpy as np

from .._format import counted, nbytes_text
from .._typing import StoreLike
from ..errors import DamagedStoreError, MetatensorDaskError, MetatensorError
from . import zarr_layout as layout
from ._lock import incomplete_reason, left_lock, unfinished_write
from ._names import is_metatensor_file
from ._zarr_internals import sync
from .ingest_batch import RUN
from .zarr_append import RECORD, interrupted
from .zarr_codecs import is_plain
from .zarr_discard import chunks_beyond_shapes
from .zarr_in_place import extended_in_place, stored_head
from .zarr_integrity import VERIFY_HINT, checked_labels, damaged
from .zarr_pointers import checked_pointer
from .zarr_progress import recorded_chunks
from .zarr_samples import sample_attributes
from .zarr_store import (
    ArrayRef,
    _local_keys,
    _local_root,
    describe,
    get_many,
    list_prefix,
    open_store,
    read_arrays,
    read_region,
)

__all__ = [
    "ArrayReport",
    "StoreReport",
    "Verification",
    "describe_file",
    "describe_store",
    "format_report",
    "report_dict",
    "verify",
    "verify_store",
]


@dataclass
class ArrayReport:
    """One stored array: ``name`` is ``values`` or a gradient path such as ``positions``."""

    path: str
    name: str
    shape: tuple[int, ...]
    dtype: str
    chunk_rows: int
    write_rows: int
    nbytes: int
    stored: int | None = None

    @property
    def n_chunks(self) -> int:
        return -(-self.shape[0] // self.chunk_rows) if self.shape and self.shape[0] else 0


@dataclass
class StoreReport:
    """What ``metatensor-dask info`` shows."""

    location: str
    format: int
    complete: bool
    key_names: list[str]
    keys: np.ndarray | None
    sample_names: list[str]
    component_names: list[str]
    property_names: list[str]
    gradients: list[str]
    info: dict[str, str]
    blocks: list[list[ArrayReport]] = field(default_factory=list)
    stored: int | None = None
    incomplete: str | None = None
    """Why the store is incomplete and how to finish it (``None`` when complete)."""
    append: str | None = None
    """The append to the complete store that was interrupted, and how to finish or give
    it up (``None`` when there is none)."""

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for block in self.blocks for a in block)


def _root(store: Any, raw: bytes | None) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """The attributes and node documents of the root document ``raw`` of ``store``
    (read by :func:`_writes_seen`, whose reading is the state then compared)."""
    from .zarr_read import check_started

    where = describe(store)
    if raw is None:
        check_started(store, where)
    attributes, nodes = layout.parse_root(raw, where)
    if nodes is None:
        raise MetatensorDaskError(
            f"{where} has no consolidated metadata in its root 'zarr.json': it was not "
            "written by metatensor-dask, or its write stopped before the metadata was stored"
        )
    return store, attributes, nodes


def _values_arrays(block: layout.BlockLayout, name: str) -> list[tuple[str, layout.ArrayInfo]]:
    arrays = [(name, block.values)]
    for parameter, gradient in block.gradients.items():
        child = parameter if name == "values" else f"{name}/{parameter}"
        arrays.extend(_values_arrays(gradient, child))
    return arrays


def _stored_sizes(store: Any, prefixes: list[str]) -> list[int | None]:
    """The bytes stored under each of ``prefixes``; in a local store, through members
    that are symbolic links to folders, as :func:`~.zarr_store.list_prefix` lists them
    (zarr's sizes skip them)."""
    root = _local_root(store)
    if root is not None:
        return [_local_size(root, prefix) for prefix in prefixes]

    async def size(prefix: str) -> int | None:
        try:
            return await store.getsize_prefix(prefix)
        except (NotImplementedError, OSError):
            return None

    async def sizes() -> list[int | None]:
        return list(await asyncio.gather(*(size(p) for p in prefixes)))

    return sync(sizes())


def _local_size(root: Path, prefix: str) -> int | None:
    try:
        return sum(os.path.getsize(root / key) for key in _local_keys(str(root), prefix))
    except OSError:  # a file removed meanwhile
        return None


def _load_keys(store: Any, info: layout.ArrayInfo, complete: bool) -> np.ndarray | None:
    """The stored keys; ``None`` when an incomplete write did not store them yet."""
    try:
        (keys,) = read_arrays([ArrayRef(store, info.path, info.document)])
    except DamagedStoreError:
        if complete:
            raise
        return None
    return keys


#: Reads of a store's summary that ``describe_store`` makes before it gives up on a
#: store written again during each.
_DESCRIBE_ATTEMPTS = 3


def describe_store(location: Any, storage_options: dict[str, Any] | None = None) -> StoreReport:
    """Summarise the tensor stored at ``location`` from its metadata (and its keys).

    No values and no sample labels are read; bytes on disk are the sizes of the stored
    objects under each array, where the store can tell them. A store written while it
    is read (its root document or the write holding its lock changed meanwhile) is read
    again, so that the summary is of one state of the store.
    """
    store = open_store(location, storage_options, writable=False)
    for _ in range(_DESCRIBE_ATTEMPTS):
        before = _writes_seen(store)
        try:
            report = _describe(store, location, before[0])
        except (MetatensorDaskError, OSError):
            if _writes_seen(store) == before:
                raise
            continue
        if _writes_seen(store) == before:
            return report
    raise MetatensorDaskError(
        f"{describe(store)} was written again each of the {_DESCRIBE_ATTEMPTS} times its "
        "summary was read (an overwrite, an append, a resumed or discarded write started "
        "or ended meanwhile); run info again once the write has finished"
    )


def _describe(store: Any, location: Any, raw: bytes | None) -> StoreReport:
    """The summary of the store ``store`` (opened from ``location``) whose root document
    is ``raw``."""
    store, attributes, nodes = _root(store, raw)
    ours = attributes[layout.ATTRIBUTE]
    parsed = layout.parse_layout(attributes, nodes, str(location))
    blocks = []
    for block in parsed.blocks:
        blocks.append(
            [
                ArrayReport(
                    info.path,
                    name,
                    info.shape,
                    str(info.dtype),
                    info.chunk_rows,
                    info.write_rows,
                    int(np.prod(info.shape, dtype=np.int64)) * info.dtype.itemsize,
                )
                for name, info in _values_arrays(block, "values")
            ]
        )
    flat = [a for block in blocks for a in block]
    for report, size in zip(flat, _stored_sizes(store, [f"{a.path}/" for a in flat]), strict=True):
        report.stored = size
    (total,) = _stored_sizes(store, [""])
    first = parsed.blocks[0] if parsed.blocks else None
    complete = ours.get("complete") is True
    return StoreReport(
        location=str(location),
        format=int(ours["format"]),
        complete=complete,
        key_names=parsed.keys.names,
        keys=_load_keys(store, parsed.keys, complete),
        sample_names=first.samples.names if first else [],
        component_names=[c.names[0] for c in first.components] if first else [],
        property_names=first.properties.names if first and first.properties else [],
        gradients=[name for name, _ in _values_arrays(first, "values")][1:] if first else [],
        info=parsed.info,
        blocks=blocks,
        stored=total,
        incomplete=None if complete else incomplete_reason(store, RUN in ours),
        append=_interrupted_append(store, attributes) if complete else None,
    )


def describe_file(path: str) -> StoreReport:
    """Summarise a metatensor file (``.mts``/``.npz``): labels are read, values are not."""
    import os

    from .mts import load

    tensor = load(path)
    blocks = []
    for i, block in enumerate(tensor.blocks()):
        arrays = [("values", block)]
        arrays += [(name, gradient) for name, gradient in _gradients(block, "")]
        reports = []
        for name, part in arrays:
            values = part.values
            rows = values.chunks[0][0] if values.chunks[0] else 0
            reports.append(
                ArrayReport(
                    f"blocks/{i}/{name}",
                    name,
                    values.shape,
                    str(values.dtype),
                    rows,
                    rows,
                    int(values.nbytes),
                )
            )
        blocks.append(reports)
    first = tensor.block(0) if len(tensor.keys) else None
    return StoreReport(
        location=path,
        format=0,
        complete=True,
        key_names=tensor.keys.names,
        keys=tensor.keys.values,
        sample_names=first.samples.names if first else [],
        component_names=[c.names[0] for c in first.components] if first else [],
        property_names=first.properties.names if first else [],
        gradients=[name for name, _ in _gradients(first, "")] if first else [],
        info=tensor.info(),
        blocks=blocks,
        stored=os.path.getsize(path),
    )


def _gradients(block: Any, prefix: str) -> list[tuple[str, Any]]:
    found = []
    for parameter, gradient in block.gradients():
        name = f"{prefix}{parameter}"
        found.append((name, gradient))
        found.extend(_gradients(gradient, f"{name}/"))
    return found


def report_dict(report: StoreReport) -> dict[str, Any]:
    """``report`` as JSON-compatible data (``info --json``)."""
    data = dataclasses.asdict(report)
    data["keys"] = None if report.keys is None else report.keys.tolist()
    data["nbytes"] = report.nbytes
    for block in data["blocks"]:
        for array in block:
            array["shape"] = list(array["shape"])
    return data


def _bytes(n: int | None) -> str:
    return "?" if n is None else nbytes_text(n)


def format_report(report: StoreReport, max_blocks: int = 20) -> str:
    """The text of ``metatensor-dask info``: a header, then one line per array."""
    version = f"format {report.format}" if report.format else "metatensor file"
    state = "complete" if report.complete else f"INCOMPLETE: {report.incomplete}"
    if report.append is not None:
        state += f", but {report.append}"
    lines = [
        f"store:       {report.location} ({version}, {state})",
        f"keys:        {len(report.blocks)} blocks, names [{', '.join(report.key_names)}]",
        f"samples:     [{', '.join(report.sample_names)}]",
        f"components:  [{', '.join(report.component_names)}]",
        f"properties:  [{', '.join(report.property_names)}]",
        f"gradients:   [{', '.join(report.gradients)}]",
        f"bytes:       {_bytes(report.nbytes)} in memory, {_bytes(report.stored)} on disk",
    ]
    if report.info:
        lines.append("info:        " + ", ".join(f"{k}={v}" for k, v in report.info.items()))
    header = ("block", "key", "array", "shape", "dtype", "chunks", "memory", "disk")
    rows = []
    shown = report.blocks if max_blocks < 0 else report.blocks[:max_blocks]
    for i, block in enumerate(shown):
        key = "" if report.keys is None else " ".join(str(v) for v in report.keys[i])
        for j, array in enumerate(block):
            chunks = f"{array.n_chunks} x {array.chunk_rows} rows"
            if array.write_rows != array.chunk_rows:
                chunks += f" (shards of {array.write_rows})"
            first = (str(i), key) if j == 0 else ("", "")
            rows.append(
                (
                    *first,
                    array.name,
                    str(array.shape),
                    array.dtype,
                    chunks,
                    _bytes(array.nbytes),
                    _bytes(array.stored),
                )
            )
    if rows:
        widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
        lines.append("")
        for row in [header, *rows]:
            cells = (text.ljust(width) for text, width in zip(row, widths, strict=True))
            lines.append("  ".join(cells).rstrip())
    if len(shown) < len(report.blocks):
        lines.append(
            f"... and {len(report.blocks) - len(shown)} more blocks (--max-blocks -1 shows all)"
        )
    return "\n".join(lines)


# -- verify -----------------------------------------------------------------------------------

#: target bytes read by one verification task
_TASK_BYTES = 64 * 2**20


def _regions(info: layout.ArrayInfo) -> list[tuple[slice, ...]]:
    """Every write unit (shard, or chunk when unsharded) of an array, along rows."""
    if not info.shape or 0 in info.shape:
        return []
    step = max(info.write_rows, 1)
    rest = tuple(slice(0, n) for n in info.shape[1:])
    return [
        (slice(start, min(start + step, info.shape[0])), *rest)
        for start in range(0, info.shape[0], step)
    ]


def _read_regions(items: list[tuple[ArrayRef, tuple[slice, ...] | None]]) -> tuple[int, list[str]]:
    """A task: read each region (every chunk present, its size and checksum right);
    bytes read, problems. A region ``None`` is the partial last chunk of a values
    array that a run of ``write_batches``, unfinished, extends in place: its stored rows
    are checked against the checksum listed for it (see :mod:`.zarr_in_place`)."""
    from .zarr_read import read_plain_region

    total, problems = 0, []
    for ref, region in items:
        try:
            if region is None:
                root, where = str(_local_root(ref.store)), describe(ref.store)
                found = stored_head(root, where, ref.path, ref.document, ref.document["shape"][0])
                total += found[1].size if found is not None else 0
            elif is_plain(ref.document):
                total += read_plain_region(ref, region).nbytes
            else:
                total += read_region(ref, region).nbytes
        except DamagedStoreError as error:
            problems.append(str(error))
        except OSError as error:
            problems.append(_unreadable(ref, error))
    return total, problems


def _unreadable(ref: ArrayRef, error: OSError) -> str:
    """The problem of a file of the array ``ref`` that the system refuses to read
    (its permissions, a loop of symbolic links, an input/output error)."""
    name = error.filename or f"a chunk of the array '{ref.path}'"
    return (
        f"{describe(ref.store)}: can not read {name}: {error.strerror or error} (give the "
        "reader access to it, or write the store again if it is damaged)"
    )


@dataclass
class _LabelsCheck:
    """One Labels array to check, with what its content must agree with."""

    info: layout.ArrayInfo
    parent_rows: int | None = None
    pointer: layout.ArrayInfo | None = None


def _check_labels(store: Any, checks: list[_LabelsCheck]) -> list[str]:
    """A task: Labels match their digest and have no repeated entries; row pointers
    are non-decreasing from 0 to their gradient's rows; gradient ``sample`` columns
    index their parent's rows as the row pointer says."""
    where = describe(store)
    problems = []
    for check in checks:
        refs = [ArrayRef(store, check.info.path, check.info.document)]
        if check.pointer is not None:
            refs.append(ArrayRef(store, check.pointer.path, check.pointer.document))
        try:
            arrays = read_arrays(refs)
        except DamagedStoreError as error:
            problems.append(str(error))
            continue
        except OSError as error:
            problems.append(_unreadable(refs[0], error))
            continue
        pointer = None
        if check.pointer is not None and check.parent_rows is not None:
            try:
                pointer = checked_pointer(
                    where, check.pointer.path, arrays[1], check.parent_rows, check.info.shape[0]
                )
            except DamagedStoreError as error:
                problems.append(str(error))  # the samples are still checked, without it
        try:
            checked_labels(
                where,
                check.info.path,
                check.info.names,
                arrays[0],
                check.info.digest,
                check.parent_rows,
                pointer,
            )
        except DamagedStoreError as error:
            problems.append(str(error))
        problem = _records_problem(check.info, arrays[0])
        if problem is not None:
            problems.append(str(damaged(where, problem)))
    return problems


def _records_problem(info: layout.ArrayInfo, values: np.ndarray) -> str | None:
    """What is wrong with the records that appends trust instead of reading the entries
    (format 3 samples: ``chain``, ``max``, ``column_max``), ``None`` when they agree."""
    if not info.keeps_records:
        return None
    expected = sample_attributes(info.names, np.asarray(values, dtype=np.int32))
    wrong = [
        name
        for name in ("chain", "max", "column_max")
        if info.attributes.get(name) != expected[name]
    ]
    if not wrong:
        return None
    return (
        f"the records of '{info.path}' disagree with its entries ({', '.join(wrong)}), "
        "which an append would trust"
    )


def _merge(results: list[Any], label_problems: list[list[str]]) -> tuple[int, list[str]]:
    total = sum(n for n, _ in results)
    problems = [p for _, found in results for p in found]
    problems += [p for found in label_problems for p in found]
    # a damaged Labels chunk is found by its read and by its Labels check: once
    return total, list(dict.fromkeys(problems))


@dataclass
class Verification:
    """What :func:`metatensor_dask.verify` found.

    Attributes
    ----------
    location
        The store or file checked.
    problems
        One message per problem found (empty when the data is intact).
    notes
        What could not be checked, e.g. missing chunks of format 1 stores with a
        compressor or sharding (whose writer skipped all-zero chunks), and what was
        found that is not damage, e.g. arrays another tool added to the store.
    arrays
        Number of arrays checked.
    regions
        Number of chunks (or shards) read.
    nbytes
        Bytes of data read and checked.
    """

    location: str
    problems: list[str]
    notes: list[str] = field(default_factory=list)
    arrays: int = 0
    regions: int = 0
    nbytes: int = 0

    def __post_init__(self) -> None:
        # the errors' pointer to verify is no remedy in verify's own report
        self.problems = [problem.replace(VERIFY_HINT, "") for problem in self.problems]

    @property
    def ok(self) -> bool:
        """Whether no problem was found."""
        return not self.problems


def _labels_checks(parsed: layout.TensorLayout) -> list[_LabelsCheck]:
    checks = [_LabelsCheck(parsed.keys)]

    def visit(block: layout.BlockLayout, parent_rows: int | None) -> None:
        checks.append(_LabelsCheck(block.samples, parent_rows, block.row_pointer))
        checks.extend(_LabelsCheck(info) for info in block.components)
        if block.properties is not None:
            checks.append(_LabelsCheck(block.properties))
        for gradient in block.gradients.values():
            visit(gradient, block.values.shape[0])

    for block in parsed.blocks:
        visit(block, None)
    return checks


def _unfinished(store: Any, attributes: dict[str, Any]) -> str | None:
    """The write the store holds unfinished (killed, or still running) and how to
    finish it; ``None`` when there is none."""
    ours = attributes[layout.ATTRIBUTE]
    if ours.get("complete") is not True:
        done = _batches_done(ours.get(RUN)) if RUN in ours else None
        if done is None:
            recorded = len(recorded_chunks(store) - {layout.PLAN_KEY, layout.APPEND_KEY})
            done = f"{counted(recorded, 'chunk')} recorded"
        holder = left_lock(store)
        if holder is not None:  # the command that writes it, and its remedy
            stopped = f"a write stopped before the end, {done}"
            return f"the store is incomplete: {unfinished_write(holder, stopped)}"
        remedy = (
            "`write_batches(..., resume=True)` and the same arguments"
            if RUN in ours
            else "`to_zarr(..., resume=True)` and the same tensor (a command line: the same "
            "command with `--resume`)"
        )
        return (
            f"the store is incomplete: a write stopped before the end ({done}); "
            f"finish it with {remedy}"
        )
    return _interrupted_append(store, attributes)


def _batches_done(run: Any) -> str | None:
    """The batches a run of ``write_batches`` (its record ``run``) committed, of how
    many (its progress: it records no chunks); ``None`` for a record not so made."""
    if not isinstance(run, dict):
        return None
    numbers: list[int] = []
    for name in ("committed", "batch_size", "n_items"):
        value = run.get(name)
        if not isinstance(value, int) or isinstance(value, bool):
            return None
        numbers.append(value)
    committed, size, items = numbers
    if size < 1 or committed < 0:
        return None
    total = -(-items // size)
    return f"{committed} of {total} {'batch' if total == 1 else 'batches'} committed"


def _interrupted_append(store: Any, attributes: dict[str, Any]) -> str | None:
    """The append to the complete store (of root ``attributes``) that was interrupted,
    and how to finish or give it up; ``None`` when there is none."""
    if not interrupted(store, attributes):
        return None
    return (
        f"an append to {describe(store)} was interrupted (its record '{RECORD}' is left): "
        "the store reads as before it; finish it with to_zarr(..., append_dim='samples', "
        "resume=True) and the same tensor and renumber (`metatensor-dask convert "
        "--append --resume` and the same sources), or discard it with "
        "metatensor_dask.discard_append(store)"
    )


@dataclass
class _Pending:
    """What the unfinished write of a store (one that records its chunks, see
    :mod:`.zarr_progress`) stores: the chunks of its values arrays (``data``), each
    stored once its marker is ``recorded``; its Labels and row pointers (``small``) and
    its node documents, stored again whole when it is finished."""

    data: set[str]
    small: set[str]
    recorded: set[str]

    def stores_node(self, path: str) -> bool:
        """Whether the write stores the node ``path`` (one of its arrays, or a group
        holding one)."""
        prefix = f"{path}/"
        return any(a == path or a.startswith(prefix) for a in self.data | self.small)

    def stored(self, path: str, number: int) -> bool:
        """Whether chunk (or shard) ``number`` of the array ``path`` is to be checked:
        stored by the write as its record says, or not the write's."""
        if path in self.small:
            return False
        return path not in self.data or layout.progress_marker(path, number) in self.recorded


def _pending(store: Any, attributes: dict[str, Any]) -> _Pending | None:
    """What the unfinished write of a store stores (see :class:`_Pending`); ``None``
    for a complete store, or a write that left no readable plan (a run of
    ``write_batches``, which extends its arrays in place)."""
    ours = attributes[layout.ATTRIBUTE]
    if ours.get("complete") is True or RUN in ours:
        return None
    (raw,) = get_many(store, [layout.PLAN_KEY])
    try:
        plan = json.loads(raw) if raw is not None else None
    except ValueError:
        return None
    if not isinstance(plan, dict):
        return None
    data, small = plan.get("data"), plan.get("small")
    if not isinstance(data, list) or not isinstance(small, list):
        return None
    return _Pending(set(map(str, data)), set(map(str, small)), recorded_chunks(store))


def _metadata_problems(
    store: Any,
    nodes: dict[str, Any],
    unfinished: bool,
    pending: _Pending | None,
    temporaries: list[str],
) -> list[str]:
    """Every node's own ``zarr.json`` against the copy in the root (consolidated); the
    keys of the temporary files of atomic writes found on the way are appended to
    ``temporaries``.

    With an ``unfinished`` write, a document that is not valid JSON is that write's,
    cut short when it was killed, which finishing the write stores again. The documents
    that a ``pending`` write stores (missing, cut short, or not yet rewritten with the
    chunk table it adds last) are that write's to store: not checked.
    """
    from .zarr_read import read_nodes

    invalid: dict[str, str] = {}
    on_disk = read_nodes(store, invalid, temporaries)
    problems = []
    for path, error in sorted(invalid.items()):
        if pending is not None and pending.stores_node(path):
            continue
        if unfinished:
            problems.append(
                f"{path}: its 'zarr.json' is not valid JSON ({error}): cut short by the "
                "unfinished write, which stores it again when finished"
            )
        else:
            problems.append(
                str(damaged(describe(store), f"'{path}/zarr.json' is not valid JSON ({error})"))
            )
    for path in sorted(set(nodes) | set(on_disk)):
        if path in invalid:
            continue
        if path not in nodes:
            problems.append(
                f"{path}: stored, but missing from the consolidated metadata in the root "
                "'zarr.json' (readers do not see it)"
            )
        elif pending is not None and pending.stores_node(path):
            continue
        elif path not in on_disk:
            problems.append(f"{path}: its 'zarr.json' is missing (the node is lost)")
        elif _without_nested_index(on_disk[path]) != _without_nested_index(nodes[path]):
            problems.append(
                f"{path}: its 'zarr.json' differs from the consolidated metadata in the root"
            )
    return problems


def _without_nested_index(document: Any) -> Any:
    """A node document without the ``consolidated_metadata`` of a group: zarr's
    ``consolidate_metadata`` gives every group's copy in the root one (its children's
    documents, listed in the root too), which the group's own ``zarr.json`` lacks."""
    if isinstance(document, dict) and document.get("node_type") == "group":
        return {k: v for k, v in document.items() if k != "consolidated_metadata"}
    return document


def _groups_above(arrays: set[str]) -> set[str]:
    """The paths of the groups that hold ``arrays``: every folder above each of them."""
    groups: set[str] = set()
    for path in arrays:
        parts = path.split("/")
        groups.update("/".join(parts[:end]) for end in range(1, len(parts)))
    return groups


def _is_zarr_array(document: Any) -> bool:
    """Whether ``document`` is a Zarr v3 array's."""
    return (
        isinstance(document, dict)
        and document.get("zarr_format") == 3
        and document.get("node_type") == "array"
    )


def _other_arrays(nodes: dict[str, Any], arrays: set[str]) -> list[str]:
    """The consolidated nodes that are Zarr v3 arrays outside the tensor: neither one of
    its ``arrays`` nor a group above them (another tool's, such as a variable that
    xarray's ``to_zarr(mode="a")`` added to a block's group). Readers ignore them."""
    groups = _groups_above(arrays)
    return sorted(
        path
        for path, document in nodes.items()
        if path not in arrays and path not in groups and _is_zarr_array(document)
    )


def _other_arrays_note(others: list[str]) -> list[str]:
    """The note on the arrays outside the tensor (:func:`_other_arrays`), if any."""
    if not others:
        return []
    return [
        f"{counted(len(others), 'array')} not part of the tensor ({_first_three(others)}), "
        "written by another tool (zarr, xarray): metatensor-dask ignores them, appends "
        "keep them, and a write with mode='w' deletes them"
    ]


def _group_problems(nodes: dict[str, Any], arrays: set[str]) -> list[str]:
    """The consolidated documents of the nodes that are not ``arrays`` of the tensor
    (its groups: ``blocks``, ``blocks/<i>``, ``components``, ``gradients``...) that are
    not Zarr v3 group documents, but for arrays outside the tensor (see
    :func:`_other_arrays`). Readers do not use them, but zarr and xarray open the
    hierarchy through them."""
    problems = []
    others = set(_other_arrays(nodes, arrays))
    for path, document in nodes.items():
        if path in arrays or path in others:
            continue
        found = document if isinstance(document, dict) else {}
        if found.get("zarr_format") != 3 or found.get("node_type") != "group":
            problems.append(
                f"{path}: its document is not a Zarr v3 group's (zarr_format "
                f"{found.get('zarr_format')!r}, node_type {found.get('node_type')!r}), so "
                "zarr and xarray can not open the store; write or convert the tensor again "
                "from its source"
            )
    return problems


def _first_three(keys: list[str]) -> str:
    """The first three of ``keys`` in order, and how many more there are."""
    shown = ", ".join(repr(key) for key in sorted(keys)[:3])
    return shown + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def _temporaries_notes(temporaries: list[str]) -> list[str]:
    """The note on the temporary files of atomic writes left in the store, if any."""
    if not temporaries:
        return []
    return [
        f"{counted(len(temporaries), 'temporary file')} of atomic writes "
        f"({_first_three(temporaries)}) "
        "left by writers killed before they renamed them: readers ignore them, they only "
        "take space. The next writer taking a killed writer's lock over (resume=True, "
        "--resume, discard_append) removes them; otherwise delete them (the files named "
        "'*.<32 hex digits>.partial') while no writer runs"
    ]


def _beyond_shapes_notes(store: Any, nodes: dict[str, Any]) -> list[str]:
    """The note on the chunk files of a complete store that lie wholly past the shapes
    of their arrays, if any."""
    beyond = chunks_beyond_shapes(list_prefix(store, ""), nodes)
    if not beyond:
        return []
    return [
        f"{counted(len(beyond), 'chunk file')} past the shapes of their arrays "
        f"({_first_three(beyond)}), left by an append that failed or was discarded: "
        "readers never read them, they only take space. The next append writes over "
        "those it needs; otherwise delete them while no writer runs (a store needs no "
        "chunk file past its arrays' shapes)"
    ]


def _written(check: _LabelsCheck, pending: _Pending) -> bool:
    """Whether the Labels (and row pointer) of ``check`` are stored, not left for the
    ``pending`` write to store when finished."""
    paths = [check.info.path] + ([check.pointer.path] if check.pointer is not None else [])
    return not pending.small.intersection(paths)


def _pending_note(left_out: int) -> str:
    return (
        "the unfinished write stores again, when finished, the Labels, row pointers and "
        f"node documents it writes, and {counted(left_out, 'chunk')} of values it has not "
        "recorded as stored: they were not checked"
    )


def verify(
    location: StoreLike,
    storage_options: dict[str, Any] | None = None,
    *,
    compute: Any = None,
) -> Verification:
    """Check that a Zarr store (or a ``.mts``/``.npz`` file) is complete and intact.

    For a Zarr store, reads every chunk of every array, checks every node's metadata
    against the consolidated copy, and every data-vs-labels invariant (see
    :func:`verify_store`). For a metatensor file, checks every member's CRC-32 and
    structure.

    Parameters
    ----------
    location
        A Zarr store (path, URL or zarr store) or a ``.mts``/``.npz`` path.
    storage_options
        For fsspec URLs.
    compute
        ``compute(collection)`` runs the reading tasks (default: :func:`dask.compute`).

    Returns
    -------
    Verification
        The problems found (``.ok`` when there are none) and what was read.

    Examples
    --------
    >>> report = mtd.verify("features.zarr")  # doctest: +SKIP
    >>> report.ok, report.problems  # doctest: +SKIP
    (True, [])
    """
    if isinstance(location, (str, os.PathLike)) and is_metatensor_file(location):
        from .mts import check_file

        try:
            check_file(os.fspath(location))
        except (MetatensorDaskError, MetatensorError) as error:
            # damage, an unsafe member name, a file that can not be read: reported, as
            # for a store
            return Verification(os.fspath(location), [str(error)])
        return Verification(os.fspath(location), [])
    return verify_store(location, storage_options, compute=compute)


def _writes_seen(store: Any) -> tuple[bytes | None, str | None]:
    """What changes when the store is written: its root document, and the write that
    holds its lock (``None`` for none)."""
    (raw,) = get_many(store, ["zarr.json"])
    holder = left_lock(store)
    return raw, None if holder is None else holder.write_id


def _written_meanwhile(store: Any) -> str:
    """The one problem of a verify during which the store was written."""
    return (
        f"{describe(store)} was written while verify read it (an overwrite, an append, a "
        "resumed or discarded write started or ended meanwhile): what was read is not "
        "one state of the store, and tells nothing of its damage; run verify again once "
        "the write has finished"
    )


def _read_checks(
    store: Any,
    before: tuple[bytes | None, str | None],
    compute: Any,
    collection: Any,
    problems: list[str],
) -> tuple[int, list[str]] | None:
    """``compute(collection)``: the bytes read and every problem found (``problems``
    found before it, then its own); ``None`` when something was found (an error
    included) and the store was written meanwhile: then what was read is no state of the
    store."""
    try:
        nbytes, found = compute(collection)
    except Exception:
        if _writes_seen(store) != before:
            return None
        raise
    if (problems or found) and _writes_seen(store) != before:
        return None
    return nbytes, problems + found


def verify_store(
    location: Any,
    storage_options: dict[str, Any] | None = None,
    *,
    compute: Any = None,
) -> Verification:
    """Check that the Zarr store at ``location`` is complete and intact.

    Checks, in order: the root document and the consolidated metadata (as
    :func:`metatensor_dask.open_zarr` does); every node's own ``zarr.json`` against the
    consolidated copy, both ways; every chunk of every array present (format 2 stores
    every chunk), of the right size and with a matching checksum; Labels against their
    recorded digest, without repeated entries; row pointers non-decreasing from 0 to
    their gradient's rows; gradient ``sample`` columns within their parent's rows and in
    agreement with the row pointer. Chunk files wholly past the shapes of their arrays
    in a complete store (left by an append that failed) are a note, not a problem:
    readers never read them.

    Parameters
    ----------
    location
        The store (path, URL or zarr store).
    storage_options
        For fsspec URLs.
    compute
        ``compute(collection)`` runs the reading tasks (default: :func:`dask.compute`);
        the command line passes one that shows progress on a cluster.
    """
    compute = compute or (lambda collection: dask.compute(collection)[0])
    where = str(location)
    try:
        opened = open_store(location, storage_options, writable=False)
        before = _writes_seen(opened)
        store, attributes, nodes = _root(opened, before[0])
    except MetatensorDaskError as error:
        return Verification(where, [str(error)])
    unfinished = _unfinished(store, attributes)
    pending = _pending(store, attributes)
    ours = attributes[layout.ATTRIBUTE]
    whole = ours.get("complete") is not True and RUN not in ours
    if unfinished is not None and whole and pending is None:
        # a whole write stopped (or still running) before it recorded its plan: the
        # root lists the nodes of the store it replaces, which mode='w' deletes first
        note = (
            "the unfinished write had not recorded what it writes yet (mode='w' deletes "
            "the store it replaces first): the nodes the root lists were not checked"
        )
        return Verification(where, [unfinished], [note])
    temporaries: list[str] = []
    problems = _metadata_problems(store, nodes, unfinished is not None, pending, temporaries)
    notes = _temporaries_notes(temporaries)
    if unfinished is not None and not nodes:
        # a run of write_batches that committed no batch yet: nothing else to check
        return Verification(where, [*problems, unfinished], notes)
    try:
        parsed = layout.parse_layout(attributes, nodes, describe(store))
    except MetatensorDaskError as error:
        problems = [str(error), *problems, *filter(None, [unfinished])]
        return Verification(where, problems, notes)
    if unfinished is not None:
        problems.append(unfinished)
    else:
        notes.extend(_beyond_shapes_notes(store, nodes))
    infos = [parsed.keys] + [a for block in parsed.blocks for a in block.arrays()]
    paths = {info.path for info in infos}
    problems.extend(_group_problems(nodes, paths))
    notes.extend(_other_arrays_note(_other_arrays(nodes, paths)))
    lenient = [info.path for info in infos if info.missing_ok]
    if lenient:
        notes.append(
            f"format {parsed.format}: {len(lenient)} arrays with a compressor or sharding "
            "did not store all-zero chunks, so a lost chunk there can not be detected; "
            "`metatensor-dask convert` the store to the current format"
        )
    batches: list[list[tuple[ArrayRef, tuple[slice, ...] | None]]] = [[]]
    size = 0
    regions = 0
    left_out = 0
    # a run of write_batches extends the partial last chunk of values arrays in place:
    # killed, that chunk ends with what the batch wrote (see _read_regions)
    in_place = unfinished is not None and RUN in attributes[layout.ATTRIBUTE]
    in_place = in_place and _local_root(store) is not None
    for info in infos:
        ref = ArrayRef(store, info.path, info.document, info.missing_ok, info.store_id)
        unit = (
            int(np.prod(info.shape[1:], dtype=np.int64))
            * info.dtype.itemsize
            * max(info.write_rows, 1)
        )
        found = _regions(info)
        extended = in_place and extended_in_place(info.path, info.document)
        for number, region in enumerate(found):
            if pending is not None and not pending.stored(info.path, number):
                left_out += info.path in pending.data
                continue
            if size + unit > _TASK_BYTES and batches[-1]:
                batches.append([])
                size = 0
            last = extended and number == len(found) - 1
            batches[-1].append((ref, None if last else region))
            size += unit
            regions += 1
    reads = [dask.delayed(_read_regions, pure=True)(batch) for batch in batches if batch]
    labels = _labels_checks(parsed)
    if pending is not None:
        labels = [check for check in labels if _written(check, pending)]
        notes.append(_pending_note(left_out))
    label_tasks = [
        dask.delayed(_check_labels, pure=True)(store, labels[i : i + 64])
        for i in range(0, len(labels), 64)
    ]
    collection = dask.delayed(_merge, pure=True)(reads, label_tasks)
    checked = _read_checks(store, before, compute, collection, problems)
    if checked is None:
        return Verification(where, [_written_meanwhile(store)], notes, len(infos))
    nbytes, problems = checked
    return Verification(where, problems, notes, len(infos), regions, nbytes)
