"""Renumbering one sample dimension before an append, so that per-batch ids become global.

featomic numbers the systems of every call from 0: two batches computed separately both
have ``system = 0, 1, ...``. ``renumber={"system": offset}`` adds ``offset`` to the
``"system"`` column of every block's samples and of every gradient's samples (their
``"sample"`` column, which indexes rows of the parent, is shifted by the append itself);
``"next"`` takes one past the largest ``"system"`` stored in any block, which the store
records (format 3), so it costs no read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import MetatensorDaskError
from ..labels import Labels
from .zarr_integrity import damaged
from .zarr_samples import is_entry

if TYPE_CHECKING:
    from ..block import TensorBlock
    from ..tensor import TensorMap

__all__ = [
    "Renumber",
    "RenumberRangeError",
    "Renumbering",
    "check_dimension",
    "parse_renumber",
    "renumber_hint",
    "renumbered",
    "shift",
    "shifted",
]


#: The arguments of :func:`shift` after the labels: ``(dimension, offset)``, or with the
#: origin and the remedy of its error.
Renumbering = tuple[str, int] | tuple[str, int, str, str]


class RenumberRangeError(MetatensorDaskError):
    """A renumbering of ``dimension`` by ``offset`` that takes its values, from ``low``
    to ``high``, out of the int32 range of Labels; ``origin`` says where the offset comes
    from and ``remedy`` what to do. A caller (the command line) words its own origin and
    remedy with :meth:`problem`."""

    def __init__(
        self, dimension: str, offset: int, low: int, high: int, origin: str, remedy: str
    ) -> None:
        self.dimension, self.offset, self.low, self.high = dimension, offset, low, high
        self._arguments = (dimension, offset, low, high, origin, remedy)
        super().__init__(f"{self.problem(origin)}; {remedy}")

    def problem(self, origin: str) -> str:
        """The message without a remedy, with ``origin`` after the offset."""
        low, high, offset = self.low, self.high, self.offset
        return (
            f"renumbering '{self.dimension}' by {offset}{origin} goes past the int32 range "
            f"of Labels: its values, from {low} to {high}, would become {low + offset} to "
            f"{high + offset}, outside [-2**31, 2**31 - 1]"
        )

    def __reduce__(self) -> tuple[type, tuple]:
        # the arguments, not the message: a worker's error is sent to the client
        return (type(self), self._arguments)


@dataclass(frozen=True)
class Renumber:
    """Shift the sample dimension ``dimension`` by ``offset`` (an int, or ``"next"``)."""

    dimension: str
    offset: int | str

    def spec(self) -> tuple[str, int | str]:
        return (self.dimension, self.offset)


def parse_renumber(renumber: Any) -> Renumber | None:
    """Check a ``renumber`` argument: ``None`` or ``{dimension: int | "next"}``."""
    if renumber is None:
        return None
    if not isinstance(renumber, dict) or len(renumber) != 1:
        raise MetatensorDaskError(
            f"`renumber` must be a dict with one sample dimension, e.g. {{'system': 'next'}}, "
            f"got {renumber!r}"
        )
    ((dimension, offset),) = renumber.items()
    valid_int = isinstance(offset, (int, np.integer)) and not isinstance(offset, bool)
    if not isinstance(dimension, str) or not (valid_int or offset == "next"):
        raise MetatensorDaskError(
            f"`renumber` maps a sample dimension name to an int offset or 'next', got {renumber!r}"
        )
    return Renumber(dimension, int(offset) if valid_int else "next")


def _next(
    existing: tuple[dict[str, Any], dict[str, Any]] | None, dimension: str, where: str
) -> int:
    """One past the largest stored value of ``dimension`` (0 for a store without
    samples), from the records of the blocks' samples."""
    if existing is None:
        return 0
    found = []
    for path, document in existing[1].items():
        parts = path.split("/")
        if len(parts) != 3 or parts[0] != "blocks" or parts[2] != "samples":
            continue
        attributes = document.get("attributes") or {}
        names, maxima = attributes.get("names") or [], attributes.get("column_max")
        if dimension not in names or maxima is None:
            continue
        if not is_entry(maxima, len(names)):
            raise damaged(where, f"the Labels array '{path}' has no valid 'column_max' attribute")
        found.append(int(maxima[names.index(dimension)]))
    return max(found) + 1 if found else 0


def _check_range(values: np.ndarray, dimension: str, offset: int, origin: str, remedy: str) -> None:
    """Refuse an ``offset`` that takes ``values`` (a column) out of the int32 range."""
    if not len(values):
        return
    # with Python ints: no overflow, whatever the offset
    low, high = int(values.min()), int(values.max())
    limits = np.iinfo(np.int32)
    if high + offset > limits.max or low + offset < limits.min:
        remedy = remedy or (
            f"number '{dimension}' from 0 in each batch and renumber by a smaller offset, "
            "or write to another store"
        )
        raise RenumberRangeError(dimension, offset, low, high, origin, remedy)


