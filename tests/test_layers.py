"""Imports only go down the layers of DESIGN-NOTES, and no two modules import each other (issue 13).

Why a test: a function-level import of the engine from data/ (or a circle between two modules) works
until the day import order changes; reading every module with ``ast`` (imports inside functions too,
and ``importlib.import_module`` with a literal name) catches it when it is written.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "spine_models"

# area (the first name under spine_models) -> rank; a module may import its own rank or lower ones
LAYERS: dict[str, int] = {
    "": 0, "errors": 0, "_env": 0, "_progress": 0, "_atomic": 0, "_memory": 0, "config": 0,  # the package root and what everything uses
    "io": 1, "results": 1,
    "data": 2, "models": 2, "metrics": 2, "measure": 2, "explain": 2,
    "engine": 3,
    "commands": 4, "report": 4,
    "cli": 5,
}
# the app sits above the package: nothing in spine_models may reach it
APP = ("ui", "pages", "app")


def module_names(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``package`` (a package is its ``__init__``)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = [package.name, *path.relative_to(package).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _literal_import(node: ast.Call) -> str | None:
    """The module named by ``importlib.import_module("x")`` / ``import_module(f"x.{y}")`` (its literal prefix)."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if name not in ("import_module", "__import__") or not node.args:
        return None
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        return str(arg.values[0].value).rstrip(".")
    return None


def imported_names(module: str, path: Path) -> list[tuple[str, int]]:
    """(absolute dotted name, line) of everything ``module`` imports, at any depth of the file."""
    is_pkg = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found += [(f"{target}.{a.name}", node.lineno) for a in node.names]  # a submodule or a name in target
        elif isinstance(node, ast.Call):
            name = _literal_import(node)
            if name:
                found.append((name, node.lineno))
    return found


def import_graph(package: Path) -> dict[str, dict[str, int]]:
    """module -> {imported module of this package or of the app: first line}. Importing ``a.b.c`` also runs
    ``a.b``'s ``__init__``, so that counts as an import of ``a.b`` too (except the importer's own packages)."""
    mods = module_names(package)
    graph: dict[str, dict[str, int]] = {m: {} for m in mods}
    for mod, path in mods.items():
        own = {".".join(mod.split(".")[:i]) for i in range(1, mod.count(".") + 1)}
        for name, line in imported_names(mod, path):
            top = name.split(".")[0]
            if top in APP:
                graph[mod].setdefault(top, line)
                continue
            while name and name not in mods:
                name = name.rpartition(".")[0]
            if not name or name == mod:
                continue
            parts = name.split(".")
            for i in range(2, len(parts) + 1):
                target = ".".join(parts[:i])
                if target in mods and target not in own and target != mod:
                    graph[mod].setdefault(target, line)
    return graph


def area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def upward_imports(graph: dict[str, dict[str, int]], modules: dict[str, Path]) -> list[str]:
    """One line per import that goes up a layer (or into the app), naming file, line and both layers."""
    bad = []
    for mod, targets in sorted(graph.items()):
        if area(mod) not in LAYERS:
            bad.append(f"{modules[mod]}: area {area(mod)!r} has no layer; add it to LAYERS in tests/test_layers.py")
            continue
        for target, line in sorted(targets.items()):
            if target in APP:
                bad.append(f"{modules[mod]}:{line}: {mod} imports the app's {target!r}; pass what it needs in as an argument")
            elif LAYERS.get(area(target), 0) > LAYERS[area(mod)]:
                bad.append(f"{modules[mod]}:{line}: {mod} (layer {area(mod) or 'root'}) imports {target} "
                           f"(layer {area(target)}, higher); move the code down or have the caller pass it in")
    return bad


def import_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Every group of modules that import each other, directly or round a circle (Tarjan's SCC)."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 100))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def _describe(cycle: list[str], graph: dict[str, dict[str, int]], modules: dict[str, Path]) -> str:
    inside = set(cycle)
    edges = [f"{modules[m].name}:{line} -> {t}" for m in cycle for t, line in graph[m].items() if t in inside]
    return f"import cycle {' <-> '.join(cycle)} ({'; '.join(edges)}); move what they share into a module both import, or pass it in"


def test_no_import_goes_up_a_layer() -> None:
    modules = module_names(PACKAGE)
    bad = upward_imports(import_graph(PACKAGE), modules)
    assert not bad, "\n".join(bad)


def test_no_import_cycles() -> None:
    modules = module_names(PACKAGE)
    graph = import_graph(PACKAGE)
    cycles = import_cycles(graph)
    assert not cycles, "\n".join(_describe(c, graph, modules) for c in cycles)


def test_the_checks_catch_an_upward_import_and_a_cycle_inside_functions(tmp_path: Path) -> None:
    """The checker itself: a function-level import of the engine from data/, a circle made of a
    relative and an ``importlib`` import, and an import of the app are all reported."""
    pkg = tmp_path / "spine_models"
    for sub in ("data", "engine", "models"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "roi.py").write_text("def f():\n    from spine_models.engine.predictor import shared_predictor\n")
    (pkg / "engine" / "predictor.py").write_text("import numpy\n")
    (pkg / "models" / "a.py").write_text("def f():\n    from . import b\n")
    (pkg / "models" / "b.py").write_text("import importlib\n\ndef g():\n    importlib.import_module('spine_models.models.a')\n")
    (pkg / "models" / "c.py").write_text("def h():\n    import ui.analysis\n")
    graph = import_graph(pkg)
    modules = module_names(pkg)
    bad = upward_imports(graph, modules)
    assert any("roi.py:2" in b and "spine_models.engine.predictor" in b for b in bad), bad
    assert any("c.py:2" in b and "'ui'" in b for b in bad), bad
    assert import_cycles(graph) == [["spine_models.models.a", "spine_models.models.b"]]

