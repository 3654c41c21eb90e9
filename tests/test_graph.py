"""The seam between metatensor-dask and dask's graph internals (``metatensor_dask._graph``).

These tests fail loudly when a dask release changes what the seam relies on.
"""

import os
import subprocess
import sys

import dask
import dask.array as da
import numpy as np
import pytest

from metatensor_dask import _graph
from metatensor_dask.testing import raise_if_dask_computes


def _add(a, b):
    return a + b


def test_array_from_tasks_is_a_lazy_dask_array_over_its_dependencies():
    x = da.arange(6, chunks=3)
    tasks = {
        ("plus", i): _graph.task(("plus", i), _add, _graph.chunk_ref(x, i), 10) for i in range(2)
    }
    with raise_if_dask_computes():
        y = _graph.array_from_tasks("plus", tasks, [x], ((3, 3),), np.int64)
        assert isinstance(y, da.Array)
        assert y.dtype == np.int64
        assert y.chunks == ((3, 3),)
        assert _graph.chunk_keys(y) == [("plus", 0), ("plus", 1)]
    np.testing.assert_array_equal(y.compute(), np.arange(6) + 10)
    np.testing.assert_array_equal((y * 2).compute(), (np.arange(6) + 10) * 2)


def test_legacy_tuple_tasks_and_delayed_results():
    x = da.arange(4, chunks=2)
    tasks = {"total": (sum, [(np.sum, (x.name, 0)), (np.sum, (x.name, 1))])}
    assert _graph.flat_delayed("total", tasks, [x]).compute() == 6


def test_items_of_a_group_read_the_group_result():
    x = da.from_array(np.arange(3.0), chunks=3)
    group_tasks = _graph.flat_tasks([x])
    group_tasks["group"] = _graph.task("group", lambda a: (a, a * 2), _graph.chunk_ref(x, 0))
    group = ("group", _graph.group_layer(group_tasks))
    item = object()
    second = _graph.item_array(
        "second", lambda pair: pair[1], (_graph.ref("group"),), group, (3,), float, item=item
    )
    assert _graph.item_of(second) is item
    assert _graph.item_of(_graph.block_values(x)) is None
    assert _graph.item_of(x) is None
    np.testing.assert_array_equal(second.compute(), np.arange(3.0) * 2)


def test_query_planning_is_refused_on_import_with_the_remedy():
    env = {**os.environ, "DASK_ARRAY__QUERY_PLANNING": "True"}
    code = "import metatensor_dask"
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "metatensor_dask.errors.MetatensorDaskError" in result.stderr
    assert "DASK_ARRAY__QUERY_PLANNING=False" in result.stderr
    assert 'dask.config.set({"array.query-planning": False})' in result.stderr


def test_query_planning_off_imports():
    env = {**os.environ, "DASK_ARRAY__QUERY_PLANNING": "False"}
    code = "import metatensor_dask as mtd; print(mtd.TensorBlock.__name__)"
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "TensorBlock"


def test_check_query_planning_passes_here():
    assert dask.config.get("array.query-planning") in (None, False)
    _graph.check_query_planning()


@pytest.mark.parametrize("chunks", [(1, 2), (2, 2)])
def test_block_values_is_a_view_over_the_same_graph(chunks):
    array = da.ones((2, 2), chunks=chunks)
    view = _graph.block_values(array)
    assert view.name == array.name
    assert view.chunks == array.chunks
    assert _graph.block_values(view) is view
    numpy = np.ones(3)
    assert _graph.block_values(numpy) is numpy
