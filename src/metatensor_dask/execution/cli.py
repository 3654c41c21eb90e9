"""The ``metatensor-dask`` command line (also ``python -m metatensor_dask``).

Commands: ``info``, ``convert``, ``run``, ``apply``, ``submit``, ``verify`` and ``demo``;
``metatensor-dask COMMAND --help`` describes each. Exit codes: 0 on success, 1 when the
work failed (the message says why and what to do), 2 for a wrong command line, 130
when stopped by Ctrl-C and 143 by SIGTERM (the unfinished output and its remedy named).
Progress and messages go to standard error; results (``info``, the job id of ``submit``)
to standard output.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dask
import yaml
from dask.utils import parse_bytes

from ..errors import MetatensorDaskError, StoreLockedError
from ..io.chunks import parse_chunks
from ._stopping import Terminated, exit_code, sigterm_raises, stop_message, unfinished
from .pipeline import describe, load_yaml_value, url_with_one_slash

__all__ = ["main"]

PROG = "metatensor-dask"
RESUME = "run the same command with --resume to finish it"
RESUME_RUN = "run the pipeline again with --resume (or submit it with --resume) to finish it"
RESUME_APPEND = (
    "run the same command with --resume to finish the append, or give it up with "
    "metatensor_dask.discard_append (the store then reads as before it)"
)


class UsageError(Exception):
    """A wrong command line, detected after parsing: exit code 2 with the usage."""


# -- shared options -----------------------------------------------------------------------------


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
    return value


def _path(text: str) -> str:
    """A path or URL given on the command line, refused when empty (an unset shell
    variable, ``-o "$OUT"``, which would name the current directory, into which a store
    would be written) or a URL with one slash (see :func:`.pipeline.url_with_one_slash`);
    a local path with ``~`` expanded."""
    if not text:
        raise argparse.ArgumentTypeError(
            "an empty path (an unset shell variable?): give the path or URL"
        )
    one_slash = url_with_one_slash(text)
    if one_slash:
        raise argparse.ArgumentTypeError(one_slash)
    # `~` that the shell left (quoted, or after `=`) names the home folder, as stores
    # and pipelines read it, for metatensor files too
    return text if "://" in text else os.path.expanduser(text)


def _max_blocks(text: str) -> int:
    """``--max-blocks``: a number of blocks, or -1 for all of them."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < -1:
        raise argparse.ArgumentTypeError(
            f"expected a number of blocks (0 or more) or -1 for all, got {value}"
        )
    return value


def _chunks(text: str) -> int | str:
    """``--chunks``: rows per chunk, or a size such as 64MiB (checked as the readers do)."""
    value: int | str = int(text) if text.isdigit() else text
    try:
        parse_chunks(value)
    except (MetatensorDaskError, TypeError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return value


def _size(text: str) -> str:
    try:
        size = parse_bytes(text)
    except ValueError:
        size = 0
    if size < 1:
        # (dask reads 0 and negative sizes: the demo then made one system, silently)
        raise argparse.ArgumentTypeError(f"expected a size such as 4GiB or 500MB, got '{text}'")
    return text


def _cluster_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("where to compute")
    group.add_argument(
        "--cluster",
        metavar="WHERE",
        help="'threads' (default: threads in this process), 'local' (a distributed "
        "LocalCluster with memory limits and spilling), a batch system: 'slurm', 'pbs', "
        "'sge', 'lsf', 'htcondor', 'oar', 'moab' (dask-jobqueue's clusters, configured by "
        "its jobqueue.<name>.* dask settings), or the address of a running scheduler "
        "(tcp://host:8786)",
    )
    group.add_argument(
        "--workers",
        "-w",
        type=_positive,
        metavar="N",
        help="threads, or LocalCluster worker processes",
    )
    group.add_argument(
        "--jobs",
        "-j",
        type=_positive,
        metavar="N",
        help="batch jobs of workers (--cluster slurm, pbs, ...)",
    )
    group.add_argument(
        "--memory-limit",
        type=_size,
        metavar="SIZE",
        help="memory of one worker (local) or one job (slurm, pbs, ...), e.g. 4GiB",
    )
    return parent


def _quiet_option() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="print nothing but errors and Python's warnings (numpy's on invalid values, say)",
    )
    return parent


def _check_cluster_options(args: argparse.Namespace) -> None:
    from .cluster import ClusterError, check_options

    try:
        check_options(
            args.cluster, workers=args.workers, jobs=args.jobs, memory_limit=args.memory_limit
        )
    except ClusterError as error:
        raise UsageError(str(error)) from None


def _execution(args: argparse.Namespace) -> Any:
    from .cluster import execution

    return execution(
        args.cluster,
        workers=args.workers,
        jobs=args.jobs,
        memory_limit=args.memory_limit,
        quiet=args.quiet,
    )


def _compute(collection: Any, client: Any, quiet: bool) -> Any:
    from .progress import compute

    return compute(collection, client=client, quiet=quiet)


def _chunk_count(tensor: Any) -> int:
    return tensor.npartitions


def _nbytes(tensor: Any) -> int:
    return tensor.nbytes


# -- commands ---------------------------------------------------------------------------------


def _info(args: argparse.Namespace) -> int:
    from ..io._names import is_metatensor_file
    from .pipeline import tensor_file

    if is_metatensor_file(args.store):
        from ..io.inspection import describe_file

        with tensor_file(args.store):
            report = describe_file(args.store)
    else:
        from ..io.inspection import describe_store

        report = describe_store(args.store)
    if args.json:
        import json

        from ..io.inspection import report_dict

        print(json.dumps(report_dict(report), indent=2))
    else:
        from ..io.inspection import format_report

        print(format_report(report, args.max_blocks))
    return 0


