"""metatensor-operations on dask: same names, signatures, errors and gradient rules.

Every operation checks metadata eagerly, computes output Labels eagerly, and builds a
lazy dask graph for values and gradients. They are re-exported at the top level
(``mtd.add``, ``mtd.multiply``...). ``abs``, ``pow`` and ``slice`` shadow Python's
built-ins inside this namespace, as in metatensor.
"""

from __future__ import annotations

import typing as _typing

from .._lazy import lazy_names as _lazy_names
from ..errors import NotEqualError  # noqa: F401  (metatensor.operations.NotEqualError)

if _typing.TYPE_CHECKING:  # (not TYPE_CHECKING: the namespace is the operations')
    from ._abs import abs
    from ._add import add
    from ._allclose import (
        allclose,
        allclose_block,
        allclose_block_raise,
        allclose_raise,
    )
    from ._checks import checks_enabled, unsafe_disable_checks, unsafe_enable_checks
    from ._creation import (
        block_from_array,
        empty_like,
        empty_like_block,
        ones_like,
        ones_like_block,
        random_uniform_like,
        random_uniform_like_block,
        zeros_like,
        zeros_like_block,
    )
    from ._detach import (
        detach,
        detach_block,
        requires_grad,
        requires_grad_block,
    )
    from ._divide import divide
    from ._dot import dot
    from ._drop_blocks import drop_blocks, drop_empty_blocks, filter_blocks
    from ._equal import (
        equal,
        equal_block,
        equal_block_raise,
        equal_raise,
    )
    from ._equal_metadata import (
        equal_metadata,
        equal_metadata_block,
        equal_metadata_block_raise,
        equal_metadata_raise,
    )
    from ._is_contiguous import is_contiguous, is_contiguous_block
    from ._join import join, join_blocks
    from ._keys_to import components_to_properties, keys_to_properties, keys_to_samples
    from ._lstsq import lstsq
    from ._make_contiguous import make_contiguous, make_contiguous_block
    from ._manipulate_dimension import (
        append_dimension,
        insert_dimension,
        permute_dimensions,
        remove_dimension,
        rename_dimension,
    )
    from ._multiply import multiply
    from ._one_hot import one_hot
    from ._pow import pow
    from ._reduce_over_properties import (
        mean_over_properties,
        mean_over_properties_block,
        std_over_properties,
        std_over_properties_block,
        sum_over_properties,
        sum_over_properties_block,
        var_over_properties,
        var_over_properties_block,
    )
    from ._reduce_over_samples import (
        mean_over_samples,
        mean_over_samples_block,
        std_over_samples,
        std_over_samples_block,
        sum_over_samples,
        sum_over_samples_block,
        var_over_samples,
        var_over_samples_block,
    )
    from ._remove_gradients import remove_gradients, remove_gradients_block
    from ._slice import slice, slice_block
    from ._solve import solve
    from ._sort import sort, sort_block
    from ._split import split, split_block
    from ._subtract import subtract
    from ._unique_metadata import unique_metadata, unique_metadata_block

