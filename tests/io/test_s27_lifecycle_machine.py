"""The life of one store as a state machine: every writer mixed (``to_zarr`` in each
mode, appends with and without ``renumber``, appends interrupted then resumed or
discarded, conversions, operations writing elsewhere) and tensors opened before some of
them, compared after every step with a model kept in metatensor memory.

``S27_LIFECYCLE_EXAMPLES`` and ``S27_LIFECYCLE_STEPS`` (environment) run a longer
profile than the one of the test suite."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import metatensor
import numpy as np
import pytest
from forked_process import Forked, run_code
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from kill_support import ended
from test_s24_append_refusals import location_state

import metatensor_dask as mtd
from metatensor_dask.execution.cli import main
from metatensor_dask.testing import assert_equal_to_metatensor

SAMPLE_NAMES = ["system", "atom"]
KEYS = [0, 1, 2, 3]
#: parents come before their nested gradients
GRADIENTS = ["positions", "cell", "positions/strain"]
#: per gradient: its own components, its sample names after "sample"
OWN = {
    "positions": (("xyz", 3), ["system", "atom"]),
    "cell": (("ab", 2), []),
    "positions/strain": (("s", 2), []),
}
DTYPES = [np.float64, np.float32]
SEEDS = st.integers(0, 2**32 - 1)
#: settings of every write of one store's life
CODECS = [
    {},
    {"checksum": False},
    {"shard-chunks": 2},
    {"compressor": "zstd", "shard-chunks": 3},
]


def _entries(name: str, n: int) -> metatensor.Labels:
    return metatensor.Labels([name], np.arange(n, dtype=np.int32).reshape(-1, 1))


COMPONENTS = [_entries("c", 2)]


def _properties(key: int) -> metatensor.Labels:
    return _entries("p", 1 + key % 3)


def _components(name: str) -> list[metatensor.Labels]:
    """Components of a gradient: its own before those of its parent."""
    (own, size), _ = OWN[name]
    parent = name.rpartition("/")[0]
    return [_entries(own, size), *(_components(parent) if parent else COMPONENTS)]


def _shape(name: str | None, rows: int, key: int) -> tuple[int, ...]:
    components = COMPONENTS if name is None else _components(name)
    return (rows, *(len(c) for c in components), len(_properties(key)))


@dataclass
class Part:
    """Sample rows (int32) and values of one array of a block."""

    samples: np.ndarray
    values: np.ndarray


@dataclass
class Block:
    """One block of the model: its values, its gradients in stored order."""

    key: int
    values: Part
    gradients: dict[str, Part] = field(default_factory=dict)


def _random(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def _gradient(
    rng: np.random.Generator, name: str, parent: np.ndarray, key: int, dtype: Any
) -> Part:
    """A gradient of ``parent``'s rows: 0 to 2 distinct rows of each."""
    rows: list[tuple[int, ...]] = []
    for i, row in enumerate(parent):
        if name == "positions":
            atoms = sorted(rng.choice(4, size=int(rng.integers(3)), replace=False))
            rows.extend((i, int(row[0]), int(a)) for a in atoms)
        elif rng.random() < 0.6:
            rows.append((i,))
    width = 1 + len(OWN[name][1])
    samples = np.array(rows, np.int32).reshape(len(rows), width)
    return Part(samples, _random(rng, _shape(name, len(rows), key), dtype))


def _parent_samples(block: Block, name: str) -> np.ndarray:
    parent = name.rpartition("/")[0]
    return block.gradients[parent].samples if parent else block.values.samples


def _add_gradient(rng: np.random.Generator, block: Block, name: str, dtype: Any) -> None:
    block.gradients[name] = _gradient(rng, name, _parent_samples(block, name), block.key, dtype)


def _gradient_set(rng: np.random.Generator) -> list[str]:
    chosen = [name for name in GRADIENTS[:2] if rng.random() < 0.5]
    if "positions" in chosen and rng.random() < 0.5:
        chosen.append("positions/strain")
    return chosen


def _new_block(
    rng: np.random.Generator, key: int, rows: np.ndarray, names: list[str], dtype: Any
) -> Block:
    block = Block(key, Part(rows, _random(rng, _shape(None, len(rows), key), dtype)))
    for name in names:
        _add_gradient(rng, block, name, dtype)
    return block


