"""The package's layers, read from its imports (every import, those inside functions too): a module imports only from
its own layer or those below, and no modules import each other in a loop. Source only: nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "edgenas"

#: the pipeline's order, lowest first: a unit (a top-level module, or a subpackage) may import its own layer and lower
LAYERS = (
    ("", "errors", "jsonio", "records", "paths", "versions", "progress", "plots", "rpc", "targets"),  # "": __init__
    ("data", "space", "learning"),
    ("bundle", "compile"),
    ("measure",),
    ("accuracy", "tables"),
    ("supernet",),
    ("search",),
    ("compress",),
    ("artifact", "baselines"),
    ("pipeline",),
    ("cli_options", "cli_deploy", "cli", "__main__"),
)
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def _imports(path: Path) -> list[str]:
    """Every edgenas module the file imports, wherever it imports it."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else
                 [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        found += [n for n in names if n == "edgenas" or n.startswith("edgenas.")]
    return found


def _graph() -> dict[str, list[str]]:
    return {_module(p): _imports(p) for p in sorted(ROOT.rglob("*.py"))}


def test_every_unit_has_a_layer():
    units = {_unit(m) for m in _graph()}
    assert units == set(LAYER), f"not placed: {sorted(units - set(LAYER))}; gone: {sorted(set(LAYER) - units)}"


def test_no_module_imports_from_a_higher_layer():
    upward = [f"{m} imports {name}" for m, imports in _graph().items() for name in imports
              if LAYER[_unit(name)] > LAYER[_unit(m)]]
    assert not upward, "\n".join(upward)


def test_no_import_loop():
    """Between modules, over every import: the layers allow imports within a layer, and these must not loop either."""
    graph = {m: {name for name in imports if name != m} for m, imports in _graph().items()}
    index, low, stack, on, loops = {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                loops.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not loops, loops
