"""Labels repeating an entry refused by the writers, before anything is written.

Labels built with ``assume_unique=True`` are not checked, and may hold an entry twice;
a store or a metatensor file holding them can not be opened (``open_zarr`` finds the
store damaged, metatensor's and this package's ``load`` refuse the file), so
``to_zarr``, ``write_batches`` and ``save`` refuse to write them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import MetatensorDaskError
from ..labels import Labels

if TYPE_CHECKING:
    from ..block import TensorBlock
    from ..tensor import TensorMap

__all__ = ["check_unrepeated"]


def _repeat_text(what: str, labels: Labels) -> str | None:
    """The entry ``labels`` (the ``what`` of some block) hold twice, ``None`` if none."""
    entry = labels._repeated_entry()
    if entry is None:
        return None
    shown = dict(zip(labels.names, (int(v) for v in entry), strict=True))
    return f"{what} hold the entry {shown} twice"


def _block_repeat(block: TensorBlock, what: str) -> str | None:
    """The first Labels of ``block`` (named ``what``), its gradients' included, that
    hold an entry twice, with that entry; ``None`` when none does."""
    axes = [("samples", block.samples), ("properties", block.properties)]
    axes += [(f"component '{c.names[0]}'", c) for c in block.components]
    for axis, labels in axes:
        found = _repeat_text(f"the {axis} of {what}", labels)
        if found is not None:
            return found
    for parameter, gradient in block.gradients():
        found = _block_repeat(gradient, f"{what}, gradient '{parameter}'")
        if found is not None:
            return found
    return None


def _repeat(data: TensorMap | TensorBlock | Labels) -> str | None:
    """The first Labels of ``data`` that hold an entry twice, ``None`` when none does."""
    from ..block import TensorBlock  # (imported when used: a worker may not need it)

    if isinstance(data, Labels):
        return _repeat_text("the Labels", data)
    if isinstance(data, TensorBlock):
        return _block_repeat(data, "the block")
    found = _repeat_text("the keys", data.keys)
    for index, block in enumerate(data.blocks()):
        if found is not None:
            break
        found = _block_repeat(block, f"the block {_key_text(data.keys, index)}")
    return found


def _key_text(keys: Labels, index: int) -> str:
    values = keys.values[index]
    return "(" + ", ".join(f"{n}={int(v)}" for n, v in zip(keys.names, values, strict=True)) + ")"


def check_unrepeated(data: Any) -> None:
    """Refuse to write ``data`` (a map, block or Labels) if some of its Labels hold an
    entry twice, naming them, the entry and the remedy."""
    found = _repeat(data)
    if found is not None:
        raise MetatensorDaskError(
            f"{found} (Labels built with assume_unique=True are not checked): a store "
            "or file holding them could not be opened; nothing was written. Build those "
            "Labels without assume_unique=True, or keep one row per entry"
        )
