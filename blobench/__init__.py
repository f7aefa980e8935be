"""blobench: theory verification and convergence benchmarks for bilevel hypergradient estimators.

One import namespace, in layers (each imports only from the layers before it; ``tests/test_layers.py``):

- ``blobench.core``: errors, parameters, the Problem and Estimator bases, counted oracles, shared numerics
  (CG, Neumann, inner loops), data files, the registry;
- ``blobench.measure``: batched sampling, metrics, outer loops, complexity, memory, timing;
- ``blobench.engine``: matrices, the runner and its worker processes, the run store, plugin discovery;
- ``blobench.gate``: the Claim base class and the mutation suite;
- ``blobench.report``: the HTML/markdown report, export and compare;
- ``blobench.cli``: the ``blobench`` command;

and the built-in plugins, which register themselves: ``blobench.problems``, ``blobench.estimators``,
``blobench.claims``.

The public API lives in :mod:`blobench.harness` (``from blobench import harness``) and its names are
re-exported here (``import blobench as bb; bb.problem("quadratic")``), except the listing functions
``problems()``, ``estimators()`` and ``claims()``, whose names here are the plugin packages: use
``harness.problems()`` or ``bb.names("problem")``.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

#: names re-exported from blobench.harness, loaded on first use (so ``import blobench`` does not pay for torch)
_API = {
    "BlobenchError", "Estimate", "EstimateBatch", "Estimator", "Oracles", "Param", "ParameterError", "PluginError",
    "Problem", "Target", "UnrolledProblem", "UnknownNameError", "check", "discover", "estimate", "estimator", "load",
    "metrics", "problem", "register_claim", "register_estimator", "register_metric", "register_problem", "run",
}
_SUBPACKAGES = {"core", "measure", "engine", "gate", "report", "cli", "harness", "problems", "estimators", "claims"}


def names(kind: str) -> list[str]:
    """Registered names of one kind: ``"problem"``, ``"estimator"``, ``"metric"`` or ``"claim"``."""
    from blobench.core import api

    fns = {"problem": api.problems, "estimator": api.estimators, "metric": api.metrics, "claim": api.claims}
    if kind not in fns:
        from blobench.core.errors import ParameterError

        raise ParameterError(f"names(): kind must be one of {', '.join(fns)}, got {kind!r}")
    return fns[kind]()


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"blobench.{name}")
    if name in _API:
        value = getattr(importlib.import_module("blobench.harness"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'blobench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _API | _SUBPACKAGES)


__all__ = sorted(_API | {"names", "__version__"})
