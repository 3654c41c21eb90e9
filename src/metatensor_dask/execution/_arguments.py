"""Arguments of a pipeline step as YAML gives them, turned into what the operation takes.

YAML has no Labels and no arrays. A parameter that takes Labels (``slice``'s
``selection``, ``drop_blocks``' ``keys``, ``keys_to_samples``' ``keys_to_move``...) gets
them from a mapping of dimension names to their values, one list per dimension, such as
``{center_type: [6, 8], neighbor_type: [6, 6]}`` (two entries); a parameter that takes a
numpy array (``append_dimension``'s ``values``) gets it from a list. Other values are
passed as they are.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import MetatensorDaskError, MetatensorError

__all__ = ["ArgumentError", "typed_arguments"]

_LABELS = re.compile(r"\b(Labels|Selection)\b")
_ARRAY = re.compile(r"\bnp\.ndarray\b")
_FORM = "give Labels as {dimension: [values], ...}, one list of integers per dimension"


class ArgumentError(MetatensorDaskError):
    """An argument of a step can not be turned into what the operation takes."""


def typed_arguments(function: Callable[..., Any], args: Mapping[str, Any]) -> dict[str, Any]:
    """``args`` with the mappings given to Labels parameters turned into Labels and the
    lists given to array parameters into numpy arrays.

    Raises
    ------
    ArgumentError
        A mapping that does not describe Labels; the message names the argument.
    """
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return dict(args)
    result = {}
    for name, value in args.items():
        annotation = str(parameters[name].annotation) if name in parameters else ""
        if isinstance(value, dict) and _LABELS.search(annotation):
            value = _labels(name, value)
        elif isinstance(value, list) and _ARRAY.search(annotation):
            value = np.array(value)
        result[name] = value
    return result


def _labels(argument: str, columns: dict[Any, Any]) -> Any:
    from ..labels import Labels

    if not columns:
        raise ArgumentError(f"`{argument}`: Labels need at least one dimension; {_FORM}")
    values = [column if isinstance(column, list) else [column] for column in columns.values()]
    if len({len(column) for column in values}) > 1:
        lengths = ", ".join(f"{n}: {len(c)}" for n, c in zip(columns, values, strict=True))
        raise ArgumentError(
            f"`{argument}`: every dimension needs as many values ({lengths}); {_FORM}"
        )
    if not all(isinstance(v, int) and not isinstance(v, bool) for c in values for v in c):
        raise ArgumentError(f"`{argument}`: Labels values must be integers; {_FORM}")
    try:
        return Labels([str(n) for n in columns], np.array(values, dtype=np.int64).T)
    except (ValueError, TypeError, OverflowError, MetatensorError) as error:
        raise ArgumentError(f"`{argument}`: {error}; {_FORM}") from None
