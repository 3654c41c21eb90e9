"""metatensor-operations on dask: same names, signatures, errors and gradient rules.

Every operation checks metadata eagerly, computes output Labels eagerly, and builds a
lazy dask graph for values and gradients. They are re-exported at the top level
(``mtd.add``, ``mtd.multiply``...).
"""

from __future__ import annotations

__all__: list[str] = []

# Each section: one import line per module, then `__all__ += [...]` with its names.

# --- Operations I: math, linear algebra, comparison, creation (one line per module) ---
from .abs import abs  # noqa: A004
from .add import add
from .allclose import allclose, allclose_block, allclose_block_raise, allclose_raise
from .creation import block_from_array, empty_like, empty_like_block, ones_like, ones_like_block, random_uniform_like, random_uniform_like_block, zeros_like, zeros_like_block  # noqa: E501
from .detach import detach, detach_block, requires_grad, requires_grad_block
from .divide import divide
from .dot import dot
from .equal import equal, equal_block, equal_block_raise, equal_raise
from .equal_metadata import equal_metadata, equal_metadata_block, equal_metadata_block_raise, equal_metadata_raise  # noqa: E501
from .is_contiguous import is_contiguous, is_contiguous_block
from .lstsq import lstsq
from .make_contiguous import make_contiguous, make_contiguous_block
from .multiply import multiply
from .pow import pow  # noqa: A004
from .remove_gradients import remove_gradients, remove_gradients_block
from .solve import solve
from .subtract import subtract
from ..errors import NotEqualError  # noqa: F401  (metatensor.operations.NotEqualError)

__all__ += [
    "abs", "add", "allclose", "allclose_block", "allclose_block_raise",
    "allclose_raise", "block_from_array", "detach", "detach_block", "divide", "dot",
    "empty_like", "empty_like_block", "equal", "equal_block", "equal_block_raise",
    "equal_metadata", "equal_metadata_block", "equal_metadata_block_raise",
    "equal_metadata_raise", "equal_raise", "is_contiguous", "is_contiguous_block", "lstsq",
    "make_contiguous", "make_contiguous_block", "multiply", "ones_like", "ones_like_block",
    "pow", "random_uniform_like", "random_uniform_like_block", "remove_gradients",
    "remove_gradients_block", "requires_grad", "requires_grad_block", "solve", "subtract",
    "zeros_like", "zeros_like_block",
]

# --- Operations II: manipulation, selection, reductions, key moves (one line per module) ---
from .drop_blocks import drop_blocks, drop_empty_blocks, filter_blocks
from .join import join, join_blocks
from .keys_to import components_to_properties, keys_to_properties, keys_to_samples
from .manipulate_dimension import append_dimension, insert_dimension, permute_dimensions, remove_dimension, rename_dimension  # noqa: E501
from .one_hot import one_hot
from .reduce_over_properties import mean_over_properties, mean_over_properties_block, std_over_properties, std_over_properties_block, sum_over_properties, sum_over_properties_block, var_over_properties, var_over_properties_block  # noqa: E501
from .reduce_over_samples import mean_over_samples, mean_over_samples_block, std_over_samples, std_over_samples_block, sum_over_samples, sum_over_samples_block, var_over_samples, var_over_samples_block  # noqa: E501
from .slice import slice, slice_block  # noqa: A004
from .sort import sort, sort_block
from .split import split, split_block
from .unique_metadata import unique_metadata, unique_metadata_block

__all__ += [
    "append_dimension", "components_to_properties", "drop_blocks", "drop_empty_blocks",
    "filter_blocks", "insert_dimension", "join", "join_blocks", "keys_to_properties",
    "keys_to_samples", "mean_over_properties", "mean_over_properties_block",
    "mean_over_samples", "mean_over_samples_block", "one_hot", "permute_dimensions",
    "remove_dimension", "rename_dimension", "slice", "slice_block", "sort", "sort_block",
    "split", "split_block", "std_over_properties", "std_over_properties_block",
    "std_over_samples", "std_over_samples_block", "sum_over_properties",
    "sum_over_properties_block", "sum_over_samples", "sum_over_samples_block",
    "unique_metadata", "unique_metadata_block", "var_over_properties",
    "var_over_properties_block", "var_over_samples", "var_over_samples_block",
]

