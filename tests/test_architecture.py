"""The layers, proven from the source: every import statement of the package (those under
`TYPE_CHECKING` too) is read, and the graph must have no circle and no arrow pointing up.

    web -> actors (its facade) -> store, evolution -> core
                  actors, evolution -> observability -> core
"""

from __future__ import annotations

import ast
from pathlib import Path

import auzap_actors

PACKAGE = "auzap_actors"
ROOT = Path(auzap_actors.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that `name` imports explicitly."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            # `from pkg import sub` names a module when `pkg.sub` is one.
            targets = [
                f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in known else origin
                for alias in node.names
            ]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _part(module: str) -> str:
    """The layer a module belongs to: `auzap_actors.actors.supervisor` -> `actors`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_graph_is_read_for_real() -> None:
    graph = _graph()
    assert "auzap_actors.actors.facade" in graph["auzap_actors.web.app"]
    assert "auzap_actors.core.instance" in graph["auzap_actors.actors.instance_actor"]
    assert "auzap_actors.actors.evolution_side" in graph["auzap_actors.actors.instance_actor"]


def test_no_import_circle_anywhere_in_the_package() -> None:
    graph = _graph()
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(module: str) -> None:
        if module in on_path:
            circle = [*path[path.index(module) :], module]
            raise AssertionError("import circle: " + " -> ".join(circle))
        if module in done:
            return
        path.append(module)
        on_path.add(module)
        for target in sorted(graph[module]):
            visit(target)
        on_path.discard(path.pop())
        done.add(module)

    for module in sorted(graph):
        visit(module)


# What each part may import besides itself.  `observability` (metrics, the per-instance
# journal, log formatting and correlation ids) is a leaf just above `core`: the layers that do
# the work record into it where things happen (the Evolution client times its calls, actors
# count restarts and health checks) without a callback threaded through every constructor,
# and it knows nothing of them.  `core` stays pure (no prometheus_client in it); the web
# reaches observability only through the facade, like everything else below it.
ALLOWED = {
    "core": set(),
    "observability": {"core"},
    "store": {"core"},
    "evolution": {"core", "observability"},
    "ai": {"core"},
    "actors": {"core", "store", "evolution", "observability", "ai"},
    "web": {"core", "config", "actors"},
}


def test_each_layer_imports_only_the_ones_below() -> None:
    wrong = []
    for module, targets in _graph().items():
        part = _part(module)
        if part not in ALLOWED:
            continue  # the launcher, the command line and config see everything
        for target in targets:
            other = _part(target)
            if other != part and other not in ALLOWED[part]:
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_the_web_reaches_the_actors_only_through_their_facade() -> None:
    wrong = [
        f"{module} -> {target}"
        for module, targets in _graph().items()
        if _part(module) == "web"
        for target in targets
        if _part(target) == "actors" and target != "auzap_actors.actors.facade"
    ]
    assert wrong == []
