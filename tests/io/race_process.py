"""Writers and a reader to run (and kill) in subprocesses, for the race tests.

``python race_process.py append STORE SEED [--resume] [--go FILE] [--after SECONDS]``
appends ``race_tensor(SEED)`` to ``STORE`` (``renumber={"system": "next"}``, 2 rows per
chunk: many small chunks), on dask's threads. It prints ``ready`` once imported and
about to write (with ``--go``: then waits for ``FILE`` to exist, and ``--after`` more
seconds), then ``done``, or ``locked: <message>`` and exits with 3 when another writer
holds the store.

``python race_process.py read STORE LOG SECONDS`` reads the store in a loop for
``SECONDS``: each time, it opens it, computes values and gradients (sample labels
loaded too) and writes one line to ``LOG``: ``ok <fingerprint>``, or ``error
<ExceptionType>: <message>``. It also keeps the tensor it opened first and computes it
again each time (``stale <fingerprint>`` or ``stale-error ...``): a reader that opened
the store before an append started; and the tensor it opened in the loop before,
computed for the first time (``late ...``): opened before an append, its sample labels
and row pointers read after it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time

import numpy as np
from zarr_writer_process import make_metatensor

#: Samples of the three blocks of a race tensor (odd: the last chunks are partial).
SAMPLES = (31, 0, 19)
#: Rows per chunk of the race stores.
CHUNKS = 2


def race_tensor(seed: int):
    """A metatensor TensorMap of three blocks (one empty) with nested gradients."""
    return make_metatensor(seed, n_samples=SAMPLES)


def fingerprint(tensor) -> str:
    """A hash of every entry of a computed metatensor or metatensor-dask TensorMap:
    keys, and per block its samples, components, properties and values, gradients
    (nested too) included."""
    digest = hashlib.sha256()

    def add_labels(labels) -> None:
        digest.update(repr(list(labels.names)).encode())
        digest.update(np.ascontiguousarray(np.asarray(labels.values), dtype="<i4").tobytes())

    def add_block(block) -> None:
        add_labels(block.samples)
        for component in block.components:
            add_labels(component)
        add_labels(block.properties)
        values = np.asarray(block.values)
        digest.update(repr(values.shape).encode())
        digest.update(np.ascontiguousarray(values, dtype="<f8").tobytes())
        for parameter, gradient in sorted(block.gradients(), key=lambda item: item[0]):
            digest.update(parameter.encode())
            add_block(gradient)

    add_labels(tensor.keys)
    for block in tensor.blocks():
        add_block(block)
    return digest.hexdigest()


def _append(store: str, seed: int, resume: bool, go: str | None, after: float) -> None:
    import metatensor_dask as mtd

    tensor = mtd.from_metatensor(race_tensor(seed))
    print("ready", flush=True)
    while go is not None and not os.path.exists(go):
        time.sleep(0.001)
    time.sleep(after)
    try:
        tensor.to_zarr(
            store, append_dim="samples", renumber={"system": "next"}, chunks=CHUNKS, resume=resume
        )
    except mtd.StoreLockedError as error:
        print(f"locked: {error}", flush=True)
        sys.exit(3)
    print("done", flush=True)


def _read(store: str, log: str, seconds: float) -> None:
    import metatensor_dask as mtd

    def line(kind: str, opened) -> str:
        try:
            if isinstance(opened, Exception):
                raise opened
            tensor = opened() if callable(opened) else opened
            return f"{kind} {fingerprint(tensor.compute())}"
        except Exception as error:  # every error is reported, for the test to judge
            return f"{kind}-error {type(error).__name__}: {error}".replace("\n", " ")

    first = late = mtd.open_zarr(store)
    print("ready", flush=True)
    end = time.monotonic() + seconds
    with open(log, "w") as output:
        while time.monotonic() < end:
            output.write(line("ok", lambda: mtd.open_zarr(store)) + "\n")
            output.write(line("stale", first) + "\n")
            output.write(line("late", late) + "\n")
            output.flush()
            try:
                late = mtd.open_zarr(store)
            except Exception as error:  # written as a late-error line next time
                late = error
    print("done", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    append = commands.add_parser("append")
    append.add_argument("store")
    append.add_argument("seed", type=int)
    append.add_argument("--resume", action="store_true")
    append.add_argument("--go")
    append.add_argument("--after", type=float, default=0.0)
    read = commands.add_parser("read")
    read.add_argument("store")
    read.add_argument("log")
    read.add_argument("seconds", type=float)
    args = parser.parse_args()
    if args.command == "append":
        _append(args.store, args.seed, args.resume, args.go, args.after)
    else:
        _read(args.store, args.log, args.seconds)


if __name__ == "__main__":
    main()
