"""Moving keys named twice is refused first, with metatensor's error: before a name
that is not a key, before an empty map, and before a name that the samples or
properties already have (which is refused after, where metatensor stops on an internal
assertion)."""

import numpy as np
import pytest
from metatensor_compare import assert_same_error_of

HIGH, LOW = 2**31 - 1, -(2**31)


def _map(module, empty=False):
    """Keys ``(a, s, p)``; the samples ``s`` and the properties ``p`` share their names."""
    if empty:
        return module.TensorMap(module.Labels(["a", "s", "p"], np.zeros((0, 3), np.int32)), [])
    blocks = [
        module.TensorBlock(
            np.full((2, 1), float(i)),
            module.Labels(["s"], np.array([[HIGH], [LOW]], dtype=np.int32)),
            [],
            module.Labels(["p"], np.array([[LOW]], dtype=np.int32)),
        )
        for i in range(2)
    ]
    keys = module.Labels(["a", "s", "p"], np.array([[LOW, 0, 1], [HIGH, 0, 1]], dtype=np.int32))
    return module.TensorMap(keys, blocks)


@pytest.mark.parametrize("function", ["keys_to_samples", "keys_to_properties"])
@pytest.mark.parametrize(
    "names",
    [
        ["s", "s"],
        ["p", "a", "p"],
        ["a", "s", "p", "s"],
        ["s", "p", "p", "s"],
        ["z", "z"],
        ["a", "z", "a"],
    ],
)
@pytest.mark.parametrize("empty", [False, True])
def test_a_name_moved_twice_is_refused_as_by_metatensor(function, names, empty):
    assert_same_error_of(lambda module: getattr(_map(module, empty), function)(names))
