"""``TensorBlock``: one dask array of values with its Labels, and explicit gradients."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO

import dask.array as da
import numpy as np

from . import _graph
from ._collection import ArrayContainer, GroupItem
from .errors import MetatensorDaskError, MetatensorError, invalid_parameter, wrong_type
from .labels import Labels, as_core_labels, core_entries, no_dimension_note

__all__ = ["TensorBlock"]


def short_dtype(dtype: np.dtype) -> str:
    """metatensor's dtype spelling in messages: ``'f64'``, ``'i32'``, ``'bool'``..."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return "bool"
    return {"c": "complex"}.get(dtype.kind, dtype.kind) + str(8 * dtype.itemsize)


# numpy kinds of the dtypes metatensor holds (DLPack's bool, int, uint, float, complex)
NUMERIC_KINDS = "biufc"


def check_dtype_kind(dtype: np.dtype) -> None:
    """Refuse, as metatensor does, values that are not numbers (objects, strings,
    dates, raw bytes): a map or a gradient can not hold them.

    Raises
    ------
    ValueError
        metatensor's error, naming the numpy kind and dtype.
    """
    if dtype.kind not in NUMERIC_KINDS:
        raise ValueError(f"unsupported numpy dtype kind: '{dtype.kind}' ({dtype})")


def native_dtype(dtype: Any) -> np.dtype:
    """``dtype`` in the machine's byte order (metatensor tells dtypes apart by kind and
    size only, as DLPack does, so ``>f8`` is its ``f64``)."""
    dtype = np.dtype(dtype)
    if dtype.kind in NUMERIC_KINDS and not dtype.isnative:
        return dtype.newbyteorder("=")
    return dtype


def as_block_array(values: Any) -> Any:
    """A dask array for the values of a new block; numpy input becomes one chunk.

    Numbers of the other byte order are held in the machine's (a copy), as stores and
    files give them: a block's dtype then compares equal to metatensor's same dtype.
    """
    native = native_dtype(values.dtype) if isinstance(values, (da.Array, np.ndarray)) else None
    if isinstance(values, da.Array):
        return values if native == values.dtype else values.astype(native)
    if isinstance(values, np.ndarray):
        return _graph.in_memory_array(values if native == values.dtype else values.astype(native))
    raise TypeError(
        f"`values` must be a dask or numpy array, got {type(values)}; "
        "wrap other data with numpy.asarray or dask.array.from_array"
    )


def _check_labels(value: Any, what: str) -> Labels:
    if not isinstance(value, Labels):
        raise wrong_type(f"`{what}` must be metatensor Labels, not {type(value)}", value)
    return value


