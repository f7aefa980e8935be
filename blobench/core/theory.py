"""Theory declared once, on the estimator (issue 22).

An estimator (built-in or plugin) states what its paper proves as data, a class attribute::

    class MyNeumann(harness.Estimator):
        theory = (
            Rate("solver_steps", lambda c, p: 1 - p["solver_lr"] * c["mu"], source="Neumann series, ..."),
            CostFormula(lambda p: {"hvp": p["solver_steps"], "jvp": 1}, source="..."),
        )

Each declaration is read, never re-typed: ``blobench verify`` checks it against exact truth
(:mod:`blobench.gate.verify`), ``error_vs_budget`` writes its ``theoretical_rate`` row from it
(:func:`declared_rate`), and the report draws its theory lines from it (:mod:`blobench.report.theory`).

Formulas receive the problem's declared ``constants`` (mu, L, ...) and the estimator's *resolved*
parameters (:func:`resolved_params`: ``inner_lr`` and ``solver_lr`` default to 1/L, ``inner_steps`` to the
problem's unroll length or 10, as the estimators resolve them), and return None where the promise does not
apply (e.g. a step size above 2/L).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

Constants = Mapping[str, float]
Params = Mapping[str, Any]

#: source text -> short legend label, filled by every :class:`Rate` declared (the report's legend)
SHORT: dict[str, str] = {}


@dataclass(frozen=True)
class Rate:
    """||E[estimate] - grad Phi|| <= C rate^budget as ``budget`` (an estimator parameter) grows.

    ``formula(constants, params) -> rate`` (None: not applicable). ``poly``: the bound carries a polynomial
    prefactor (ITD's (c1 + c2 D)(1 - alpha mu)^D, Ji et al. 2021 Prop. 2), so the fit allows budget^p.
    ``requires``: the constants the formula reads (a problem missing one is not applicable)."""

    budget: str
    formula: Callable[[Constants, Params], float | None]
    source: str
    short: str = ""
    poly: bool = False
    requires: tuple[str, ...] = ("mu", "L")

    def __post_init__(self) -> None:
        if self.short:
            SHORT.setdefault(self.source, self.short)


@dataclass(frozen=True)
class BiasFloor:
    """As ``budget`` grows the error does NOT go to 0 but to a floor (a method with a non-vanishing bias:
    first-order FO-BLO, BOME's O(xi) neighbourhood, TTSA's constant-step floor). ``reason`` says why."""

    budget: str
    source: str
    reason: str = ""


@dataclass(frozen=True)
class Unbiased:
    """E[estimate] = grad Phi exactly (Phi the problem's target), at any budget. ``target``: only on problems of
    this target kind ("argmin" or "unrolled"; None: every problem)."""

    source: str
    target: str | None = None


@dataclass(frozen=True)
class VarianceScaling:
    """Var[estimate] proportional to ``param`` ** ``exponent`` (e.g. batch_size^-1) on stochastic problems."""

    param: str
    exponent: float
    source: str


@dataclass(frozen=True)
class CostFormula:
    """Oracle calls of ONE estimate (state=None) as a function of the resolved parameters:
    ``formula(params) -> {oracle name: count}``; oracles not named must be 0."""

    formula: Callable[[Params], Mapping[str, int]]
    source: str


@dataclass(frozen=True)
class MemoryO1:
    """Peak tensor memory of one estimate does not grow with ``budget`` (iterative solvers keep O(1) vectors)."""

    budget: str
    source: str


@dataclass(frozen=True)
class Converges:
    """The outer loop x <- x - outer_lr * estimate reaches a stationary point of a strongly convex instance:
    ||grad Phi(x_T)|| <= tol ||grad Phi(x_0)|| within ``steps`` outer steps (outer_lr default 1/L_Phi estimated
    by the battery), with estimator parameters ``params`` (a budget large enough for the claim)."""

    steps: int
    source: str
    tol: float = 1e-3
    params: Mapping[str, Any] = field(default_factory=dict)


Declaration = Rate | BiasFloor | Unbiased | VarianceScaling | CostFormula | MemoryO1 | Converges
KINDS = (Rate, BiasFloor, Unbiased, VarianceScaling, CostFormula, MemoryO1, Converges)


def declarations(estimator: Any, kind: type | None = None) -> list[Any]:
    """The estimator's (class or instance) declarations, optionally of one kind. A malformed ``theory``
    attribute (not a tuple of declarations) is a PluginError."""
    th = getattr(estimator, "theory", ()) or ()
    if not isinstance(th, (tuple, list)) or not all(isinstance(d, KINDS) for d in th):
        from blobench.core.errors import PluginError

        name = getattr(estimator, "name", type(estimator).__name__)
        raise PluginError(f"estimator {name!r}: theory must be a tuple of blobench.core.theory declarations "
                          f"({', '.join(k.__name__ for k in KINDS)}), got {th!r}")
    return [d for d in th if kind is None or isinstance(d, kind)]


def resolved_params(estimator: Any, problem: Any) -> dict[str, Any]:
    """The estimator's parameters with the defaults the estimators resolve at run time filled in:
    inner_steps (problem's unroll length, else 10), inner_lr (problem's unroll lr, else 1/L), solver_lr (1/L)."""
    p = dict(getattr(estimator, "p", {}) or {})
    c = problem.constants
    L = c.get("L")
    if "inner_steps" in p and p["inner_steps"] is None:
        t = problem.target
        p["inner_steps"] = int(t.steps) if t.kind == "unrolled" else 10
    if "inner_lr" in p and p["inner_lr"] is None:
        t = problem.target
        p["inner_lr"] = float(t.lr) if t.kind == "unrolled" else (1.0 / float(L) if L else None)
    if "solver_lr" in p and p["solver_lr"] is None:
        p["solver_lr"] = 1.0 / float(L) if L else None
    hook = getattr(estimator, "resolved", None)  # an estimator whose defaults follow its own rule (accbio-alg1's N, M)
    if callable(hook):
        p.update(hook(problem))
    return p


def declared_rate(problem: Any, estimator: Any, budget: str) -> tuple[float, str] | None:
    """(rate, source) declared by ``estimator`` for ``budget`` on ``problem``, or None where no declaration
    applies (no Rate for this budget, an algorithm-based target, a constant the formula needs missing, a
    formula returning None or a rate outside (0, 1))."""
    r = rate_declaration(estimator, budget)
    if r is None or problem.target.kind != "argmin":
        return None
    try:
        c = problem.constants
    except Exception:  # noqa: BLE001 - a problem whose constants fail has no rate to draw (verify reports it)
        return None
    if any(k not in c for k in r.requires):
        return None
    try:
        val = r.formula(c, resolved_params(estimator, problem))
    except (KeyError, TypeError, ZeroDivisionError, ValueError):
        return None
    if val is None or not math.isfinite(val) or not 0 <= val < 1:
        return None
    return float(val), r.source


def rate_declaration(estimator: Any, budget: str) -> Rate | None:
    for d in declarations(estimator, Rate):
        if d.budget == budget:
            return d
    return None


# -- shared formulas and sources (each written once, used by every estimator that runs the same loop) --------

GD_SOURCE = "inner GD contraction 1 - alpha*mu (Ji, Yang & Liang 2021, ICML, Prop. 2 / Lemma 5)"
CG_SOURCE = "CG bound (sqrt(kappa)-1)/(sqrt(kappa)+1) (Nocedal & Wright 2006, eq. 5.36)"
NEUMANN_SOURCE = "Neumann / fixed-point contraction 1 - eta*mu (Ji, Yang & Liang 2021, ICML, Lemma 6; Grazzi et al. 2020, Th. 2)"
AGD_SOURCE = "Nesterov AGD: f gap <= C (1 - sqrt(alpha*mu))^k, so iterates contract at its square root (Nesterov 2004, Th. 2.2.3; Ji & Liang 2023, AccBiO)"


def gd_rate(c: Constants, p: Params) -> float | None:
    """max |1 - alpha lambda| over [mu, L]: 1 - alpha mu for alpha <= 1/L (None for alpha >= 2/L)."""
    if p.get("inner_solver", "gd") != "gd":
        return None
    lr = p.get("inner_lr") or 1.0 / float(c["L"])
    r = max(abs(1 - lr * float(c["mu"])), abs(1 - lr * float(c["L"])))
    return r if r < 1 else None


def neumann_rate(c: Constants, p: Params) -> float | None:
    """max |1 - eta lambda| over [mu, L]: 1 - eta mu for eta <= 1/L."""
    eta = p.get("solver_lr") or 1.0 / float(c["L"])
    r = max(abs(1 - eta * float(c["mu"])), abs(1 - eta * float(c["L"])))
    return r if r < 1 else None


def cg_rate(c: Constants, p: Params) -> float:
    k = float(c["L"]) / float(c["mu"])
    return (math.sqrt(k) - 1) / (math.sqrt(k) + 1)


def agd_rate(c: Constants, p: Params) -> float | None:
    """Nesterov's AGD (constant momentum, step alpha <= 1/L) on a mu-strongly convex, L-smooth function:
    f(y_k) - f* <= C (1 - sqrt(alpha mu))^k (Nesterov 2004, Th. 2.2.3), so ||y_k - y*|| <= C' (1 - sqrt(alpha mu))^(k/2):
    the rate of the iterate, hence of the hypergradient error, is sqrt(1 - sqrt(alpha mu))."""
    if p.get("inner_solver", "agd") != "agd":
        return None
    lr = p.get("inner_lr") or 1.0 / float(c["L"])
    if lr * float(c["L"]) > 1 + 1e-12:
        return None
    return math.sqrt(1 - math.sqrt(lr * float(c["mu"])))


def agd_solver_rate(c: Constants, p: Params) -> float | None:
    """AGD on the linear system's quadratic 1/2 v'Hv - v'b with step eta <= 1/L: sqrt(1 - sqrt(eta mu)) (as :func:`agd_rate`)."""
    eta = p.get("solver_lr") or 1.0 / float(c["L"])
    if eta * float(c["L"]) > 1 + 1e-12:
        return None
    return math.sqrt(1 - math.sqrt(eta * float(c["mu"])))


def inner_gd_rate(short: str = "1-alpha*mu, Ji+ 2021 Prop. 2", poly: bool = False) -> Rate:
    return Rate("inner_steps", gd_rate, GD_SOURCE, short=short, poly=poly)


__all__ = ["Rate", "BiasFloor", "Unbiased", "VarianceScaling", "CostFormula", "MemoryO1", "Converges", "SHORT",
           "declarations", "declared_rate", "rate_declaration", "resolved_params", "GD_SOURCE", "CG_SOURCE",
           "NEUMANN_SOURCE", "AGD_SOURCE", "gd_rate", "neumann_rate", "cg_rate", "agd_rate", "agd_solver_rate", "inner_gd_rate"]
