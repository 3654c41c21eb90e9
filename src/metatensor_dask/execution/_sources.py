"""Several sources of ``convert --append`` as one tensor, so that one append stores them
all or, refused, none of them.

Each source is renumbered past the ones before it (with ``--renumber``), the sources are
checked to be joinable (the dtype, which a join would promote, and through the join the
keys, labels and gradients), then joined along samples (the union of their keys). The
append of the joined tensor checks it against the store before writing anything. The
metatensor files among the sources are checked whole first (every member's CRC-32): a
damaged file found while its values stream into the store would leave there an append
that only that file could finish.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

import metatensor_dask as mtd

from ..errors import MetatensorDaskError
from ..io._names import is_metatensor_file
from ..io.zarr_append import reordering
from ..io.zarr_codecs import stored_dtype
from ..io.zarr_renumber import check_dimension, renumber_hint, shifted
from ..labels import entry_items

__all__ = ["check_files", "joined_sources"]


def check_files(names: Sequence[str], destination: str) -> None:
    """Refuse the sources ``names`` if a metatensor file among them is damaged (its
    CRC-32s, then its content, as :func:`metatensor_dask.verify` checks them), before
    anything is written to ``destination``."""
    for name in names:
        if not is_metatensor_file(name):
            continue
        report = mtd.verify(name)
        if not report.ok:
            raise MetatensorDaskError(
                f"{report.problems[0]}; nothing was written to {destination}, the other "
                "sources neither: append them without it, or once it is written again"
            )


def _largest(tensor: mtd.TensorMap, dimension: str) -> int | None:
    """The largest value of the sample dimension ``dimension`` of ``tensor``'s blocks,
    ``None`` without samples."""
    found = [
        int(np.max(block.samples.column(dimension)))
        for block in tensor.blocks()
        if len(block.samples)
    ]
    return max(found, default=None)


def _first_different(found: Iterable[tuple[Any, str]]) -> tuple[Any, str, Any, str] | None:
    """The first ``(value, source)`` of ``found`` whose value differs from the first
    one's, followed by that first one; ``None`` when they all agree."""
    first: tuple[Any, str] | None = None
    for value, name in found:
        if first is None:
            first = (value, name)
        elif value != first[0]:
            return (value, name, *first)
    return None


def _check_dtypes(tensors: Sequence[mtd.TensorMap], names: Sequence[str]) -> None:
    """The values of every source have one dtype (in any byte order)."""
    different = _first_different(
        (stored_dtype(block.values.dtype), name)
        for tensor, name in zip(tensors, names, strict=True)
        for block in tensor.blocks()
    )
    if different is not None:
        dtype, name, first, first_name = different
        raise MetatensorDaskError(
            f"{name} has the dtype {dtype}, {first_name} {first}: the sources of one "
            "append must have the same dtype; nothing was written. Convert them to "
            "one dtype first"
        )


def _check_sample_names(tensors: Sequence[mtd.TensorMap], names: Sequence[str]) -> None:
    """The blocks of every source with blocks have the sample names of the first one, in
    the same order: metatensor's join refuses others without naming them."""
    different = _first_different(
        (tensor.sample_names, name)
        for tensor, name in zip(tensors, names, strict=True)
        if len(tensor)
    )
    if different is not None:
        mine, name, first, first_name = different
        raise MetatensorDaskError(
            f"{name} has the sample names {mine}, {first_name} {first}: the sources of "
            "one append must have the same sample names, in the same order; nothing was "
            f"written. {_names_remedy(mine, first, name)}"
        )


def _names_remedy(mine: list[str], wanted: list[str], name: str) -> str:
    """How to give the source ``name`` of sample names ``mine`` the names ``wanted``."""
    order = reordering(mine, wanted)
    if order is not None:
        return (
            f"Save {name} again with its sample dimensions in that order: "
            f"metatensor.permute_dimensions(tensor, 'samples', {order})"
        )
    return (
        f"Save {name} again with those sample names (metatensor.rename_dimension, "
        "append_dimension or remove_dimension on 'samples')"
    )


def _after(tensor: mtd.TensorMap, name: str, dimension: str, largest: int | None) -> mtd.TensorMap:
    """``tensor`` (the source ``name``) with its ``dimension`` shifted to one past
    ``largest``, the largest value of the sources before it (``None``: none has any)."""
    if largest is None:
        return tensor
    origin = f" (one past the largest '{dimension}' of the sources before {name}, for --renumber)"
    remedy = f"number '{dimension}' from 0 in each source, as featomic does; nothing was written"
    return shifted(tensor, dimension, largest + 1, origin, remedy)


