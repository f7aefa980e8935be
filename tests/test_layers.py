"""The engine's layering, checked: every import of a blobench module (at module level or inside a function)
points down the layers or within its own layer, and the module import graph has no cycle.

Layers, lowest first (docs/design.md, "Layout"):

0. ``blobench.core``: errors, params, problem/estimator bases, oracles, numerics, data, registry, api;
1. ``blobench.measure``: sampling, metrics, outer loops, complexity, memory, timing;
2. the built-in problems and estimators (``blobench.problems``, ``blobench.estimators``): plugins built on the
   core and the shared numerics;
3. ``blobench.engine``: matrix, runner, worker processes, store, discovery (which imports the plugins by name);
4. ``blobench.gate``: the Claim base and the mutation suite; 5. ``blobench.claims``: the built-in claims;
6. ``blobench.report``; 7. the surface: ``blobench`` itself, ``blobench.harness`` (public API), ``blobench.cli``.

The registry finds its plugins through ``blobench.engine.discovery`` by name at run time
(``importlib.import_module``), the one deliberate upward edge, which this static check does not see.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "blobench"
#: the built-in problems, estimators and claims: they may import the public API module ``blobench.harness``
#: (whose eager imports are core only: tests/test_layers.py::test_public_api_module_is_a_thin_facade)
PLUGIN_LAYERS = (2, 5)
LAYERS = ["core", "measure", ("problems", "estimators"), "engine", "gate", "claims", "report",
          ("__init__", "__main__", "harness", "cli")]


def _layer(mod: str) -> int:
    part = mod.split(".")[1] if "." in mod else "__init__"
    for i, names in enumerate(LAYERS):
        if part == names or (isinstance(names, tuple) and part in names):
            return i
    raise AssertionError(f"module {mod} is in no layer: add its folder to LAYERS")


def _modules() -> dict[str, Path]:
    out = {}
    for f in sorted(PKG.rglob("*.py")):
        rel = f.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1] if len(parts) > 2 else parts
        out[".".join(parts)] = f
    return out


def imports_of(path: Path, mod: str, known: set[str]) -> set[str]:
    """blobench modules that ``path`` imports anywhere in its body (relative imports resolved)."""
    out: set[str] = set()
    pkg = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg[:len(pkg) - node.level + 1] + ([base] if base else []))
            if not base.startswith("blobench"):
                continue
            for a in node.names:  # ``from blobench.report import style``: the submodule, if it is one
                sub = f"{base}.{a.name}"
                out.add(sub if sub in known else base)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("blobench")}
    return {m if m in known else ".".join(m.split(".")[:2]) for m in out} - {mod}


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods) | {"blobench"}
    return {m: imports_of(p, m, known) for m, p in mods.items()}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for m, deps in graph.items():
        for d in deps:
            if d == "blobench":
                continue  # ``from blobench import __version__`` reads a constant; the package imports nothing
            if d == "blobench.harness" and _layer(m) in PLUGIN_LAYERS:
                continue  # the built-in plugins are written against the public API, as a user's are
            if _layer(d) > _layer(m):
                bad.append(f"{m} imports {d} (layer {_layer(m)} -> {_layer(d)})")
    return sorted(bad)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
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
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_upward_import():
    assert upward_imports(_graph()) == []


def test_no_import_cycle():
    assert cycles(_graph()) == []


def test_public_api_module_is_a_thin_facade():
    """blobench.harness and the package itself import only core modules at module level (the rest on first
    use), so a plugin importing the public API pulls in nothing above its own layer."""
    for name in ("harness.py", "__init__.py"):
        tree = ast.parse((PKG / name).read_text())
        top = {n.module for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}
        assert all(not m.startswith("blobench.") or m.startswith("blobench.core.") for m in top), (name, top)


def test_every_module_is_in_a_layer():
    for m in _modules():
        _layer(m)


@pytest.mark.parametrize("planted, expect", [
    ({"blobench.core.numerics": {"blobench.measure.outer"}}, "upward"),
    ({"blobench.measure.outer": {"blobench.measure.complexity"},
      "blobench.measure.complexity": {"blobench.measure.outer"}}, "cycle"),
])
def test_the_checks_catch_a_planted_edge(planted, expect):
    """Negative controls: an upward edge and the old complexity <-> outer circle are both reported."""
    g = _graph()
    for m, extra in planted.items():
        g[m] = set(g[m]) | extra
    if expect == "upward":
        assert any("blobench.core.numerics imports blobench.measure.outer" in b for b in upward_imports(g))
    else:
        assert ["blobench.measure.complexity", "blobench.measure.outer"] in cycles(g)
