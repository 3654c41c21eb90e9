"""``one_hot``: one-hot encoding of one label dimension."""

from __future__ import annotations

import numpy as np

from ..labels import Labels

__all__ = ["one_hot"]


def one_hot(labels: Labels, dimension: Labels) -> np.ndarray:
    """One-hot encode the column ``dimension.names[0]`` of ``labels``.

    Parameters
    ----------
    labels
        The labels to encode (for example a block's samples).
    dimension
        Labels with a single dimension: the possible values, one per output column.

    Returns
    -------
    numpy.ndarray
        An int32 array of shape ``(len(labels), len(dimension))`` with a single 1 per
        row, in the column of that row's value in ``dimension``. Labels live in
        memory, so this is a numpy array.

    Notes
    -----
    Gradient rule: none applies; the encoding is built from labels, not values.
    """
    if len(dimension.names) != 1:
        raise ValueError(
            "only one label dimension can be extracted as one-hot encoding. The "
            f"`dimension` labels contains {len(dimension.names)} names"
        )
    name = dimension.names[0]
    column = labels.column(name)
    positions = np.full(len(column), -1, np.int64)
    choices = dimension.values[:, 0]
    order = np.argsort(choices, kind="stable")
    where = np.searchsorted(choices[order], column)
    found = where < len(choices)
    found[found] = choices[order][where[found]] == column[found]
    positions[found] = order[where[found]]
    if not found.all():
        missing = column[~found][0]
        raise ValueError(
            f"{name}={missing} is present in the labels, but was not found in the dimension"
        )
    result = np.zeros((len(column), len(dimension)), np.int32)
    result[np.arange(len(column)), positions] = 1
    return result
