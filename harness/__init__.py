"""blobench's engine: registries, oracles, metrics, matrix runner, store, report, CLI.

Public API (DESIGN.md):
    harness.problems(), harness.estimators(), harness.claims()
    harness.problem(name, **params), harness.estimator(name, **params)
    harness.register_problem(name), harness.register_estimator(name)
    harness.estimate(problem, estimator, x, seed=0, n=1000) -> .grads [n, dim_x], .calls
    harness.run(matrix_path, jobs=2, backend="loky") -> run folder
    harness.load(run_folder) -> pandas.DataFrame
    harness.check([claim, ...]) -> claim results
"""
from __future__ import annotations

from .api import claims, estimator, estimators, metrics, problem, problems
from .errors import BlobenchError, ParameterError, PluginError, UnknownNameError
from .estimator_base import Estimate, Estimator
from .oracles import Oracles
from .params import Param
from .problem_base import Problem, Target, UnrolledProblem
from .registry import discover, register_claim, register_estimator, register_metric, register_problem
from .sampling import EstimateBatch, estimate

__version__ = "0.1.0"


def run(matrix, jobs: int = 1, backend: str = "loky", **kwargs):
    """Run a matrix (path to TOML, or a dict) and return the run folder (pathlib.Path)."""
    from .runner import run as _run

    return _run(matrix, jobs=jobs, backend=backend, **kwargs)


def load(run_folder, stale: bool = False):
    """One tidy pandas DataFrame of every finished cell of a run folder (``stale=True``: also cells of older matrix versions)."""
    from .store import load as _load

    return _load(run_folder, stale=stale)


def check(names=None, size: str = "ci"):
    """Run claims (all by default) at a budget size ("ci" or "full"); returns ClaimResult objects."""
    from .claim_base import check as _check

    return _check(names, size=size)


__all__ = [
    "BlobenchError", "Estimate", "EstimateBatch", "Estimator", "Oracles", "Param", "ParameterError", "PluginError",
    "Problem", "Target", "UnrolledProblem", "UnknownNameError", "check", "claims", "discover", "estimate", "estimator", "estimators",
    "load", "metrics", "problem", "problems", "register_claim", "register_estimator", "register_metric",
    "register_problem", "run",
]
