"""Where the modules of blobench 0.1 went: one import namespace, ``blobench`` (the layout's reasons are in
docs/design.md). A plugin written against the old top-level names (``import harness``, ``from
harness.numerics import neumann``, ``problems.quadratic``) gets one line saying what to write instead."""
from __future__ import annotations

#: old module -> new module (the old ``harness`` package's public API is ``blobench.harness``)
RENAMED: dict[str, str] = {
    'claims': 'blobench.claims',
    'estimators': 'blobench.estimators',
    'harness': 'blobench.harness',
    'harness.__main__': 'blobench.__main__',
    'harness._cellproc': 'blobench.engine._cellproc',
    'harness.api': 'blobench.core.api',
    'harness.claim_base': 'blobench.gate.claim_base',
    'harness.cli': 'blobench.cli',
    'harness.complexity': 'blobench.measure.complexity',
    'harness.data': 'blobench.core.data',
    'harness.discovery': 'blobench.engine.discovery',
    'harness.errors': 'blobench.core.errors',
    'harness.estimator_base': 'blobench.core.estimator_base',
    'harness.matrix': 'blobench.engine.matrix',
    'harness.measures': 'blobench.measure.metrics',
    'harness.memory': 'blobench.measure.memory',
    'harness.mutations': 'blobench.gate.mutations',
    'harness.numerics': 'blobench.core.numerics',
    'harness.oracles': 'blobench.core.oracles',
    'harness.outer': 'blobench.measure.outer',
    'harness.params': 'blobench.core.params',
    'harness.problem_base': 'blobench.core.problem_base',
    'harness.progress': 'blobench.engine.progress',
    'harness.registry': 'blobench.core.registry',
    'harness.report': 'blobench.report',
    'harness.results_cli': 'blobench.report.results',
    'harness.runner': 'blobench.engine.runner',
    'harness.sampling': 'blobench.measure.sampling',
    'harness.store': 'blobench.engine.store',
    'harness.timing': 'blobench.measure.timing',
    'problems': 'blobench.problems',
}


OLD_TOPS = ("harness", "problems", "estimators", "claims")


def new_name(old: str) -> str | None:
    """The new name of an old module (or of a submodule of an old package); None if ``old`` is not one."""
    if old in RENAMED:
        return RENAMED[old]
    head = old.rsplit(".", 1)
    while len(head) == 2:
        if head[0] in RENAMED:
            return RENAMED[head[0]] + old[len(head[0]):]
        head = head[0].rsplit(".", 1)
    return None


def old_imports(source: str) -> list[str]:
    """Modules of the old layout that ``source`` imports (absolute imports only), in order of appearance."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    out: list[str] = []
    for node in ast.walk(tree):
        mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
        out += [m for m in mods if m.split(".")[0] in OLD_TOPS and m not in out]
    return out


def hint(exc: BaseException, source: str | None = None) -> str | None:
    """For a ModuleNotFoundError on an old top-level name: the one-line fix (every old import of ``source``,
    the plugin's text, with its new name), else None."""
    name = getattr(exc, "name", None)
    if not isinstance(exc, ModuleNotFoundError) or not name or name.split(".")[0] not in OLD_TOPS:
        return None
    olds = [m for m in old_imports(source or "")] or [name]
    fixes = ", ".join(f"{m} -> {new_name(m) or 'blobench.' + m}" for m in olds)
    return (f"imports {', '.join(repr(m) for m in olds)}: blobench 0.2 moved everything under one namespace "
            f"({fixes}; 'import harness' becomes 'from blobench import harness', the same API)")