class TensorBlock(ArrayContainer):
    """Values with samples, components and properties Labels, and forward gradients.

    Parameters
    ----------
    values
        A dask array, or a numpy array (wrapped into a single-chunk dask array), of
        shape ``(len(samples), *map(len, components), len(properties))``.
    samples
        One entry per row of ``values``.
    components
        One single-dimension, non-empty Labels per intermediate axis.
    properties
        One entry per column of ``values`` (last axis).

    Notes
    -----
    Blocks are immutable in practice: dask arrays cannot be written in place. Nothing is
    consumed: ``add_gradient`` and ``TensorMap(...)`` keep what they are given usable,
    where metatensor releases it. ``compute()`` returns a block holding numpy arrays.

    A gradient whose rows are grouped by their ``"sample"`` (non-decreasing, as
    featomic writes them) has a row pointer (:attr:`row_pointer`, attached with
    :meth:`set_row_pointer`), with which operations pair each values chunk with its
    gradient rows without reading sample labels.
    """

    __slots__ = (
        "_components",
        "_gradient_path",
        "_gradients",
        "_is_view",
        "_properties",
        "_row_pointer",
        "_samples",
        "_values",
    )

    def __init__(
        self,
        values: Any,
        samples: Labels,
        components: Sequence[Labels],
        properties: Labels,
    ):
        samples = _check_labels(samples, "samples")
        properties = _check_labels(properties, "properties")
        components = list(components)
        for component in components:
            if not isinstance(component, Labels):
                raise wrong_type(
                    f"`components` elements must be metatensor Labels, not {type(component)}",
                    component,
                )
        values = as_block_array(values)
        _check_known_shape(values.shape)
        _check_shape(values.shape, samples, components, properties)
        self._init(values, as_core_labels(samples), components, as_core_labels(properties))

    def _init(
        self,
        values: Any,
        samples: Labels,
        components: Sequence[Labels],
        properties: Labels,
        gradients: dict[str, TensorBlock] | None = None,
        path: tuple[str, ...] = (),
        row_pointer: np.ndarray | None = None,
    ) -> None:
        # dask arrays are held as the seam's BlockValues, so that the tutorial's
        # ``values[rows, None, :]`` works on any chunking (a view, made once)
        self._values = _graph.block_values(values)
        self._samples = samples
        # a tuple, shared by the blocks derived from this one (not a list per block)
        self._components = tuple(components)
        self._properties = properties
        self._gradients: dict[str, TensorBlock] = dict(gradients or {})
        self._gradient_path = path
        self._is_view = bool(path)
        self._row_pointer = row_pointer

    @classmethod
    def _trusted(
        cls,
        values: Any,
        samples: Labels,
        components: Sequence[Labels],
        properties: Labels,
        gradients: dict[str, TensorBlock] | None = None,
        row_pointer: np.ndarray | None = None,
        path: tuple[str, ...] = (),
    ) -> TensorBlock:
        """A block from parts already known to be consistent: no wrapping, and no checks
        but the uniqueness of the component names.

        ``gradients`` are attached as they are: a gradient made for its place (``path``
        ``(parameter,)``, see below) is taken itself, any other block as a copy marked
        as a gradient. ``row_pointer`` is this block's CSR row pointer over its parent's
        rows when it is a gradient (see :func:`metatensor_dask._partition.row_pointer`),
        and ``path`` its place when it is made to be the gradient of a new block
        (``(parameter,)``): maps of many blocks then build each gradient once.
        """
        if len(components) > 1:
            # operations that rename or add components build their names from the user's
            _check_unique_components(components)
        block = cls.__new__(cls)
        if row_pointer is not None and row_pointer.flags.writeable:
            row_pointer = row_pointer.view()
            row_pointer.flags.writeable = False
        block._init(values, samples, components, properties, path=path, row_pointer=row_pointer)
        for parameter, gradient in (gradients or {}).items():
            # a pointer over other value rows (an operation's input's) would be written
            # to stores that opening then refuses as damaged
            pointer = gradient._row_pointer
            assert pointer is None or len(pointer) == len(samples) + 1, (
                f"the row pointer of gradient '{parameter}' has {len(pointer)} entries "
                f"for {len(samples)} samples"
            )
            if gradient._gradient_path != (parameter,):
                gradient = gradient._attached((parameter,))
            block._gradients[parameter] = gradient
        return block

    def _attached(self, path: tuple[str, ...]) -> TensorBlock:
        """A shallow copy of this block marked as the gradient found at ``path``."""
        block = TensorBlock.__new__(TensorBlock)
        block._init(
            self._values,
            self._samples,
            self._components,
            self._properties,
            {p: g._attached((*path, p)) for p, g in self._gradients.items()},
            path,
            self._row_pointer,
        )
        return block

    def _as_view(self) -> TensorBlock:
        """A shallow copy that refuses new gradients (a block inside a TensorMap)."""
        block = self._attached(self._gradient_path)
        block._is_view = True
        return block

    # -- data and metadata -------------------------------------------------------------

    @property
    def values(self) -> Any:
        """The values: a dask array (a numpy array after ``compute()``)."""
        if isinstance(self._values, GroupItem):
            return self._values.array()
        return self._values

    @values.setter
    def values(self, _: Any) -> None:
        raise AttributeError(
            "Direct assignment to `values` is not possible: dask arrays are immutable. "
            "Create a new TensorBlock with the new values instead."
        )

    def _held_values(self) -> Any:
        """The values as held: a dask or numpy array, or a
        :class:`~metatensor_dask._collection.GroupItem` (whose dask array :attr:`values`
        makes), for operations that read a group's result directly."""
        return self._values

    @property
    def samples(self) -> Labels:
        """Labels of the first axis (read from the store on first use for stored blocks)."""
        return self._samples

    @property
    def components(self) -> list[Labels]:
        """Labels of the intermediate axes."""
        return list(self._components)

    @property
    def properties(self) -> Labels:
        """Labels of the last axis."""
        return self._properties

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self._values.shape)

    @property
    def dtype(self) -> np.dtype:
        return self._values.dtype

    @property
    def device(self) -> str:
        return "cpu"

    @property
    def is_view(self) -> bool:
        """Whether this block lives inside a TensorMap or another block."""
        return self._is_view

    def __len__(self) -> int:
        return len(self._samples)

    # -- gradients ---------------------------------------------------------------------

    def add_gradient(self, parameter: str, gradient: TensorBlock) -> None:
        """Attach ``gradient`` as the gradient of these values with respect to ``parameter``.

        The gradient's first sample dimension must be ``"sample"``, indexing rows of
        these values; its components are its own ones followed by exactly the values'
        components; its properties and dtype are the values'.
        """
        if self._is_view:
            raise ValueError(
                "cannot add gradient on this block since it is a view inside a TensorMap "
                "or another TensorBlock; use `block.copy()` to get a block of your own"
            )
        if not isinstance(gradient, TensorBlock):
            raise wrong_type(
                f"`gradient` must be a metatensor TensorBlock, not {type(gradient)}", gradient
            )
        if not isinstance(parameter, str):
            raise TypeError(f"`parameter` must be a string, not {type(parameter)}")
        parameter = str(parameter)  # a numpy string becomes str, as in metatensor
        if parameter in self._gradients:
            raise invalid_parameter(
                f"gradient with respect to '{parameter}' already exists for this block"
            )
        check_dtype_kind(gradient.dtype)
        check_dtype_kind(self.dtype)
        if gradient.dtype != self.dtype:
            raise invalid_parameter(
                f"the gradient values have dtype '{short_dtype(gradient.dtype)}' but the "
                f"block values have dtype '{short_dtype(self.dtype)}'"
            )
        self._check_gradient_samples(gradient._samples)
        extra = len(gradient._components) - len(self._components)
        if extra < 0:
            raise invalid_parameter(
                "gradients components should contain at least as many labels as the values "
                "components"
            )
        if gradient._properties != self._properties:
            raise invalid_parameter("gradient properties must be the same as values properties")
        for i, component in enumerate(self._components):
            if gradient._components[extra + i] != component:
                raise invalid_parameter(
                    f"gradients and values components mismatch for values component {i} "
                    f"(dimension name is '{component.names[0]}'). Components which are specific "
                    "to the gradients must come first, and be followed by the exact same "
                    "components as the values."
                )
        self._gradients[parameter] = gradient._attached((*self._gradient_path, parameter))
        self._forget()

    def _check_gradient_samples(self, samples: Labels) -> None:
        """The first dimension of a gradient's samples is ``"sample"``, and indexes rows
        of these values (metatensor's messages)."""
        names = samples.names
        if not names:
            raise invalid_parameter(
                "gradients samples must have at least one dimension, named 'sample', we got none"
            )
        if names[0] != "sample":
            raise invalid_parameter(
                f"'{names[0]}' is not valid for the first dimension in the gradients samples "
                "labels, it should be 'sample'"
            )
        column = samples.column("sample")
        if not len(column):
            return
        if column.min() < 0:
            raise invalid_parameter(
                "invalid value for the 'sample' dimension in gradient samples: all values "
                f"should be positive, but we got {column.min()}"
            )
        if column.max() >= len(self):
            raise invalid_parameter(
                "invalid value for the 'sample' dimension in gradient samples: we got "
                f"{column.max()}, but the values contain {len(self)} samples"
            )

    @property
    def row_pointer(self) -> np.ndarray | None:
        """The CSR row pointer of this gradient over its parent's value rows, or None.

        An int64 array of ``n_samples + 1`` entries (``n_samples`` rows in the values
        this block is the gradient of): the gradient rows of value row ``r`` are
        ``row_pointer[r]:row_pointer[r + 1]``. It exists only when the gradient rows are
        grouped by their ``"sample"`` (non-decreasing), and is None until it is attached
        with :meth:`set_row_pointer` (stores hold it; operations attach it when they
        first need it). The array is read-only.
        """
        return self._row_pointer

    def set_row_pointer(self, parameter: str, pointer: Any) -> None:
        """Attach the row pointer of the gradient with respect to ``parameter``.

        The pointer is checked against the shapes only (the gradient's ``"sample"``
        column is not read): it must be a 1-D integer array of ``len(self) + 1``
        entries starting at 0, non-decreasing, whose last entry is the number of
        gradient rows. Attaching it to a block inside a TensorMap is allowed: the
        pointer describes the data, it does not change it.

        Parameters
        ----------
        parameter
            Which gradient the pointer belongs to.
        pointer
            The CSR row pointer (see :attr:`row_pointer`).

        Raises
        ------
        MetatensorDaskError
            When the pointer does not fit these values and that gradient.
        """
        gradient = self.gradient(parameter)
        gradient._row_pointer = checked_row_pointer(
            pointer, self.shape[0], gradient.shape[0], parameter
        )

    def _set_checked_row_pointer(self, parameter: str, pointer: np.ndarray) -> None:
        """Attach ``pointer``, already checked by :func:`checked_row_pointer` against
        the shapes of these values and of that gradient."""
        self.gradient(parameter)._row_pointer = pointer

    def gradient(self, parameter: str) -> TensorBlock:
        """The gradient with respect to ``parameter`` (a block that refuses new gradients)."""
        if not isinstance(parameter, str):
            raise TypeError(f"`parameter` must be a string, not {type(parameter)}")
        try:
            return self._gradients[parameter]
        except KeyError:
            raise invalid_parameter(
                f"can not find gradients with respect to '{parameter}' in this block"
            ) from None

    def gradients_list(self) -> list[str]:
        """Names of the gradients, in the order they were added."""
        return list(self._gradients)

    def has_gradient(self, parameter: str) -> bool:
        return parameter in self._gradients

    def gradients(self) -> Iterator[tuple[str, TensorBlock]]:
        """``(parameter, gradient)`` pairs, in the order they were added."""
        yield from self._gradients.items()

    # -- copies and conversions -------------------------------------------------------

    def copy(self, deep: bool = True) -> TensorBlock:
        """A new block that accepts new gradients; ``deep`` copies numpy arrays (dask
        arrays are immutable and always shared)."""
        arrays = self._raw_arrays()
        if deep:
            arrays = [a.copy() if isinstance(a, np.ndarray) else a for a in arrays]
        return self._with_arrays(arrays)._attached(())

    def __copy__(self) -> TensorBlock:
        return self.copy(deep=False)

    def __deepcopy__(self, memo: dict) -> TensorBlock:
        return self.copy(deep=True)

    def __reduce__(self) -> tuple[Any, ...]:
        # as metatensor's: the block unpickled is a block of its own, to which gradients
        # can be added, also when this one is a view inside a map or another block
        state = (self._values, self._samples, self._components, self._properties)
        return (_unpickled_block, (*state, self._gradients, self._row_pointer))

    def to(self, *args: Any, **kwargs: Any) -> TensorBlock:
        """A block with values and gradients cast to a dtype, given positionally or as
        ``dtype=`` as in metatensor; the device is always the cpu."""
        from ._to_arguments import to_arguments

        dtype = to_arguments("`TensorBlock.to`", args, kwargs)
        if dtype is None:
            return self
        dtype = native_dtype(dtype)
        return self._with_arrays([a.astype(dtype) for a in self._arrays()])

    def to_xarray(self) -> Any:
        """The values as a lazy ``xarray.DataArray`` (xarray is an optional dependency).

        Dimensions are ``samples``, the component names and ``properties``; samples and
        properties are indexed by a pandas MultiIndex whose levels are the Labels names
        (``array.sel(system=0)``), components by plain index coordinates. The data is
        this block's dask array: building the DataArray computes no values (it reads
        the sample labels). Gradients are blocks of their own: convert them with
        ``block.gradient(name).to_xarray()``.

        Returns
        -------
        xarray.DataArray
        """
        from ._xarray import block_to_xarray

        return block_to_xarray(self)

    # -- files (see metatensor_dask.io) ------------------------------------------------

    def save(self, file: str | os.PathLike | BinaryIO, use_numpy: bool = False) -> None:
        """Write this block to ``file`` as ``metatensor.save`` does (the same bytes,
        whatever ``use_numpy``), computing chunk by chunk; see
        :func:`metatensor_dask.save`."""
        from .io.mts import save

        save(file, self)

    @staticmethod
    def load(file: str | os.PathLike, use_numpy: bool = False) -> TensorBlock:
        """A block written by ``metatensor.save``, whose values are read lazily; see
        :func:`metatensor_dask.load_block`."""
        from .io.mts import load_block

        return load_block(file)

    def save_buffer(self, use_numpy: bool = False) -> memoryview:
        """The bytes of :meth:`save`, in memory (computed, through metatensor-core)."""
        from .io.convert import save_buffer

        return save_buffer(self)

    @staticmethod
    def load_buffer(buffer: bytes | bytearray | memoryview, use_numpy: bool = False) -> TensorBlock:
        """A block from the bytes of :meth:`save_buffer` (through metatensor-core)."""
        from .io.convert import read_buffer

        return read_buffer("TensorBlock", buffer)

    # -- dask collection ---------------------------------------------------------------

    def _raw_arrays(self) -> list[Any]:
        arrays: list[Any] = []
        self._collect_arrays(arrays)
        return arrays

    def _collect_arrays(self, arrays: list[Any]) -> None:
        """Append the values, then each gradient's arrays, to ``arrays``."""
        arrays.append(self._values)
        for gradient in self._gradients.values():
            gradient._collect_arrays(arrays)

    def _with_arrays(self, arrays: list[Any], view: bool | None = None) -> TensorBlock:
        """This block holding ``arrays`` (those of :meth:`_raw_arrays`, in order); a view
        (inside a map) when ``view``, as this block when None."""
        return self._rebuilt(iter(arrays), view)

    def _rebuilt(self, arrays: Iterator[Any], view: bool | None = None) -> TensorBlock:
        """As :meth:`_with_arrays`, taking this block's arrays from ``arrays`` (one
        iterator over the arrays of many blocks: no count nor slice per block)."""
        block = TensorBlock.__new__(TensorBlock)
        values = next(arrays)
        gradients = {p: g._rebuilt(arrays) for p, g in self._gradients.items()}
        block._init(
            values,
            self._samples,
            self._components,
            self._properties,
            gradients,
            self._gradient_path,
            self._row_pointer,
        )
        block._is_view = self._is_view if view is None else view
        return block

    def _feed_metadata(self, hasher: Any) -> None:
        hasher.update(self._metadata_text().encode())

    def _metadata_text(self) -> str:
        """The metadata of this block and its gradients as one string (one update of a
        hasher per block, not one per Labels)."""
        parts = [repr(self._samples._token()), str(len(self._components))]
        parts += [component.digest() for component in self._components]
        parts += [self._properties.digest(), str(len(self._gradients))]
        for parameter, gradient in self._gradients.items():
            parts += [repr(parameter), gradient._metadata_text()]
        return "|".join(parts)

    # -- text and comparisons ----------------------------------------------------------

    def __str__(self) -> str:
        from ._format import format_block

        return format_block(self)

    def __repr__(self) -> str:
        from ._format import array_summary, format_block

        return format_block(self) + "\n    " + array_summary(self._arrays())

    def _repr_html_(self) -> str:
        from ._format import block_html

        return block_html(self)

    def __eq__(self, other: object) -> bool:
        from .operations import equal_block

        return equal_block(self, other)  # type: ignore[arg-type]

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = None  # type: ignore[assignment]


