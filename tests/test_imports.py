"""The package's import graph: every module imports alone, and no module imports itself back."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

SRC = pathlib.Path(__file__).resolve().parent.parent / "src" / "npconv"
OPTIONAL = {"npconv.fhe"}  # needs the fhe extra (its own environment: scripts/test-fhe)
MODULES = sorted(
    ".".join(("npconv", *path.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__")
    for path in SRC.rglob("*.py")
    if path.name != "__main__.py"
)


@pytest.mark.parametrize("module", [m for m in MODULES if m not in OPTIONAL])
def test_every_module_imports_alone_in_a_fresh_interpreter(module):
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def _imports(path: pathlib.Path, module: str) -> set[str]:
    """The npconv modules ``module`` imports, at its top level or inside a function."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[: len(base) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            names = [f"{target}.{a.name}" for a in node.names]
            found |= {n for n in [target, *names] if n in MODULES}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in MODULES}
    return found - {module}


def test_the_import_graph_has_no_cycle():
    graph = {}
    for path in SRC.rglob("*.py"):
        module = ".".join(("npconv", *path.relative_to(SRC).with_suffix("").parts))
        module = module.removesuffix(".__init__")
        if module in MODULES:
            graph[module] = _imports(path, module)
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if nxt.startswith(node + "."):
                continue  # a package importing its own submodules
            assert state.get(nxt) != "open", " -> ".join([*trail, node, nxt])
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = "done"

    for module in graph:
        if module not in state:
            visit(module, [])
    assert "npconv._spec" in graph and graph["npconv._dispatch"]  # the walk saw the package
