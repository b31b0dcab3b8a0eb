"""Imports run one way through the house: every import in the project's packages, at module level or inside a
function, is checked against the layer it comes from, and the project's modules import each other without a cycle.

    bridge              frames in and out                      imports nothing of the project
    models.io           files                                  nothing of the project
    models.network      the networks and samplers              models.io
    models.evaluation   metrics and scorers                    models.io, models.network
    models.recipe       the training recipe                    models.io, models.network, models.evaluation
    renderer            the plugin a game imports              bridge, models.io, models.network (never training)
    demo_game           a game like any other                  bridge, renderer (it records through bridge)
    tile_game           the second sample game, a user's game  bridge, renderer (the public API only)
    restyler            the `restyler` command                 everything

A `__main__` module follows its package's layer too: `python -m restyler` is the command's own, and no other package
runs the command (the plugin's old `python -m renderer` alias did, an arrow back up).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bridge", "models", "renderer", "demo_game", "tile_game", "restyler")
ALLOWED: dict[str, set[str]] = {
    "bridge": set(),
    "models": set(),  # the package's own __init__: documentation only
    "models.io": set(),
    "models.network": {"models.io"},
    "models.evaluation": {"models.io", "models.network"},
    "models.recipe": {"models.io", "models.network", "models.evaluation"},
    "renderer": {"bridge", "models.io", "models.network"},
    "demo_game": {"bridge", "renderer"},
    "tile_game": {"bridge", "renderer"},
    "restyler": {"bridge", "models", "models.io", "models.network", "models.evaluation", "models.recipe",
                 "renderer", "demo_game"},
}


def layer_of(module: str) -> str | None:
    """The most specific layer a dotted module name belongs to, or None outside the project."""
    matches = [layer for layer in ALLOWED if module == layer or module.startswith(layer + ".")]
    return max(matches, key=len, default=None)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, imported module) for every import statement in `source`, relative ones resolved."""
    found = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from models.io import checkpoint` imports the submodule models.io.checkpoint
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def wrong_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """Every import of `source` (the code of `module`) that runs against the layers, as 'module:line -> target'."""
    own = layer_of(module)
    if own is None:
        return []
    problems = []
    for line, target in imports_of(source, module, is_package):
        other = layer_of(target)
        if other is None or other == own or target.startswith(own + "."):
            continue
        if other not in ALLOWED[own] and not any(other.startswith(a + ".") for a in ALLOWED[own]):
            problems.append(f"{module}:{line} -> {target} ({own} may import {sorted(ALLOWED[own]) or 'nothing'})")
    return problems


def project_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_every_import_runs_the_right_way():
    problems = [p for path in project_files()
                for p in wrong_imports(path.read_text(), module_name(path), path.name == "__init__.py")]
    assert problems == []


@pytest.mark.parametrize("module, source", [
    ("renderer.engine", "from models.recipe.loop import TrainError\n"),             # the runtime importing training
    ("models.network.dit", "def f():\n    from models.evaluation import metrics\n"),  # hidden in a function
    ("models.io.data", "import bridge\n"),
    ("demo_game.session", "from restyler.main import main\n"),
    ("renderer.__main__", "from restyler.main import main\n"),                    # an entry point is no exception
    ("models.recipe.ode", "from renderer.engine import StreamEngine\n"),
])
def test_a_wrong_import_is_caught(module, source):
    """The checker itself: each of these runs against the layers and must be reported."""
    assert len(wrong_imports(source, module)) == 1


def test_right_imports_pass():
    right = "from models.io import checkpoint\nfrom bridge import FramePacket\n"
    assert wrong_imports(right, "renderer.engine") == []
    assert wrong_imports("from . import passes\nfrom .config import GameConfig\n", "demo_game.game") == []


def test_no_import_cycle_between_project_modules():
    """Imports inside functions count too: they hide a cycle from Python, not from a reader."""
    modules = {module_name(p): p for p in project_files()}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for _, target in imports_of(path.read_text(), name, path.name == "__init__.py"):
            while target and target not in modules:  # `from models.io import checkpoint` names a module
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + ".") and target not in PACKAGES:
                targets.add(target)
        graph[name] = targets
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            pytest.fail("import cycle: " + " -> ".join(cycle))