#: The module of each operation, imported on first access (PEP 562): the operations
#: import ``dask.array``, which a process appending batches to a store does not need.
_MODULES = {
    "_abs": ["abs"],
    "_add": ["add"],
    "_allclose": ["allclose", "allclose_block", "allclose_block_raise", "allclose_raise"],
    "_checks": ["checks_enabled", "unsafe_disable_checks", "unsafe_enable_checks"],
    "_creation": [
        "block_from_array",
        "empty_like",
        "empty_like_block",
        "ones_like",
        "ones_like_block",
        "random_uniform_like",
        "random_uniform_like_block",
        "zeros_like",
        "zeros_like_block",
    ],
    "_detach": ["detach", "detach_block", "requires_grad", "requires_grad_block"],
    "_divide": ["divide"],
    "_dot": ["dot"],
    "_drop_blocks": ["drop_blocks", "drop_empty_blocks", "filter_blocks"],
    "_equal": ["equal", "equal_block", "equal_block_raise", "equal_raise"],
    "_equal_metadata": [
        "equal_metadata",
        "equal_metadata_block",
        "equal_metadata_block_raise",
        "equal_metadata_raise",
    ],
    "_is_contiguous": ["is_contiguous", "is_contiguous_block"],
    "_join": ["join", "join_blocks"],
    "_keys_to": ["components_to_properties", "keys_to_properties", "keys_to_samples"],
    "_lstsq": ["lstsq"],
    "_make_contiguous": ["make_contiguous", "make_contiguous_block"],
    "_manipulate_dimension": [
        "append_dimension",
        "insert_dimension",
        "permute_dimensions",
        "remove_dimension",
        "rename_dimension",
    ],
    "_multiply": ["multiply"],
    "_one_hot": ["one_hot"],
    "_pow": ["pow"],
    "_reduce_over_properties": [
        "mean_over_properties",
        "mean_over_properties_block",
        "std_over_properties",
        "std_over_properties_block",
        "sum_over_properties",
        "sum_over_properties_block",
        "var_over_properties",
        "var_over_properties_block",
    ],
    "_reduce_over_samples": [
        "mean_over_samples",
        "mean_over_samples_block",
        "std_over_samples",
        "std_over_samples_block",
        "sum_over_samples",
        "sum_over_samples_block",
        "var_over_samples",
        "var_over_samples_block",
    ],
    "_remove_gradients": ["remove_gradients", "remove_gradients_block"],
    "_slice": ["slice", "slice_block"],
    "_solve": ["solve"],
    "_sort": ["sort", "sort_block"],
    "_split": ["split", "split_block"],
    "_subtract": ["subtract"],
    "_unique_metadata": ["unique_metadata", "unique_metadata_block"],
}
_LAZY = {name: f".{module}" for module, names in _MODULES.items() for name in names}


__getattr__, __dir__ = _lazy_names(globals(), _LAZY, ["_checks"])

__all__ = [
    "abs",
    "add",
    "allclose",
    "allclose_block",
    "allclose_block_raise",
    "allclose_raise",
    "append_dimension",
    "block_from_array",
    "checks_enabled",
    "components_to_properties",
    "detach",
    "detach_block",
    "divide",
    "dot",
    "drop_blocks",
    "drop_empty_blocks",
    "empty_like",
    "empty_like_block",
    "equal",
    "equal_block",
    "equal_block_raise",
    "equal_metadata",
    "equal_metadata_block",
    "equal_metadata_block_raise",
    "equal_metadata_raise",
    "equal_raise",
    "filter_blocks",
    "insert_dimension",
    "is_contiguous",
    "is_contiguous_block",
    "join",
    "join_blocks",
    "keys_to_properties",
    "keys_to_samples",
    "lstsq",
    "make_contiguous",
    "make_contiguous_block",
    "mean_over_properties",
    "mean_over_properties_block",
    "mean_over_samples",
    "mean_over_samples_block",
    "multiply",
    "one_hot",
    "ones_like",
    "ones_like_block",
    "permute_dimensions",
    "pow",
    "random_uniform_like",
    "random_uniform_like_block",
    "remove_dimension",
    "remove_gradients",
    "remove_gradients_block",
    "rename_dimension",
    "requires_grad",
    "requires_grad_block",
    "slice",
    "slice_block",
    "solve",
    "sort",
    "sort_block",
    "split",
    "split_block",
    "std_over_properties",
    "std_over_properties_block",
    "std_over_samples",
    "std_over_samples_block",
    "subtract",
    "sum_over_properties",
    "sum_over_properties_block",
    "sum_over_samples",
    "sum_over_samples_block",
    "unique_metadata",
    "unique_metadata_block",
    "unsafe_disable_checks",
    "unsafe_enable_checks",
    "var_over_properties",
    "var_over_properties_block",
    "var_over_samples",
    "var_over_samples_block",
    "zeros_like",
    "zeros_like_block",
]
