"""The layout's rules, checked on the source: no import cycle (imports inside functions
count, those under TYPE_CHECKING do not), requests flow one way (web and cli import no
route module, web nothing of the cli), one error model, and no module too big to read."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import app

SOURCE = Path(app.__file__).parent
MAX_LINES = 550
MAX_EXCEPT_CLAUSES_IN_ROUTES = 5


def _module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(SOURCE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str) -> Iterator[str]:
    """The app modules `tree` imports anywhere, except under `if TYPE_CHECKING:`."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (name for child in node.orelse for name in _imports(child, module))
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{module}: the project imports absolutely"
            base = node.module or ""
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield submodule if submodule in MODULES else base
        yield from _imports(node, module)


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        graph[module] = {
            target
            for target in _imports(tree, module)
            if target in MODULES and target != module and target != "app"
        }
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


GRAPH = _graph()


def test_the_checker_sees_imports_inside_functions_and_skips_type_checking_ones() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from app.main import create_app\n"
        "def f():\n    from app.runs import commands\n    import app.tables\n"
    )
    assert set(_imports(tree, "app.cli")) == {"typing", "app.runs.commands", "app.tables"}
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert "app.runs.commands" in GRAPH["app.api.deps"]  # the real graph has edges


def test_no_import_cycles() -> None:
    assert _cycles(GRAPH) == []


@pytest.mark.parametrize("layer", ["app.web", "app.cli"])  # app.cli and app.cli_runs
def test_web_and_cli_import_no_route_module(layer: str) -> None:
    offending = {
        (module, target)
        for module, targets in GRAPH.items()
        if module == layer or module.startswith((layer + ".", layer + "_"))
        for target in targets
        if target.startswith("app.api.routes")
    }
    assert offending == set()


def test_web_imports_nothing_from_the_cli() -> None:
    assert {
        m for m, targets in GRAPH.items() if m.startswith("app.web") and "app.cli" in targets
    } == set()


def test_domain_packages_import_no_http_layer() -> None:
    """runs/, scheduling/, watchlists/ and the domain modules know nothing of routes, pages
    or the CLI."""
    domain = (
        "app.runs",
        "app.scheduling",
        "app.core",
        "app.presets",
        "app.orgs",
        "app.users",
        "app.watchlists",
    )
    outer = ("app.api", "app.web", "app.cli", "app.main")
    offending = {
        (module, target)
        for module, targets in GRAPH.items()
        if module.startswith(domain)
        for target in targets
        if target.startswith(outer)
    }
    assert offending == set()


def test_no_module_over_the_size_limit() -> None:
    too_big = {
        module: lines
        for module, path in MODULES.items()
        if not path.name.startswith("sample")
        and (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert too_big == {}


def _except_clauses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [
        ast.unparse(node.type) if node.type else "bare"
        for node in ast.walk(tree)
        if isinstance(node, ast.ExceptHandler)
    ]


def test_routes_leave_errors_to_the_one_handler() -> None:
    clauses = [
        clause
        for module, path in MODULES.items()
        if module.startswith("app.api.routes.")
        for clause in _except_clauses(path)
    ]
    assert len(clauses) <= MAX_EXCEPT_CLAUSES_IN_ROUTES, clauses


def test_web_pages_catch_domain_errors_never_http_exceptions() -> None:
    caught = {
        module: clause
        for module, path in MODULES.items()
        if module.startswith("app.web")
        for clause in _except_clauses(path)
        if "HTTPException" in clause
    }
    assert caught == {}


def test_core_stands_on_nothing_but_itself_and_the_error_kinds() -> None:
    offending = {
        (module, target)
        for module, targets in GRAPH.items()
        if module.startswith("app.core")
        for target in targets
        if not target.startswith("app.core") and target != "app.errors"
    }
    assert offending == set()
