"""The layers import what they may: the pure core nothing of I/O, and no package a cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("lcx", "actors", "adapters", "services")
FORBIDDEN_IN_CORE = ("trio", "lcx.store", "lcx.cluster", "lcx.api", "adapters", "actors",
                     "services", "quart", "httpx", "psycopg", "coredis")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _named(path: Path) -> set[str]:
    """Every module ``path`` names in an import, at any depth (lazy imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _imports(path: Path) -> set[str]:
    """Every project module ``path`` imports, at any depth (lazy imports included)."""
    return {name for name in _named(path) if name in MODULES}


def _cycles(prefix: str) -> list[list[str]]:
    graph = {name: {m for m in _imports(path) if m.startswith(prefix) and m != name}
             for name, path in MODULES.items() if name.startswith(prefix)}
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for target in sorted(graph.get(name, ())):
            if state.get(target) == 1:
                found.append([*stack[stack.index(target):], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    return found


@pytest.mark.parametrize("prefix", ["actors.", "lcx.api.", "lcx.livechat.", "services."])
def test_no_import_cycle_within_a_package(prefix: str) -> None:
    """Modules of one package never import each other in a circle, lazily or not."""
    assert _cycles(prefix) == []


def test_the_core_imports_nothing_of_io_even_indirectly() -> None:
    """Importing every module of lcx.livechat loads no store, bus, HTTP, Trio or adapter."""
    core = sorted(name for name in MODULES if name.startswith("lcx.livechat"))
    script = ("import sys\n" + "".join(f"import {name}\n" for name in core) +
              "print('\\n'.join(sorted(sys.modules)))")
    loaded = subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT,
                            capture_output=True, text=True).stdout.split()
    leaked = [name for name in loaded
              if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN_IN_CORE)]
    assert leaked == []


def test_no_core_module_names_io_even_in_a_lazy_import() -> None:
    """No import statement of lcx.livechat, at module level or inside a function or a
    TYPE_CHECKING block, names a store, bus, HTTP, Trio or adapter module."""
    named = {name: sorted(m for m in _named(path)
                          if any(m == bad or m.startswith(bad + ".")
                                 for bad in FORBIDDEN_IN_CORE))
             for name, path in MODULES.items() if name.startswith("lcx.livechat")}
    assert len(named) >= 8
    assert {name: found for name, found in named.items() if found} == {}


def test_blueprints_never_import_each_other() -> None:
    """An HTTP blueprint imports only the leaves of lcx.api (helpers, deps, spec...)."""
    leaves = {"lcx.api.auth", "lcx.api.bodies", "lcx.api.common", "lcx.api.deps",
              "lcx.api.spec", "lcx.api.errors", "lcx.api.agent_frames", "lcx.api.bot_rules",
              "lcx.api.agent_sockets", "lcx.api.http_server", "lcx.api.socket_sink",
              "lcx.api.ws_wire"}
    blueprints = {name: path for name, path in MODULES.items()
                  if name.startswith("lcx.api.") and "_blueprint" in path.read_text()
                  and name != "lcx.api.http_app"}
    assert len(blueprints) >= 8
    sideways = {name: sorted(m for m in _imports(path)
                             if m.startswith("lcx.api.") and m not in leaves)
                for name, path in blueprints.items()}
    assert {name: found for name, found in sideways.items() if found} == {}
