"""``lstsq`` of complex blocks in several chunks (values and gradients, ``X`` and ``Y``
chunked differently) equals metatensor's: the tree of QR factorisations works in
complex double and keeps the conjugate transposes numpy's ``lstsq`` uses."""

import numpy as np
import pytest
from test_s30_lstsq_tree import _in_chunks, _one_block, _solved

from metatensor_dask.testing import assert_equal_to_metatensor


def _complex(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.normal(size=shape) + 1j * rng.normal(size=shape)


@pytest.mark.parametrize("rcond", [None, -1, 0.05])
def test_complex_chunked_systems_equal_metatensor(rcond):
    rng = np.random.default_rng(7)
    x = _one_block(_complex(rng, 9, 4), _complex(rng, 13, 4))
    y = _one_block(_complex(rng, 9, 2), _complex(rng, 13, 2))
    result, expected = _solved((_in_chunks(x, 2), _in_chunks(y, 5)), (x, y), rcond)
    assert expected.block(0).values.dtype == np.complex128
    assert_equal_to_metatensor(result, expected, rtol=1e-10, atol=1e-12)
