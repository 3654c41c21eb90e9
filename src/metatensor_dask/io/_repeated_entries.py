"""Labels repeating an entry refused by the writers, before anything is written.

Labels built with ``assume_unique=True`` are not checked, and may hold an entry twice;
a store or a metatensor file holding them can not be opened (``open_zarr`` finds the
store damaged, metatensor's and this package's ``load`` refuse the file), so
``to_zarr``, ``write_batches`` and ``save`` refuse to write them. Only Labels built so
are read (others are unique by construction): the walk over a map of many blocks costs
a few attribute reads a Labels, and the text naming them is made only when one repeats.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ..errors import MetatensorDaskError
from ..labels import Labels

if TYPE_CHECKING:
    from ..block import TensorBlock

__all__ = ["check_unrepeated"]

#: Labels, and a function naming them (called only when they repeat an entry).
_Named = tuple[Labels, Callable[[], str]]


def _block_labels(block: TensorBlock, what: Callable[[], str]) -> Iterator[_Named]:
    """The Labels of ``block`` (named ``what()``), its gradients' included."""
    yield block.samples, lambda: f"the samples of {what()}"
    for component in block.components:
        yield component, _named(f"the component '{component.names[0]}' of ", what)
    yield block.properties, lambda: f"the properties of {what()}"
    for parameter, gradient in block.gradients():
        yield from _block_labels(gradient, _named("", what, f", gradient '{parameter}'"))


def _labels(data: Any) -> Iterator[_Named]:
    """Every Labels of ``data`` (a map, also one of metatensor-core seen through
    ``ingest_core.core_view``, a block, or Labels) with the function naming them."""
    # a block of this package exists only once its module is imported: a worker writing
    # metatensor-core batches does not import it (nor dask.array, which it imports)
    blocks = sys.modules.get("metatensor_dask.block")
    if isinstance(data, Labels):
        yield data, lambda: "the Labels"
    elif blocks is not None and isinstance(data, blocks.TensorBlock):
        yield from _block_labels(data, lambda: "the block")
    else:
        yield data.keys, lambda: "the keys"
        for index, block in enumerate(data.blocks()):
            yield from _block_labels(block, _block_name(data.keys, index))


def _named(before: str, what: Callable[[], str], after: str = "") -> Callable[[], str]:
    """Names ``before``, ``what()`` and ``after`` joined, when called."""
    return lambda: before + what() + after


def _block_name(keys: Labels, index: int) -> Callable[[], str]:
    """Names the block of the key ``index`` of ``keys``, when called."""

    def name() -> str:
        values = keys.values[index]
        pairs = ", ".join(f"{n}={int(v)}" for n, v in zip(keys.names, values, strict=True))
        return f"the block ({pairs})"

    return name


def check_unrepeated(data: Any) -> None:
    """Refuse to write ``data`` (a map, block or Labels) if some of its Labels hold an
    entry twice, naming them, the entry and the remedy."""
    for labels, what in _labels(data):
        entry = labels._repeated_entry()
        if entry is not None:
            shown = dict(zip(labels.names, (int(v) for v in entry), strict=True))
            raise MetatensorDaskError(
                f"{what()} hold the entry {shown} twice (Labels built with "
                "assume_unique=True are not checked): a store or file holding them could "
                "not be opened; nothing was written. Build those Labels without "
                "assume_unique=True, or keep one row per entry"
            )