def _refuse_file_as_folder(destination: str) -> None:
    """Refuse a destination named as a metatensor file but ending in ``/`` (a folder,
    which a Zarr store is, and a ``.mts`` file is not), with the two paths that work."""
    from ..io._names import is_metatensor_file

    name = destination.rstrip("/")
    if name != destination and is_metatensor_file(name):
        stem = name.rsplit(".", 1)[0]
        raise MetatensorDaskError(
            f"the destination {destination!r} ends with '/', which names a folder (a Zarr "
            "store), but is named as a metatensor file: to write a .mts file, give the path "
            f"without the trailing '/' ({stem}.mts); to write a Zarr store, give a path "
            f"ending in '.zarr' ({stem}.zarr)"
        )


def _convert(args: argparse.Namespace) -> int:
    from ..io._lock import locked_as, released_on_failure
    from ..io._names import is_metatensor_file
    from .pipeline import occupied, open_tensor, same_local_path
    from .progress import Reporter

    reporter = Reporter(args.quiet)
    *sources, destination = args.paths
    if not sources:
        raise UsageError("give the sources (SRC...) and then the destination (DST)")
    to_file = is_metatensor_file(destination)
    _refuse_file_as_folder(destination)
    if args.append:
        if to_file or args.overwrite:
            raise UsageError(
                "--append appends to a Zarr store: DST must be one, without --overwrite"
            )
    elif len(sources) > 1:
        raise UsageError("several sources go into one store with --append")
    elif args.renumber is not None:
        raise UsageError("--renumber is used with --append")
    if to_file and not destination.endswith(".mts"):
        raise UsageError("metatensor files are written as .mts (metatensor's format): rename DST")
    if to_file and args.shard_chunks is not None:
        raise UsageError("--shard-chunks applies to Zarr destinations, not .mts files")
    if to_file and args.resume:
        raise UsageError("--resume finishes a Zarr destination, not a .mts file")
    for source in sources:
        if not args.append and same_local_path(source, destination):
            raise MetatensorDaskError(
                f"{destination} is the source {source}: convert writes a new store or file "
                "while it reads the source; choose another destination (and move it over "
                "the source afterwards)"
            )
    exists = "://" not in destination and os.path.exists(destination)
    if not args.overwrite and not args.append and not to_file:
        _refuse_interrupted_append(destination, args.resume)
    if (
        not args.overwrite
        and not args.append
        and not args.resume
        and exists
        and occupied(destination)
    ):
        raise MetatensorDaskError(
            f"{destination} already exists: delete it, choose another destination, or "
            "pass --overwrite (or --append, or --resume to finish an interrupted convert)"
        )
    settings = (
        {} if args.shard_chunks is None else {"metatensor_dask.shard-chunks": args.shard_chunks}
    )
    _refuse_memory_output(destination, args)
    command = "metatensor-dask convert" + (" --append" if args.append else "")
    output = _Output(destination)
    with (
        contextlib.nullcontext()
        if to_file
        else unfinished(
            destination, RESUME_APPEND if args.append else RESUME, output.left, output.finished
        ),
        dask.config.set(settings),
        released_on_failure(output.undo),
        locked_as(command),
    ):
        # the sources opened and the destination checked before the cluster starts
        tensors = [open_tensor(source, chunks=args.chunks) for source in sources]
        delayed = None
        if to_file:
            if "://" not in destination:
                _refuse_unwritable_file(destination)
                _refuse_file_inside_store(destination)
        elif output.set_up_first(args.resume, args.append):
            delayed = _zarr_write(tensors, sources, destination, args)
            output.set_up(appended=args.append and not args.resume)
        with _execution(args) as where:
            reporter.step(
                f"converting {', '.join(sources)} -> {destination} on {where.description}"
            )
            output.computing = True
            if to_file:
                import metatensor_dask as mtd

                mtd.save(destination, tensors[0])
            else:
                if delayed is None:
                    delayed = _zarr_write(tensors, sources, destination, args)
                _compute_into(delayed, where.client, args, destination)
        nbytes = sum(_nbytes(tensor) for tensor in tensors)
        chunks = sum(_chunk_count(tensor) for tensor in tensors)
    if _wrote_nothing(delayed, destination, reporter, args.append):
        return 0
    # a resume stores only what was not recorded
    done = "finished" if args.resume and ("://" in destination or exists) else "wrote"
    reporter.summary(f"{done} {destination}", nbytes=nbytes, chunks=chunks)
    return 0


def _wrote_nothing(delayed: Any, output: str, reporter: Any, append: bool = False) -> bool:
    """Whether the write ``delayed`` of ``output`` was found done (a resume of a
    complete write, or of an append the store holds), said then instead of the size of
    the store as if written now."""
    from ..io._nothing import writes_nothing

    if not writes_nothing(delayed):
        return False
    state = "already holds this append" if append else "was already complete"
    reporter.step(f"{output} {state}: nothing was written")
    return True


