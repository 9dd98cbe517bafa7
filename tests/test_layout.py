"""The house stays easy to walk: no import cycles among the harness's modules (DESIGN.md, "Layout").

Every ``import augbench.x`` / ``from augbench.x import y`` counts, including the ones inside
functions: a lazy import hides a cycle from Python but not from a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("benchmark", "methods")


def _module_name(path: Path) -> str:
    """The installed name: ``benchmark/`` is ``augbench``, ``methods/`` is ``augbench.methods``."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    parts = ["augbench", *parts[1:]] if parts[0] == "benchmark" else ["augbench", *parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def _imports(path: Path, modules: dict[str, Path], runtime_only: bool = False) -> set[str]:
    """The project modules ``path`` imports (``from pkg import submodule`` counts as the submodule).

    ``runtime_only`` leaves out imports under ``if TYPE_CHECKING:`` (they name types and never run).
    """
    found = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree) if runtime_only else ():
        if isinstance(node, ast.If) and ast.unparse(node.test).split(".")[-1] == "TYPE_CHECKING":
            node.body = [ast.Pass()]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module in modules:
            subs = {f"{node.module}.{alias.name}" for alias in node.names} & set(modules)
            names_only = [alias for alias in node.names if f"{node.module}.{alias.name}" not in modules]
            found.update(subs)
            if names_only:
                found.add(node.module)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_data_folders_hold_no_python():
    for folder in ("datasets", "reports"):
        assert not list((ROOT / folder).rglob("*.py")), f"{folder}/ is data only (DESIGN.md, Layout)"


def test_the_method_authors_api_imports_neither_the_runner_nor_training():
    """``augbench.contract`` (what a method author imports) reaches no ``augbench.run`` / ``augbench.training``
    module, however indirectly (function-level imports count, as for cycles; the packages a module sits in
    count too, since Python runs their ``__init__``). Imports under ``if TYPE_CHECKING:`` only name types
    for annotations and never run, so they are left out."""
    modules = _modules()

    def runtime_imports(name: str) -> set[str]:
        parents = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        return _imports(modules[name], modules, runtime_only=True) | (parents & set(modules))

    seen, todo = set(), [m for m in modules if m == "augbench.contract" or m.startswith("augbench.contract.")]
    path_to: dict[str, str] = {m: m for m in todo}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for dep in runtime_imports(name) - seen:
            path_to.setdefault(dep, f"{path_to[name]} -> {dep}")
            todo.append(dep)
    assert len(seen) > 3, seen  # the walk really followed imports (contract, its modules, what they use)
    banned = sorted(m for m in seen if m.split(".")[:2] in (["augbench", "run"], ["augbench", "training"]))
    assert not banned, "augbench.contract must not import the runner or training: " + "; ".join(path_to[m] for m in banned)
