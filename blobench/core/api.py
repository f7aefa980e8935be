"""The public API of docs/design.md (re-exported by ``blobench.harness`` and ``blobench``)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from blobench.core.errors import BlobenchError
from blobench.core.registry import CLAIMS, ESTIMATORS, METRICS, PROBLEMS

if TYPE_CHECKING:
    from blobench.core.estimator_base import Estimator
    from blobench.core.problem_base import Problem


def problems() -> list[str]:
    """Registered problem names."""
    return PROBLEMS.names()


def estimators() -> list[str]:
    """Registered estimator names."""
    return ESTIMATORS.names()


def metrics() -> list[str]:
    """Registered metric names."""
    return METRICS.names()


def claims() -> list[str]:
    """Registered claim names."""
    return CLAIMS.names()


def problem(name: str, **params: Any) -> Problem:
    """Build a registered problem; unknown names and bad parameters raise a clear BlobenchError."""
    from blobench.core.registry import check_problem_instance

    cls = PROBLEMS.get(name)
    try:
        p = cls(**params)
    except BlobenchError:
        raise
    except (TypeError, ValueError) as exc:
        raise BlobenchError(f"problem {name!r}: {exc}") from exc
    check_problem_instance(p)  # dim_x, dim_y, x0's shape: a PluginError line, not a later IndexError
    return p


def estimator(name: str, **params: Any) -> Estimator:
    """Build a registered estimator from validated parameters."""
    cls = ESTIMATORS.get(name)
    try:
        return cls(**params)
    except BlobenchError:
        raise
    except (TypeError, ValueError) as exc:
        raise BlobenchError(f"estimator {name!r}: {exc}") from exc
