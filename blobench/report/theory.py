"""Theoretical rates the report draws beside the measured ones, each with its source."""
from __future__ import annotations

import math

#: tolerance of the "fitted rate above its bound" flag where no interval is recorded: relative, only to
#: absorb float rounding of an exactly geometric error (a fitted rate measurably above the bound is flagged)
RATE_RTOL = 1e-6

GD_SOURCE = "inner GD contraction 1 - alpha*mu (Ji, Yang & Liang 2021, ICML, Prop. 2 / Lemma 5)"
CG_SOURCE = "CG bound (sqrt(kappa)-1)/(sqrt(kappa)+1) (Nocedal & Wright 2006, eq. 5.36)"
#: the same sources, short enough for a legend
SHORT = {GD_SOURCE: "1-alpha*mu, Ji+ 2021 Prop. 2", CG_SOURCE: "CG bound, Nocedal-Wright eq. 5.36"}


def theoretical_rate(problem: str, problem_params: dict, estimator: str, estimator_params: dict,
                     budget_param: str) -> tuple[float, str] | None:
    """The textbook geometric rate of the error in ``budget_param`` and its source, or None where none applies.

    ``inner_steps`` (itd, aid-*; inner GD with step alpha, default 1/L): ``max|1 - alpha*lambda|`` over the
    spectrum [mu, L], i.e. ``1 - alpha*mu`` for alpha <= 1/L (Ji, Yang & Liang 2021, ICML, Prop. 2 and
    Lemma 5: the inner error and the ITD Jacobian contract at this rate). ``solver_steps`` of ``aid-cg``: the CG
    bound ``(sqrt(kappa)-1)/(sqrt(kappa)+1)`` (Nocedal & Wright 2006, eq. 5.36). First-order ``fo`` has a
    non-vanishing bias and ``exact`` no budget, so no rate is drawn for them. The constants are the problem's
    declared ``constants`` (mu, L): a wrongly declared constant shows up as a violated bound.
    """
    if estimator in ("fo", "exact"):
        return None
    try:
        from blobench.core import api

        c = api.problem(problem, **problem_params).constants
        mu, L = float(c["mu"]), float(c["L"])
    except Exception:  # a problem without constants or with unknown params: nothing to draw
        return None
    if budget_param == "inner_steps":
        lr = estimator_params.get("inner_lr") or 1.0 / L
        r = max(abs(1 - lr * mu), abs(1 - lr * L))
        return (r, GD_SOURCE) if r < 1 else None
    if budget_param == "solver_steps" and estimator == "aid-cg":
        k = L / mu
        return (math.sqrt(k) - 1) / (math.sqrt(k) + 1), CG_SOURCE
    return None


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
