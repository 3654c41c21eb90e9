"""The package's import directions: model -> io / operations -> API -> execution.

Every ``import`` of a ``metatensor_dask`` module, at module level or inside a function,
is an edge of the import graph checked here:

* a layer imports only from its own layer and the layers below it (``LAYERS``);
* ``io`` and ``operations`` are independent of each other;
* the model reaches up into ``io`` or ``operations`` only from a method of one of its
  classes, imported at call time: a method that metatensor's API puts on the model
  (``TensorMap.to_zarr``, the arithmetic dunders, ``keys_to_samples``...) whose
  implementation lives in a higher layer (the pattern xarray uses);
* leaving those methods aside, the graph has no cycle, even through imports inside
  functions.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import metatensor_dask

PACKAGE_ROOT = Path(metatensor_dask.__file__).parent

# lower number = lower layer; a module may import from layers with a number <= its own,
# except between the two layers of rank 1
LAYERS = {
    "model": 0,
    "io": 1,
    "operations": 1,
    "datasets": 1,
    "testing": 2,
    "api": 3,  # the package root: the public names
    "execution": 4,  # uses the public names like a user does
    "entry": 5,  # python -m metatensor_dask
}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    scope: str  # "<module>" or the qualified name of the enclosing function/class
    in_method: bool  # inside a method of a class


def layer_of(module: str) -> str:
    parts = module.split(".")
    if module == "metatensor_dask":
        return "api"
    if module == "metatensor_dask.__main__":
        return "entry"
    if parts[1] in ("io", "operations", "datasets", "testing", "execution"):
        return parts[1]
    return "model"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(target: str, name: str) -> str:
    candidate = f"{target}.{name}"
    relative = Path(*candidate.split(".")[1:])
    if (PACKAGE_ROOT / f"{relative}.py").exists() or (PACKAGE_ROOT / relative).is_dir():
        return candidate
    return target


def edges_of(path: Path) -> list[Edge]:
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    edges: list[Edge] = []

    def visit(node: ast.AST, scope: str, in_method: bool, in_class: bool) -> None:
        for child in ast.iter_child_nodes(node):
            child_scope, child_method, child_class = scope, in_method, False
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                child_scope = f"{scope}.{child.name}" if scope else child.name
                child_method = in_method or in_class
            elif isinstance(child, ast.ClassDef):
                child_scope = f"{scope}.{child.name}" if scope else child.name
                child_class = True
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # annotations only, never executed
            if isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if target.startswith("metatensor_dask"):
                    for alias in child.names:
                        resolved = _resolve(target, alias.name)
                        edges.append(Edge(module, resolved, scope or "<module>", in_method))
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.startswith("metatensor_dask"):
                        edges.append(Edge(module, alias.name, scope or "<module>", in_method))
            visit(child, child_scope, child_method, child_class)

    visit(ast.parse(path.read_text()), "", False, False)
    return [edge for edge in edges if edge.target != edge.source]


ALL_EDGES = [edge for path in sorted(PACKAGE_ROOT.rglob("*.py")) for edge in edges_of(path)]


def _is_model_method_upcall(edge: Edge) -> bool:
    return (
        layer_of(edge.source) == "model"
        and layer_of(edge.target) in ("io", "operations")
        and edge.in_method
    )


def test_the_graph_was_read():
    sources = {edge.source for edge in ALL_EDGES}
    assert "metatensor_dask.block" in sources
    assert "metatensor_dask.execution.cli" in sources
    assert any(_is_model_method_upcall(edge) for edge in ALL_EDGES)


def test_imports_point_down():
    wrong = []
    for edge in ALL_EDGES:
        source, target = layer_of(edge.source), layer_of(edge.target)
        if _is_model_method_upcall(edge):
            continue
        if LAYERS[target] > LAYERS[source] or (
            LAYERS[target] == LAYERS[source] == 1 and source != target
        ):
            wrong.append(f"{edge.source} ({source}) imports {edge.target} ({target}), {edge.scope}")
    assert wrong == [], "\n".join(wrong)


def test_no_import_cycles_even_inside_functions():
    graph: dict[str, set[str]] = {}
    for edge in ALL_EDGES:
        if not _is_model_method_upcall(edge):
            graph.setdefault(edge.source, set()).add(edge.target)
            graph.setdefault(edge.target, set())
    cycles = [sorted(component) for component in _strongly_connected(graph) if len(component) > 1]
    assert cycles == [], f"import cycles: {cycles}"


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    components.append(component)
    return components


def test_strongly_connected_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert sorted(map(sorted, _strongly_connected(graph))) == [["a", "b", "c"], ["d"]]


@pytest.mark.parametrize("flag", ["-O", "-OO"])
def test_imports_with_optimisations(flag):
    """``python -OO`` strips docstrings: nothing may build on them at import time."""
    result = subprocess.run(
        [sys.executable, flag, "-c", "import metatensor_dask as mtd; print(len(mtd.__all__))"],
        capture_output=True,
        text=True,
        env={**os.environ},
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 50