def _unpickled_block(
    values: Any,
    samples: Labels,
    components: Sequence[Labels],
    properties: Labels,
    gradients: dict[str, TensorBlock],
    row_pointer: np.ndarray | None,
) -> TensorBlock:
    """A block of its own holding what ``TensorBlock.__reduce__`` gave, its gradients
    attached to it again."""
    block = TensorBlock.__new__(TensorBlock)
    attached = {p: g._attached((p,)) for p, g in gradients.items()}
    block._init(values, samples, components, properties, attached, (), row_pointer)
    return block


def _check_known_shape(shape: tuple[float, ...]) -> None:
    """dask gives ``nan`` for sizes it can not know before computing (after indexing
    by a boolean mask, for example); metatensor's shape checks need them."""
    for axis, size in enumerate(shape):
        if math.isnan(size):
            raise MetatensorDaskError(
                f"the values have an unknown size along axis {axis} (a dask array indexed "
                "by a boolean mask, or the output of a function whose size dask can not "
                "know): call `values.compute_chunk_sizes()` before building the block"
            )


def _repeated_components() -> MetatensorError:
    return invalid_parameter(
        "invalid block: some of the component dimensions appear more than once in component labels"
    )


def _check_unique_components(components: Sequence[Labels]) -> None:
    """Each component dimension appears once (metatensor's message)."""
    names = [component.names[0] for component in components]
    if len(set(names)) != len(names):
        raise _repeated_components()


