# SPDX-License-Identifier: Apache-2.0
"""The layering rules of the package, read from the source (ast): nothing is imported or run.

- The container side (`oci_systemd/container/`, what the idler runs) imports only the standard
  library, itself and the shared leaves `oci_systemd.errors`, `oci_systemd.jsonio` and
  `oci_systemd` (OCI_VERSION): the rule stated in `oci_systemd/container/__init__.py`. Every
  import counts, at module level, inside functions, under TYPE_CHECKING and through a visible
  `importlib.import_module("…")` / `__import__("…")`.
- No import cycle among the modules of `oci_systemd` at module level (what runs when a module is
  imported: not function bodies, not `if TYPE_CHECKING:` blocks).
- No module over `MAX_LINES` lines but the ones in `LONG_MODULES`, each with its reason; an entry
  that is no longer needed fails too, so the list only shrinks.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "oci_systemd"

MAX_LINES = 600

# Modules allowed over MAX_LINES, relative to oci_systemd/, and why (issue 18 splits them).
LONG_MODULES: dict[str, str] = {}

# What a container module may import besides the standard library.
CONTAINER_PACKAGE = "oci_systemd.container"
SHARED_LEAVES = frozenset({"oci_systemd", "oci_systemd.errors", "oci_systemd.jsonio"})


@dataclass(frozen=True)
class Import:
    """One import in module `importer`: `name` is the module it loads (for `from a import b`,
    `a.b` when that is a module of the package, else `a`)."""

    importer: str
    name: str
    line: int
    at_import_time: bool  # runs when the importer is imported: not in a function or TYPE_CHECKING


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {
    _module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "__pycache__" not in p.parts
}


def _is_type_checking(test: ast.expr) -> bool:
    """`if TYPE_CHECKING:` or `if typing.TYPE_CHECKING:`."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _dynamic_import(call: ast.Call) -> str | None:
    """The module named by `importlib.import_module("x")`, `import_module("x")` or
    `__import__("x")` when it is a string literal."""
    func = call.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
    if name not in ("import_module", "__import__") or not call.args:
        return None
    arg = call.args[0]
    return arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None


def _from_base(module: str, node: ast.ImportFrom) -> str:
    """The absolute module of `from <base> import …`, relative forms resolved."""
    if not node.level:
        return node.module or ""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def imports_of(module: str, source: str | None = None) -> list[Import]:
    """Every import of `module` (its file, or `source` in its place)."""
    tree = ast.parse(source if source is not None else MODULES[module].read_text(), module)
    found: list[Import] = []

    def add(name: str, node: ast.AST, runtime: bool) -> None:
        found.append(Import(module, name, getattr(node, "lineno", 0), runtime))

    def visit(node: ast.AST, runtime: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node, runtime)
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(module, node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                add(sub if sub in MODULES else base, node, runtime)
        elif isinstance(node, ast.Call) and (name := _dynamic_import(node)) is not None:
            add(name, node, runtime)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            runtime = False
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for stmt in node.body:
                visit(stmt, False)
            for stmt in node.orelse:
                visit(stmt, runtime)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, runtime)

    visit(tree, True)
    return found


# --- the container side's import rule --------------------------------------------------------------
def _container_side() -> list[str]:
    leaves = ("oci_systemd", "oci_systemd.errors", "oci_systemd.jsonio")
    return [m for m in MODULES if m == CONTAINER_PACKAGE or m.startswith(CONTAINER_PACKAGE + ".")] + [
        *leaves
    ]


def container_may_import(name: str) -> bool:
    return (
        name.partition(".")[0] in sys.stdlib_module_names
        or name in SHARED_LEAVES
        or name == CONTAINER_PACKAGE
        or name.startswith(CONTAINER_PACKAGE + ".")
    )


def forbidden_imports(module: str, source: str | None = None) -> list[str]:
    return [
        f"{module}:{imp.line} imports {imp.name}"
        for imp in imports_of(module, source)
        if not container_may_import(imp.name)
    ]


