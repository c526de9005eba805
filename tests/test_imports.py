"""Which module may import which: the warm process never pulls in the broker, and the
import circles issue 13 named stay open (a narrower dependency instead: a Protocol, or a
module of what both sides share)."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def import_graph() -> dict[str, set[str]]:
    """Every import between slm_mesh modules, at the top, inside functions and under
    TYPE_CHECKING alike: a dependency is a dependency wherever it is written."""
    files = {_module_of(p): p for p in (SRC / "slm_mesh").rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    target = node.module or ""
                submodules = [f"{target}.{alias.name}" for alias in node.names]
                # `from package import module` depends on the module; the package's
                # __init__ runs first, as for any import, but is not what is used.
                found = [m for m in submodules if m in files]
                candidates = found or [target]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            graph[name] |= {c for c in candidates if c in files and c != name}
    return graph


def reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(graph[node])
    return False


def test_the_warm_process_does_not_depend_on_the_broker_package() -> None:
    graph = import_graph()
    for name in [m for m in graph if m.startswith("slm_mesh.zygote")]:
        assert not any(m.startswith("slm_mesh.broker") for m in graph[name]), name


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("slm_mesh.broker.connection", "slm_mesh.broker.server"),
        ("slm_mesh.mcp_server.fastcall", "slm_mesh.mcp_server.server"),
        ("slm_mesh.mesh.messages", "slm_mesh.mesh.sessions"),
    ],
)
def test_the_circles_issue_13_named_are_open(one: str, other: str) -> None:
    graph = import_graph()
    assert not (reaches(graph, one, other) and reaches(graph, other, one))


def test_the_graph_sees_a_circle_where_there_is_one() -> None:
    """Not a rubber stamp: own_methods is the broker's own handlers, typed by the Broker
    they belong to; that circle was left on purpose (a Protocol would restate Broker)."""
    graph = import_graph()
    own, server = "slm_mesh.broker.own_methods", "slm_mesh.broker.server"
    assert reaches(graph, own, server) and reaches(graph, server, own)
