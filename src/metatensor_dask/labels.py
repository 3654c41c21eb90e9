"""``Labels`` and ``LabelsEntry``: named int32 metadata, with metatensor's semantics.

Labels are always small next to the data they describe, so they live in numpy. The one
exception is the sample labels of a block read from a store, which can hold millions of
entries: such Labels are *lazy* (:meth:`Labels.lazy`) and read their entries the first
time something needs them, while ``names`` and ``len()`` are known from the start.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, BinaryIO

import numpy as np

from .errors import invalid_parameter, wrong_type

__all__ = ["Labels", "LabelsEntry"]

_INT32 = np.iinfo(np.int32)


def _check_name(name: Any) -> str:
    if not isinstance(name, str):
        raise TypeError(f"Labels names must be strings, got {type(name)} instead")
    if not name.isidentifier() or not name.isascii():
        raise invalid_parameter(f"'{name}' is not a valid label name")
    return str(name)  # a numpy string becomes str, as metatensor's names are


def _names_list(names: str | Sequence[str]) -> list[str]:
    """``names`` as a list of strings; their validity is checked by :func:`_parse_names`."""
    if isinstance(names, str):
        return [names] if names else []
    try:
        listed = list(names)
    except TypeError:
        raise TypeError(
            f"Labels names must be a sequence of strings, got {type(names)} instead"
        ) from None
    for name in listed:
        if not isinstance(name, str):
            raise TypeError(f"Labels names must be strings, got {type(name)} instead")
    return listed


def _parse_names(names: str | Sequence[str]) -> list[str]:
    parsed = [_check_name(name) for name in _names_list(names)]
    check_unique_names(parsed)
    return parsed


def check_unique_names(names: list[str]) -> None:
    """Refuse a dimension named twice in ``names``, with metatensor's error, which
    names the first of the names that appear more than once."""
    if len(set(names)) == len(names):
        return
    repeated = next(name for name in names if names.count(name) > 1)
    raise invalid_parameter(f"label dimensions must be unique, got '{repeated}' multiple times")


def _values_array(values: Any) -> np.ndarray:
    """``numpy.asarray`` of the values given to ``Labels``, naming the problem where rows
    of other lengths (an entry with a missing value) make no array."""
    try:
        return np.asarray(values)
    except ValueError as error:  # numpy's "inhomogeneous shape"
        raise ValueError(
            "Labels values must be a rectangular array of integers, one row per entry with "
            f"a value for each dimension: {error}"
        ) from None


def _to_int32(values: Any, what: str = "Labels values") -> np.ndarray:
    """Convert to int32, refusing values that would be truncated (metatensor truncates)."""
    array = np.asarray(values)
    if array.dtype == np.int32:
        return array
    if array.dtype.kind == "O" and array.size and all(_is_integer(v) for v in array.flat):
        # Python integers beyond 64 bits: out of range, refused below as any other
        array = np.array([int(v) for v in array.flat], dtype=object).reshape(array.shape)
        _check_int32_range(array, what)
    if array.dtype.kind not in "biu":
        if array.size == 0:
            return array.astype(np.int32)
        raise TypeError(f"{what} must be convertible to integers")
    _check_int32_range(array, what)
    return array.astype(np.int32)


def _is_integer(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_int32_range(array: np.ndarray, what: str) -> None:
    if array.size and (array.min() < _INT32.min or array.max() > _INT32.max):
        raise ValueError(
            f"{what} must fit in 32-bit integers, got values in "
            f"[{array.min()}, {array.max()}]; metatensor would silently truncate them, "
            "renumber them to stay within [-2**31, 2**31 - 1]"
        )


def entry_items(values: np.ndarray) -> np.ndarray:
    """One opaque scalar per row of the Labels ``values``, so that rows compare, sort,
    hash and match (``np.isin``) as a whole."""
    values = np.ascontiguousarray(values, dtype=np.int32)
    return values.view(np.dtype((np.void, 4 * values.shape[1]))).reshape(-1)


#: The fewest rows keyed by :class:`_RowKeys` (fewer are compared by their bytes).
PACKED_FROM = 2048

#: The most entries whose positions :meth:`Labels.position` keeps in a dict (one
#: look-up per call, about 350 bytes an entry); more are looked up in sorted keys (a
#: few microseconds a call: the keys of a map of 100,000 blocks, whose blocks binary
#: operations look up one by one, stay in a dict).
POSITIONS_IN_A_DICT = 2**17


class _RowKeys:
    """One int64 key per row, in the lexicographic order of the rows, for the values
    of one Labels: sorting, comparing and looking up keys costs as for one column.

    The key of a row is its number in the box spanned by the smallest and largest value
    of each column; rows outside the box are not rows of these values. When the box
    holds more than ``2**62`` rows (so that no step of making a key overflows), and for
    fewer than :data:`PACKED_FROM` rows (where working out the box costs more than it
    saves: the Labels of tiny blocks, made by the hundred thousand), the keys are the
    rows' bytes instead (in another order, but equally comparable). ``packed=True``
    asks for a box also for fewer rows: a few rows looked up in many (a selection
    of a few systems among the samples of a large store), where keying the many rows
    by their bytes costs many times more than by their numbers in the box.
    """

    def __init__(self, values: np.ndarray, packed: bool = False):
        self._low: list[int] = []
        self._high: list[int] = []
        self._spans: list[int] = []
        self.packed = len(values) > 0 and (packed or len(values) >= PACKED_FROM)
        if self.packed:
            # column by column: a reduction along axis 0 of the rows is many times slower
            columns = [values[:, j] for j in range(values.shape[1])]
            self._low = [int(c.min()) for c in columns]
            self._high = [int(c.max()) for c in columns]
            self._spans = [high - low + 1 for low, high in zip(self._low, self._high, strict=True)]
            self.packed = math.prod(self._spans) < 2**62

    def key(self, row: np.ndarray) -> Any:
        """The key of one ``row`` (as :meth:`keys` makes it, in Python numbers), ``None``
        when it is outside the box."""
        if not self.packed:
            return entry_items(row[None, :])[0]
        key = 0
        for value, low, high, span in zip(
            row.tolist(), self._low, self._high, self._spans, strict=True
        ):
            if not low <= value <= high:
                return None
            key = key * span + value - low
        return key

    def keys(self, values: np.ndarray, check: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """The keys of ``values`` (with the same columns), and which of them are
        inside the box (None: all of them, or not ``check``-ed because ``values`` are
        those the box was made of; the keys of the others are meaningless)."""
        if not self.packed:
            return entry_items(values), None
        keys = np.zeros(len(values), np.int64)
        inside: np.ndarray | None = None
        for j, span in enumerate(self._spans):
            column = values[:, j]
            keys *= span
            keys += column
            keys -= self._low[j]
            if not check:
                continue
            outside = (column < self._low[j]) | (column > self._high[j])
            if outside.any():
                inside = ~outside if inside is None else inside & ~outside
        return keys, inside


def packed_row_keys(values: np.ndarray) -> np.ndarray | None:
    """One int64 key per row of the 2-D int32 ``values``, ordered as the rows are
    lexicographically (first column first); None when the rows' ranges do not fit in
    62 bits, or for fewer than :data:`PACKED_FROM` rows."""
    if len(values) < PACKED_FROM:
        return None
    keys = _RowKeys(values)
    return keys.keys(values, check=False)[0] if keys.packed else None


def _increasing(keys: np.ndarray) -> bool:
    """Whether packed ``keys`` are strictly increasing (rows' bytes are not ordered)."""
    if keys.dtype != np.int64:
        return False
    return len(keys) < 2 or bool((keys[1:] > keys[:-1]).all())


class _RowIndex:
    """The rows of some values, sorted once, to find the first position of any row
    (``packed``: see :class:`_RowKeys`)."""

    def __init__(self, values: np.ndarray, packed: bool = False):
        self._keys = _RowKeys(values, packed)
        keys, _ = self._keys.keys(values, check=False)
        if _increasing(keys):
            self._order = None
            self._sorted = keys
        else:
            self._order = np.argsort(keys, kind="stable")
            self._sorted = keys[self._order]

    def find_one(self, row: np.ndarray) -> int:
        """The first position of ``row`` in the indexed values, or -1 (one row: in
        Python numbers where :meth:`find` makes a dozen small arrays)."""
        if not len(self._sorted):
            return -1
        key = self._keys.key(row)
        if key is None:
            return -1
        where = int(np.searchsorted(self._sorted, key))
        if where == len(self._sorted) or self._sorted[where] != key:
            return -1
        return where if self._order is None else int(self._order[where])

    def find(self, values: np.ndarray) -> np.ndarray:
        """For each row of ``values``: its first position in the indexed values, or -1."""
        keys, inside = self._keys.keys(values)
        result = -np.ones(len(values), np.int64)
        if not len(self._sorted):
            return result
        where = np.searchsorted(self._sorted, keys)
        clipped = np.minimum(where, len(self._sorted) - 1)
        hit = self._sorted[clipped] == keys
        if inside is not None:
            hit &= inside
        found = clipped[hit]
        result[hit] = found if self._order is None else self._order[found]
        return result


def entries_digest(names: list[str], values: np.ndarray) -> str:
    """The hash of Labels of ``names`` and int32 ``values`` that :meth:`Labels.digest`
    computes."""
    hasher = hashlib.blake2b(digest_size=16)
    hasher.update(repr(names).encode())
    hasher.update(np.ascontiguousarray(values).tobytes())
    return hasher.hexdigest()


def _first_duplicate(values: np.ndarray) -> np.ndarray | None:
    if len(values) < 2 or values.shape[1] == 0:
        # entries without dimensions are all alike; metatensor accepts them
        return None
    if len(values) < PACKED_FROM:
        keys = entry_items(values)
    else:
        keys, _ = _RowKeys(values).keys(values, check=False)
        if _increasing(keys):
            return None
    keys = np.sort(keys)
    if not (keys[1:] == keys[:-1]).any():
        return None
    return _reported_duplicate(values)


def _refuse_repeats(values: np.ndarray) -> None:
    """Refuse rows of the 2-D int32 ``values`` that hold an entry twice, with
    metatensor's error."""
    duplicate = _first_duplicate(values)
    if duplicate is not None:
        raise invalid_parameter(
            "can not have the same label entry multiple times: "
            f"[{', '.join(str(v) for v in duplicate)}] is already present"
        )


def repeats_an_entry(values: np.ndarray) -> bool:
    """Whether the rows of the 2-D int32 ``values`` hold some entry twice, as
    ``np.unique(values, axis=0)`` would tell at a fraction of its cost (rows without
    columns are all the same entry)."""
    if len(values) > 1 and values.shape[1] == 0:
        return True
    return _first_duplicate(values) is not None


def _reported_duplicate(values: np.ndarray) -> np.ndarray:
    """The repeated entry metatensor names in its error: reading the entries while they
    are sorted, the first one equal to the previous one; from the first entry smaller
    than the previous one, the smallest repeated entry (``values`` has one)."""
    previous, current = values[:-1], values[1:]
    differs = previous != current
    column = differs.argmax(axis=1)
    rows = np.arange(len(previous))
    equal = ~differs.any(axis=1)
    decreasing = ~equal & (previous[rows, column] > current[rows, column])
    first = int(np.argmax(equal | decreasing))
    if equal[first]:
        return current[first]
    ordered = values[np.lexsort(values.T[::-1])]
    repeated = (ordered[1:] == ordered[:-1]).all(axis=1)
    return ordered[int(np.argmax(repeated))]


#: Taken to give Labels their memo of derived values, or their token (once per Labels).
_MEMO_CREATION = threading.Lock()
#: What a memo holds for no key.
_MISSING = object()


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


class LabelsEntry:
    """One entry of a :class:`Labels`: names and a 1-D int32 array of values."""

    def __init__(self, names: Sequence[str], values: np.ndarray):
        values = np.asarray(values)
        if values.ndim != 1 or values.dtype != np.int32:
            raise ValueError("LabelsEntry values must be a 1-dimensional array of 32-bit integers")
        if len(names) != len(values):
            raise ValueError("LabelsEntry must have one name per value")
        self._names = list(names)
        self._values = values

    @property
    def names(self) -> list[str]:
        """Names of the dimensions."""
        return list(self._names)

    @property
    def values(self) -> np.ndarray:
        """The entry's values, a read-only 1-D int32 array."""
        return self._values

    @property
    def device(self) -> str:
        return "cpu"

    def __len__(self) -> int:
        return len(self._values)

    def __getitem__(self, dimension: int | str) -> np.int32:
        if isinstance(dimension, str):
            try:
                return self._values[self._names.index(dimension)]
            except ValueError:
                raise ValueError(
                    f"'{dimension}' not found in the dimensions of these Labels"
                ) from None
        if isinstance(dimension, (int, np.integer)) and not isinstance(dimension, bool):
            return self._values[dimension]
        raise TypeError(f"can only index LabelsEntry with str or int, got {type(dimension)}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LabelsEntry):
            raise wrong_type(
                f"can only compare between LabelsEntry for equality, got {type(other)}", other
            )
        return self._names == other._names and np.array_equal(self._values, other._values)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    def print(self) -> str:
        """The entry as ``(name=value, ...)``."""
        return (
            "("
            + ", ".join(f"{n}={v}" for n, v in zip(self._names, self._values, strict=True))
            + ")"
        )

    def __repr__(self) -> str:
        return "LabelsEntry" + self.print()

    __str__ = __repr__

    def _repr_html_(self) -> str:
        from ._format import entry_html

        return entry_html(self)


class Labels:
    """Named int32 metadata: the keys, samples, components and properties of tensors.

    Parameters
    ----------
    names
        Names of the dimensions: a sequence of valid identifiers, or one string.
    values
        Integer array-like of shape ``(n_entries, len(names))``. Values must fit in
        int32 (metatensor silently truncates larger ones; this raises instead).
    assume_unique
        Skip the check that entries are unique. Entries given twice anyway are kept
        as given, as metatensor does, and so are they in the results of set
        operations (but a :meth:`union` adds each new entry of ``other`` once, as
        metatensor): look-ups and mappings give the first of them (metatensor: any).
        As in metatensor, :meth:`insert`, :meth:`append`, :meth:`remove`,
        :meth:`rename` and :meth:`permute` check the entries of such Labels, and
        refuse a repeated one. The Labels that operations make of their rows (sorted,
        sliced, moved to samples or properties...) may repeat one too, and
        ``to_zarr``, ``write_batches`` and ``save`` refuse a map, block or Labels
        holding an entry twice.

    Notes
    -----
    Differences from metatensor, all on purpose: any integer array-like is accepted as
    ``values`` (metatensor wants a numpy array), out-of-range integers (and, in
    :meth:`insert`, floats) raise instead of being truncated, numpy integers index
    entries, and :meth:`append` adds the dimension at the end (metatensor 0.2.6
    inserts it at the position given by the number of *entries*). Every row of Labels
    without dimensions is the empty entry: their set operations hold it at most once.
    """

    def __init__(
        self,
        names: str | Sequence[str],
        values: Any,
        assume_unique: bool = False,
    ):
        # as metatensor: the types of the names, then the values, then the names' rules
        listed = _names_list(names)
        array = _values_array(values)
        if array.ndim >= 1 and len(array) == 0:
            # as metatensor: any array without entries means "no entries"
            array = np.empty((0, len(listed)), np.int32)
        if array.ndim != 2:
            raise ValueError("`values` must be a 2D array")
        if array.shape[1] != len(listed):
            raise ValueError("`names` must have an entry for each column of the `values` array")
        array = np.array(_to_int32(array), dtype=np.int32, order="C", copy=True)
        self._names = _parse_names(listed)
        if not assume_unique:
            _refuse_repeats(array)
        self._values: np.ndarray | None = _frozen(array)
        self._count = len(array)
        self._may_repeat = assume_unique
        self._loader: Callable[[], np.ndarray] | None = None
        self._loading: threading.Lock | None = None
        self._token_loader: Callable[[], np.ndarray] | None = None
        self._lazy_token: tuple[Any, ...] | None = None
        self._stored: Any = None
        self._digest: str | None = None
        self._positions: dict[bytes, int] | None = None
        self._index: _RowIndex | None = None
        self._memo: dict[Any, Any] | None = None

    # -- construction ------------------------------------------------------------------

    @classmethod
    def _trusted(cls, names: list[str], values: np.ndarray, may_repeat: bool = False) -> Labels:
        """Labels from already validated parts (int32, unique entries, unless
        ``may_repeat``: rows of Labels built with ``assume_unique=True``), without copy.

        Only the names are checked (valid and unique): an operation that adds a
        dimension (``keys_to_samples``, ``join(add_dimension=...)``...) builds its names
        from the user's, and a name that is not a string, not a valid identifier or
        given twice raises here, with metatensor's message.
        """
        names = [_check_name(name) for name in names]
        check_unique_names(names)
        labels = cls.__new__(cls)
        labels._names = names
        labels._values = _frozen(np.ascontiguousarray(values, dtype=np.int32))
        labels._count = len(values)
        labels._may_repeat = may_repeat
        labels._loader = None
        labels._loading = None
        labels._token_loader = None
        labels._lazy_token = None
        labels._stored = None
        labels._digest = None
        labels._positions = None
        labels._index = None
        labels._memo = None
        return labels

    @classmethod
    def _made_from(cls, names: list[str], values: np.ndarray, *sources: Labels) -> Labels:
        """Labels of rows made from the entries of ``sources`` (taken, reordered, merged,
        or given more dimensions), without a check: like :meth:`_trusted`, but recording
        that they may repeat an entry when one of ``sources`` may (it holds rows of
        Labels built with ``assume_unique=True``), so that the writers check them.

        Costs one attribute read per source, never a read of the entries."""
        return cls._trusted(names, values, any(source._may_repeat for source in sources))

    @classmethod
    def _of_unknown_rows(cls, names: list[str], values: np.ndarray) -> Labels:
        """Labels of rows that may repeat an entry without saying so (metatensor-core's
        Labels, which may be built with ``assume_unique=True``; their objects do not
        tell), without copy: their entries are read once, here, and the Labels record
        that they repeat one when they do, so that the writers refuse them."""
        values = np.ascontiguousarray(values, dtype=np.int32)
        return cls._trusted(names, values, _first_duplicate(values) is not None)

    @classmethod
    def lazy(
        cls,
        names: Sequence[str],
        count: int,
        load: Callable[[], np.ndarray],
        digest: str | None = None,
        stored: Any = None,
    ) -> Labels:
        """Labels whose entries are read by ``load()`` the first time they are needed.

        Parameters
        ----------
        names
            Names of the dimensions.
        count
            Number of entries, known without loading them.
        load
            Returns the ``(count, len(names))`` int32 values.
        digest
            A content hash recorded when the values were written: two Labels with the
            same digest are equal without loading either.
        stored
            Where the entries are stored, for tasks that read a part of them without
            loading them all (see :meth:`_stored_source`).
        """
        labels = cls.__new__(cls)
        labels._names = _parse_names(list(names))
        labels._values = None
        labels._count = int(count)
        labels._may_repeat = False
        labels._loader = load
        labels._loading = threading.Lock()
        # without a digest, the loader stands for the entries in tokens, loaded or not
        labels._token_loader = load if digest is None else None
        labels._lazy_token = None
        labels._stored = stored
        labels._digest = digest
        labels._positions = None
        labels._index = None
        labels._memo = None
        return labels

    @staticmethod
    def single() -> Labels:
        """Labels with one dimension ``"_"`` and one entry ``0``, for blocks without keys."""
        return Labels._trusted(["_"], np.zeros((1, 1), np.int32))

    @staticmethod
    def empty(names: str | Sequence[str]) -> Labels:
        """Labels with the given names and no entries."""
        names = _parse_names(names)
        return Labels._trusted(names, np.empty((0, len(names)), np.int32))

    @staticmethod
    def range(name: str, end: int) -> Labels:
        """Labels with one dimension ``name`` and entries ``0, 1, ..., end - 1``."""
        return Labels._trusted(_parse_names([name]), np.arange(end, dtype=np.int32)[:, None])

    # -- content -----------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        """Names of the dimensions."""
        return list(self._names)

    @property
    def values(self) -> np.ndarray:
        """The entries, a read-only ``(n_entries, n_dimensions)`` int32 array."""
        values = self._values
        return self._load() if values is None else values

    def _load(self) -> np.ndarray:
        """Read lazy entries, once: threads asking meanwhile wait for them."""
        assert self._loading is not None, "only lazy Labels have no values"
        with self._loading:
            if self._values is None:
                assert self._loader is not None
                values = np.asarray(self._loader(), dtype=np.int32)
                if values.shape != (self._count, len(self._names)):
                    raise ValueError(
                        f"stored labels {self._names} have shape {values.shape}, expected "
                        f"{(self._count, len(self._names))}: the store is damaged"
                    )
                self._values = _frozen(np.ascontiguousarray(values))
                self._loader = None
                self._stored = None
            return self._values

    @property
    def is_loaded(self) -> bool:
        """Whether the entries are in memory (always, except for lazy sample labels)."""
        return self._values is not None

    def _stored_source(self) -> Any:
        """Where these lazy entries are stored, as given to :meth:`lazy` (for gradient
        samples read from a Zarr store: a
        :class:`~metatensor_dask.io.zarr_columns.StoredSampleColumn`); None once they
        are in memory, where they have been checked as a whole."""
        stored = self._stored  # before the check: loading drops it once values are set
        return stored if self._values is None else None

    @property
    def device(self) -> str:
        return "cpu"

    def digest(self) -> str:
        """A hash of the names and entries (recorded, or computed once)."""
        if self._digest is None:
            self._digest = entries_digest(self._names, self.values)
        return self._digest

    def _derived(self, key: Any, make: Callable[[], Any]) -> Any:
        """``make()``, made once for these Labels and ``key``: what is derived from
        the entries alone (a gradient's row pointer...), shared by every block that
        holds these Labels. ``make`` must not depend on anything else than the
        entries and ``key``.

        Threads asking at once may each call ``make``; all of them get the first value
        stored, the one every later call gets."""
        memo = self._memo
        if memo is None:
            with _MEMO_CREATION:
                if self._memo is None:
                    self._memo = {}
                memo = self._memo
        found = memo.get(key, _MISSING)
        if found is _MISSING:
            found = memo.setdefault(key, make())
        return found

    def _token(self) -> Any:
        """What identifies these Labels in a dask token, without loading lazy entries
        that have no recorded digest: their loader stands for them until they are
        loaded, their digest once they are.

        The token of such Labels is made once, and is the same in every thread, before,
        during and after their load: made from their digest when they are loaded by the
        time it is first asked for, else from their loader's token. It was the loader's
        token until they were loaded, then their digest: two threads tokenizing while
        another loaded them got two tokens (the same work computed twice by dask), and a
        thread reading the loader just after the load dropped it tokenized ``None``, the
        same for all such Labels of as many entries and the same names (the graphs of
        different data merged). A loader's token alone does not stand for entries
        loaded: two loaders of equal tokens (one file, read before and after it was
        written again) give Labels of other entries."""
        loader = self._token_loader
        if loader is None:
            return (self._names, self.digest())
        if self._lazy_token is None:
            made = self._first_token(loader)
            with _MEMO_CREATION:  # the first one made, for every thread
                if self._lazy_token is None:
                    self._lazy_token = made
        return self._lazy_token

    def _first_token(self, loader: Callable[[], np.ndarray]) -> tuple[Any, ...]:
        """The token of lazy Labels without a recorded digest, when first asked for:
        their digest if their entries are loaded, else their loader's token."""
        if self._values is not None:
            return (self._names, self.digest())
        from dask.base import tokenize

        return ("lazy", self._names, self._count, tokenize(loader))

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[LabelsEntry]:
        for i in range(len(self)):
            yield self.entry(i)

    def entry(self, index: int) -> LabelsEntry:
        """The entry at ``index`` (negative indices count from the end)."""
        return LabelsEntry(self._names, self.values[index])

    def column(self, dimension: str) -> np.ndarray:
        """The values of one dimension, a read-only 1-D int32 array."""
        if not isinstance(dimension, str):
            raise TypeError(
                f"Labels can only be indexed by a single string or integer, got {type(dimension)}"
            )
        try:
            i = self._names.index(dimension)
        except ValueError:
            raise ValueError(f"'{dimension}' not found in the dimensions of these Labels") from None
        return self.values[:, i]

    def __getitem__(self, index: int | str) -> LabelsEntry | np.ndarray:
        if isinstance(index, str):
            return self.column(index)
        if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
            return self.entry(int(index))
        raise TypeError(
            f"Labels can only be indexed by a single string or integer, got {type(index)}."
            "To select multiple columns, construct a new `Labels` object."
        )

    def _entry_row(self, entry: LabelsEntry | Sequence[int] | np.ndarray) -> np.ndarray:
        values = np.asarray(entry.values if isinstance(entry, LabelsEntry) else entry)
        if values.ndim != 1 or _holds_numpy_booleans(entry):
            raise TypeError(
                "the entry to look for must be a LabelsEntry or a 1-D sequence of integers "
                f"(one per dimension of {self._names}), got {type(entry)} of "
                f"{_kind_of(values)}{_single_value_hint(entry)}"
            )
        if len(values) != len(self._names):
            raise invalid_parameter(
                f"expected label of size {len(self._names)} in mts_labels_position, "
                f"got size {len(values)}"
            )
        return _to_int32(values)

    def position(self, entry: LabelsEntry | Sequence[int] | np.ndarray) -> int | None:
        """Index of ``entry`` in these Labels, or ``None`` when it is not there."""
        row = self._entry_row(entry)
        if self._positions is None and self._index is None and len(self) <= POSITIONS_IN_A_DICT:
            # filled before it is shared: another thread looking up meanwhile builds its
            # own instead of finding entries missing from a half-filled one
            rows = entry_items(self.values) if self._names else np.array([b""] * len(self))
            positions: dict[bytes, int] = {}
            for i, key in enumerate(rows.tolist()):
                positions.setdefault(bytes(key), i)
            self._positions = positions
        if self._positions is not None:
            return self._positions.get(row.tobytes())
        if self._index is None:
            self._index = _RowIndex(self.values)
        found = self._index.find_one(row)
        return found if found >= 0 else None

    def __contains__(self, entry: object) -> bool:
        return self.position(entry) is not None  # type: ignore[arg-type]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Labels):
            raise wrong_type(
                f"can only compare between Labels for equality, got {type(other)}", other
            )
        if self is other:
            return True
        if self._names != other._names or len(self) != len(other):
            return False
        if self._digest is not None and self._digest == other._digest:
            return True
        return bool(np.array_equal(self.values, other.values))

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    # -- set operations ----------------------------------------------------------------

    def _check_same_names(self, other: Labels, operation: str) -> None:
        if not isinstance(other, Labels):
            raise wrong_type(
                f"can only take the {operation} with metatensor Labels, got {type(other)}", other
            )
        if self._names != other._names:
            raise invalid_parameter(
                f"can not take the {operation} of these Labels, they have different "
                f"dimensions: {_quoted(self._names)}, and {_quoted(other._names)}"
            )

    def _membership(self, other: Labels) -> np.ndarray:
        """For each entry of ``self``: its position in ``other``, or -1."""
        if not self._names:
            found = np.zeros(len(self), np.int64) if len(other) else -np.ones(len(self), np.int64)
            return found
        if other._index is not None:
            return other._index.find(self.values)
        return _RowIndex(other.values, packed=len(self) >= PACKED_FROM).find(self.values)

    def union(self, other: Labels) -> Labels:
        """Entries of ``self`` in order, then the new entries of ``other`` in order."""
        return self.union_and_mapping(other)[0]

    def union_and_mapping(self, other: Labels) -> tuple[Labels, np.ndarray, np.ndarray]:
        """The union, and the positions in it of the entries of ``self`` and ``other``."""
        self._check_same_names(other, "union")
        if not self._names:
            present = bool(len(self) or len(other))
            return _no_dimension(present), _positions(len(self), 0), _positions(len(other), 0)
        in_self = other._membership(self)
        new = np.nonzero(in_self < 0)[0]
        mapping_other = in_self.copy()
        if other._may_repeat and len(new) > 1:
            # each new entry once, where it first comes, as metatensor: Labels built with
            # ``assume_unique=True`` may repeat one
            rows = other.values[new]
            first = _RowIndex(rows).find(rows)
            is_first = first == np.arange(len(new))
            mapping_other[new] = len(self) + (np.cumsum(is_first) - 1)[first]
            new = new[is_first]
        else:
            mapping_other[new] = len(self) + np.arange(len(new))
        union = Labels._trusted(
            self._names, np.concatenate([self.values, other.values[new]]), self._may_repeat
        )
        return union, np.arange(len(self), dtype=np.int64), mapping_other

    def intersection(self, other: Labels) -> Labels:
        """Entries of both, in the order of the shorter of the two (``self`` on ties),
        as metatensor."""
        return self.intersection_and_mapping(other)[0]

    def intersection_and_mapping(self, other: Labels) -> tuple[Labels, np.ndarray, np.ndarray]:
        """The intersection, and positions in it of each entry of both (-1 if absent)."""
        self._check_same_names(other, "intersection")
        if not self._names:
            both = bool(len(self) and len(other))
            position = 0 if both else -1
            return (
                _no_dimension(both),
                _positions(len(self), position),
                _positions(len(other), position),
            )
        if len(other) < len(self):
            # as metatensor: the entries come in the order of the shorter Labels
            intersection, mapping_other, mapping_self = other.intersection_and_mapping(self)
            return intersection, mapping_self, mapping_other
        in_other = self._membership(other)
        kept = in_other >= 0
        mapping_self = -np.ones(len(self), np.int64)
        mapping_self[kept] = np.arange(int(kept.sum()))
        mapping_other = -np.ones(len(other), np.int64)
        mapping_other[in_other[kept]] = np.arange(int(kept.sum()))
        return (
            Labels._trusted(self._names, self.values[kept], self._may_repeat),
            mapping_self,
            mapping_other,
        )

    def difference(self, other: Labels) -> Labels:
        """Entries of ``self`` that are not in ``other``, in the order of ``self``."""
        return self.difference_and_mapping(other)[0]

    def difference_and_mapping(self, other: Labels) -> tuple[Labels, np.ndarray]:
        """The difference, and the position in it of each entry of ``self`` (-1 if removed)."""
        self._check_same_names(other, "difference")
        if not self._names:
            remains = bool(len(self) and not len(other))
            return _no_dimension(remains), _positions(len(self), 0 if remains else -1)
        kept = self._membership(other) < 0
        mapping = -np.ones(len(self), np.int64)
        mapping[kept] = np.arange(int(kept.sum()))
        return Labels._trusted(self._names, self.values[kept], self._may_repeat), mapping

    def select(self, selection: Labels) -> np.ndarray:
        """Indices of the entries that match any entry of ``selection`` on the
        dimensions of ``selection``.

        As metatensor: when ``selection`` has every dimension of ``self``, in the same
        order, the indices follow the order of ``selection`` (entries absent from
        ``self`` are skipped); otherwise they follow the order of ``self``. A selection
        without dimensions selects every entry."""
        if not isinstance(selection, Labels):
            raise wrong_type(
                f"`selection` must be metatensor Labels, not {type(selection)}", selection
            )
        for name in selection._names:
            if name not in self._names:
                raise invalid_parameter(f"'{name}' in selection is not part of these Labels")
        if not selection._names:
            # no dimension to compare on: every entry matches, as in metatensor (an
            # empty selection included)
            return np.arange(len(self), dtype=np.uint64)
        if selection._names == self._names:
            found = selection._membership(self)
            return found[found >= 0].astype(np.uint64)
        columns = [self._names.index(name) for name in selection._names]
        mine = Labels._trusted(selection._names, self.values[:, columns])
        return np.nonzero(mine._membership(selection) >= 0)[0].astype(np.uint64)

    # -- dimensions --------------------------------------------------------------------

    def insert(self, index: int, name: str, values: np.ndarray) -> Labels:
        """New Labels with a dimension ``name`` holding ``values`` inserted at ``index``."""
        if not isinstance(values, np.ndarray):
            raise ValueError("`values` must be a numpy ndarray")
        if values.ndim != 1:
            raise ValueError("`values` must be a 1D array")
        if len(values) != len(self):
            raise ValueError(
                f"the new `values` contains {len(values)} entries, but the Labels "
                f"contains {len(self)}"
            )
        names = list(self._names)
        names.insert(index, name)
        _parse_names(names)  # a bad name is found first, as in metatensor
        new = np.insert(self.values, index, _to_int32(values), axis=1)
        return self._rebuilt(names, new)

    def append(self, name: str, values: np.ndarray) -> Labels:
        """New Labels with a last dimension ``name`` holding ``values``.

        metatensor-core 0.2.6 inserts at the number of *entries* instead (a bug).
        """
        return self.insert(len(self._names), name, values)

    def remove(self, name: str) -> Labels:
        """New Labels without the dimension ``name`` (entries must stay unique)."""
        if name not in self._names:
            raise ValueError(f"'{name}' not found in the dimensions of these Labels")
        index = self._names.index(name)
        names = self._names[:index] + self._names[index + 1 :]
        return Labels(names, np.delete(self.values, index, axis=1))

    def rename(self, old: str, new: str) -> Labels:
        """New Labels where the dimension ``old`` is called ``new``."""
        if old not in self._names:
            raise ValueError(f"'{old}' not found in the dimensions of these Labels")
        names = [new if name == old else name for name in self._names]
        _parse_names(names)
        return self._rebuilt(names, self.values)

    def permute(self, dimensions_indexes: Sequence[int]) -> Labels:
        """New Labels with the dimensions in the order ``dimensions_indexes``."""
        if len(dimensions_indexes) != len(self._names):
            raise ValueError(
                f"the length of `dimensions_indexes` ({len(dimensions_indexes)}) does not "
                f"match the number of dimensions in the Labels ({len(self._names)})"
            )
        names = [self._names[i] for i in dimensions_indexes]
        _parse_names(names)
        return self._rebuilt(names, self.values[:, list(dimensions_indexes)])

    def _repeated_entry(self) -> np.ndarray | None:
        """An entry these Labels hold twice (the one metatensor's error would name),
        which only Labels built with ``assume_unique=True`` may hold: ``None`` for
        others, whose values are not read."""
        return _first_duplicate(self.values) if self._may_repeat else None

    def _rebuilt(self, names: list[str], values: np.ndarray) -> Labels:
        """New Labels of these entries (``values``, columns moved), checked unique as
        metatensor checks them when these may repeat one (``assume_unique=True``)."""
        if self._may_repeat:
            _refuse_repeats(values)
        return Labels._trusted(names, values)

    def to(self, *args: Any, **kwargs: Any) -> Labels:
        """These Labels: they live on the CPU as int32, so only ``device="cpu"`` and
        ``arrays="numpy"`` are accepted (metatensor's arguments, positional or not)."""
        from ._to_arguments import to_arguments

        if to_arguments("`Labels.to`", args, kwargs) is not None:
            raise ValueError("Labels values must be int32, `dtype` can not be changed")
        return self

    # -- files (see metatensor_dask.io) ------------------------------------------------

    def save(self, file: str | os.PathLike | BinaryIO) -> None:
        """Write these Labels to ``file`` as ``metatensor.save`` does; see
        :func:`metatensor_dask.save`."""
        from .io.mts import save

        save(file, self)

    @staticmethod
    def load(file: str | os.PathLike) -> Labels:
        """Labels written by ``metatensor.save``; see :func:`metatensor_dask.load_labels`."""
        from .io.mts import load_labels

        return load_labels(file)

    def save_buffer(self) -> memoryview:
        """The bytes of :meth:`save`, in memory (through metatensor-core)."""
        from .io.convert import save_buffer

        return save_buffer(self)

    @staticmethod
    def load_buffer(buffer: bytes | bytearray | memoryview) -> Labels:
        """Labels from the bytes of :meth:`save_buffer` (through metatensor-core)."""
        from .io.convert import read_buffer

        return read_buffer("Labels", buffer)

    # -- text --------------------------------------------------------------------------

    def print(self, max_entries: int, indent: int = 0) -> str:
        """The names and entries as a table; at most ``max_entries`` rows (all when < 0)."""
        from ._format import format_labels_table

        return format_labels_table(self, max_entries, indent)

    def __str__(self) -> str:
        return "Labels(\n    " + self.print(4, 4) + "\n)"

    def __repr__(self) -> str:
        return "Labels(\n    " + self.print(-1, 4) + "\n)"

    def _repr_html_(self) -> str:
        from ._format import labels_html

        return labels_html(self)

    def __reduce__(self) -> tuple[Any, ...]:
        # the digest too (a store's, checked when the entries were read): a map sent to
        # another process has the dask token it has here
        values = self.values
        return (_unpickled, (self._names, values, self._may_repeat, self._digest))


def _unpickled(
    names: list[str], values: np.ndarray, may_repeat: bool, digest: str | None
) -> Labels:
    """The Labels that ``Labels.__reduce__`` gave, with their digest."""
    labels = Labels._trusted(names, values, may_repeat)
    labels._digest = digest
    return labels


def _holds_numpy_booleans(entry: Any) -> bool:
    """Whether an entry holds numpy booleans, which metatensor refuses as entry values
    (Python's ``True`` is the integer 1 for both)."""
    if isinstance(entry, np.ndarray):
        return entry.dtype.kind == "b"
    return isinstance(entry, (list, tuple)) and any(isinstance(v, np.bool_) for v in entry)


def _kind_of(values: np.ndarray) -> str:
    """What a wrong entry holds, for its error: booleans, or its number of dimensions."""
    if values.ndim == 1:
        return "booleans"
    return f"{values.ndim} dimensions"


def _single_value_hint(entry: Any) -> str:
    """The remedy for an entry given as one integer (Labels of one dimension)."""
    if _is_integer(entry):
        return f"; use [{entry}]"
    return ""


def _no_dimension(present: bool) -> Labels:
    """Labels without dimensions holding the empty entry, or nothing."""
    return Labels._trusted([], np.zeros((int(present), 0), np.int32))


def _positions(count: int, position: int) -> np.ndarray:
    """The mapping of ``count`` entries that all land at ``position`` (-1: nowhere)."""
    return np.full(count, position, np.int64)


def _quoted(names: list[str]) -> str:
    return "[" + ", ".join(f'"{name}"' for name in names) + "]"


def core_entries(labels: Labels) -> int:
    """The number of entries metatensor-core sees in ``labels``: Labels without
    dimensions have none there, whatever their values' number of rows."""
    return len(labels) if labels.names else 0


def as_core_labels(labels: Labels) -> Labels:
    """``labels`` as metatensor-core holds them: Labels without dimensions have no
    entry, whatever their values' number of rows."""
    if labels.names or not len(labels):
        return labels
    return Labels._trusted([], np.empty((0, 0), np.int32))


def no_dimension_note(labels: Labels) -> str:
    """What to add to a count mismatch caused by ``labels`` having no dimension."""
    if labels.names or not len(labels):
        return ""
    return (
        f" (these Labels have {len(labels)} rows but no dimension: metatensor counts no "
        "entry in Labels without dimensions)"
    )