def _check_renumbered(
    tensors: Sequence[mtd.TensorMap], names: Sequence[str], dimension: str
) -> None:
    """Every source with blocks has the sample dimension ``dimension`` to renumber."""
    for tensor, name in zip(tensors, names, strict=True):
        try:
            check_dimension(
                dimension,
                tensor.sample_names,
                len(tensor) > 0,
                f"the source {name}",
                tensor.keys.names,
            )
        except MetatensorDaskError as error:
            raise MetatensorDaskError(
                f"{error}; nothing was written. Give --renumber a sample dimension of every source"
            ) from None


def _misfit(present: list[tuple[mtd.TensorMap, str]], failure: type[Exception]) -> str:
    """The name of the first source of ``present`` (tensors and their names) whose join
    to the ones before it raises ``failure`` (the first one if none does)."""
    joined = present[0][0]
    for tensor, name in present[1:]:
        try:
            joined = mtd.join([joined, tensor], axis="samples", different_keys="union")
        except failure:
            return name
    return present[0][1]


def _repeated_text(
    name: str, other: str, key: mtd.LabelsEntry, names: list[str], entry: list[int]
) -> str:
    """The sample ``entry`` (of dimensions ``names``) of the block ``key`` of the source
    ``name``, which the source ``other`` before it holds too, and the remedy."""
    where = ", ".join(f"{n}={int(v)}" for n, v in zip(key.names, key.values, strict=True))
    dimension = renumber_hint(names)
    return (
        f"from {name} on: the block ({where}) of {name} has the sample "
        f"{dict(zip(names, entry, strict=True))}, which {other} has too; nothing was "
        f"written. Number the samples of the sources apart: --renumber {dimension} shifts "
        f"each source's '{dimension}' past the ones before it"
    )


def _repeated_sample(present: list[tuple[mtd.TensorMap, str]]) -> str | None:
    """The first source of ``present`` (tensors and their names) holding a sample that
    a source before it holds in the block of the same key, with that sample and the
    remedy (see :func:`_repeated_text`), ``None`` when no source repeats a sample."""
    seen: dict[tuple[int, ...], list[tuple[np.ndarray, str]]] = {}
    for tensor, name in present:
        for key, block in tensor.items():
            mine = entry_items(block.samples.values)
            earlier = seen.setdefault(tuple(int(v) for v in key.values), [])
            for stored, other in earlier:
                repeated = np.isin(mine, stored)
                if np.any(repeated):
                    entry = [int(v) for v in block.samples.values[np.argmax(repeated)]]
                    return _repeated_text(name, other, key, block.samples.names, entry)
            earlier.append((mine, name))
    return None


def _join_remedy(error: Exception) -> str:
    """What to do when the sources of one append do not join (``error``): sources with
    gradients of gradients, which ``join`` does not support, are appended one at a time;
    others need the same labels and gradients and samples numbered apart."""
    if isinstance(error, NotImplementedError):
        return (
            "Append them one at a time instead (one `convert SRC DST --append` per source, "
            "with the same --renumber): each append of a single source takes them"
        )
    return "Give them the same labels and gradients, and number their samples apart (--renumber)"


def joined_sources(
    tensors: Sequence[mtd.TensorMap], names: Sequence[str], renumber: str | None
) -> mtd.TensorMap:
    """``tensors`` (read from the files ``names``) as one tensor to append.

    With ``renumber`` (a sample dimension), each tensor's ``renumber`` column is shifted
    to one past the largest value of the tensors before it; the append of the result
    with ``renumber={dimension: "next"}`` then numbers them all past the store. Their
    ``info`` is merged, later sources winning, as successive appends merge it.
    """
    if renumber is not None:
        _check_renumbered(tensors, names, renumber)
    if len(tensors) == 1:
        return tensors[0]
    _check_dtypes(tensors, names)
    _check_sample_names(tensors, names)
    renumbered = []
    largest: int | None = None
    for tensor, name in zip(tensors, names, strict=True):
        if renumber is not None:
            tensor = _after(tensor, name, renumber, largest)
            found = _largest(tensor, renumber)
            if found is not None:  # a source without samples leaves the numbering as is
                largest = found if largest is None else max(largest, found)
        renumbered.append(tensor)
    present = [(t, n) for t, n in zip(renumbered, names, strict=True) if len(t)]
    present = present or [(renumbered[0], names[0])]
    try:
        joined = mtd.join([t for t, _ in present], axis="samples", different_keys="union")
    except Exception as error:
        repeated = _repeated_sample(present)
        if repeated is not None:  # join's remedy (add_dimension) is not convert's
            raise MetatensorDaskError(
                f"the sources can not be appended together, {repeated}"
            ) from error
        raise MetatensorDaskError(
            f"the sources can not be appended together, from {_misfit(present, type(error))} "
            f"on: {error}; nothing was written. {_join_remedy(error)}"
        ) from error
    for tensor in tensors:
        for key, value in tensor.info().items():
            joined.set_info(key, value)
    return joined
