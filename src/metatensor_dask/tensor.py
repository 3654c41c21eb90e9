"""``TensorMap``: blocks indexed by key Labels, with metatensor's API."""

from __future__ import annotations

import operator
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from ._collection import ArrayContainer
from ._typing import ChunksLike, StoreLike, ZarrMode
from .block import TensorBlock, check_dtype_kind, native_dtype, short_dtype
from .errors import invalid_parameter, wrong_type
from .labels import Labels, LabelsEntry, as_core_labels, core_entries, no_dimension_note

if TYPE_CHECKING:
    from dask.delayed import Delayed

__all__ = ["TensorMap"]


def _gradient_signature(block: TensorBlock) -> list[Any]:
    return sorted(
        (
            parameter,
            gradient.samples.names,
            [c.names for c in gradient.components],
            gradient.properties.names,
            _gradient_signature(gradient),
        )
        for parameter, gradient in block.gradients()
    )


def _check_blocks(keys: Labels, blocks: list[TensorBlock]) -> None:
    """metatensor's rules across the blocks of one TensorMap (same messages)."""
    if len(blocks) != core_entries(keys):
        raise invalid_parameter(
            "expected the same number of blocks as the number of entries in the keys "
            f"({core_entries(keys)}) when creating a `TensorMap`, got {len(blocks)}"
            + no_dimension_note(keys)
        )
    if not blocks:
        return
    first = blocks[0]
    # as metatensor: the dtypes of all blocks, before their metadata
    check_dtype_kind(first.dtype)
    for block in blocks[1:]:
        check_dtype_kind(block.dtype)
        if block.dtype != first.dtype:
            raise invalid_parameter(
                "invalid tensor map: got blocks with different dtypes, at least "
                f"'{short_dtype(first.dtype)}' and '{short_dtype(block.dtype)}' were detected"
            )
    first_gradients = _gradient_signature(first)
    for block in blocks[1:]:
        if block.samples.names != first.samples.names:
            raise invalid_parameter(
                "all blocks must have the same sample dimensions, got "
                f"[{', '.join(block.samples.names)}] and [{', '.join(first.samples.names)}]"
            )
        if len(block.components) != len(first.components):
            raise invalid_parameter(
                "all blocks must contains the same set of components, the current block has "
                f"{len(block.components)} components while the first block has "
                f"{len(first.components)}"
            )
        for mine, theirs in zip(block.components, first.components, strict=True):
            if mine.names != theirs.names:
                raise invalid_parameter(
                    "all blocks must have the same component dimensions, got "
                    f"[{', '.join(mine.names)}] and [{', '.join(theirs.names)}]"
                )
        if block.properties.names != first.properties.names:
            raise invalid_parameter(
                "all blocks must have the same property dimensions, got "
                f"[{', '.join(block.properties.names)}] and "
                f"[{', '.join(first.properties.names)}]"
            )
        if _gradient_signature(block) != first_gradients:
            raise invalid_parameter(
                "all blocks must have the same set of gradients, with the same sample, "
                "property and component dimensions, and the same must be true for gradients "
                "of gradients"
            )


def is_utf8_text(text: str) -> bool:
    """Whether UTF-8 can encode ``text`` (Python strings may hold unpaired surrogates,
    which it can not)."""
    try:
        text.encode("utf8")
    except UnicodeEncodeError:
        return False
    return True


def info_problem(info: dict[str, str]) -> str:
    """Why metatensor can not hold ``info``, with the remedy; "" when it can. A key or
    value holding a NUL character (metatensor keeps info as C strings, cut at the first
    NUL: the rest would be lost silently), or text that UTF-8 can not encode (an
    unpaired surrogate, such as ``"\\ud800"``: no ``info.json`` could hold it)."""
    for key, value in info.items():
        for what, text in (("key", key), ("value", value)):
            if "\0" in text:
                return (
                    f"the info {what} {text!r} holds a NUL character, which metatensor "
                    "cuts the text at (its load fails on a file holding one): remove it "
                    "(or encode the text, e.g. as base64)"
                )
            if not is_utf8_text(text):
                return (
                    f"the info {what} {text!r} holds an unpaired surrogate, which UTF-8 "
                    "can not encode, so no file could hold it: give valid Unicode text "
                    "(e.g. decode bytes with errors='replace')"
                )
    return ""


