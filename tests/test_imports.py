"""The import graph of the project's own modules: no cycles, and the client stays a client.

Every import counts, module level and inside functions alike (a lazy import still ties two
modules together), so this reads the sources with ``ast`` instead of importing them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE_ROOTS = [ROOT / d for d in ("python_backend", "client", "export", "server")]
PACKAGES = ("rmbg_backend", "rmbg_cli", "rmbg_client", "rmbg_export", "rmbg_hosted", "rmbg_models", "rmbg_server")
# The server-side modules the client may share: contracts, written with the standard library only.
LIGHT_BACKEND_MODULES = ("rmbg_backend.contract", "rmbg_backend.families", "rmbg_backend.options",
                         "rmbg_backend.errors")


def _modules() -> dict[str, Path]:
    found = {}
    for root in SOURCE_ROOTS:
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Project modules ``name`` imports: ``from a import b`` means ``a.b`` where that is a module."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(path, name, known) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
                result.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return result


def test_the_checker_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_every_package_is_seen(graph):
    assert {name.split(".")[0] for name in graph} >= set(PACKAGES)


def test_no_import_cycles(graph):
    assert _cycles(graph) == []


def _package(module: str) -> str:
    return module.split(".")[0]


def _imports_of(graph: dict[str, set[str]], package: str) -> dict[str, set[str]]:
    return {name: targets for name, targets in graph.items() if _package(name) == package}


def test_the_client_library_imports_no_server_export_or_cli_code(graph):
    """The client stands on the hosted-API package and the standard-library contract modules only."""
    allowed = set(LIGHT_BACKEND_MODULES)
    for name, targets in _imports_of(graph, "rmbg_client").items():
        bad = {t for t in targets if _package(t) not in ("rmbg_client", "rmbg_hosted") and t not in allowed}
        assert not bad, f"{name} imports {bad}"


def test_the_hosted_api_package_stands_on_the_contracts_alone(graph):
    """Both the client library and the gateway use it: it may use neither, nor any engine code."""
    allowed = set(LIGHT_BACKEND_MODULES)
    for name, targets in _imports_of(graph, "rmbg_hosted").items():
        bad = {t for t in targets if _package(t) != "rmbg_hosted" and t not in allowed}
        assert not bad, f"{name} imports {bad}"


def test_the_backend_imports_no_export_server_or_cli_code(graph):
    """The Triton steps are the bottom layer: they may use the model definitions, nothing above."""
    for name, targets in _imports_of(graph, "rmbg_backend").items():
        bad = {t for t in targets if _package(t) not in ("rmbg_backend", "rmbg_models")}
        assert not bad, f"{name} imports {bad}"
    for name, targets in _imports_of(graph, "rmbg_models").items():
        assert {_package(t) for t in targets} <= {"rmbg_models"}, f"{name} imports {targets}"


def test_modules_the_client_shares_need_only_the_standard_library():
    import sys

    for module in (m.rpartition(".")[2] for m in LIGHT_BACKEND_MODULES):
        tree = ast.parse((ROOT / "python_backend" / "rmbg_backend" / f"{module}.py").read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            for n in names:
                ok = n.split(".")[0] in sys.stdlib_module_names or n in ("__future__", *LIGHT_BACKEND_MODULES)
                assert ok, f"{module} imports {n}"
