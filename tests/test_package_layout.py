"""The package's shape: a few rooms whose names say what they hold, imports that only run
downwards through the layers, and no import cycles (read from the source, imports inside
functions included, ``if TYPE_CHECKING:`` blocks left out)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "retrieval"

# What may import what: a module imports only from its own layer or below.
LAYERS = [
    {"errors", "model_signature", "hub", "settings"},
    {"store"},
    {"photos", "embedder"},
    {"regions", "text"},
    {"search", "speech", "views"},
    {"indexing"},
    {"loaders"},
    {"engine"},
    {"ui", "cli", "bench", "__main__", "__init__"},
]
ROOT_MODULES = {"__init__", "__main__", "engine", "cli", "settings", "errors", "model_signature", "hub"}


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(tree: ast.AST):
    """Import nodes, skipping what only type checkers read."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for branch in node.orelse for n in _runtime_imports(branch))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _runtime_imports(node)


def import_graph() -> dict[str, set[str]]:
    modules = {_module(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in _runtime_imports(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                submodules = [f"{target}.{alias.name}" for alias in node.names
                              if f"{target}.{alias.name}" in modules]
                candidates = submodules or [target]  # `from . import x` reads x, not the package
            else:
                candidates = [alias.name for alias in node.names]
            for candidate in candidates:
                if candidate in modules and candidate != name:
                    graph[name].add(candidate)
    return graph


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(module: str) -> int:
    room = _room(module)
    return next(n for n, rooms in enumerate(LAYERS) if room in rooms)


def test_the_root_holds_only_the_entry_points_and_what_everything_shares():
    loose = {path.stem for path in PACKAGE.glob("*.py")}
    assert loose == ROOT_MODULES


def test_every_room_has_a_layer_and_imports_run_only_downwards():
    graph = import_graph()
    rooms = {_room(module) for module in graph}
    assert rooms <= set().union(*LAYERS), rooms - set().union(*LAYERS)
    upwards = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets if _layer(a) < _layer(b))
    assert upwards == []


def test_there_are_no_import_cycles():
    graph = import_graph()
    index, low, on_stack, stack, cycles, counter = {}, {}, set(), [], [], [0]

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert cycles == []


def test_the_check_finds_a_cycle_and_an_upward_import(tmp_path, monkeypatch):
    """A negative control: the same reading of a small package with both faults finds both."""
    package = tmp_path / "retrieval"
    (package / "store").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "store" / "__init__.py").write_text("")
    (package / "store" / "a.py").write_text("from ..engine import Engine\n")
    (package / "engine.py").write_text("def f():\n    from .store import a\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", package)
    graph = import_graph()
    assert "retrieval.engine" in graph["retrieval.store.a"] and "retrieval.store.a" in graph["retrieval.engine"]
    assert _layer("retrieval.store.a") < _layer("retrieval.engine")