def test_the_container_side_imports_only_the_stdlib_itself_and_the_shared_leaves() -> None:
    modules = _container_side()
    assert "oci_systemd.container.idler" in modules and "oci_systemd.container.mounts.rootfs" in modules
    bad = [line for m in modules for line in forbidden_imports(m)]
    assert bad == [], "the container side must not import these (oci_systemd/container/__init__.py)"


@pytest.mark.parametrize(
    "source",
    [
        "from oci_systemd.runtime import spec",
        "from oci_systemd import runtime",
        "def f():\n    import click",
        "TYPE_CHECKING = False\nif TYPE_CHECKING:\n    from oci_systemd.runtime.state import Status",
        "import importlib\ndef f():\n    importlib.import_module('oci_systemd.cli.app')",
        "def f():\n    __import__('dbus_next')",
        "from ...runtime import journal",
    ],
)
def test_the_container_rule_sees_every_kind_of_import(source: str) -> None:
    """The checker itself: each of these, in a container module, is caught."""
    assert forbidden_imports("oci_systemd.container.mounts.rootfs", source) != []


def test_the_container_rule_allows_what_the_idler_needs() -> None:
    source = (
        "import os, _socket\nfrom oci_systemd import OCI_VERSION, jsonio\nfrom oci_systemd.errors import E\n"
        "from . import linux\nfrom .resolve import open_in_root\nfrom oci_systemd.container import channel"
    )
    assert forbidden_imports("oci_systemd.container.mounts.rootfs", source) == []


# --- no import cycle -----------------------------------------------------------------------------
def import_graph(sources: dict[str, str] | None = None) -> dict[str, set[str]]:
    """module → the package's modules it imports at import time. Parent packages a submodule
    import loads implicitly are not edges: a package importing its submodules is no cycle."""
    sources = sources or {}
    return {
        m: {i.name for i in imports_of(m, sources.get(m)) if i.at_import_time and i.name in MODULES} - {m}
        for m in MODULES
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return sorted(found)


def test_no_import_cycle_at_module_level() -> None:
    graph = import_graph()
    assert "oci_systemd.container.mounts.resolve" in graph["oci_systemd.container.mounts.rootfs"]
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle_and_ignores_type_checking_and_functions() -> None:
    jsonio, errors = "oci_systemd.jsonio", "oci_systemd.errors"

    def cycles_with(sources: dict[str, str]) -> list[list[str]]:
        return [c for c in cycles(import_graph(sources)) if jsonio in c]

    lazy = {jsonio: "def f():\n    from oci_systemd import errors", errors: "from oci_systemd import jsonio"}
    assert cycles_with(lazy) == []
    typing_only = {
        jsonio: "TYPE_CHECKING = False\nif TYPE_CHECKING:\n    from oci_systemd import errors",
        errors: "import oci_systemd.jsonio",
    }
    assert cycles_with(typing_only) == []
    eager = {
        jsonio: "try:\n    from oci_systemd import errors\nexcept ImportError:\n    pass",
        errors: "import oci_systemd.jsonio",
    }
    assert cycles_with(eager) == [[errors, jsonio]]


# --- module length -------------------------------------------------------------------------------
def long_modules() -> dict[str, int]:
    lengths = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in MODULES.values()}
    return {name: n for name, n in sorted(lengths.items()) if n > MAX_LINES}


def test_no_module_over_the_limit_unless_listed_with_a_reason() -> None:
    unlisted = {name: n for name, n in long_modules().items() if name not in LONG_MODULES}
    assert unlisted == {}, f"split these (≤ {MAX_LINES} lines) or add them to LONG_MODULES with a reason"


def test_the_list_of_long_modules_only_holds_long_modules() -> None:
    """An entry whose module was split (or removed) goes: the list shrinks as modules do."""
    stale = sorted(set(LONG_MODULES) - set(long_modules()))
    assert stale == [], f"no longer over {MAX_LINES} lines: remove from LONG_MODULES"
    assert all(reason.strip() for reason in LONG_MODULES.values())