def _sample_rows(rng: np.random.Generator, first_system: int) -> np.ndarray:
    """0 to 4 distinct (system, atom) rows, systems from ``first_system``."""
    n = int(rng.integers(5))
    drawn = {(first_system + int(rng.integers(3)), int(rng.integers(3))) for _ in range(n)}
    ordered = sorted(drawn) if rng.random() < 0.7 else list(drawn)
    return np.array(ordered, np.int32).reshape(len(ordered), 2)


def _mt_block(block: Block, name: str | None = None) -> metatensor.TensorBlock:
    part = block.values if name is None else block.gradients[name]
    names = SAMPLE_NAMES if name is None else ["sample", *OWN[name][1]]
    made = metatensor.TensorBlock(
        part.values,
        metatensor.Labels(names, part.samples),
        COMPONENTS if name is None else _components(name),
        _properties(block.key),
    )
    prefix = "" if name is None else f"{name}/"
    for child in block.gradients:
        if child.startswith(prefix) and "/" not in child[len(prefix) :]:
            made.add_gradient(child[len(prefix) :], _mt_block(block, child))
    return made


def as_metatensor(blocks: list[Block]) -> metatensor.TensorMap:
    keys = np.array([[b.key] for b in blocks], np.int32).reshape(len(blocks), 1)
    return metatensor.TensorMap(metatensor.Labels(["k"], keys), [_mt_block(b) for b in blocks])


def _shifted(part: Part, column: int, by: int) -> Part:
    samples = part.samples.copy()
    samples[:, column] += by
    return Part(samples, part.values)


def renumbered(block: Block, offset: int) -> Block:
    """``block`` with ``offset`` added to its systems (values and positions gradient)."""
    gradients = {
        name: _shifted(part, 1, offset) if name == "positions" else part
        for name, part in block.gradients.items()
    }
    return Block(block.key, _shifted(block.values, 0, offset), gradients)


def _joined(a: Part, b: Part, shift: int) -> Part:
    return Part(
        np.concatenate([a.samples, _shifted(b, 0, shift).samples]),
        np.concatenate([a.values, b.values]),
    )


def appended(stored: Block, new: Block) -> Block:
    """``new``'s rows after ``stored``'s, gradient rows pointing to their parent's rows."""
    gradients = {}
    for name, part in stored.gradients.items():
        rows = len(_parent_samples(stored, name))
        gradients[name] = _joined(part, new.gradients[name], rows)
    return Block(stored.key, _joined(stored.values, new.values, 0), gradients)


def _following_system(blocks: list[Block]) -> int:
    """One past the largest stored system (0 when none is): ``renumber`` ``"next"``."""
    systems = [int(b.values.samples[:, 0].max()) for b in blocks if len(b.values.samples)]
    return max(systems) + 1 if systems else 0


@dataclass
class Pending:
    """An append left interrupted: what resumes it, and the model it leads to."""

    tensor: mtd.TensorMap
    arguments: dict[str, Any]
    blocks: list[Block]
    #: the words of the refusal of other writes while it is left
    refusal: str


@dataclass
class Opened:
    """A tensor opened from the store, and the model when it was opened."""

    tensor: mtd.TensorMap
    expected: metatensor.TensorMap
    #: whether its values may now read as others: its store, written without
    #: checksums, was written whole since (documented as not detected)
    unchecked: bool = False


KILLED = """
import json, os, signal, sys
import dask, metatensor, metatensor_dask as mtd
source, target, arguments, codecs = sys.argv[1:]
tensor = mtd.from_metatensor(metatensor.load(source))
settings = {f"metatensor_dask.{name}": value for name, value in json.loads(codecs).items()}
with dask.config.set(settings):
    tensor.to_zarr(target, compute=False, **json.loads(arguments))
os.kill(os.getpid(), signal.SIGKILL)
"""