class TensorMap(ArrayContainer):
    """Blocks of data, each identified by one entry of ``keys``.

    Parameters
    ----------
    keys
        One entry per block.
    blocks
        Blocks with the same sample, component and property names, dtype and
        gradients. They are not consumed (metatensor releases them): the map holds
        views of them.
    """

    __slots__ = ("_blocks", "_info", "_keys")

    def __init__(self, keys: Labels, blocks: Sequence[TensorBlock]):
        if not isinstance(keys, Labels):
            raise wrong_type(f"`keys` must be metatensor Labels, not {type(keys)}", keys)
        blocks = list(blocks)
        for block in blocks:
            if not isinstance(block, TensorBlock):
                raise wrong_type(
                    f"`blocks` elements must be metatensor TensorBlock, not {type(block)}", block
                )
            if block._gradient_path:
                raise ValueError(
                    "a gradient block can not be used as a block of a TensorMap; "
                    "use `gradient.copy()` to make it a block of its own"
                )
        _check_blocks(keys, blocks)
        self._init(as_core_labels(keys), [block._as_view() for block in blocks], {})

    def _init(self, keys: Labels, blocks: list[TensorBlock], info: dict[str, str]) -> None:
        self._keys = keys
        self._blocks = blocks
        self._info = dict(info)

    @classmethod
    def _trusted(
        cls, keys: Labels, blocks: list[TensorBlock], info: dict[str, str] | None = None
    ) -> TensorMap:
        """A map from parts already known to be consistent: no checks."""
        tensor = cls.__new__(cls)
        tensor._init(keys, [b if b.is_view else b._as_view() for b in blocks], info or {})
        return tensor

    # -- metadata ---------------------------------------------------------------------

    @property
    def keys(self) -> Labels:
        """One entry per block."""
        return self._keys

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def sample_names(self) -> list[str]:
        return self._blocks[0].samples.names if self._blocks else []

    @property
    def component_names(self) -> list[str]:
        return [c.names[0] for c in self._blocks[0].components] if self._blocks else []

    @property
    def property_names(self) -> list[str]:
        return self._blocks[0].properties.names if self._blocks else []

    @property
    def dtype(self) -> np.dtype | None:
        return self._blocks[0].dtype if self._blocks else None

    @property
    def device(self) -> str:
        return "cpu"

    @property
    def is_view(self) -> bool:
        return False

    # -- info ------------------------------------------------------------------------

    def set_info(self, key: str, value: str) -> None:
        """Set a global string metadata entry (saved in ``info.json``).

        A NUL character is refused: metatensor keeps info as C strings, cut at the
        first NUL, so the rest would be lost silently there. So is text that UTF-8 can
        not encode (an unpaired surrogate such as ``"\\ud800"``), as metatensor does:
        ``info.json`` could not hold it."""
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError("TensorMap info keys and values must be strings")
        problem = info_problem({key: value})
        if problem:
            raise ValueError(problem)
        self._info[str(key)] = str(value)  # numpy strings become str, as in metatensor
        self._forget()

    def get_info(self, key: str) -> str | None:
        """A global metadata entry, or ``None``."""
        if not isinstance(key, str):
            raise TypeError(f"TensorMap info keys must be strings, got {type(key)}")
        return self._info.get(key)

    def info(self) -> dict[str, str]:
        """All global metadata entries."""
        return dict(self._info)

    # -- blocks -----------------------------------------------------------------------

    def block_by_id(self, index: int) -> TensorBlock:
        """The block at position ``index`` (negative indices count from the end): an
        integer, a numpy integer or a 0-D integer array, as metatensor takes."""
        index = _block_position(index)
        if not -len(self) <= index < len(self):
            raise IndexError(
                f"block index out of bounds: we have {len(self)} blocks but the index is {index}"
            )
        return self._blocks[index]

    def blocks_by_id(self, indices: Sequence[int]) -> list[TensorBlock]:
        return [self.block_by_id(i) for i in indices]

    def _selection_labels(self, selection: Any, kwargs: dict[str, Any]) -> Labels:
        if selection is None:
            selection = kwargs
        if isinstance(selection, LabelsEntry):
            return Labels(selection.names, selection.values[None, :])
        if isinstance(selection, Labels):
            return selection
        if isinstance(selection, dict):
            values = np.array(
                [[_selection_value(name, value) for name, value in selection.items()]], np.int32
            ).reshape(1, -1)
            return Labels(list(selection), values)
        raise wrong_type(f"invalid type for block selection: {type(selection)}", selection)

    def _matching(self, selection: Any, kwargs: dict[str, Any]) -> tuple[np.ndarray, Labels]:
        """The positions of the blocks matching ``selection`` (or ``kwargs``), and the
        selection as Labels; its type, names and values are checked even when there
        are no blocks, as metatensor does."""
        labels = self._selection_labels(selection, kwargs)
        matches = self._keys.select(labels).astype(np.int64)
        if len(labels) == 0 and self._blocks:
            # metatensor fails here with an IndexError of numpy
            raise ValueError(
                f"the selection has no entries (Labels of {labels.names}): give the key "
                "values of the blocks to select, one entry per block"
            )
        return matches, labels

    def block(self, selection: Any = None, **kwargs: Any) -> TensorBlock:
        """The one block selected by position, dict, keywords, Labels or LabelsEntry."""
        _check_one_selection(selection, kwargs)
        if isinstance(selection, (int, np.integer)) and not isinstance(selection, bool):
            return self.block_by_id(int(selection))
        if not kwargs and (selection is None or (isinstance(selection, dict) and not selection)):
            return self._only_block()
        matches, labels = self._matching(selection, kwargs)
        if not self._blocks:
            raise ValueError("there are no blocks in this TensorMap")
        text = _selection_text(labels)
        if len(matches) == 0:
            raise ValueError(f"couldn't find any block matching {text}")
        if len(matches) > 1:
            raise ValueError(
                f"more than one block matched {text}, use `TensorMap.blocks` to get all of them"
            )
        return self._blocks[matches[0]]

    def _only_block(self) -> TensorBlock:
        """The block selected by ``block()`` or ``block({})``: as metatensor, an empty
        selection matches every block, so the map must hold exactly one."""
        if not self._blocks:
            raise ValueError("there are no blocks in this TensorMap")
        if len(self._blocks) == 1:
            return self._blocks[0]
        raise ValueError(
            "`block()` without a selection (or with an empty one) needs a TensorMap with a "
            f"single block, this one has {len(self._blocks)}: select one by position, dict, "
            "keywords, Labels or LabelsEntry, or use `blocks()` to get all of them"
        )

    def blocks(self, selection: Any = None, **kwargs: Any) -> list[TensorBlock]:
        """Every block matching the selection (all blocks without one); a sequence of
        integers selects by position."""
        _check_one_selection(selection, kwargs)
        if selection is None and not kwargs:
            return list(self._blocks)
        if isinstance(selection, (int, np.integer)) and not isinstance(selection, bool):
            return [self.block_by_id(int(selection))]
        if isinstance(selection, np.ndarray) and selection.ndim != 1:
            raise TypeError(
                f"invalid type for block selection: an array of {selection.ndim} "
                "dimensions; give the positions as a 1-D array or a list, or one position "
                "as an integer"
            )
        if isinstance(selection, (list, tuple, np.ndarray)):
            return self.blocks_by_id(list(selection))
        matches, labels = self._matching(selection, kwargs)
        if not self._blocks:
            return []
        if len(matches) == 0:
            raise ValueError(f"Couldn't find any block matching '{_selection_text(labels)}'")
        return [self._blocks[i] for i in matches]

    def __getitem__(self, selection: Any) -> TensorBlock:
        return self.block(selection)

    def __iter__(self) -> Iterator[TensorBlock]:
        return iter(self._blocks)

    def __contains__(self, block: object) -> bool:
        """Whether ``block`` is, or equals, one of the blocks: ``in`` looks among the
        blocks, as iteration does. A key is looked for in the keys, ``key in
        tensor.keys``."""
        if not isinstance(block, TensorBlock):
            raise wrong_type(
                f"`in` looks for a TensorBlock among the blocks of a TensorMap, got "
                f"{type(block)}; to look for a key, use `key in tensor.keys`",
                block,
            )
        return any(candidate is block or candidate == block for candidate in self._blocks)

    def items(self) -> Iterator[tuple[LabelsEntry, TensorBlock]]:
        """``(key, block)`` pairs in key order."""
        for i, block in enumerate(self._blocks):
            yield self._keys.entry(i), block

    # -- moving metadata (see metatensor_dask.operations._keys_to) ---------------------

    def keys_to_samples(
        self,
        keys_to_move: str | Sequence[str] | Labels,
        *,
        fill_value: float = 0.0,
        sort_samples: bool = True,
    ) -> TensorMap:
        """Merge blocks along samples, moving ``keys_to_move`` to the end of the sample
        names; see :func:`metatensor_dask.keys_to_samples`."""
        from .operations._keys_to import keys_to_samples

        return keys_to_samples(self, keys_to_move, fill_value=fill_value, sort_samples=sort_samples)

    def keys_to_properties(
        self,
        keys_to_move: str | Sequence[str] | Labels,
        *,
        fill_value: float = 0.0,
        sort_samples: bool = True,
    ) -> TensorMap:
        """Merge blocks along properties, moving ``keys_to_move`` to the start of the
        property names; see :func:`metatensor_dask.keys_to_properties`."""
        from .operations._keys_to import keys_to_properties

        return keys_to_properties(
            self, keys_to_move, fill_value=fill_value, sort_samples=sort_samples
        )

    def components_to_properties(self, dimensions: str | Sequence[str]) -> TensorMap:
        """Move component dimensions to the properties; see
        :func:`metatensor_dask.components_to_properties`."""
        from .operations._keys_to import components_to_properties

        return components_to_properties(self, dimensions)

    # -- copies -----------------------------------------------------------------------

    def copy(self, deep: bool = True) -> TensorMap:
        """A new map (``deep`` copies numpy arrays; dask arrays are always shared)."""
        blocks = [b.copy(deep)._as_view() for b in self._blocks]
        return TensorMap._trusted(self._keys, blocks, self._info)

    def __copy__(self) -> TensorMap:
        return self.copy(deep=False)

    def __deepcopy__(self, memo: dict) -> TensorMap:
        return self.copy(deep=True)

    def __reduce__(self) -> tuple[Any, ...]:
        # the blocks, unpickled as blocks of their own, are views inside the map again
        return (TensorMap._trusted, (self._keys, self._blocks, self._info))

    def to(self, *args: Any, **kwargs: Any) -> TensorMap:
        """A map with every block cast to a dtype, given positionally or as ``dtype=``
        as in metatensor; the device is always the cpu."""
        from ._to_arguments import to_arguments

        dtype = to_arguments("`TensorMap.to`", args, kwargs)
        if dtype is not None:
            # tiny blocks are cast by a few grouped tasks
            from .operations._cast import cast

            return cast(self, native_dtype(dtype))
        blocks = [b.to(dtype=dtype) for b in self._blocks]
        return TensorMap._trusted(self._keys, blocks, self._info)

    def to_zarr(
        self,
        store: StoreLike,
        mode: ZarrMode | None = None,
        *,
        compute: bool = True,
        resume: bool = False,
        chunks: ChunksLike = None,
        storage_options: dict[str, Any] | None = None,
        append_dim: str | None = None,
        renumber: dict[str, int | str] | None = None,
    ) -> Delayed | None:
        """Write this tensor to a Zarr store; see :func:`metatensor_dask.to_zarr`."""
        from .io.zarr_write import to_zarr

        return to_zarr(
            self,
            store,
            mode,
            compute=compute,
            resume=resume,
            chunks=chunks,
            storage_options=storage_options,
            append_dim=append_dim,
            renumber=renumber,
        )

    # -- files (see metatensor_dask.io) ------------------------------------------------

    def save(self, file: str | os.PathLike | BinaryIO, use_numpy: bool = False) -> None:
        """Write this tensor to ``file`` as ``metatensor.save`` does (the same bytes,
        whatever ``use_numpy``), computing chunk by chunk; see
        :func:`metatensor_dask.save`."""
        from .io.mts import save

        save(file, self)

    @staticmethod
    def load(file: str | os.PathLike, use_numpy: bool = False) -> TensorMap:
        """A tensor written by ``metatensor.save``, whose values are read lazily; see
        :func:`metatensor_dask.load`."""
        from .io.mts import load

        return load(file)

    def save_buffer(self, use_numpy: bool = False) -> memoryview:
        """The bytes of :meth:`save`, in memory (computed, through metatensor-core)."""
        from .io.convert import save_buffer

        return save_buffer(self)

    @staticmethod
    def load_buffer(buffer: bytes | bytearray | memoryview, use_numpy: bool = False) -> TensorMap:
        """A tensor from the bytes of :meth:`save_buffer` (through metatensor-core)."""
        from .io.convert import read_buffer

        return read_buffer("TensorMap", buffer)

    # -- dask collection --------------------------------------------------------------

    def _raw_arrays(self) -> list[Any]:
        arrays = self._once("arrays", self._collected_arrays)
        return list(arrays)

    def _collected_arrays(self) -> list[Any]:
        arrays: list[Any] = []
        for block in self._blocks:
            block._collect_arrays(arrays)
        return arrays

    def _with_arrays(self, arrays: list[Any]) -> TensorMap:
        taken = iter(arrays)
        blocks = [block._rebuilt(taken) for block in self._blocks]
        return TensorMap._trusted(self._keys, blocks, self._info)

    def _feed_metadata(self, hasher: Any) -> None:
        hasher.update(self._keys.digest().encode())
        hasher.update(repr(sorted(self._info.items())).encode())
        hasher.update(f"|{len(self._blocks)}|".encode())
        for block in self._blocks:
            block._feed_metadata(hasher)

    # -- text ------------------------------------------------------------------------

    def print(self, max_keys: int) -> str:
        """metatensor's text for this map: the key names, then the first ``max_keys``
        keys (all when < 0), each with the shape of its block.

        ``str()`` and ``repr()`` follow the layout of metatensor's tutorial instead (see
        the data model page).
        """
        from ._format import format_tensor_as_metatensor

        return format_tensor_as_metatensor(self, max_keys)

    def __str__(self) -> str:
        from ._format import MAX_KEYS_IN_STR, format_tensor

        return format_tensor(self, MAX_KEYS_IN_STR)

    def __repr__(self) -> str:
        from ._format import array_summary, format_tensor

        return format_tensor(self, -1) + "\n" + array_summary(self._arrays())

    def _repr_html_(self) -> str:
        from ._format import tensor_html

        return tensor_html(self)

    # -- arithmetic (metatensor's operators; no reflected forms, as metatensor) ---------

    def __eq__(self, other: object) -> bool:
        from .operations import equal

        return equal(self, other)  # type: ignore[arg-type]

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __add__(self, other: Any) -> TensorMap:
        from .operations import add

        return add(self, other)

    def __sub__(self, other: Any) -> TensorMap:
        from .operations import subtract

        return subtract(self, other)

    def __mul__(self, other: Any) -> TensorMap:
        from .operations import multiply

        return multiply(self, other)

    def __matmul__(self, other: Any) -> TensorMap:
        from .operations import dot

        return dot(self, other)

    def __truediv__(self, other: Any) -> TensorMap:
        from .operations import divide

        return divide(self, other)

    def __pow__(self, other: Any) -> TensorMap:
        from .operations import pow

        return pow(self, other)

    def __neg__(self) -> TensorMap:
        from .operations import multiply

        return multiply(self, -1)

    def __pos__(self) -> TensorMap:
        return self

    __hash__ = None  # type: ignore[assignment]