class _Output:
    """The output of a command: whether it is new, whether its write was set up, and
    whether its computation started."""

    def __init__(self, location: str) -> None:
        from ..io.zarr_store import new_folders

        self.location = location
        #: The folders of a new local output, the output first (none for an existing
        #: output, or a URL)
        self.created = [] if "://" in location else new_folders(location)
        #: The write set up by this command (``to_zarr(compute=False)`` returned: the
        #: output is locked and ours), and whether it is an append to an existing store
        self.written = False
        self.appended = False
        self.computing = False
        #: Whether :meth:`undo` discarded the append, the store left as before it
        self.undone = False

    def set_up_first(self, resume: bool, append: bool = False) -> bool:
        """Whether the write is set up (``to_zarr(compute=False)``: its checks, its
        lock, the metadata of a new store, the record of an append) before the cluster
        starts: a resume, which writes nothing until computed, a new local store and an
        append, both undone when the command fails before computing. An existing store
        overwritten is set up once the cluster runs: its root would be replaced for a
        cluster that fails to start."""
        return resume or append or bool(self.created)

    def set_up(self, appended: bool = False) -> None:
        """Record that the write was set up (an append to an existing store when
        ``appended``): :meth:`undo` then reverts it."""
        self.written = True
        self.appended = appended

    def undo(self) -> None:
        """Leave the location as before the write was set up, when the command fails
        before its computation starts (the cluster could not start, a stop meanwhile):
        a new output removed with the folders made for it, an append discarded (the
        store reads as before). Called with the output's lock still held (see
        :func:`~metatensor_dask.io._lock.released_on_failure`), so that no writer that
        took the lock meanwhile loses its work. A write this command did not set up
        (refused, or not reached) is left alone: a store another writer made meanwhile
        at a location new when the command started is not this command's to remove."""
        from ..io.zarr_store import remove_if_empty

        if not self.written or self.computing:
            return
        if self.created:
            _remove_whole(self.created[0])
            remove_if_empty(self.created[1:])  # (a stop says "before writing" it)
        elif self.appended:
            self.undone = _give_up_append(self.location)

    def left(self) -> bool:
        """Whether a command stopped now leaves its output unfinished (not undone)."""
        return not self.undone

    def finished(self) -> bool:
        """Whether the computation of the write ran and the output now reads complete,
        with no append left to finish (a stop while the cluster closes)."""
        return self.computing and _append_left(self.location) is False


def _give_up_append(location: str) -> bool:
    """Discard the append set up in ``location``; whether it was. One that can not be
    discarded (no room for the lock, another writer...) is said in a note on standard
    error: the command's own failure remains the error it reports."""
    from ..io.zarr_discard import discard_append

    try:
        discard_append(location)
        return True
    except Exception as failure:
        print(
            f"{PROG}: note: the append set up in {location} could not be given up "
            f"({describe(failure)}): give it up with metatensor_dask.discard_append, or "
            "finish it with the same command and --resume",
            file=sys.stderr,
        )
        return False


def _remove_whole(folder: Path) -> None:
    """Remove ``folder``: first renamed aside (with its lock), so that the location is
    free at once and whole, then deleted; a writer that takes the location meanwhile
    makes a new folder, which this leaves alone."""
    aside = folder.with_name(f".{folder.name}.removed-{uuid.uuid4().hex}")
    try:
        os.rename(folder, aside)
    except OSError:
        aside = folder  # (a folder that can not be renamed is removed in place)
    shutil.rmtree(aside, ignore_errors=True)


def _refuse_memory_output(output: str, args: argparse.Namespace) -> None:
    """Refuse a ``memory://`` output computed on the processes of a cluster, which
    would each write to a memory store of their own (the output is checked before the
    cluster starts, where no client tells ``to_zarr`` that it would be)."""
    if output.startswith("memory://") and (args.cluster or "threads") != "threads":
        raise MetatensorDaskError(
            f"{output} is a memory store, which the worker processes of --cluster "
            f"{args.cluster} can not write (each would write to a copy of its own, and "
            "the data would be lost): write to a directory or another URL, or compute "
            "without --cluster"
        )


def _refuse_unwritable_file(destination: str) -> None:
    """Refuse a metatensor file ``destination`` that is a folder, or whose folder (that
    of the file a symbolic link leads to, which is written) is missing or can not be
    written, before the sources are read."""
    target = os.path.realpath(destination)
    if os.path.isdir(target):
        raise MetatensorDaskError(
            f"can not write {destination}: it is a folder; choose the path of a file"
        )
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise MetatensorDaskError(
            f"can not write {destination}: its folder {folder} does not exist; create it "
            "first, or choose another destination"
        )
    if os.access(folder, os.W_OK):
        return
    from ..io.zarr_store import unwritable_reason

    _, why = unwritable_reason(Path(folder))
    raise MetatensorDaskError(
        f"can not write {destination}: {why}; nothing was read or written. Write the "
        "file to a folder that can be written"
    )


def _refuse_file_inside_store(destination: str) -> None:
    """Refuse a metatensor file ``destination`` inside a Zarr store (the source or
    another), which would hold it as an unknown node and delete it when overwritten, as
    a store written inside another is refused."""
    from zarr.storage import LocalStore

    from ..io.zarr_store import outer_store

    outer = outer_store(LocalStore(os.path.realpath(destination), read_only=True))
    if outer is not None:
        raise MetatensorDaskError(
            f"can not write {destination}: it is inside the Zarr store {outer}, which would "
            "hold the file as an unknown node (and delete it when overwritten); nothing was "
            "read or written. Write the file outside of the store"
        )


def _zarr_write(
    tensors: list[Any], sources: list[str], destination: str, args: argparse.Namespace
) -> Any:
    """The ``Delayed`` of ``convert`` writing (or with ``--append`` appending) the
    ``tensors`` of ``sources`` to the Zarr store ``destination``: the sources and the
    destination checked, and the destination locked, before anything is computed."""
    if args.append:
        return _append_write(tensors, sources, destination, args)
    mode = "w" if args.overwrite else "w-"
    try:
        return tensors[0].to_zarr(destination, mode=mode, compute=False, resume=args.resume)
    except StoreLockedError:
        raise
    except MetatensorDaskError as error:
        if not args.resume:
            raise
        message = _resume_refused(destination, error, False, True)
        raise MetatensorDaskError(message) from error