def _check_shape(
    shape: tuple[int, ...], samples: Labels, components: list[Labels], properties: Labels
) -> None:
    """metatensor's rules for values against labels, in its order and with its messages:
    the shape against every Labels first, then the component Labels themselves."""
    if len(shape) != len(components) + 2:
        raise invalid_parameter(
            f"invalid block: the values have {len(shape)} dimensions, but we have "
            f"{len(components) + 2} separate labels (1 for samples, {len(components)} for "
            "components and 1 for properties)"
        )
    if shape[0] != core_entries(samples):
        raise invalid_parameter(
            f"invalid block: the values shape along axis 0 is {shape[0]} but we have "
            f"{core_entries(samples)} sample label entries" + no_dimension_note(samples)
        )
    if len({tuple(component.names) for component in components}) != len(components):
        raise _repeated_components()
    for axis, component in enumerate(components, start=1):
        if shape[axis] != core_entries(component):
            raise invalid_parameter(
                f"invalid block: the values shape along axis {axis} is {shape[axis]} but we "
                f"have {core_entries(component)} entries for the corresponding component"
            )
    if shape[-1] != core_entries(properties):
        raise invalid_parameter(
            f"invalid block: the values shape along axis {len(shape) - 1} is {shape[-1]} but "
            f"we have {core_entries(properties)} property label entries"
            + no_dimension_note(properties)
        )
    for i, component in enumerate(components):
        if len(component.names) != 1:
            raise invalid_parameter(
                f"component labels must have a single dimension, got {len(component.names)}: "
                f"[{', '.join(component.names)}] for component {i}"
            )
        if len(component) == 0:
            raise invalid_parameter(
                f"component '{component.names[0]}' must contain at least one entry, got 0"
            )


