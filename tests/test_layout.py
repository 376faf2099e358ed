"""The import graph keeps the data flow readable top-down: no module circles, the engine and the
report never import each other, and the grid's and the paper's vocabularies import nothing upstream."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("benchmark", "methods", "baselines")


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Project modules imported anywhere in the file (function-level imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from package import submodule` imports the submodule; any other name comes from the package
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                     for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    paths = [p for package in PACKAGES for p in (REPO / package).rglob("*.py")]
    modules = {_module_name(p) for p in paths}
    return {_module_name(p): _imports(p, modules) - {_module_name(p)} for p in paths}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_the_graph_is_read(graph):
    assert "benchmark.config" in graph["benchmark.engine.cell"] or "benchmark.grid" in graph["benchmark.engine.cell"]
    assert "benchmark.cost.counting" in graph["benchmark.engine.cell"]


def test_circle_detection_finds_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle(graph):
    assert _circles(graph) == []


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


# The layers, lowest first: a module imports only from its own layer or a lower one. The vocabulary
# every layer shares; the parts a grid names (methods, baselines, datasets); the models built from
# them; the config that checks a grid against all of these and the fetch that downloads its files;
# what a cell costs; the engine that runs a cell; the report, the speed measurements and the use of
# finished cells (predict, export); the command line.
LAYERS = (
    ("benchmark.errors", "benchmark.registry", "benchmark.quiet", "benchmark.grid", "benchmark.io", "benchmark.paper", "benchmark.allocator",
     "benchmark.provenance", "benchmark.metrics", "benchmark.prompting", "benchmark.summary"),
    ("methods", "baselines", "benchmark.data", "benchmark.gpus", "benchmark.predictions", "benchmark.tuning"),
    ("benchmark.models",),
    ("benchmark.config_checks", "benchmark.check_cache", "benchmark.method_checks", "benchmark.config", "benchmark.fetch"),
    ("benchmark.cost",),
    ("benchmark.engine",),
    ("benchmark.report", "benchmark.perf", "benchmark.use"),
    ("benchmark.cli",),
)


def _layer(module: str) -> int:
    for index, prefixes in enumerate(LAYERS):
        if any(_under(module, prefix) for prefix in prefixes):
            return index
    raise AssertionError(f"{module} is in no layer of tests/test_layout.py: give it one")


def test_every_module_has_a_layer(graph):
    for module in graph:
        if module not in PACKAGES:
            _layer(module)


def test_no_import_runs_back_up_a_layer(graph):
    upward = {module: sorted(t for t in targets if t not in PACKAGES and _layer(t) > _layer(module))
              for module, targets in graph.items() if module not in PACKAGES}
    assert {m: t for m, t in upward.items() if t} == {}


@pytest.mark.parametrize("source, target", [("benchmark.engine", "benchmark.report"),
                                            ("benchmark.report", "benchmark.engine"),
                                            ("benchmark.cost", "benchmark.perf"),
                                            ("benchmark.perf", "benchmark.report"),
                                            ("benchmark.report", "benchmark.perf")])
def test_downstream_is_never_imported(graph, source, target):
    wrong = {m: sorted(t for t in targets if _under(t, target))
             for m, targets in graph.items() if _under(m, source)}
    assert {m: t for m, t in wrong.items() if t} == {}


@pytest.mark.parametrize("leaf", ["benchmark.errors", "benchmark.grid", "benchmark.paper.published",
                                  "benchmark.paper.mapping"])
def test_vocabularies_import_nothing_of_the_project_but_its_errors(graph, leaf):
    assert graph[leaf] <= {"benchmark.errors"}