def _append_write(
    tensors: list[Any], sources: list[str], destination: str, args: argparse.Namespace
) -> Any:
    """The ``Delayed`` of ``convert --append``: one append of all the sources, which
    stores them all, or refused, none of them."""
    from ..io.zarr_renumber import RenumberRangeError
    from ._sources import check_files, joined_sources

    check_files(sources, destination)
    tensor = joined_sources(tensors, sources, args.renumber)
    renumber: dict[str, int | str] | None = (
        None if args.renumber is None else {args.renumber: "next"}
    )
    try:
        # --chunks also sizes the blocks an append creates (kept as they grow)
        return tensor.to_zarr(
            destination,
            append_dim="samples",
            renumber=renumber,
            chunks=args.chunks,
            compute=False,
            resume=args.resume,
        )
    except RenumberRangeError as error:
        origin = f" (one past the largest '{args.renumber}' stored in {destination})"
        raise MetatensorDaskError(
            f"{error.problem(origin)}; nothing was written. Append to another store, whose "
            f"'{args.renumber}' starts from 0 (convert ... NEW.zarr --append --renumber "
            f"{args.renumber}); if the sources number '{args.renumber}' from large values, "
            "number it from 0 in each source, as featomic does"
        ) from None
    except StoreLockedError:
        raise
    except MetatensorDaskError as error:
        _refuse_incomplete(destination, error)
        if not args.resume and "resume=True" not in str(error):
            raise
        message = _resume_refused(destination, error, True, args.resume)
        raise MetatensorDaskError(message) from error


def _compute_into(delayed: Any, client: Any, args: argparse.Namespace, destination: str) -> None:
    """Compute the write of ``convert`` into the Zarr store ``destination``; a failure
    (a source found damaged while it streams, for instance) names what it left there
    and the remedies."""
    try:
        _compute(delayed, client, args.quiet)
    except MetatensorDaskError as error:
        if args.append:
            left = (
                "is left with this append unfinished: finish it with the same command and "
                "--resume once the sources can be read, or give it up with "
                "metatensor_dask.discard_append"
            )
        else:
            left = (
                "is left incomplete: finish it with the same command and --resume once the "
                "source can be read, or write it again with --overwrite"
            )
        raise MetatensorDaskError(f"{error}; {destination} {left}") from error


def _stored_root(destination: str) -> tuple[Any, dict[str, Any]] | None:
    """The store at ``destination`` and its root attributes; ``None`` when there is no
    store there, or none of ours (the convert then says what is wrong with it)."""
    from ..io import zarr_layout as layout
    from ..io.zarr_store import get_many, open_store

    try:
        store = open_store(destination, None, writable=False)
        attributes, _ = layout.parse_root(get_many(store, ["zarr.json"])[0], destination)
    except (MetatensorDaskError, OSError, ValueError):
        return None
    return store, attributes


def _append_left(destination: str) -> bool | None:
    """Whether the complete store at ``destination`` holds an interrupted append (its
    record left, the store reading as before it); ``None`` when there is no complete
    store of ours there."""
    from ..io import zarr_layout as layout
    from ..io.zarr_append import interrupted

    found = _stored_root(destination)
    if found is None:
        return None
    store, attributes = found
    if attributes[layout.ATTRIBUTE].get("complete") is not True:
        return None
    return interrupted(store, attributes)


def _refuse_interrupted_append(destination: str, resuming: bool) -> None:
    """Refuse a convert (``resuming``: with ``--resume``) into a complete store that
    holds an interrupted append: neither writes it (the store exists; a resume of its
    complete convert does nothing), and the append is what is left to finish."""
    from ..io import zarr_layout as layout

    if not _append_left(destination):
        return
    state = (
        "holds a complete convert (--resume has nothing to finish) and"
        if resuming
        else "already exists and holds"
    )
    raise MetatensorDaskError(
        f"{destination} {state} an interrupted append (its record '{layout.APPEND_KEY}' "
        "is left; the store reads as before the append): finish "
        "the append with `metatensor-dask convert --append --resume` and the same sources, "
        "--renumber and --chunks, or give it up with metatensor_dask.discard_append; to "
        "replace the store pass --overwrite; nothing was written"
    )


def _refuse_incomplete(destination: str, error: MetatensorDaskError) -> None:
    """Raise the refusal of ``convert --append`` into a store whose write did not finish
    with its remedies: neither ``--resume`` of the append nor ``discard_append`` (which
    give up or finish appends) applies to it."""
    from ..io import zarr_layout as layout

    found = _stored_root(destination)
    if found is None:
        return
    ours = found[1][layout.ATTRIBUTE]
    if ours.get("complete") is True:
        return
    if layout.RUN in ours:
        raise error  # its remedy, write_batches(..., resume=True), is Python's only
    raise MetatensorDaskError(
        f"cannot append to {destination}: it holds a write that did not finish (an "
        "interrupted convert?); nothing was written. From the command line, finish it with "
        "the convert that wrote it and --resume (without --append), or replace it with "
        f"`metatensor-dask convert SOURCE {destination} --overwrite`"
    ) from None


def _resume_refused(
    destination: str, error: MetatensorDaskError, append: bool, resuming: bool
) -> str:
    """The message of a ``convert`` (``append``: with ``--append``; ``resuming``: with
    ``--resume``) that ``to_zarr`` refused, with the remedies of the command line where
    ``to_zarr`` names its own (``resume=True``, ``mode='w'``)."""
    if append:
        remedy = (
            "--resume finishes the interrupted append given the same sources, --renumber "
            "and --chunks; metatensor_dask.discard_append gives it up"
        )
    elif _stored_root(destination) is None:
        return f"cannot resume {destination}: {describe(error)}"  # (no store to write again)
    else:
        remedy = "run the convert with --overwrite instead of --resume to write it again"
    action = "resume" if resuming else "append to"
    return (
        f"cannot {action} {destination}: {describe(error)}; from the command line, "
        f"{remedy} (a metatensor file written again since the interrupted convert is "
        "another source, even with the same content)"
    )