class StoreLife(RuleBasedStateMachine):
    """One store and the model of what it holds (``None``: no store)."""

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="s27-lifecycle-"))
        self.path = self.folder / "life.zarr"
        self.blocks: list[Block] | None = None
        self.dtype: Any = None
        #: the gradients of every block, in stored order
        self.gradients: list[str] = []
        self.pending: Pending | None = None
        self.opened: list[Opened] = []
        self.copies = 0
        self.settings: Any = None
        self.codecs: dict[str, Any] = {}
        self.checks = 0

    @initialize(codecs=st.sampled_from(CODECS))
    def choose_codecs(self, codecs: dict[str, Any]) -> None:
        """The codec settings of the writes of this life (taken until its teardown)."""
        self.codecs = codecs
        self.settings = dask.config.set(
            {f"metatensor_dask.{name}": value for name, value in codecs.items()}
        )

    def teardown(self) -> None:
        if self.pending is not None:
            mtd.discard_append(self.path)  # releases the lock the Delayed holds
        if self.settings is not None:
            self.settings.__exit__(None, None, None)
        shutil.rmtree(self.folder, ignore_errors=True)
        if LONG:
            print(f"store life of {self.checks} checks")  # counted by the long profile

    # -- helpers ---------------------------------------------------------------------------

    def _input(self, blocks: list[Block], rng: np.random.Generator) -> mtd.TensorMap:
        tensor = mtd.from_metatensor(as_metatensor(blocks))
        if len(blocks) and rng.random() < 0.3:
            self.copies += 1
            source = self.folder / f"source-{self.copies}.zarr"
            tensor.to_zarr(source, chunks=int(rng.integers(1, 3)))
            tensor = mtd.open_zarr(source)
        return tensor

    def _refused(self, call: Any, words: str) -> None:
        """``call`` raises a metatensor-dask error saying ``words``, with no byte of
        the store changed."""
        before = location_state(self.path)
        with pytest.raises(mtd.MetatensorDaskError, match=words):
            call()
        assert location_state(self.path) == before

    def _expected(self) -> metatensor.TensorMap:
        assert self.blocks is not None
        return as_metatensor(self.blocks)

    def _by_key(self) -> dict[int, Block]:
        return {b.key: b for b in self.blocks or []}

    def _fresh_blocks(
        self, rng: np.random.Generator, keys: list[int], names: list[str], dtype: Any
    ) -> list[Block]:
        return [_new_block(rng, key, _sample_rows(rng, 0), names, dtype) for key in keys]

    def _append_batch(
        self, rng: np.random.Generator
    ) -> tuple[list[Block], list[Block], dict[str, Any], str | None]:
        """Blocks to append as given, as they will be stored, the arguments of the
        append, and the words of its refusal (``None``: accepted)."""
        stored = self._by_key()
        keys = [k for k in KEYS if rng.random() < 0.5] or [int(rng.choice(KEYS))]
        if rng.random() < 0.1:
            keys = []  # a map of no block
        rng.shuffle(keys)
        following = _following_system(list(stored.values()))
        kind = rng.choice(["next", "int", "none"])
        offset = following + int(rng.integers(3)) if kind != "next" else following
        batch = []
        for key in keys:
            names = self.gradients
            first = offset if kind == "none" else 0
            batch.append(_new_block(rng, key, _sample_rows(rng, first), names, self.dtype))
        arguments: dict[str, Any] = {"append_dim": "samples", "chunks": int(rng.integers(1, 4))}
        if kind != "none":
            arguments["renumber"] = {"system": "next" if kind == "next" else offset}
        words = None
        repeated = [b for b in batch if b.key in stored and len(stored[b.key].values.samples)]
        if kind == "none" and repeated and rng.random() < 0.2:
            victim = repeated[0]
            rows = np.concatenate([victim.values.samples, stored[victim.key].values.samples[-1:]])
            names = list(stored[victim.key].gradients)
            batch[batch.index(victim)] = _new_block(rng, victim.key, rows, names, self.dtype)
            words = "already stored"
        shift = 0 if kind == "none" else offset
        return batch, [renumbered(b, shift) for b in batch], arguments, words

    # -- rules -----------------------------------------------------------------------------

    @rule(seed=SEEDS, overwrite=st.booleans())
    def write(self, seed: int, overwrite: bool) -> None:
        """``to_zarr`` with mode ``w-`` or ``w`` of a new random tensor."""
        rng = np.random.default_rng(seed)
        dtype = DTYPES[int(rng.integers(2))]
        names = _gradient_set(rng)
        keys = [k for k in KEYS if rng.random() < 0.6] or [int(rng.choice(KEYS))]
        rng.shuffle(keys)
        blocks = self._fresh_blocks(rng, keys, names, dtype)
        tensor = self._input(blocks, rng)
        mode = "w" if overwrite else "w-"
        chunks = int(rng.integers(1, 4))
        if mode == "w-" and (self.pending is not None or self.blocks is not None):
            words = self.pending.refusal if self.pending is not None else "exist"
            self._refused(lambda: tensor.to_zarr(self.path, mode=mode, chunks=chunks), words)
            return
        tensor.to_zarr(self.path, mode=mode, chunks=chunks)
        self.blocks, self.dtype, self.gradients, self.pending = blocks, dtype, names, None
        self._written_whole()

    @precondition(lambda self: self.blocks is not None)
    @rule(seed=SEEDS)
    def overwrite_from_itself(self, seed: int) -> None:
        """``mode="w"`` or ``"r+"`` of values computed from the store: refused."""
        rng = np.random.default_rng(seed)
        doubled = mtd.multiply(mtd.open_zarr(self.path), 2.0) if self._plain() else None
        if doubled is None:
            return
        mode = "w" if rng.random() < 0.5 else "r+"
        # mode 'w' may take a lock over, 'r+' never: refused by the lock first
        words = self.pending.refusal if self.pending and mode == "r+" else "compute"
        self._refused(lambda: doubled.to_zarr(self.path, mode=mode), words)

    def _plain(self) -> bool:
        return not any("/" in name for b in self.blocks or [] for name in b.gradients)

    @precondition(lambda self: self.blocks is not None and len(self.blocks) < len(KEYS))
    @rule(seed=SEEDS)
    def add_keys(self, seed: int) -> None:
        """``mode="a"`` with keys that are not stored: new blocks after the others."""
        rng = np.random.default_rng(seed)
        stored = self._by_key()
        free = [k for k in KEYS if k not in stored]
        keys = [k for k in free if rng.random() < 0.6] or [free[0]]
        blocks = self._fresh_blocks(rng, keys, self.gradients, self.dtype)
        tensor = self._input(blocks, rng)
        call = lambda: tensor.to_zarr(self.path, mode="a", chunks=int(rng.integers(1, 4)))  # noqa: E731
        if self.pending is not None:
            self._refused(call, self.pending.refusal)
            return
        call()
        self.blocks = [*self.blocks, *blocks]

    @precondition(lambda self: self.blocks)
    @rule(seed=SEEDS)
    def add_gradient(self, seed: int) -> None:
        """``mode="a"`` with stored keys: refused without a new gradient, or with one
        for only some blocks, or with values that are not the stored ones; else the new
        gradient is stored beside the kept values."""
        rng = np.random.default_rng(seed)
        missing = [
            name
            for name in GRADIENTS
            if name not in self.gradients and name.rpartition("/")[0] in ("", *self.gradients)
        ]
        name = missing[int(rng.integers(len(missing)))] if missing else None
        blocks = [Block(b.key, b.values, dict(b.gradients)) for b in self.blocks]
        for block in blocks if name is not None else []:
            _add_gradient(rng, block, name, self.dtype)
        words = None
        if name is None:
            words = "already stored"
        elif len(blocks) > 1 and rng.random() < 0.2:
            blocks.pop(int(rng.integers(len(blocks))))
            words = "the same gradients"
        elif rng.random() < 0.2 and any(len(_parent_samples(b, name)) for b in blocks):
            # the values the new gradient is a derivative of: the block's, or its
            # parent gradient's
            changed = next(b for b in blocks if len(_parent_samples(b, name)))
            parent = name.rpartition("/")[0]
            part = changed.gradients[parent] if parent else changed.values
            values = part.values.copy()
            values.flat[int(rng.integers(values.size))] += 1.0
            if parent:
                changed.gradients[parent] = Part(part.samples, values)
            else:
                changed.values = Part(part.samples, values)
            words = "differ"
        if name is None:
            blocks = blocks[:1]
        tensor = self._input(blocks, rng)
        call = lambda: tensor.to_zarr(self.path, mode="a")  # noqa: E731
        if self.pending is not None:
            self._refused(call, self.pending.refusal)
        elif words is not None:
            self._refused(call, words)
        else:
            call()
            self.blocks = blocks
            self.gradients = [*self.gradients, name]

    @precondition(lambda self: self.blocks is not None)
    @rule(seed=SEEDS)
    def rewrite(self, seed: int) -> None:
        """``mode="r+"``: the same metadata, new values."""
        rng = np.random.default_rng(seed)
        blocks = []
        for old in self.blocks:
            block = Block(
                old.key, Part(old.values.samples, _random(rng, old.values.values.shape, self.dtype))
            )
            for name, part in old.gradients.items():
                block.gradients[name] = Part(
                    part.samples, _random(rng, part.values.shape, self.dtype)
                )
            blocks.append(block)
        tensor = self._input(blocks, rng)
        call = lambda: tensor.to_zarr(self.path, mode="r+")  # noqa: E731
        if self.pending is not None:
            self._refused(call, self.pending.refusal)
            return
        call()
        self.blocks = blocks
        self._written_whole()

    def _written_whole(self) -> None:
        if self.codecs.get("checksum") is False:
            for opened in self.opened:
                opened.unchecked = True

    @rule(seed=SEEDS, interrupt=st.sampled_from(["no", "no", "delayed", "killed"]))
    def append(self, seed: int, interrupt: str) -> None:
        """An append of samples (new keys too), or one left interrupted: its
        ``Delayed`` is never computed, or its process is killed once the call returned."""
        rng = np.random.default_rng(seed)
        if self.blocks is None and self.pending is None:
            self.dtype = DTYPES[int(rng.integers(2))]
            self.gradients = _gradient_set(rng)
        given, stored, arguments, words = self._append_batch(rng)
        if interrupt == "killed":
            source = self.folder / f"batch-{self.copies}.mts"
            self.copies += 1
            metatensor.save(str(source), as_metatensor(given))
            tensor = mtd.from_metatensor(metatensor.load(str(source)))
        else:
            tensor = self._input(given, rng)
        call = lambda: tensor.to_zarr(self.path, compute=interrupt == "no", **arguments)  # noqa: E731
        if self.pending is not None:
            self._refused(call, self.pending.refusal)
            return
        if words is not None:
            self._refused(call, words)
            return
        result = self._appended(stored)
        if interrupt == "killed":
            self._killed_append(source, arguments)
            self.pending = Pending(tensor, arguments, result, "looks gone")
        elif interrupt == "delayed":
            call()  # its Delayed, never computed
            self.pending = Pending(tensor, arguments, result, "Delayed has not run")
        else:
            call()
            self.blocks = result

    def _killed_append(self, source: Path, arguments: dict[str, Any]) -> None:
        """The append of the metatensor file ``source``, by a process killed once
        ``to_zarr(..., compute=False)`` returned: the metadata written, no chunk."""
        argv = [str(source), str(self.path), json.dumps(arguments), json.dumps(self.codecs)]
        # forked from a server that imported metatensor-dask once (not a new interpreter)
        process = Forked(run_code, KILLED, argv, {})
        output = ended(process)
        assert process.returncode == -9, output

    @precondition(lambda self: self.blocks is not None)
    @rule()
    def append_itself(self) -> None:
        """The store read and appended to itself, its systems renumbered after its own."""
        tensor = mtd.open_zarr(self.path)
        call = lambda: tensor.to_zarr(  # noqa: E731
            self.path, append_dim="samples", renumber={"system": "next"}
        )
        if self.pending is not None:
            self._refused(call, self.pending.refusal)
            return
        following = _following_system(self.blocks)
        batch = [renumbered(block, following) for block in self.blocks]
        call()
        self.blocks = self._appended(batch)

    def _appended(self, batch: list[Block]) -> list[Block]:
        stored = self._by_key()
        result = []
        for block in self.blocks or []:
            new = next((b for b in batch if b.key == block.key), None)
            result.append(block if new is None else appended(block, new))
        result.extend(b for b in batch if b.key not in stored)
        return result

    @precondition(lambda self: self.pending is not None)
    @rule(seed=SEEDS, same=st.booleans())
    def resume(self, seed: int, same: bool) -> None:
        """``resume=True`` with the same tensor finishes the interrupted append; with
        another one, it is refused, and the append stays to be finished."""
        assert self.pending is not None
        if same:
            self.pending.tensor.to_zarr(self.path, resume=True, **self.pending.arguments)
            self.blocks, self.pending = self.pending.blocks, None
            return
        rng = np.random.default_rng(seed)
        other = self._input(self._append_batch(rng)[0], rng)
        arguments = {**self.pending.arguments, "resume": True}
        self._refused(lambda: other.to_zarr(self.path, **arguments), "another tensor")

    @rule()
    def discard(self) -> None:
        """``discard_append``: the store reads as before the append; without one it is
        left as it is."""
        if self.pending is not None:
            assert mtd.discard_append(self.path) is True
            self.pending = None
        elif self.blocks is not None:
            before = location_state(self.path)
            assert mtd.discard_append(self.path) is False
            assert location_state(self.path) == before

    @rule()
    def verify(self) -> None:
        report = mtd.verify(self.path)
        if self.pending is not None:
            assert not report.ok
            assert any("resume=True" in problem for problem in report.problems), report.problems
            if self.pending.refusal == "looks gone":
                assert any("discard_append" in problem for problem in report.problems)
        elif self.blocks is not None:
            assert report.ok, report.problems
        else:
            assert not report.ok

    @precondition(lambda self: self.blocks is not None)
    @rule(through_file=st.booleans())
    def convert(self, through_file: bool) -> None:
        """``metatensor-dask convert`` store -> store, or store -> ``.mts`` -> store."""
        self.copies += 1
        target = self.folder / f"converted-{self.copies}.zarr"
        before = location_state(self.path)
        if through_file:
            middle = self.folder / f"converted-{self.copies}.mts"
            assert main(["convert", str(self.path), str(middle), "-q"]) == 0
            assert metatensor.equal(metatensor.load(str(middle)), self._expected())
            assert main(["convert", str(middle), str(target), "-q"]) == 0
        else:
            assert main(["convert", str(self.path), str(target), "-q", "--chunks", "2"]) == 0
        assert location_state(self.path) == before
        self._check(mtd.open_zarr(target))

    @precondition(lambda self: self.blocks is not None)
    @rule()
    def operation_elsewhere(self) -> None:
        """``open_zarr``, an operation, ``to_zarr`` to a second store."""
        self.copies += 1
        target = self.folder / f"operated-{self.copies}.zarr"
        expected = self._expected()
        try:
            theirs = metatensor.multiply(expected, 2.0)
        except NotImplementedError:
            with pytest.raises(NotImplementedError):
                mtd.multiply(mtd.open_zarr(self.path), 2.0).to_zarr(target)
            return
        mtd.multiply(mtd.open_zarr(self.path), 2.0).to_zarr(target)
        assert_equal_to_metatensor(mtd.open_zarr(target), theirs)

    @precondition(lambda self: self.blocks is not None and len(self.opened) < 3)
    @rule()
    def open_for_later(self) -> None:
        self.opened.append(Opened(mtd.open_zarr(self.path), self._expected()))

    @precondition(lambda self: self.opened)
    @rule(which=st.integers(0, 2))
    def read_opened(self, which: int) -> None:
        """A tensor opened before the last writes reads its own values, or raises."""
        opened = self.opened.pop(which % len(self.opened))
        try:
            computed = opened.tensor.compute()
        except mtd.MetatensorDaskError:
            return
        if not opened.unchecked:
            assert_equal_to_metatensor(computed, opened.expected)

    # -- invariant -------------------------------------------------------------------------

    def _check(self, tensor: mtd.TensorMap) -> None:
        expected = self._expected()
        computed = tensor.compute()
        assert_equal_to_metatensor(computed, expected)
        assert metatensor.equal(mtd.to_metatensor(computed), expected)

    @invariant()
    def store_is_the_model(self) -> None:
        self.checks += 1
        if self.blocks is None:
            # an append creating the store, interrupted: incomplete, naming its resume
            refused = mtd.IncompleteStoreError if self.pending else mtd.MetatensorDaskError
            with pytest.raises(refused, match="resume=True" if self.pending else None):
                mtd.open_zarr(self.path)
            return
        self._check(mtd.open_zarr(self.path))


#: a long profile explores (random), the suite's is the same run every time
LONG = "S27_LIFECYCLE_EXAMPLES" in os.environ
EXAMPLES = int(os.environ.get("S27_LIFECYCLE_EXAMPLES", "10"))
STEPS = int(os.environ.get("S27_LIFECYCLE_STEPS", "15"))

StoreLife.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    derandomize=not LONG,
    report_multiple_bugs=False,
    phases=[Phase.generate] if os.environ.get("S27_LIFECYCLE_NO_SHRINK") else list(Phase),
    suppress_health_check=list(HealthCheck),
)
test_store_life = pytest.mark.xdist_group("serial")(StoreLife.TestCase)