def shift(
    labels: Labels, dimension: str, offset: int, origin: str = "", remedy: str = ""
) -> Labels:
    """``labels`` with ``offset`` added to their ``dimension`` (when they have it);
    ``origin`` says where the offset comes from, and ``remedy`` what to do (the remedy
    of ``to_zarr`` when empty), in the error of an offset that takes them out of the
    int32 range."""
    if dimension not in labels.names or offset == 0:
        return labels
    values = np.array(labels.values, dtype=np.int32)  # one copy, shifted in place
    column = labels.names.index(dimension)
    _check_range(values[:, column], dimension, offset, origin, remedy)
    if len(values):
        # summed in int64 (an offset may not fit in int32 when every result does), a
        # few rows at a time: every result was checked to fit in int32
        target = values[:, column]
        np.add(target, np.int64(offset), out=target, casting="unsafe")
    return Labels._made_from(labels.names, values, labels)


def _block(
    block: TensorBlock, dimension: str, offset: int, origin: str, remedy: str
) -> TensorBlock:
    from ..block import TensorBlock

    gradients = {p: _block(g, dimension, offset, origin, remedy) for p, g in block.gradients()}
    return TensorBlock._trusted(
        block.values,
        shift(block.samples, dimension, offset, origin, remedy),
        block.components,
        block.properties,
        gradients,
        row_pointer=block.row_pointer,
    )


def check_dimension(
    dimension: str,
    sample_names: list[str],
    has_blocks: bool,
    of: str = "this tensor",
    key_names: Sequence[str] = (),
) -> None:
    """Refuse to renumber ``dimension`` of a tensor (or of what ``of`` names) whose
    blocks have the samples ``sample_names`` when it is not one of them, or is a
    gradient's ``"sample"``; a dimension of its keys ``key_names`` is named so."""
    if dimension == "sample" and "sample" in sample_names:
        raise MetatensorDaskError(
            f"can not renumber 'sample', a sample dimension of {of}: every gradient names "
            "'sample' its first sample dimension, which indexes the rows of its block and is "
            "not renumbered; give the dimension another name first "
            "(rename_dimension(tensor, 'samples', 'sample', NEW)) and renumber "
            "that one"
        )
    if has_blocks and dimension not in sample_names and dimension in key_names:
        raise MetatensorDaskError(_key_dimension_text(dimension, sample_names, of, key_names))
    if dimension == "sample" or (has_blocks and dimension not in sample_names):
        raise MetatensorDaskError(
            f"can not renumber '{dimension}': it is not a sample dimension of {of} ({sample_names})"
        )


def _key_dimension_text(
    dimension: str, sample_names: list[str], of: str, key_names: Sequence[str]
) -> str:
    """Why a key dimension ``dimension`` is not renumbered, and what to do instead."""
    return (
        f"can not renumber '{dimension}': it is a key dimension of {of} (keys "
        f"{list(key_names)}), not a sample dimension ({sample_names}); key dimensions are "
        f"never renumbered. Move it to the samples first (keys_to_samples(tensor, "
        f"'{dimension}')) to renumber it there, or number the keys apart yourself (for "
        "write_batches, in the function, from the items of each batch) and append "
        "without renumbering"
    )


def renumber_hint(sample_names: list[str]) -> str:
    """The sample dimension to renumber when batches repeat samples of these names, as
    errors advise it: ``"system"`` (featomic's batches number their systems from 0),
    else the first one."""
    return "system" if "system" in sample_names else sample_names[0]


def _stored_sample_names(nodes: dict[str, Any]) -> list[str] | None:
    """The sample names of the blocks of a store whose nodes are ``nodes``, from the
    first block's samples array; ``None`` for a store without blocks."""
    for path, document in nodes.items():
        parts = path.split("/")
        if len(parts) == 3 and parts[0] == "blocks" and parts[2] == "samples":
            return list((document.get("attributes") or {}).get("names") or [])
    return None


def _stored_key_names(nodes: dict[str, Any]) -> list[str]:
    """The key names of a store whose nodes are ``nodes``."""
    return list(((nodes.get("keys") or {}).get("attributes") or {}).get("names") or [])


def shifted(
    tensor: TensorMap, dimension: str, offset: int, origin: str = "", remedy: str = ""
) -> TensorMap:
    """``tensor`` with ``offset`` added to the sample dimension ``dimension`` of its
    blocks and of their gradients (never to a gradient's ``"sample"`` column);
    ``origin`` and ``remedy`` as in :func:`shift`."""
    from ..tensor import TensorMap

    check_dimension(dimension, tensor.sample_names, len(tensor) > 0, key_names=tensor.keys.names)
    blocks = [_block(block, dimension, offset, origin, remedy) for block in tensor.blocks()]
    return TensorMap._trusted(tensor.keys, blocks, tensor.info())


def renumbered(
    tensor: TensorMap,
    renumber: Renumber,
    existing: tuple[dict[str, Any], dict[str, Any]] | None,
    where: str,
) -> TensorMap:
    """``tensor`` renumbered for an append to the store ``where`` whose root attributes
    and nodes are ``existing`` (``None`` for a new store)."""
    if existing is not None:
        # a tensor without blocks renumbers nothing, but a name the store's samples do
        # not have is a mistake all the same, found before the batches that have blocks
        names = _stored_sample_names(existing[1])
        if names is not None:
            keys = _stored_key_names(existing[1])
            check_dimension(renumber.dimension, names, True, f"the store {where}", keys)
    offset, origin = renumber.offset, ""
    if offset == "next":
        offset = _next(existing, renumber.dimension, where)
        origin = f" (one past the largest '{renumber.dimension}' stored, for 'next')"
    return shifted(tensor, renumber.dimension, int(offset), origin)
