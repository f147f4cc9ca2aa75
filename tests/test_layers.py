"""The package's layers as docs/architecture.md draws them: imports point down only,
``streamad.app`` -> ``streamad.connectors`` -> the core. The core never imports a Kafka
client (nor the connectors or the applications), the connectors never import the
applications, and the modules' top-level imports have no cycle. Read from the source
(every import statement, those inside functions too), so that a lazy import inside a
function cannot slip a Kafka client into the core."""

from __future__ import annotations

import ast
import functools
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "streamad"
KAFKA_CLIENTS = ("kafka", "confluent_kafka", "aiokafka")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, top_level_only: bool = False) -> set[str]:
    """The modules ``path`` imports (absolute names; relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)  # ``from pkg import module``
    return out


@functools.cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(name: str) -> str:
    if name.startswith("streamad.app") or name == "streamad.__main__":
        return "app"
    if name.startswith("streamad.connectors"):
        return "connectors"
    return "core"


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize("name", [n for n in modules() if layer(n) == "core"])
def test_the_core_never_imports_a_kafka_client_the_connectors_or_the_applications(name):
    found = imports(modules()[name])
    assert not [m for m in found if any(within(m, k) for k in KAFKA_CLIENTS)], f"{name} imports a Kafka client"
    assert not [m for m in found if within(m, "streamad.connectors") or within(m, "streamad.app")], f"{name} imports from a layer above it"


@pytest.mark.parametrize("name", [n for n in modules() if layer(n) == "connectors"])
def test_the_connectors_never_import_the_applications(name):
    assert not [m for m in imports(modules()[name]) if within(m, "streamad.app")]


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """A cycle of ``graph`` (node -> the nodes it points to), as a closed path; [] if none."""
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(n: str, path: list[str]) -> list[str]:
        state[n] = 1
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return [*path[path.index(m) :], m]
            if m not in state and (found := visit(m, [*path, m])):
                return found
        state[n] = 2
        return []

    for n in sorted(graph):
        if n not in state and (found := visit(n, [n])):
            return found
    return []


def test_top_level_imports_have_no_cycle():
    mods = modules()
    graph = {n: {m for m in imports(p, top_level_only=True) if m in mods and m != n} for n, p in mods.items()}
    # A package's __init__ importing its own modules is the package handing names on,
    # not a cycle with them.
    graph = {n: {m for m in ms if not (within(m, n) and mods[n].name == "__init__.py")} for n, ms in graph.items()}
    assert find_cycle(graph) == []


def test_the_checks_can_fail(tmp_path, monkeypatch):
    # They would pass vacuously if they read nothing: the reader finds a lazy import
    # inside a function and resolves a relative one, and a cycle is found.
    pkg = tmp_path / "streamad" / "sub"
    pkg.mkdir(parents=True)
    f = pkg / "mod.py"
    f.write_text("from . import sibling\n\n\ndef later():\n    from kafka import KafkaConsumer\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    found = imports(f)
    assert "kafka" in found and "streamad.sub.sibling" in found
    assert "kafka" not in imports(f, top_level_only=True)
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"b"}}) == []