def _check_one_selection(selection: Any, kwargs: dict[str, Any]) -> None:
    """A selection comes as an argument or as keywords (metatensor ignores the keywords
    given with an argument)."""
    if selection is not None and kwargs:
        raise ValueError(
            "give the selection either as an argument or as keywords, not both: got "
            f"a {type(selection).__name__} and the keywords {', '.join(kwargs)}"
        )


def _block_position(index: Any) -> int:
    """``index`` as a block position: what ``operator.index`` takes (integers, numpy
    integers, 0-D integer arrays), but not a bool."""
    if not isinstance(index, bool):
        try:
            return operator.index(index)
        except TypeError:
            pass
    raise TypeError(f"block index must be an integer, got {type(index)}")


def _selection_value(name: str, value: Any) -> int:
    """One value of a dict or keyword selection: an integer, or (as metatensor) an
    integer numpy array of one value; booleans are 0 and 1, numpy's as Python's."""
    if isinstance(value, np.ndarray) and value.size == 1 and value.ndim <= 1:
        value = value.reshape(())[()]
    if not isinstance(value, (int, np.integer, np.bool_)):
        raise TypeError(
            f"expected integer values in selection, got {name}={value} of type {type(value)}"
        )
    return int(value)


def _selection_text(labels: Labels) -> str:
    if len(labels) == 1:
        return labels.entry(0).print()
    return ", ".join(entry.print() for entry in labels)
