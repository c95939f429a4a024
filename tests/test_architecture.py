"""The package's shape: every module sits in one layer of the contract, and no import circles.

`lint-imports` (make lint) enforces the layers contract in .importlinter, but a layers contract
only constrains modules that are in a layer: a new top-level module outside every layer would be
unconstrained and the contract would still pass. These tests close that gap, and count import
circles among all modules (type-checking imports included: a circle drawn only for the type
checker is still a circle a reader has to untangle).
"""

from __future__ import annotations

import configparser
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).parents[1]
PACKAGES = ("bot", "handlers")


def _layers() -> list[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    raw = config["importlinter:contract:layers"]["layers"]
    return [name.strip() for line in raw.splitlines() for name in line.split("|")
            if name.strip()]


def _graph(exclude_type_checking: bool) -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, exclude_type_checking_imports=exclude_type_checking)


def _in_a_layer(module: str, layers: list[str]) -> bool:
    return any(module == layer or module.startswith(f"{layer}.") for layer in layers)


def test_every_module_sits_in_a_layer() -> None:
    layers = _layers()
    modules = _graph(True).modules - set(PACKAGES)
    outside = sorted(m for m in modules if not _in_a_layer(m, layers))
    assert outside == [], (f"modules in no layer of .importlinter's layers contract: {outside}; "
                           "put each in the package of its layer")


def _strongly_connected(graph: grimp.ImportGraph) -> list[list[str]]:
    """Tarjan's algorithm over direct imports; components of more than one module are circles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return circles


def test_no_import_circles_not_even_for_the_type_checker() -> None:
    assert _strongly_connected(_graph(False)) == []


def test_the_circle_finder_finds_a_circle(tmp_path: Path) -> None:
    """The check above cannot pass vacuously: a two-module circle is found."""
    package = tmp_path / "circled"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from circled import b\n")
    (package / "b.py").write_text("from circled import a\n")
    sys.path.insert(0, str(tmp_path))
    try:
        graph = grimp.build_graph("circled")
    finally:
        sys.path.remove(str(tmp_path))
    assert _strongly_connected(graph) == [["circled.a", "circled.b"]]