def checked_row_pointer(pointer: Any, n_samples: int, n_rows: int, parameter: str) -> np.ndarray:
    """``pointer`` as a read-only int64 array, after checking that it is the row
    pointer of a gradient of ``n_rows`` rows over ``n_samples`` value rows."""
    array = np.asarray(pointer)
    problem = None
    if array.ndim != 1 or array.dtype.kind not in "iu":
        problem = f"it must be a 1-D integer array, got {array.dtype} of shape {array.shape}"
    elif len(array) != n_samples + 1:
        problem = (
            f"it must have {n_samples + 1} entries (one more than the samples), got {len(array)}"
        )
    elif array[0] != 0 or array[-1] != n_rows:
        problem = (
            f"it must start at 0 and end at the {n_rows} gradient rows, "
            f"got {array[0]} and {array[-1]}"
        )
    elif np.any(array[1:] < array[:-1]):
        problem = "its entries must be non-decreasing"
    if problem is not None:
        raise MetatensorDaskError(
            f"invalid row pointer for the '{parameter}' gradient: {problem}; build it with "
            "numpy.searchsorted(sample_column, numpy.arange(n_samples + 1)) from the "
            "gradient's sorted 'sample' column"
        )
    view = array.astype(np.int64, copy=False).view()
    view.flags.writeable = False
    return view
