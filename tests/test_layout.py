"""The house stays navigable: small modules, short functions, no import cycle, no reads of
another module's private names (issue #13). Read from the source, as a maintainer would."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "hostguard"
#: "About 450 lines" a module, "about 60" a function.
MAX_MODULE_LINES = 470
MAX_FUNCTION_LINES = 60


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imports(name: str, tree: ast.AST, known: dict[str, Path]) -> set[str]:
    """The hostguard modules ``name`` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hostguard"):
            for alias in node.names:
                target = f"{node.module}.{alias.name}"
                found.add(target if target in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
    found.discard(name)
    return {module for module in found if module in known}


def test_no_module_is_too_long_and_no_function_either() -> None:
    long_modules, long_functions = [], []
    for name, path in modules().items():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long_modules.append((name, len(text.splitlines())))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append((name, node.name, length))
    assert long_modules == []
    assert long_functions == []


def test_no_import_cycle_among_hostguard_modules() -> None:
    known = modules()
    # apps.ready() wiring aside: it imports everything it connects, on purpose.
    graph = {
        name: imports(name, ast.parse(path.read_text()), known)
        for name, path in known.items()
        if name != "hostguard.apps"
    }

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    return [*path, nxt]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
        return None

    cycles = [" → ".join(cycle) for name in graph if (cycle := cycle_from(name))]
    assert cycles == []


def test_no_module_reads_another_modules_private_names() -> None:
    known = modules()
    found = []
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hostguard"):
                if node.module == name:
                    continue
                found += [(name, node.module, a.name) for a in node.names if a.name.startswith("_")]
    assert found == []


@pytest.mark.parametrize(
    "module",
    ["hostguard.decision", "hostguard.snapshot", "hostguard.tenant_table", "hostguard.hosts", "hostguard.decide"],
)
def test_the_pure_core_imports_no_models(module: str) -> None:
    known = modules()
    path = known[module]
    reached, todo = set(), [module]
    while todo:
        current = todo.pop()
        for imported in imports(current, ast.parse(known[current].read_text()), known):
            if imported not in reached:
                reached.add(imported)
                todo.append(imported)
    assert not {name for name in reached if name.startswith("hostguard.models")}, path
