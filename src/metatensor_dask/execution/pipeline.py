"""Operation pipelines: input stores, a sequence of operations, an output store.

A pipeline file is YAML::

    inputs:                          # name: store (Zarr directory, .mts or .npz)
      spectrum: spectrum.zarr
      other: {path: other.mts, chunks: 1000}    # chunks: rows, or a size such as 64MiB
    steps:
      - op: pow                      # a function of metatensor_dask.operations
        inputs: spectrum             # tensors passed first, by name (default: the
        args: {B: 2}                 #   previous step); args: keyword arguments
        name: squared                # to refer to this result later (optional)
      - op: multiply
        inputs: [squared, spectrum]
      - op: sum_over_samples
        args: {sample_names: atom}
    output: result.zarr              # or {path: result.zarr, from: squared}

An operation whose first parameter is a list of tensors (``join``) gets the step's
inputs as that list: ``{op: join, inputs: [a, b], args: {axis: samples}}``.

Relative paths are relative to the pipeline file. The whole file is checked before
anything is opened or computed; errors name the line, the field and the remedy. The
output is written with ``to_zarr(..., resume=resume)``, so an interrupted run finishes
with ``resume=True`` without recomputing what was written.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..errors import MetatensorDaskError, MetatensorError, NotEqualError
from ..io._names import is_metatensor_file
from ..io.chunks import parse_chunks
from ._arguments import ArgumentError, typed_arguments
from ._memory import give_back_free_memory

__all__ = [
    "USER_ERRORS",
    "Input",
    "Pipeline",
    "PipelineError",
    "Step",
    "YamlLoader",
    "describe",
    "load_yaml_value",
    "open_tensor",
    "tensor_file",
    "url_with_one_slash",
]

_TOP_FIELDS = ("inputs", "steps", "output")
_INPUT_FIELDS = ("path", "chunks")
_STEP_FIELDS = ("op", "inputs", "args", "name")
_OUTPUT_FIELDS = ("path", "from")
# errors that mean wrong arguments, files or data rather than a bug: their message says
# it all. Any other exception is reported with its type (see `describe`).
USER_ERRORS = (
    MetatensorError,
    MetatensorDaskError,
    NotEqualError,
    OSError,
    ValueError,
    TypeError,
    IndexError,
)


class PipelineError(MetatensorDaskError):
    """A pipeline file or step is invalid; the message names where and what to do."""


def describe(error: BaseException) -> str:
    """``error`` in one line: its message, with its type when the message alone is not
    enough (an unexpected exception, or a JSON, YAML or text decoding error)."""
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    if isinstance(error, json.JSONDecodeError):
        return f"invalid JSON ({error})"
    if isinstance(error, yaml.YAMLError):
        return "invalid YAML (" + " ".join(str(error).split()) + ")"
    if isinstance(error, UnicodeDecodeError):
        return f"not UTF-8 text ({error})"
    message = " ".join(str(error).split())
    if isinstance(error, USER_ERRORS) and message:
        return message
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _is_local(path: str) -> bool:
    return "://" not in path


_ONE_SLASH = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/(?!/)")


def url_with_one_slash(path: str) -> str:
    """Why ``path`` is refused when it is a URL written with one slash (``s3:/bucket/t.zarr``,
    ``file:/scratch/t.zarr``), which names a local folder (``./s3:``) and would be
    written there silently; ``""`` for any other path, and for a local path of this form
    whose first folder exists."""
    match = _ONE_SLASH.match(path)
    if match is None or os.path.lexists(match.group(0).rstrip("/")):
        return ""
    import fsspec

    protocol = match.group(1)
    if protocol.lower() not in fsspec.available_protocols():
        return ""
    # (a local file system's URL names an absolute path: file:///scratch/t.zarr)
    rest = path[match.end() - (protocol.lower() in ("file", "local")) :]
    return (
        f"'{path}' is a URL with one slash after '{protocol}:', which names the local folder "
        f"'{protocol}:': write {protocol}://{rest} (or ./{path} for a local folder so named)"
    )


def occupied(path: str) -> bool:
    """Whether the local ``path`` holds something an output would replace: anything but
    nothing or an empty folder (made beforehand, by hand or by a job script), into which
    a new store is written as into nothing."""
    if not os.path.isdir(path):
        return os.path.lexists(path)
    with os.scandir(path) as entries:
        return next(entries, None) is not None


def same_local_path(first: str, second: str) -> bool:
    """Whether two local paths name the same file or directory, however spelled:
    through symbolic links, or at two places a file system is mounted at."""
    if not (_is_local(first) and _is_local(second)):
        return False
    if os.path.realpath(first) == os.path.realpath(second):
        return True
    try:
        return os.path.samefile(first, second)
    except OSError:  # one does not exist (yet)
        return False


def open_tensor(path: str, chunks: int | str | None = None) -> Any:
    """Open a Zarr store with :func:`metatensor_dask.open_zarr`, or a ``.mts``/``.npz``
    file with :func:`metatensor_dask.load` (both lazy)."""
    import metatensor_dask as mtd

    if _is_local(path) and not os.path.exists(path):
        raise FileNotFoundError(f"no such store or file: '{path}'")
    if is_metatensor_file(path):
        with tensor_file(path):
            return mtd.load(path, chunks=chunks)
    return mtd.open_zarr(path, chunks=chunks)


@contextlib.contextmanager
def tensor_file(path: str) -> Iterator[None]:
    """Around the reading of the TensorMap file ``path``: a TensorBlock or Labels file
    (which metatensor's message sends to ``load_block``/``load_labels``, functions a
    command line user can not call) is refused naming what it holds and what to do."""
    import metatensor_dask as mtd

    try:
        yield
    except MetatensorError:
        for what, load in (("a TensorBlock", mtd.load_block), ("Labels", mtd.load_labels)):
            try:
                load(path)
            except MetatensorError:
                continue
            raise MetatensorDaskError(
                f"'{path}' holds {what}, not a TensorMap, and the command line reads "
                "TensorMap files: make a map of it in Python (for a block: "
                "`metatensor.TensorMap(metatensor.Labels.single(), [block])`) and save that"
            ) from None
        raise


# -- YAML with line numbers -----------------------------------------------------------------


class YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading numbers as YAML 1.2 does.

    YAML 1.1, PyYAML's default, reads numbers in exponent notation without a dot
    (``1e-3``, ``2E5``) or with an exponent without its sign (``2.5e3``) as strings,
    which operations refuse (``multiply(tensor, "2.5e3")``); it reads ``1:30`` as the
    base-60 number 90 and ``010`` as the octal 8, silently other numbers than written.
    Here those are floats, the string ``"1:30"`` and the decimal 10 (``0o10`` is 8).
    """

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        """The integer of ``node`` (decimal, or ``0b``, ``0o``, ``0x`` and its digits);
        a ``ConstructorError`` at the node's place when a ``!!int`` tag marks other
        text (``!!int 1:30``, a base-60 number YAML 1.2 does not read)."""
        written = str(self.construct_scalar(node))
        text = written.replace("_", "")
        sign = -1 if text.startswith("-") else 1
        digits = text.lstrip("+-")
        base = 10
        for prefix, prefix_base in (("0b", 2), ("0o", 8), ("0x", 16)):
            if digits.startswith(prefix):
                digits, base = digits[len(prefix) :], prefix_base
        try:
            return sign * int(digits, base)
        except ValueError:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"'{written}' is not an integer as YAML 1.2 writes them (digits, or 0b, "
                "0o, 0x and digits; no base-60 numbers such as 1:30): write the number "
                "itself",
                node.start_mark,
            ) from None