def _run_pipeline(pipeline: Any, args: argparse.Namespace) -> int:
    """Build ``pipeline``'s graph and check its output, then start the cluster and
    write: a refused input, step or output (one that exists, a resume of another
    computation, a new one in a folder that can not be written) starts no cluster."""
    from ..io._lock import locked_as, released_on_failure
    from .pipeline import PipelineError
    from .progress import Reporter

    reporter = Reporter(args.quiet)
    pipeline.check_paths(resume=args.resume)
    _refuse_memory_output(pipeline.output, args)
    resuming = args.resume and ("://" in pipeline.output or os.path.exists(pipeline.output))
    output = _Output(pipeline.output)
    with (
        unfinished(
            pipeline.output,
            RESUME if args.command == "apply" else RESUME_RUN,
            output.left,
            output.finished,
        ),
        released_on_failure(output.undo),
        locked_as(f"metatensor-dask {args.command}"),
    ):
        result = pipeline.build()
        delayed = None
        if output.set_up_first(args.resume):
            delayed = _pipeline_write(pipeline, result, args.resume, resuming)
            output.set_up()
        with _execution(args) as where:
            if delayed is None:
                delayed = _pipeline_write(pipeline, result, args.resume, resuming)
            reporter.step(
                f"{'resuming' if resuming else 'writing'} {pipeline.output} "
                f"({len(pipeline.steps)} step{'s' if len(pipeline.steps) != 1 else ''}) on "
                f"{where.description}"
            )
            output.computing = True
            try:
                _compute(delayed, where.client, args.quiet)
            except Exception as error:
                steps = ", ".join(step.op for step in pipeline.steps)
                raise PipelineError(
                    f"computing the steps ({steps}) into {pipeline.output} failed: "
                    f"{describe(error)}"
                ) from error
    if _wrote_nothing(delayed, pipeline.output, reporter):
        return 0
    done = "finished" if resuming else "wrote"
    reporter.summary(
        f"{done} {pipeline.output}", nbytes=_nbytes(result), chunks=_chunk_count(result)
    )
    return 0


def _pipeline_write(pipeline: Any, result: Any, resume: bool, resuming: bool) -> Any:
    """The ``Delayed`` writing ``result`` to the output of ``pipeline``, its output
    locked and checked (by ``to_zarr``) before anything is computed."""
    from .pipeline import PipelineError

    try:
        return pipeline.write(result, resume=resume)
    except StoreLockedError:
        raise
    except MetatensorDaskError as error:
        raise PipelineError(_refused(pipeline.output, resuming, error)) from error


def _refused(output: str, resuming: bool, error: MetatensorDaskError) -> str:
    """The message of a write of ``output`` that ``to_zarr`` refused before computing,
    with the remedies of the command line (its own name ``mode='w'`` and
    ``resume=True``)."""
    message = f"cannot {'resume' if resuming else 'write'} {output}: {describe(error)}"
    if not resuming or _stored_root(output) is None:
        # (a location that holds no store of ours, such as a folder of other data, is
        # not one to delete)
        return message
    return f"{message}; from the command line, delete {output} to start over"


def _run(args: argparse.Namespace) -> int:
    from .pipeline import Pipeline

    return _run_pipeline(Pipeline.from_file(args.pipeline), args)


