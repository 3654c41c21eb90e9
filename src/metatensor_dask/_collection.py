"""The dask collection protocol for blocks and tensors.

A :class:`~metatensor_dask.TensorBlock` or :class:`~metatensor_dask.TensorMap` is a
container of arrays (values and gradients of every block) plus in-memory metadata. As
xarray's ``Dataset`` does, it delegates the protocol to its dask arrays: its graph is
the merge of theirs, ``compute()`` gives the same type holding numpy arrays, and
``persist()`` the same type holding persisted dask arrays. numpy arrays (a computed
block) are carried along unchanged.
"""

from __future__ import annotations

from typing import Any

import dask
import dask.array as da
from dask.base import DaskMethodsMixin, is_dask_collection, tokenize
from dask.core import flatten
from dask.highlevelgraph import HighLevelGraph
from dask.utils import ensure_dict

__all__ = ["ArrayContainer"]


class ArrayContainer(DaskMethodsMixin):
    """Mixin: subclasses define ``_arrays()`` and ``_with_arrays(arrays)``."""

    def _arrays(self) -> list[Any]:
        raise NotImplementedError

    def _with_arrays(self, arrays: list[Any]) -> Any:
        raise NotImplementedError

    def _metadata_token(self) -> Any:
        raise NotImplementedError

    def _lazy_arrays(self) -> list[da.Array]:
        return [a for a in self._arrays() if is_dask_collection(a)]

    def __dask_graph__(self) -> HighLevelGraph | None:
        lazy = self._lazy_arrays()
        if not lazy:
            return None
        return HighLevelGraph.merge(*(a.__dask_graph__() for a in lazy))

    def __dask_keys__(self) -> list[Any]:
        return [a.__dask_keys__() for a in self._lazy_arrays()]

    def __dask_layers__(self) -> tuple[str, ...]:
        return tuple(layer for a in self._lazy_arrays() for layer in a.__dask_layers__())

    def __dask_tokenize__(self) -> Any:
        return (type(self).__name__, self._metadata_token(), tokenize(*self._arrays()))

    @staticmethod
    def __dask_optimize__(dsk: Any, keys: Any, **kwargs: Any) -> Any:
        # A map holds one dask array (one graph layer) per block and gradient; culling
        # a HighLevelGraph of thousands of layers is quadratic in their number, while
        # culling the flat graph is linear.
        return da.Array.__dask_optimize__(ensure_dict(dsk), list(flatten(keys)), **kwargs)
    __dask_scheduler__ = staticmethod(dask.threaded.get)

    def __dask_postcompute__(self) -> tuple[Any, tuple[Any, ...]]:
        plan = [
            (True, *a.__dask_postcompute__()) if is_dask_collection(a) else (False, a, ())
            for a in self._arrays()
        ]
        return self._finalize, (plan,)

    def _finalize(self, results: list[Any], plan: list[Any]) -> Any:
        computed = iter(results)
        arrays = [func(next(computed), *args) if lazy else func for lazy, func, args in plan]
        return self._with_arrays(arrays)

    def __dask_postpersist__(self) -> tuple[Any, tuple[Any, ...]]:
        plan = [
            (True, *a.__dask_postpersist__(), flatten(a.__dask_keys__()))
            if is_dask_collection(a)
            else (False, a, (), ())
            for a in self._arrays()
        ]
        return self._rebuild, (plan,)

    def _rebuild(self, dsk: Any, plan: list[Any], rename: Any = None) -> Any:
        rename = rename or {}
        arrays = []
        for lazy, func, args, keys in plan:
            if not lazy:
                arrays.append(func)
                continue
            # each array keeps its own chunks only: sharing the whole persisted graph
            # would make merging the graphs of N arrays cost N * N
            own = {(rename.get(k[0], k[0]), *k[1:]): None for k in keys}
            arrays.append(func({k: dsk[k] for k in own}, *args, rename=rename))
        return self._with_arrays(arrays)
