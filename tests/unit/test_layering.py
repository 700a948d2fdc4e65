"""The runtime's layering, read from the source's imports (every import, also inside functions):
the services and shared/ never import the dev tooling (perpex_dev, not in the container image),
no service imports another service, and no runtime module imports itself back through others
(imports only for type checking excepted)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ("services", "shared", "perpex_cli")


def _modules() -> dict[str, Path]:
    out = {}
    for top in (*RUNTIME, "perpex_dev"):
        for path in (ROOT / top).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, known: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text())
    skip = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _type_checking_only(node)
        for n in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {name for name in found if name in known}


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {m: _imports(p, known) for m, p in known.items()}


def test_the_runtime_never_imports_the_dev_tooling() -> None:
    graph = _graph()
    bad = sorted(
        (m, d)
        for m, deps in graph.items()
        if m.startswith(RUNTIME)
        for d in deps
        if d.startswith("perpex_dev")
    )
    assert bad == []


def test_no_service_imports_another() -> None:
    graph = _graph()
    bad = sorted(
        (m, d)
        for m, deps in graph.items()
        if m.startswith("services.")
        for d in deps
        if d.startswith("services.") and d.split(".")[1] != m.split(".")[1]
    )
    assert bad == []


def test_no_import_cycles_in_the_runtime() -> None:
    graph = {m: {d for d in deps if d.startswith(RUNTIME)} for m, deps in _graph().items()}
    graph = {m: deps for m, deps in graph.items() if m.startswith(RUNTIME)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    assert cycles == []