def _parse_arg(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if sep and name.replace("-", "_").isidentifier() and not name.isidentifier():
        raise UsageError(
            f"--arg {text}: the names of arguments are written with underscores: "
            f"--arg {name.replace('-', '_')}={value}"
        )
    if not sep or not name.isidentifier():
        raise UsageError(f"--arg expects NAME=VALUE (e.g. --arg B=2), got '{text}'")
    try:
        return name, load_yaml_value(value)
    except yaml.YAMLError as error:
        problem = str(error).splitlines()[0]
        raise UsageError(
            f"--arg {text}: the value is not valid YAML ({problem}); close its brackets "
            f"and quotes, or quote it to pass a string: --arg \"{name}='{value}'\""
        ) from None


def _read_as_words(texts: Sequence[str]) -> str:
    """A hint naming the ``--arg`` values among ``texts`` that YAML read as a boolean
    from another word than ``true`` or ``false`` (``on``, ``no``...), or as null from
    nothing, with the quoting that passes the word as a string; ``""`` when there are
    none (a ``null`` or ``~`` typed is meant)."""
    hints = []
    for text in texts:
        name, _, value = text.partition("=")
        read = load_yaml_value(value)
        word = value.strip().lower()
        if (isinstance(read, bool) and word not in ("true", "false")) or (
            read is None and not word
        ):
            hints.append(
                f"--arg {text} was read as {read!r}; to pass the string, quote it: "
                f"--arg \"{name}='{value}'\""
            )
    return f" ({'; '.join(hints)})" if hints else ""


def _apply(args: argparse.Namespace) -> int:
    from .pipeline import Pipeline, PipelineError

    arguments: dict[str, Any] = {}
    for text in args.arg:
        name, value = _parse_arg(text)
        if name in arguments:
            raise UsageError(f"--arg {name} is given twice: keep one")
        arguments[name] = value
    _refuse_operation_after_inputs(args.operation, args.inputs)
    try:
        pipeline = Pipeline.single(args.operation, args.inputs, args.output, arguments)
        return _run_pipeline(pipeline, args)
    except PipelineError as error:
        # for the operation's refusals only, not those of paths or settings
        hint = _read_as_words(args.arg)
        if not hint or not str(error).startswith(f"operation {args.operation}"):
            raise
        raise PipelineError(f"{error}{hint}") from error


def _refuse_operation_after_inputs(operation: str, inputs: Sequence[str]) -> None:
    """Refuse ``apply INPUT OP ...``: the first word is no operation and an input is."""
    from .. import operations

    if operation in operations.__all__:
        return
    named = next((name for name in inputs if name in operations.__all__), None)
    if named is not None:
        raise UsageError(
            f"'{operation}' is no operation and '{named}' is: the operation comes first, "
            f"then the inputs: {PROG} apply {named} INPUT... -o OUTPUT"
        )


def _submit(args: argparse.Namespace) -> int:
    from ._directives import JobOptionError
    from .batch import BatchJob, submit
    from .pipeline import Pipeline
    from .progress import check_settings

    # refuse a broken pipeline, or an output or settings its job would refuse, before it
    # waits in a queue; an input may be made by an earlier job (--option=--dependency=...)
    check_settings()
    pipeline = Pipeline.from_file(args.pipeline)
    pipeline.check_output(
        resume=args.resume or args.requeue,
        resume_option="--resume (--requeue resumes too, at every start of the job)",
    )
    for item in pipeline.missing_inputs():
        if not args.quiet:
            print(
                f"{PROG} submit: warning: {item.where}: input '{item.name}' does not exist "
                f"now ({item.path}): the job fails unless it is made before the job starts",
                file=sys.stderr,
            )
    try:
        job = BatchJob(
            args.pipeline,
            resume=args.resume,
            requeue=args.requeue,
            cpus=args.cpus,
            memory=args.mem,
            time=args.time,
            partition=args.partition,
            account=args.account,
            workers=args.workers,
            memory_limit=args.memory_limit,
            job_name=args.job_name,
            log=args.log,
            options=args.option,
            scheduler=args.scheduler,
        )
    except JobOptionError as error:
        raise UsageError(str(error)) from None
    _check_job_memory(args)
    if args.memory_limit is not None:
        from .cluster import ClusterError, check_worker_memory

        try:
            check_worker_memory(args.memory_limit)  # (the job's run would refuse it)
        except ClusterError as error:
            raise UsageError(str(error)) from None
    if args.dry_run:
        print(job.script(), end="")
        return 0
    job_id, script = submit(job, args.script)
    if not args.quiet:
        print(f"submitted {script} as {args.scheduler.upper()} job {job_id}", file=sys.stderr)
    print(job_id)
    return 0


def _check_job_memory(args: argparse.Namespace) -> None:
    """Refuse worker memory limits that add up to more than the job's memory: the batch
    system would kill the job when its workers use what they are allowed, before they
    spill to disk (from 60% of their limit, dask's ``distributed.worker.memory.target``)."""
    from ._directives import job_memory_bytes

    if args.mem is None:
        return
    if args.memory_limit is None:
        _check_shared_job_memory(args, job_memory_bytes("the job memory", args.mem))
        return
    workers = args.workers or 1
    if parse_bytes(args.memory_limit) * workers <= job_memory_bytes("the job memory", args.mem):
        return
    each = f" for each of {workers} workers" if workers > 1 else ""
    raise UsageError(
        f"--memory-limit {args.memory_limit}{each} is more than the job's memory (--mem "
        f"{args.mem}): the batch system would kill the job before the workers spill to "
        "disk; lower --memory-limit or raise --mem"
    )


def _check_shared_job_memory(args: argparse.Namespace, job_memory: int) -> None:
    """Refuse a job memory that, shared between the job's workers (as a job's ``run``
    does without ``--memory-limit``), leaves a worker too little to run (see
    :func:`.cluster.check_worker_memory`)."""
    from .cluster import MIN_WORKER_MEMORY, TOO_LITTLE_FOR_A_WORKER, default_workers

    workers = args.workers or default_workers(args.cpus or 1)
    if job_memory // workers >= MIN_WORKER_MEMORY:
        return
    each = f", shared between its {workers} workers," if workers > 1 else ""
    raise UsageError(
        f"--mem {args.mem}{each} {TOO_LITTLE_FOR_A_WORKER}; give at "
        f"least {math.ceil(workers * MIN_WORKER_MEMORY / 2**20)}M (a few GiB per worker "
        "for real data)" + (" or fewer --workers" if workers > 1 else "")
    )


def _verify(args: argparse.Namespace) -> int:
    from ..io.inspection import verify
    from .progress import Reporter

    reporter = Reporter(args.quiet)
    with contextlib.ExitStack() as stack:
        result = verify(args.store, compute=_started_when_needed(args, stack))
    for problem in result.problems:
        print(f"{PROG} verify: {args.store}: {problem}", file=sys.stderr)
    for note in result.notes:
        print(f"{PROG} verify: {args.store}: note: {note}", file=sys.stderr)
    if not result.ok:
        reporter.step(f"{len(result.problems)} problem(s) found in {args.store}")
        return 1
    from ..io._names import is_metatensor_file

    if is_metatensor_file(args.store):
        reporter.step(
            f"{args.store} is intact: every member's CRC-32 and metatensor's rules checked"
        )
        return 0
    reporter.summary(
        f"{args.store} is complete and intact ({result.arrays} arrays, checksums verified)",
        nbytes=result.nbytes,
        chunks=result.regions,
    )
    return 0


def _started_when_needed(
    args: argparse.Namespace, stack: contextlib.ExitStack
) -> Callable[[Any], Any]:
    """A ``compute(collection)`` that starts the command's cluster (closed with
    ``stack``) at its first call: a command refused before it reads any chunk starts
    none."""
    started: list[Any] = []

    def compute(collection: Any) -> Any:
        if not started:
            started.append(stack.enter_context(_execution(args)))
        return _compute(collection, started[0].client, args.quiet)

    return compute


def _demo(args: argparse.Namespace) -> int:
    from .demo import prepared_workdir, run_demo
    from .progress import check_settings

    check_settings()  # a wrong setting refused before the work folder is made
    prepared_workdir(args.workdir)  # refused before the cluster starts
    with _execution(args) as where:
        return run_demo(args.workdir, size=args.size, where=where, quiet=args.quiet)


# -- the parser ---------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        allow_abbrev=False,
        description="Inspect, convert and process metatensor tensors stored in Zarr, "
        "out of core, on threads, a LocalCluster or an HPC batch system.",
        epilog="Settings (chunk size, codecs, progress) come from dask's configuration, "
        "namespace metatensor_dask; see docs/configuration.md.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--traceback", action="store_true", help="show the full traceback of errors"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    cluster, quiet = _cluster_options(), _quiet_option()

    info = commands.add_parser(
        "info",
        allow_abbrev=False,
        help="show a store's keys, blocks, shapes, chunks and bytes (reads no values)",
        description="Show what a Zarr store (or a .mts/.npz file) holds: keys, blocks, "
        "shapes, dtypes, chunks, gradients, bytes in memory and on disk, and whether "
        "its write completed. No values or sample labels are read.",
    )
    info.add_argument(
        "store",
        type=_path,
        metavar="STORE",
        help="Zarr store (directory or URL), or .mts/.npz file",
    )
    info.add_argument(
        "--max-blocks",
        type=_max_blocks,
        default=20,
        metavar="N",
        help="blocks listed (-1: all; default 20)",
    )
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(func=_info, parser=info)

    convert = commands.add_parser(
        "convert",
        allow_abbrev=False,
        parents=[cluster, quiet],
        help="convert between .mts/.npz files and Zarr stores",
        description="Convert a metatensor file (.mts/.npz) to a Zarr store, a store to a "
        "file, or a store to a store with other chunks; with --append, append the samples "
        "of several sources to one store, in order. Data are streamed chunk by chunk.",
    )
    convert.add_argument(
        "paths",
        nargs="+",
        type=_path,
        metavar="PATH",
        help="SRC... DST: the Zarr stores or .mts/.npz files to read (several with --append), "
        "then the Zarr store or .mts file to write",
    )
    convert.add_argument(
        "--chunks",
        type=_chunks,
        metavar="ROWS|SIZE",
        help="value rows per chunk, or the target size of a block's largest chunk (e.g. 64MiB)",
    )
    convert.add_argument(
        "--shard-chunks", type=_positive, metavar="N", help="chunks per Zarr shard"
    )
    convert.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    convert.add_argument(
        "--append",
        action="store_true",
        help="append the samples of each SRC to the Zarr store DST (created if missing)",
    )
    convert.add_argument(
        "--renumber",
        metavar="DIM",
        help="with --append: shift the sample dimension DIM of each SRC past the largest value "
        "stored (e.g. system, which featomic numbers from 0 in every file)",
    )
    convert.add_argument(
        "--resume",
        action="store_true",
        help="finish an interrupted convert of the same sources into the Zarr store DST "
        "(with --append: the interrupted append); nothing to do if it completed",
    )
    convert.set_defaults(func=_convert, parser=convert)

    resumable = argparse.ArgumentParser(add_help=False)
    resumable.add_argument(
        "--resume",
        action="store_true",
        help="finish an interrupted run: keep what it wrote, compute only the rest",
    )
    run = commands.add_parser(
        "run",
        allow_abbrev=False,
        parents=[cluster, resumable, quiet],
        help="run a YAML pipeline of operations",
        description="Run a pipeline file: input stores, a sequence of operations, an output "
        "Zarr store. See docs/cli.md for the file format.",
    )
    run.add_argument("pipeline", type=_path, metavar="PIPELINE", help="YAML pipeline file")
    run.set_defaults(func=_run, parser=run)

    apply = commands.add_parser(
        "apply",
        allow_abbrev=False,
        parents=[cluster, resumable, quiet],
        help="apply one operation to stores",
        description="Apply one operation of metatensor_dask.operations to input stores and "
        "write the result, e.g. `apply pow spectrum.zarr --arg B=2 -o squared.zarr`.",
    )
    apply.add_argument(
        "operation", metavar="OP", help="operation name (multiply, pow, sum_over_samples, ...)"
    )
    apply.add_argument(
        "inputs",
        nargs="+",
        type=_path,
        metavar="INPUT",
        help="input stores, passed as the first arguments",
    )
    apply.add_argument(
        "-o", "--output", required=True, type=_path, metavar="OUTPUT", help="Zarr store to write"
    )
    apply.add_argument(
        "--arg",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="keyword argument of the operation, value in YAML (e.g. B=2, sample_names=[atom])",
    )
    apply.set_defaults(func=_apply, parser=apply)

    submit = commands.add_parser(
        "submit",
        allow_abbrev=False,
        parents=[resumable, quiet],
        help="submit a pipeline as a SLURM or PBS batch job",
        description="Write a batch script running `run PIPELINE --cluster local` in the "
        "job's allocation (a LocalCluster sized from the job: SLURM_CPUS_ON_NODE and "
        "SLURM_MEM_PER_NODE, or NCPUS under PBS), submit it with sbatch or qsub, and print "
        "the job id. Every value is checked before anything is written or submitted.",
    )
    submit.add_argument("pipeline", type=_path, metavar="PIPELINE", help="YAML pipeline file")
    submit.add_argument(
        "--scheduler",
        choices=["slurm", "pbs"],
        default="slurm",
        help="the batch system: slurm (sbatch, default) or pbs (qsub, PBS Pro)",
    )
    submit.add_argument(
        "--requeue",
        action="store_true",
        help="let the batch system requeue the job; every start resumes",
    )
    submit.add_argument(
        "--cpus", type=_positive, metavar="N", help="cores (sbatch --cpus-per-task, PBS ncpus)"
    )
    submit.add_argument(
        "--mem", metavar="SIZE", help="memory of the job: 16G, 500M or megabytes (sbatch --mem)"
    )
    submit.add_argument(
        "--time", metavar="TIME", help="walltime, e.g. 02:00:00 (SLURM also 1-12:00:00)"
    )
    submit.add_argument(
        "--partition", "--queue", metavar="NAME", help="partition (SLURM) or queue (PBS)"
    )
    submit.add_argument("--account", metavar="NAME", help="account to charge")
    submit.add_argument(
        "--job-name", default="metatensor-dask", metavar="NAME", help="the job's name"
    )
    submit.add_argument(
        "--log", type=_path, metavar="PATH", help="the job's output (default: next to the pipeline)"
    )
    submit.add_argument(
        "--option",
        "--sbatch-option",
        action="append",
        default=[],
        metavar="OPTION",
        help="another sbatch or qsub option, e.g. --option=--qos=long (repeatable)",
    )
    submit.add_argument(
        "--workers", type=_positive, metavar="N", help="LocalCluster workers in the job"
    )
    submit.add_argument(
        "--memory-limit", type=_size, metavar="SIZE", help="memory of one worker in the job"
    )
    submit.add_argument(
        "--script", type=_path, metavar="PATH", help="where to write the batch script"
    )
    submit.add_argument("--dry-run", action="store_true", help="print the script, submit nothing")
    submit.set_defaults(func=_submit, parser=submit)

    verify = commands.add_parser(
        "verify",
        allow_abbrev=False,
        parents=[cluster, quiet],
        help="check that a store is complete and intact",
        description="Read every chunk of every array of a store (Zarr checks each chunk's "
        "crc32c checksum), check its metadata and labels, and exit with 1 when anything "
        "is wrong.",
    )
    verify.add_argument(
        "store",
        type=_path,
        metavar="STORE",
        help="Zarr store (directory or URL), or .mts/.npz file",
    )
    verify.set_defaults(func=_verify, parser=verify)

    demo = commands.add_parser(
        "demo",
        allow_abbrev=False,
        parents=[cluster, quiet],
        help="the end-to-end demonstration (no setup needed)",
        description="Convert the tutorial data and a generated featomic-like tensor to Zarr, "
        "run a pipeline with gradients (pow, multiply, sum_over_samples) with progress, "
        "check the result against plain numpy, and print a summary.",
    )
    demo.add_argument(
        "--workdir",
        type=_path,
        default="metatensor-dask-demo",
        metavar="DIR",
        help="where the stores go (default: ./metatensor-dask-demo)",
    )
    demo.add_argument(
        "--size",
        type=_size,
        default="256MiB",
        metavar="SIZE",
        help="size of the generated tensor (default: 256MiB; whole systems of about 47 MiB)",
    )
    demo.set_defaults(func=_demo, parser=demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); the exit code."""
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # named by the command's own parser, so that its usage is the one printed
        command_parser = getattr(args, "parser", parser)
        command_parser.error(_unrecognized(unknown, command_parser))
    try:
        if hasattr(args, "cluster"):
            _check_cluster_options(args)
        with sigterm_raises():
            return args.func(args)
    except UsageError as error:
        args.parser.error(str(error))  # exits with 2
    except (KeyboardInterrupt, Terminated) as stop:
        print(f"{PROG} {args.command}: {stop_message(stop)}", file=sys.stderr)
        return exit_code(stop)
    except BrokenPipeError:
        # the reader of our output went away (`metatensor-dask info ... | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as error:
        # one line, whatever failed (--traceback shows where)
        if args.traceback:
            raise
        print(f"{PROG} {args.command}: error: {_message(error, args)}", file=sys.stderr)
        return 1
    return 2  # not reached: error() exits


def _unrecognized(unknown: list[str], parser: argparse.ArgumentParser) -> str:
    """The message of arguments no parser took, with the options of ``parser`` that an
    unknown option starts or nearly spells (options are not abbreviated: ``--over``
    would otherwise be taken for ``--overwrite``), and the place of ``--traceback``, an
    option of the program given before the command, when it is among them."""
    import difflib

    message = f"unrecognized arguments: {' '.join(unknown)}"
    # argparse lists no options publicly; its private table, or no suggestion (the tests
    # of the suggestions fail if a Python release removes it)
    options = sorted(getattr(parser, "_option_string_actions", {}))
    for word in unknown:
        name = word.split("=", 1)[0]
        if not name.startswith("--") or name == "--traceback":
            continue
        meant = [option for option in options if option.startswith(name)]
        if not meant:  # (compared without their dashes, which every option shares)
            spelled = {option[2:]: option for option in options if option.startswith("--")}
            near = difflib.get_close_matches(name[2:], list(spelled), n=1, cutoff=0.75)
            meant = [spelled[match] for match in near]
        if meant:
            message += f"; did you mean {' or '.join(meant)}? (options are spelled in full)"
    if "--traceback" in unknown:
        message += (
            "; --traceback is an option of the program, given before the command: "
            f"{PROG} --traceback COMMAND ..."
        )
    return message


def _message(error: BaseException, args: argparse.Namespace) -> str:
    """``describe(error)``, naming the file the command reads when a JSON, YAML or text
    decoding error does not."""
    import json

    message = describe(error)
    if isinstance(error, (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError)):
        subject = next(
            (
                getattr(args, name)
                for name in ("pipeline", "store", "source")
                if getattr(args, name, None)
            ),
            None,
        )
        if subject is not None and subject not in message:
            return f"{subject}: {message}"
    return message
