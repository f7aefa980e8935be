"""Theoretical rates the report draws beside the measured ones, each with its source."""
from __future__ import annotations

import math

#: tolerance of the "fitted rate above its bound" flag where no interval is recorded: relative, only to
#: absorb float rounding of an exactly geometric error (a fitted rate measurably above the bound is flagged)
RATE_RTOL = 1e-6

from blobench.core.theory import CG_SOURCE, GD_SOURCE, SHORT  # noqa: E402,F401 - the legend labels live with the declarations


def theoretical_rate(problem: str, problem_params: dict, estimator: str, estimator_params: dict,
                     budget_param: str) -> tuple[float, str] | None:
    """The geometric rate of the error in ``budget_param`` that ``estimator`` declares (its ``theory``
    attribute, :func:`blobench.core.theory.declared_rate`) on this problem, with its source; None where none
    applies (no declaration for this budget, unknown names or parameters, a constant missing). The constants
    are the problem's declared ``constants`` (mu, L): a wrongly declared constant shows up as a violated bound.
    """
    try:
        from blobench.core import api
        from blobench.core.theory import declared_rate

        p = api.problem(problem, **problem_params)
        e = api.estimator(estimator, **{k: v for k, v in estimator_params.items() if k != budget_param})
    except Exception:  # noqa: BLE001 - unknown names or params in a run folder: nothing to draw
        return None
    return declared_rate(p, e, budget_param)


def rate_violation(fitted: float, bound: float, lo: float | None = None, recorded: object = None) -> bool:
    """True when a fitted geometric rate exceeds its theoretical upper bound.

    ``recorded``: a violation verdict the metric wrote (``rate_violation`` column) wins when present; else,
    with an interval (``rate_lo``), the whole interval must lie above the bound; else the point estimate
    must exceed the bound by more than float rounding (:data:`RATE_RTOL`).
    """
    if recorded is not None and not (isinstance(recorded, float) and math.isnan(recorded)):
        return bool(recorded)
    if not (math.isfinite(fitted) and math.isfinite(bound)):
        return False
    if lo is not None and math.isfinite(lo):
        return lo > bound
    return fitted > bound * (1 + RATE_RTOL)