_INT_TAG, _FLOAT_TAG = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag not in (_INT_TAG, _FLOAT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
YamlLoader.add_implicit_resolver(
    _INT_TAG,
    re.compile(
        r"^[-+]?(0b_*[01][01_]*|0o_*[0-7][0-7_]*|0x_*[0-9a-fA-F][0-9a-fA-F_]*|[0-9][0-9_]*)$"
    ),
    list("-+0123456789"),
)
YamlLoader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(
        r"""^([-+]?[0-9][0-9_]*\.[0-9_]*([eE][-+]?[0-9]+)?
        |[-+]?\.[0-9][0-9_]*([eE][-+]?[0-9]+)?
        |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
        |[-+]?\.(inf|Inf|INF)
        |\.(nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+.0123456789"),
)
YamlLoader.add_constructor(_INT_TAG, YamlLoader.construct_yaml_int)


_MERGE_TAG = "tag:yaml.org,2002:merge"


def load_yaml_value(text: str) -> Any:
    """The YAML value in ``text``, read by :class:`YamlLoader`."""
    return yaml.load(text, Loader=YamlLoader)


def _load_yaml(text: str, source: str) -> tuple[Any, dict[tuple, int]]:
    """The document in ``text`` and the line (1-based) of every mapping key and list item."""
    loader = YamlLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise PipelineError(
                f"{source}: the pipeline is empty; it needs `inputs`, `steps` and `output`"
            )
        lines: dict[tuple, int] = {(): node.start_mark.line + 1}
        return _construct(loader, node, (), lines, source), lines
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        if getattr(error, "problem", None) == "but found another document":
            raise PipelineError(
                f"{source}{where}: a second YAML document starts here; a pipeline file holds "
                "one pipeline (one document): remove the second document (from its '---' on) "
                "or move it to a file of its own"
            ) from None
        problem = getattr(error, "problem", None) or str(error)
        if "'\\t'" in problem:
            problem += ": YAML indents with spaces only, replace the tabs with spaces"
        raise PipelineError(f"{source}{where}: this is not valid YAML: {problem}") from None
    finally:
        loader.dispose()


#: The tags of the plain YAML mappings and lists that pipelines are made of.
_PLAIN_COLLECTIONS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


def _construct(
    loader: YamlLoader, node: yaml.Node, path: tuple, lines: dict[tuple, int], source: str
) -> Any:
    if isinstance(node, yaml.CollectionNode) and node.tag not in _PLAIN_COLLECTIONS:
        # built here as plain mappings and lists, a tag would be dropped without a word
        raise PipelineError(
            f"{source}, line {node.start_mark.line + 1}: the YAML tag '{node.tag}' is not "
            "supported: pipelines hold plain mappings, lists, strings and numbers; remove it"
        )
    if isinstance(node, yaml.MappingNode):
        merged, own = _merged_and_own(loader, node)
        result = {}
        for key_node, value_node in merged:
            # (in PyYAML's order: a mapping earlier in `<<: [*a, *b]` replaces a later one)
            key = loader.construct_object(key_node, deep=True)
            lines[(*path, key)] = key_node.start_mark.line + 1
            result[key] = _construct(loader, value_node, (*path, key), lines, source)
        given: set[Any] = set()
        for key_node, value_node in own:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in given:
                # YAML would keep the last silently: a typo or a forgotten copy
                raise PipelineError(
                    f"{source}, line {line} ({_field_name((*path, key))}): '{key}' is given "
                    f"twice (first at line {lines[(*path, key)]}): keep one"
                )
            given.add(key)
            lines[(*path, key)] = line
            result[key] = _construct(loader, value_node, (*path, key), lines, source)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            items.append(_construct(loader, item, (*path, i), lines, source))
        return items
    return loader.construct_object(node, deep=True)


def _merged_and_own(
    loader: YamlLoader, node: yaml.MappingNode
) -> tuple[list[tuple[yaml.Node, yaml.Node]], list[tuple[yaml.Node, yaml.Node]]]:
    """The pairs of ``node`` that mappings merged into it with YAML's merge key give
    (``<<: *defaults``), and its own pairs, which replace them, as YAML reads a merge."""
    own = [pair for pair in node.value if pair[0].tag != _MERGE_TAG]
    if len(own) == len(node.value):
        return [], own
    loader.flatten_mapping(node)  # the merged pairs, then the own ones, merge keys gone
    return node.value[: len(node.value) - len(own)], node.value[len(node.value) - len(own) :]


def _field_name(path: tuple) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


# -- the pipeline ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Input:
    """A named input store."""

    name: str
    path: str
    chunks: int | str | None = None
    where: str = ""
    #: Whether the user named the input (in a pipeline file); the inputs of one
    #: operation (``apply``) are given as paths only, their names are internal.
    named: bool = True


@dataclass(frozen=True)
class Step:
    """One operation: ``op(*inputs, **args)``, its result called ``name``."""

    op: str
    inputs: tuple[str, ...]
    args: Mapping[str, Any] = field(default_factory=dict)
    name: str = ""
    where: str = ""


#: Words that Python's ``float`` reads as a number and YAML as a string.
_FLOAT_WORDS = ("inf", "infinity", "nan")

#: The arguments that name dimensions of the first input (as the TensorMap property of
#: the same name lists them), and the axis they name.
_NAMING_ARGUMENTS = {"sample_names": "samples", "property_names": "properties"}


def _unknown_names(step: Step, tensors: list[Any]) -> str:
    """The names of the first input's axis, as ``"; ..."``, when the step names one
    this axis does not have (in ``sample_names`` or ``property_names``), ``""`` else."""
    for argument, axis in _NAMING_ARGUMENTS.items():
        value = step.args.get(argument)
        if value is None or not tensors:
            continue
        present = getattr(tensors[0], argument, None)
        if not isinstance(present, list):
            continue  # (an input of another kind: the operation's own error says so)
        requested = [value] if isinstance(value, str) else value
        if isinstance(requested, list) and any(name not in present for name in requested):
            return f"; the {axis} of its input are named {present}"
    return ""


def _float_words(step: Step) -> str:
    """How YAML writes the floats that the args of ``step`` give as words it reads as
    strings (``inf``, ``-Infinity``, ``nan``), as ``"; ..."``; ``""`` when none does."""
    words = [
        f"the value '{value}' of `{name}`"
        for name, value in step.args.items()
        if isinstance(value, str) and value.strip().lower().lstrip("+-") in _FLOAT_WORDS
    ]
    if not words:
        return ""
    return (
        f"; {', '.join(words)} {'is' if len(words) == 1 else 'are'} read as a string: "
        "YAML writes infinity .inf (or -.inf) and not-a-number .nan"
    )


#: A value YAML 1.1 reads as a base-60 number (``1:30`` as 90), and YAML 1.2 as a string.
_BASE_60 = re.compile(r"^[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?$")


def _base_60_words(step: Step) -> str:
    """What the args of ``step`` written like base-60 numbers (``1:30``) are, as
    ``"; ..."``; ``""`` when none is."""
    words = [
        f"the value '{value}' of `{name}`"
        for name, value in step.args.items()
        if isinstance(value, str) and _BASE_60.match(value.strip())
    ]
    if not words:
        return ""
    return (
        f"; {', '.join(words)} {'is' if len(words) == 1 else 'are'} read as a string, as "
        "YAML 1.2 reads it (YAML 1.1 read it as a base-60 number): write the number itself"
    )


def _paths_as_arguments(step: Step) -> str:
    """Where tensors go, as ``"; ..."``, when an arg of ``step`` is a string naming a
    store or a metatensor file (``add`` with ``B: b.zarr``): the operation got the
    path, not a tensor. ``""`` when none is."""
    named = [
        f"`{name}: {value}`"
        for name, value in step.args.items()
        if isinstance(value, str)
        and (value.lower().endswith(".zarr") or "://" in value or is_metatensor_file(value))
    ]
    if not named:
        return ""
    return (
        f"; {', '.join(named)} passes the path as a string: tensors are the inputs of the "
        "step, passed first (`inputs: [a, b]` in a pipeline, with each store named under "
        "`inputs:`; `apply OP A.zarr B.zarr` on the command line)"
    )


def _comma_lists(step: Step) -> str:
    """How YAML writes a list, as ``"; ..."``, when an arg of ``step`` is a string of
    words separated by commas (``sample_names: atom,system``), which is one string;
    ``""`` when none is."""
    for name, value in step.args.items():
        if isinstance(value, str) and "," in value and "://" not in value:
            items = ", ".join(part.strip() for part in value.split(","))
            return f"; `{name}: {value}` is one string: YAML writes a list [{items}]"
    return ""


def _returned(function: Callable[..., Any]) -> str:
    """The name of the type ``function`` is annotated to return, ``""`` when it has none."""
    try:
        annotation = inspect.signature(function).return_annotation
    except (TypeError, ValueError):
        return ""
    if annotation is inspect.Signature.empty:
        return ""
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")


def _tensor_operations() -> list[str]:
    """The functions of ``metatensor_dask.operations`` that can be a step: those giving a
    TensorMap (or not annotated, checked when the step runs)."""
    from .. import operations

    return sorted(
        name
        for name in operations.__all__
        if _returned(getattr(operations, name)) in ("", "TensorMap")
    )


def _operation(name: str) -> Callable[..., Any]:
    """The operation called ``name``, refused (before any data is read) when it is unknown
    or gives something else than a TensorMap, which a pipeline could not write."""
    from .. import operations

    available = _tensor_operations()
    if name in available:
        return getattr(operations, name)
    listing = ", ".join(available) or "none are installed"
    if name in operations.__all__:
        tensor_version = name.removesuffix("_block").removesuffix("_raise")
        remedy = (
            f"use '{tensor_version}', which gives one"
            if tensor_version in available
            else "call it from Python on the tensors instead"
        )
        raise PipelineError(
            f"operation '{name}' returns {_returned(getattr(operations, name))}, not a "
            f"TensorMap, and a pipeline step must give a tensor to write: {remedy}; the "
            f"operations a step can use are {listing}"
        )
    # (every operation is named in lower case with underscores; a name typed in
    # capitals or with dashes, `POW`, `sum-over-samples`, is compared as such)
    close = difflib.get_close_matches(name.lower().replace("-", "_"), available, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise PipelineError(
        f"unknown operation '{name}': {hint}operations are the functions of "
        f"metatensor_dask.operations that give a TensorMap ({listing})"
    )


@dataclass(frozen=True)
class Pipeline:
    """Named inputs, a sequence of steps and the output store; see the module docs.

    Build one with :meth:`from_file`, :meth:`from_text` or :meth:`single`; every
    constructor validates the whole pipeline without reading any data.
    """

    inputs: tuple[Input, ...]
    steps: tuple[Step, ...]
    output: str
    output_from: str

    # -- construction ------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str) -> Pipeline:
        """Read and validate the pipeline file at ``path``."""
        if is_metatensor_file(path) or os.path.isdir(path):
            what = "a metatensor file" if is_metatensor_file(path) else "a directory"
            raise PipelineError(
                f"'{path}' is {what}, not a pipeline: `run` takes a YAML pipeline file; "
                "to apply one operation to a tensor use `metatensor-dask apply OP INPUT -o "
                "OUTPUT`, to convert it `metatensor-dask convert`"
            )
        try:
            with open(path, encoding="utf-8") as file:
                text = file.read()
        except OSError as error:
            raise PipelineError(
                f"cannot read the pipeline file '{path}': {error.strerror}"
            ) from None
        except UnicodeDecodeError as error:
            raise PipelineError(
                f"{path}: the pipeline file is not UTF-8 text (byte {error.start}): save it "
                "as UTF-8"
            ) from None
        return cls.from_text(text, source=path, base=os.path.dirname(os.path.abspath(path)))

    @classmethod
    def from_text(cls, text: str, source: str = "<pipeline>", base: str = ".") -> Pipeline:
        """Validate the pipeline in the YAML ``text``; relative paths are taken from ``base``."""
        data, lines = _load_yaml(text, source)
        return _Parser(source, lines, base).pipeline(data)

    @classmethod
    def single(
        cls, op: str, inputs: Sequence[str], output: str, args: Mapping[str, Any] | None = None
    ) -> Pipeline:
        """The pipeline of one operation ``op(*inputs, **args)`` written to ``output``."""
        names = [f"input{i}" for i in range(len(inputs))]
        where = f"operation {op}"
        try:
            typed = typed_arguments(_operation(op), args or {})
        except ArgumentError as error:
            raise PipelineError(f"{where}: {error}") from None
        step = Step(op, tuple(names), typed, "result", where)
        pipeline = cls(
            tuple(
                Input(n, p, where=f"input '{p}'", named=False)
                for n, p in zip(names, inputs, strict=True)
            ),
            (step,),
            output,
            "result",
        )
        if is_metatensor_file(output):
            raise PipelineError(f"output '{output}': {_NOT_A_FILE}")
        _check_call(step, step.where)
        return pipeline

    # -- checks and execution ----------------------------------------------------------

    def check_paths(self, resume: bool = False) -> None:
        """Check that local inputs exist and that the output may be written.

        Raises
        ------
        PipelineError
            A local input is missing, the output is one of the inputs, or the output
            exists and ``resume`` is false.
        """
        for item in self.missing_inputs():
            if item.named:
                raise PipelineError(f"{item.where}: input '{item.name}' not found: {item.path}")
            raise PipelineError(f"{item.where} not found: check the path")
        self.check_output(resume)

    def missing_inputs(self) -> list[Input]:
        """The local inputs that do not exist."""
        return [i for i in self.inputs if _is_local(i.path) and not os.path.exists(i.path)]

    def check_output(self, resume: bool = False, resume_option: str = "--resume") -> None:
        """Check that the output may be written: it is none of the inputs, and does not
        exist unless ``resume``; ``resume_option`` is the option of the command that
        resumes, named by the refusal of an output that exists.

        Raises
        ------
        PipelineError
            The output is one of the inputs, or it exists and ``resume`` is false.
        """
        for item in self.inputs:
            if same_local_path(item.path, self.output):
                which = f"the input '{item.name}'" if item.named else "one of its inputs"
                raise PipelineError(
                    f"the output store {self.output} is {which}: a pipeline can not write "
                    "into a store it reads; choose another output"
                )
        if _is_local(self.output) and occupied(self.output) and not resume:
            raise PipelineError(
                f"the output store {self.output} already exists: delete it or choose "
                f"another output, or pass {resume_option} to finish an interrupted run into it"
            )

    def build(self) -> Any:
        """Open the inputs and apply the steps: the lazy TensorMap to write."""
        from ..tensor import TensorMap

        results: dict[str, Any] = {}
        for item in self.inputs:
            try:
                results[item.name] = open_tensor(item.path, item.chunks)
            except Exception as error:
                raise PipelineError(
                    f"{item.where}: cannot open '{item.path}': {describe(error)}"
                ) from error
        for step in self.steps:
            function = _operation(step.op)
            tensors = [results[name] for name in step.inputs]
            try:
                result = function(*_positional(function, tensors), **step.args)
            except Exception as error:
                raise PipelineError(
                    f"{step.where}: {step.op} failed: {describe(error)}"
                    f"{_unknown_names(step, tensors)}{_float_words(step)}{_base_60_words(step)}"
                    f"{_paths_as_arguments(step)}{_comma_lists(step)}"
                ) from error
            if not isinstance(result, TensorMap):
                raise PipelineError(
                    f"{step.where}: {step.op} returns {type(result).__name__}, not a "
                    "TensorMap; a pipeline step must give a tensor"
                )
            results[step.name] = result
        return results[self.output_from]

    def write(self, result: Any, resume: bool = False) -> Any:
        """The ``Delayed`` that writes ``result`` to the output store.

        The memory that building the graph freed is given back to the system here
        (:func:`~metatensor_dask.execution._memory.give_back_free_memory`): it would stay
        resident in this process, where a cluster's scheduler runs, during the whole
        computation.
        """
        delayed = result.to_zarr(self.output, mode="w-", compute=False, resume=resume)
        give_back_free_memory()
        return delayed


class _Parser:
    """Turns the YAML document into a :class:`Pipeline`, failing with file and line."""

    def __init__(self, source: str, lines: dict[tuple, int], base: str):
        self.source = source
        self.lines = lines
        self.base = base

    def where(self, path: tuple) -> str:
        line = self.lines.get(path)
        while line is None and path:
            path = path[:-1]
            line = self.lines.get(path)
        return f"{self.source}, line {line} ({_field_name(path) or 'top level'})"

    def fail(self, path: tuple, message: str) -> PipelineError:
        return PipelineError(f"{self.where(path)}: {message}")

    def mapping(self, value: Any, path: tuple, allowed: Sequence[str], what: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(path, f"{what} must be a mapping with the fields {', '.join(allowed)}")
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                raise self.fail(
                    (*path, key), f"unknown field '{key}' in {what}: {hint}use {', '.join(allowed)}"
                )
        return value

    def path(self, value: Any, path: tuple, what: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(path, f"{what} must be a path or URL (a string), got {value!r}")
        one_slash = url_with_one_slash(value)
        if one_slash:
            raise self.fail(path, one_slash)
        if _is_local(value):
            return os.path.normpath(os.path.join(self.base, os.path.expanduser(value)))
        return value

    def name(self, value: Any, path: tuple, known: Mapping[str, tuple]) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(path, f"names must be non-empty strings, got {value!r}")
        if value in known:
            raise self.fail(
                path, f"the name '{value}' is already used at line {self.lines.get(known[value])}"
            )
        return value

    def default_name(self, index: int, known: Mapping[str, tuple]) -> str:
        """The name of the unnamed step ``index``, ``step <index>``, refused when an input or
        an earlier step already has it: the step would take its place, and the steps
        after it would read this step's result under that name."""
        name = f"step {index}"
        if name in known:
            raise self.fail(
                ("steps", index),
                f"this step has no `name`, and its default name '{name}' is the name given at "
                f"line {self.lines.get(known[name])}: give this step a `name`, or give the "
                "tensor of that line another name",
            )
        return name

    def pipeline(self, data: Any) -> Pipeline:
        self.mapping(data, (), _TOP_FIELDS, "a pipeline")
        for key in _TOP_FIELDS:
            if key not in data:
                raise self.fail((), f"the pipeline has no `{key}`: {_EXAMPLES[key]}")
        known: dict[str, tuple] = {}
        inputs = self.inputs(data["inputs"], known)
        steps = self.steps(data["steps"], known, inputs)
        output, output_from = self.output(data["output"], known, steps)
        return Pipeline(tuple(inputs), tuple(steps), output, output_from)

    def inputs(self, value: Any, known: dict[str, tuple]) -> list[Input]:
        if not isinstance(value, dict) or not value:
            raise self.fail(
                ("inputs",), f"`inputs` must be a non-empty mapping: {_EXAMPLES['inputs']}"
            )
        inputs = []
        for name, spec in value.items():
            path = ("inputs", name)
            name = self.name(name, path, known)
            chunks = None
            if isinstance(spec, dict):
                self.mapping(spec, path, _INPUT_FIELDS, f"input '{name}'")
                if "path" not in spec:
                    raise self.fail(path, f"input '{name}' has no `path`")
                chunks = spec.get("chunks")
                if isinstance(chunks, bool) or not isinstance(chunks, (int, str, type(None))):
                    raise self.fail(
                        (*path, "chunks"),
                        "`chunks` must be a number of rows or a size such as '64MiB'",
                    )
                try:
                    parse_chunks(chunks)
                except MetatensorDaskError as error:
                    raise self.fail((*path, "chunks"), str(error)) from None
                location = self.path(spec["path"], (*path, "path"), f"input '{name}'")
            else:
                location = self.path(spec, path, f"input '{name}'")
            known[name] = path
            inputs.append(Input(name, location, chunks, self.where(path)))
        return inputs

    def steps(self, value: Any, known: dict[str, tuple], inputs: list[Input]) -> list[Step]:
        if not isinstance(value, list) or not value:
            raise self.fail(("steps",), f"`steps` must be a non-empty list: {_EXAMPLES['steps']}")
        steps: list[Step] = []
        previous = inputs[0].name if len(inputs) == 1 else None
        for i, spec in enumerate(value):
            path = ("steps", i)
            self.mapping(spec, path, _STEP_FIELDS, f"step {i}")
            if "op" not in spec:
                raise self.fail(
                    path, "this step has no `op`: name an operation, e.g. `op: multiply`"
                )
            op = spec["op"]
            if not isinstance(op, str):
                raise self.fail((*path, "op"), f"`op` must be an operation name, got {op!r}")
            try:
                _operation(op)
            except PipelineError as error:
                raise self.fail((*path, "op"), str(error)) from None
            names = spec.get("inputs", previous)
            if names is None:
                raise self.fail(
                    path,
                    f"the first step must name its `inputs`: the pipeline has {len(inputs)} "
                    f"inputs ({', '.join(item.name for item in inputs)})",
                )
            names = [names] if isinstance(names, str) else names
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise self.fail((*path, "inputs"), "`inputs` must be a name or a list of names")
            for j, name in enumerate(names):
                if name not in known:
                    defined = ", ".join(known) or "none"
                    raise self.fail(
                        (*path, "inputs", j),
                        f"unknown tensor '{name}': inputs and named steps defined above "
                        f"are {defined}",
                    )
            args = spec.get("args", {})
            if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
                raise self.fail((*path, "args"), "`args` must be a mapping of keyword arguments")
            name = (
                self.name(spec["name"], (*path, "name"), known)
                if "name" in spec
                else self.default_name(i, known)
            )
            known[name] = path
            try:
                args = typed_arguments(_operation(op), args)
            except ArgumentError as error:
                raise self.fail((*path, "args"), str(error)) from None
            step = Step(op, tuple(names), args, name, self.where(path))
            _check_call(step, self.where((*path, "args") if args else path))
            steps.append(step)
            previous = name
        return steps

    def output(self, value: Any, known: dict[str, tuple], steps: list[Step]) -> tuple[str, str]:
        source = steps[-1].name
        path: tuple[str, ...]
        if isinstance(value, dict):
            self.mapping(value, ("output",), _OUTPUT_FIELDS, "`output`")
            if "path" not in value:
                raise self.fail(("output",), f"`output` has no `path`: {_EXAMPLES['output']}")
            if "from" in value:
                source = value["from"]
                if source not in known:
                    raise self.fail(
                        ("output", "from"),
                        f"unknown tensor '{source}': use one of {', '.join(known)}",
                    )
            value, path = value["path"], ("output", "path")
        else:
            path = ("output",)
        location = self.path(value, path, "`output`")
        if is_metatensor_file(location):
            raise self.fail(path, _NOT_A_FILE)
        return location, source


def _takes_a_list(function: Callable[..., Any]) -> bool:
    """Whether the first parameter of ``function`` is a list of tensors (``join``)."""
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return False
    if not parameters:
        return False
    annotation = parameters[0].annotation
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    return str(text).startswith(("list[", "tuple[", "Sequence["))


def _positional(function: Callable[..., Any], tensors: Sequence[Any]) -> list[Any]:
    """The positional arguments of a step: its input tensors, or one list of them for an
    operation that takes a list (``join(tensors, axis=...)``), so that the step's args
    fill the other parameters."""
    return [list(tensors)] if _takes_a_list(function) else list(tensors)


def _check_call(step: Step, where: str) -> None:
    """Check that ``op(*inputs, **args)`` (``op([inputs], **args)`` for an operation
    taking a list of tensors) matches the operation's signature."""
    function = _operation(step.op)
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # no signature to check against
        return
    try:
        signature.bind(*_positional(function, step.inputs), **step.args)
    except TypeError as error:
        parameters = ", ".join(signature.parameters)
        raise PipelineError(
            f"{where}: {step.op}({parameters}) cannot be called with {len(step.inputs)} input "
            f"tensor(s) and args {dict(step.args)}: {error}{_unknown_arguments(step, signature)}"
        ) from None


def _unknown_arguments(step: Step, signature: inspect.Signature) -> str:
    """What to say of the args of ``step`` that are no parameter of its operation (a
    typo, such as ``b`` for ``B``, makes the call also miss the parameter meant), with
    the parameter each one likely means; ``""`` when there are none."""
    parameters = signature.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return ""
    by_lower = {name.lower(): name for name in parameters}
    notes = []
    for name in step.args:
        if name in parameters:
            continue
        close = difflib.get_close_matches(name.lower(), list(by_lower), n=1)
        hint = f" (did you mean '{by_lower[close[0]]}'?)" if close else ""
        notes.append(f"'{name}'{hint}")
    if not notes:
        return ""
    return f"; {step.op} has no argument {', '.join(notes)}"


_NOT_A_FILE = (
    "pipelines write Zarr stores (e.g. result.zarr); convert the result to .mts afterwards "
    "with `metatensor-dask convert`"
)
_EXAMPLES = {
    "inputs": "name the stores to read, e.g. `inputs: {spectrum: spectrum.zarr}`",
    "steps": "list the operations, e.g. `steps: [{op: pow, args: {B: 2}}]`",
    "output": "name the Zarr store to write, e.g. `output: result.zarr`",
}
