"""blobench's public API, one module: ``from blobench import harness``.

The names below are the stable surface that outside code relies on; they are also re-exported by the
package itself (``import blobench as bb; bb.problem("quadratic")``), except the three listing functions,
whose names there belong to the ``blobench.problems`` / ``estimators`` / ``claims`` packages.

Public API:
    harness.problems(), harness.estimators(), harness.claims()
    harness.problem(name, **params), harness.estimator(name, **params)
    harness.register_problem(name), harness.register_estimator(name)
    harness.estimate(problem, estimator, x, seed=0, n=1000) -> .grads [n, dim_x], .calls
    harness.run(matrix_path, jobs=2, backend="loky") -> run folder
    harness.load(run_folder) -> pandas.DataFrame
    harness.check([claim, ...]) -> claim results
"""
from __future__ import annotations

from typing import Any

from blobench.core.errors import BlobenchError, ParameterError, PluginError, UnknownNameError
from blobench.core.params import Param
from blobench.core.registry import discover, register_claim, register_estimator, register_metric, register_problem

from blobench import __version__  # noqa: F401 (one version, set in blobench/__init__.py)

# Imported on first use (PEP 562), so ``from blobench import harness`` and ``blobench --help`` / ``list`` / ``describe``
# do not pay for torch: name -> module that defines it.
_LAZY = {
    "claims": "core.api", "estimator": "core.api", "estimators": "core.api", "metrics": "core.api",
    "problem": "core.api", "problems": "core.api",
    "Estimate": "core.estimator_base", "Estimator": "core.estimator_base", "Oracles": "core.oracles",
    "Problem": "core.problem_base", "Target": "core.problem_base", "UnrolledProblem": "core.problem_base",
    "EstimateBatch": "measure.sampling", "estimate": "measure.sampling",
}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"blobench.{mod}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def run(matrix, jobs: int = 1, backend: str = "loky", **kwargs):
    """Run a matrix (path to TOML, or a dict) and return the run folder (pathlib.Path)."""
    from blobench.engine.runner import run as _run

    return _run(matrix, jobs=jobs, backend=backend, **kwargs)


def load(run_folder, stale: bool = False):
    """One tidy pandas DataFrame of every finished cell of a run folder (``stale=True``: also cells of older matrix versions)."""
    from blobench.engine.store import load as _load

    return _load(run_folder, stale=stale)


def check(names=None, size: str = "ci", errors: str = "raise"):
    """Run claims (all by default) at a budget size ("ci" or "full"); returns ClaimResult objects.
    ``errors="record"``: a claim that raises becomes a failing result instead of an exception."""
    from blobench.gate.claim_base import check as _check

    return _check(names, size=size, errors=errors)


def verify(names, size: str = "ci", problems=None):
    """``blobench verify`` from Python: the conformance battery on estimators and/or problems (issue 22).
    Returns a VerifyResult (``.ok``, ``.rows``, ``.failures()``); see docs/verify.md."""
    from blobench.gate.verify import verify as _verify

    return _verify(list(names), size=size, problems=problems)


__all__ = [
    "BlobenchError", "Estimate", "EstimateBatch", "Estimator", "Oracles", "Param", "ParameterError", "PluginError",
    "Problem", "Target", "UnrolledProblem", "UnknownNameError", "check", "claims", "discover", "estimate", "estimator", "estimators",
    "load", "metrics", "problem", "problems", "register_claim", "register_estimator", "register_metric",
    "register_problem", "run", "verify",
]
