"""The project's import graph, read from the source (imports inside functions count): no cycles, and the
layering of docs/architecture.md holds. Migrations are left out."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("panel", "hypervisor", "billing")


def _modules() -> dict[str, Path]:
    found = {}
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".")
        if not MODULES[module].name == "__init__.py":
            package = package[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join([*package, base] if base else package)
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]


def _project_module(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _targets(module, node):
                    found = _project_module(target)
                    # A package's __init__ only re-exports; importing it is importing what it names.
                    if found and found != module and MODULES[found].name != "__init__.py":
                        graph[module].add(found)
    return graph


GRAPH = _graph()


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def test_the_walk_sees_imports_inside_functions():
    graph = {"a": {"b"}, "b": {"a"}, "c": set()}
    assert _cycles(graph) == [["a", "b"]]
    source = "def f():\n    from panel.servers import actions\n"
    nodes = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)]
    assert _targets("panel.usage.metering", nodes[0]) == ["panel.servers.actions"]


def test_no_module_imports_itself_through_others():
    assert _cycles(GRAPH) == []


def _importers(predicate) -> list[str]:
    return sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if predicate(module, target)
    )


def _is_tasks(module: str) -> bool:
    return module.rpartition(".")[2] == "tasks"


def _is_view(module: str) -> bool:
    leaf = module.rpartition(".")[2]
    return leaf == "views" or leaf.endswith("_views") or module.startswith("panel.api.") and leaf == "views"


def test_tasks_are_the_top_floor_that_nothing_imports():
    assert _importers(lambda module, target: _is_tasks(target)) == []


def test_template_tags_never_import_views():
    assert _importers(lambda module, target: ".templatetags." in module and _is_view(target)) == []


def test_services_never_import_views_or_template_tags():
    def crosses(module: str, target: str) -> bool:
        is_ui = _is_view(module) or ".templatetags." in module or module.endswith("urls")
        return not is_ui and (_is_view(target) or ".templatetags." in target)

    assert _importers(crosses) == []


def test_hypervisor_imports_neither_panel_nor_billing():
    assert (
        _importers(lambda m, t: m.startswith("hypervisor") and t.split(".")[0] in ("panel", "billing")) == []
    )


def test_billing_knows_neither_hypervisor_nor_the_panels_models():
    def crosses(module: str, target: str) -> bool:
        if not module.startswith("billing"):
            return False
        return (
            target.startswith("hypervisor")
            or target == "panel.models"
            or target.endswith(".models")
            and (target.startswith("panel."))
        )

    assert _importers(crosses) == []
