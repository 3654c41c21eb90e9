"""``equal``, ``allclose`` and their ``_raise`` and ``_block`` forms tell maps and
blocks that differ in keys, shapes or metadata (gradients' included) without computing
any value: under a scheduler that refuses to run, they answer, with metatensor's answer
and, where only the metadata differ, its message."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd


def _refuse_to_compute(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("a value was computed")


def _block(
    rng: np.random.Generator, samples: np.ndarray, gradients: bool
) -> metatensor.TensorBlock:
    block = metatensor.TensorBlock(
        rng.normal(size=(len(samples), 2, 3)),
        metatensor.Labels(["system", "atom"], samples),
        [metatensor.Labels.range("xyz", 2)],
        metatensor.Labels(["n"], np.array([[0], [2], [5]], np.int32)),
    )
    if gradients:
        rows = np.arange(0, len(samples), 2, dtype=np.int32)
        block.add_gradient(
            "positions",
            metatensor.TensorBlock(
                rng.normal(size=(len(rows), 3, 2, 3)),
                metatensor.Labels(["sample", "atom"], np.stack([rows, rows % 3], axis=1)),
                [metatensor.Labels.range("d", 3), metatensor.Labels.range("xyz", 2)],
                block.properties,
            ),
        )
    return block


def _tensor(seed: int, gradients: bool = True) -> metatensor.TensorMap:
    rng = np.random.default_rng(seed)
    samples = np.stack([np.repeat(np.arange(4), 3), np.tile(np.arange(3), 4)], axis=1)
    blocks = [_block(rng, samples.astype(np.int32), gradients) for _ in range(3)]
    keys = metatensor.Labels(["center"], np.array([[1], [6], [8]], np.int32))
    return metatensor.TensorMap(keys, blocks)


def _changed(tensor: metatensor.TensorMap, which: int, change: Callable) -> metatensor.TensorMap:
    """``tensor`` whose block ``which`` is ``change(block)``, the others the same."""
    blocks = [change(b) if i == which else b.copy() for i, b in enumerate(tensor.blocks())]
    return metatensor.TensorMap(tensor.keys, blocks)


def _rebuilt(
    block: metatensor.TensorBlock,
    samples: metatensor.Labels | None = None,
    properties: metatensor.Labels | None = None,
    gradient_samples: metatensor.Labels | None = None,
    gradients: bool = True,
    values: np.ndarray | None = None,
) -> metatensor.TensorBlock:
    new = metatensor.TensorBlock(
        block.values.copy() if values is None else values,
        block.samples if samples is None else samples,
        block.components,
        block.properties if properties is None else properties,
    )
    if gradients:
        gradient = block.gradient("positions")
        new.add_gradient(
            "positions",
            metatensor.TensorBlock(
                gradient.values.copy(),
                gradient.samples if gradient_samples is None else gradient_samples,
                gradient.components,
                new.properties,
            ),
        )
    return new


def _other_samples(block: metatensor.TensorBlock) -> metatensor.TensorBlock:
    values = block.samples.values.copy()
    values[[0, 1]] = values[[1, 0]]
    return _rebuilt(block, samples=metatensor.Labels(block.samples.names, values))


def _other_properties(block: metatensor.TensorBlock) -> metatensor.TensorBlock:
    return _rebuilt(block, properties=metatensor.Labels(["n"], np.array([[0], [2], [6]])))


def _other_gradient_samples(block: metatensor.TensorBlock) -> metatensor.TensorBlock:
    samples = block.gradient("positions").samples
    values = samples.values.copy()
    values[:, 1] = (values[:, 1] + 1) % 3
    return _rebuilt(block, gradient_samples=metatensor.Labels(samples.names, values))


def _no_gradient(block: metatensor.TensorBlock) -> metatensor.TensorBlock:
    return _rebuilt(block, gradients=False)


def _fewer_samples(block: metatensor.TensorBlock) -> metatensor.TensorBlock:
    samples = metatensor.Labels(block.samples.names, block.samples.values[:-1])
    return _rebuilt(block, samples=samples, values=block.values[:-1].copy())


def _other_keys(tensor: metatensor.TensorMap) -> metatensor.TensorMap:
    keys = metatensor.Labels(["center"], np.array([[1], [6], [7]], np.int32))
    return metatensor.TensorMap(keys, [b.copy() for b in tensor.blocks()])


_CHANGES = {
    "samples": _other_samples,
    "properties": _other_properties,
    "gradient samples": _other_gradient_samples,
    "shapes": _fewer_samples,
}


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, metatensor.TensorMap]:
    tensor = _tensor(3)
    path = tmp_path_factory.mktemp("compare") / "t.zarr"
    mtd.to_zarr(mtd.from_metatensor(tensor), path)
    return path, tensor


def _variants(tensor: metatensor.TensorMap) -> list[tuple[str, metatensor.TensorMap]]:
    without_gradients = metatensor.TensorMap(tensor.keys, [_no_gradient(b) for b in tensor])
    variants = [("keys", _other_keys(tensor)), ("gradient parameters", without_gradients)]
    for name, change in _CHANGES.items():
        for which in (0, 2):
            variants.append((f"{name} of block {which}", _changed(tensor, which, change)))
    return variants


def _message(function: Callable, *arguments: Any) -> str:
    with pytest.raises((metatensor.NotEqualError, mtd.NotEqualError)) as raised:
        function(*arguments)
    return str(raised.value)


@pytest.mark.parametrize("name", ["equal", "allclose"])
def test_maps_differing_in_metadata_are_told_without_computing(stored, name: str) -> None:
    path, tensor = stored
    ours, theirs = getattr(mtd, name), getattr(metatensor, name)
    ours_raise, theirs_raise = getattr(mtd, f"{name}_raise"), getattr(metatensor, f"{name}_raise")
    for label, other in _variants(tensor):
        opened = mtd.open_zarr(path)
        lazy_other = mtd.from_metatensor(other)
        with dask.config.set(scheduler=_refuse_to_compute):
            for first, second in [(opened, lazy_other), (lazy_other, opened)]:
                assert ours(first, second) is False, label
            got = _message(ours_raise, opened, lazy_other)
        assert theirs(tensor, other) is False, label
        assert got == _message(theirs_raise, tensor, other), label


@pytest.mark.parametrize("name", ["equal_block", "allclose_block"])
def test_blocks_differing_in_metadata_are_told_without_computing(stored, name: str) -> None:
    path, tensor = stored
    ours, theirs = getattr(mtd, name), getattr(metatensor, name)
    ours_raise, theirs_raise = getattr(mtd, f"{name}_raise"), getattr(metatensor, f"{name}_raise")
    for label, change in {**_CHANGES, "gradient parameters": _no_gradient}.items():
        other = change(tensor.block(1))
        block = mtd.open_zarr(path).block(1)
        lazy_other = mtd.from_metatensor(
            metatensor.TensorMap(metatensor.Labels.range("k", 1), [other.copy()])
        ).block(0)
        with dask.config.set(scheduler=_refuse_to_compute):
            assert ours(block, lazy_other) is False, label
            got = _message(ours_raise, block, lazy_other)
        assert theirs(tensor.block(1), other) is False, label
        assert got == _message(theirs_raise, tensor.block(1), other), label


def test_metadata_are_told_before_values_of_an_earlier_block(stored) -> None:
    # block 0 differs in values, block 2 in samples: told from the metadata alone
    path, tensor = stored
    values = tensor.block(0).values + 1.0
    other = _changed(tensor, 0, lambda block: _rebuilt(block, values=values))
    other = _changed(other, 2, _other_samples)
    with dask.config.set(scheduler=_refuse_to_compute):
        assert mtd.equal(mtd.open_zarr(path), mtd.from_metatensor(other)) is False
        got = _message(mtd.equal_raise, mtd.open_zarr(path), mtd.from_metatensor(other))
    assert got.startswith("blocks for key (center=8) are different: inputs to 'equal'")
    assert not metatensor.equal(tensor, other)


def test_maps_with_the_same_metadata_compare_values_and_gradients(stored) -> None:
    path, tensor = stored
    gradient_changed = _tensor(3)
    gradient_changed.block(1).gradient("positions").values[0, 0, 0, 0] += 1e-3
    for other in [
        tensor,
        gradient_changed,
        _changed(tensor, 1, lambda b: _rebuilt(b, values=b.values * 2)),
    ]:
        opened = mtd.open_zarr(path)
        assert mtd.equal(opened, mtd.from_metatensor(other)) == metatensor.equal(tensor, other)
        assert mtd.allclose(opened, mtd.from_metatensor(other)) == metatensor.allclose(
            tensor, other
        )
        if not metatensor.equal(tensor, other):
            assert _message(mtd.equal_raise, opened, mtd.from_metatensor(other)) == _message(
                metatensor.equal_raise, tensor, other
            )
