"""Metrics: each turns one cell (problem x estimator x params x seed x device) into tidy rows.

A metric is a function ``fn(ctx, **params) -> list[dict]`` registered with
``@register_metric(name)`` and declaring its parameters in ``fn.params``. Every row has
at least ``quantity`` and ``value``; optional columns are ``lo``/``hi`` (a confidence
interval), ``coord``, ``budget``, ``budget_param``, and oracle-call columns ``calls_*``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from scipy import stats

from blobench.core.estimator_base import Estimator
from blobench.core.oracles import ORACLE_NAMES
from blobench.core.params import Param
from blobench.core.problem_base import Problem
from blobench.core.registry import register_metric
from blobench.measure.sampling import EstimateBatch, estimate
from blobench.measure.rates import METHOD as RATE_METHOD, RateFit, asymptotic_rate  # noqa: F401 (RateFit: public here too)


@dataclass
class CellContext:
    """What a metric sees of its cell."""

    problem: Problem
    estimator_name: str
    estimator_params: dict[str, Any]
    seed: int = 0
    device: str = "cpu"
    extra: dict = field(default_factory=dict)

    def estimator(self, **overrides: Any) -> Estimator:
        from blobench.core import api

        return api.estimator(self.estimator_name, **{**self.estimator_params, **overrides})


def calls_columns(batch: EstimateBatch) -> dict[str, float]:
    mc = batch.mean_calls()
    return {f"calls_{k}": mc[k] for k in ORACLE_NAMES}


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (controls the family-wise error rate)."""
    p = np.asarray(pvalues, dtype=float)
    m = p.size
    order = np.argsort(p)
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj


def mean_test(G: np.ndarray, truth: np.ndarray, alpha: float = 0.01) -> dict[str, float]:
    """Test H0: E[estimate] = truth with per-coordinate t-tests, Holm-corrected at level alpha.

    Coordinates with zero sample variance (deterministic estimators) reject iff their mean
    differs from the truth by more than 1e-9 relative. Returns the smallest adjusted
    p-value, the decision and, for information, the smallest per-coordinate bias the test
    detects with 99% power at this n (Gaussian approximation, Bonferroni level alpha/d).
    """
    n, d = G.shape
    mean = G.mean(0)
    sd = G.std(0, ddof=1) if n > 1 else np.zeros(d)
    diff = mean - truth
    p = np.ones(d)
    scale = max(1.0, float(np.abs(truth).max(initial=0.0)))
    for j in range(d):
        if sd[j] > 1e-12 * scale and n > 1:
            t = diff[j] / (sd[j] / math.sqrt(n))
            p[j] = 2 * stats.t.sf(abs(t), df=n - 1)
        else:
            p[j] = 0.0 if abs(diff[j]) > 1e-9 * scale else 1.0
    adj = holm(p)
    z_a = stats.norm.isf(alpha / (2 * d))
    z_b = stats.norm.isf(0.01)
    mdb = float((z_a + z_b) * sd.max(initial=0.0) / math.sqrt(n))
    return {"p_min_holm": float(adj.min()), "reject": float(adj.min() < alpha), "alpha": alpha,
            "min_detectable_bias_99": mdb}


def hotelling_test(G: np.ndarray, truth: np.ndarray, alpha: float = 0.01, power: float = 0.99) -> dict[str, float]:
    """Hotelling's T^2 test of H0: E[estimate] = truth (needs n > d draws).

    T^2 = n (mean - truth)^T S^{-1} (mean - truth) and, under H0 with Gaussian draws,
    (n - d) / (d (n - 1)) T^2 ~ F(d, n - d) (Hotelling 1931; Anderson 2003, Thm. 5.2.2), so
    rejecting when that F statistic exceeds its 1 - alpha quantile has false-alarm rate
    alpha (asymptotically for any finite-variance draws). Under a bias delta the statistic
    is noncentral F with noncentrality lambda = n delta^T Sigma^{-1} delta; the smallest
    lambda rejected with probability ``power`` gives the smallest detectable bias norm in
    the worst (largest-variance) direction: sqrt(lambda / n * eigmax(S)). Returns NaNs when
    n <= d or S is singular (e.g. a deterministic estimator).
    """
    n, d = G.shape
    nan = {"p_hotelling": float("nan"), "reject_hotelling": float("nan"), "T2": float("nan"),
           "min_detectable_bias_99_hotelling": float("nan")}
    if n <= d:
        return nan
    mean = G.mean(0)
    S = np.atleast_2d(np.cov(G, rowvar=False))
    w = np.linalg.eigvalsh(S)
    if w.size == 0 or w.min() <= 1e-12 * max(float(w.max()), 1e-300):
        return nan
    diff = mean - truth
    T2 = float(n * diff @ np.linalg.solve(S, diff))
    F = (n - d) / (d * (n - 1)) * T2
    p = float(stats.f.sf(F, d, n - d))
    crit = stats.f.isf(alpha, d, n - d)
    from scipy.optimize import brentq

    def miss(lam: float) -> float:
        return float(stats.ncf.cdf(crit, d, n - d, lam)) - (1.0 - power)

    hi = 1.0
    while miss(hi) > 0:
        hi *= 2.0
    lam = brentq(miss, 0.0, hi, xtol=1e-8)
    mdb = math.sqrt(lam / n * float(w.max()))
    return {"p_hotelling": p, "reject_hotelling": float(p < alpha), "T2": T2, "min_detectable_bias_99_hotelling": mdb}


def summarize_draws(G: torch.Tensor, truth: torch.Tensor, level: float = 0.95, alpha: float = 0.01,
                    seed: int = 0) -> list[dict[str, Any]]:
    """Rows for bias / variance / MSE of n draws G (n x d) against the exact truth (d).

    Non-finite draws raise NonFiniteDraws (the cell is ``diverged``, with their count); a truth
    of the wrong shape raises PluginError (the problem's hypergradient broke its contract)."""
    from blobench.core.errors import NonFiniteDraws, PluginError

    if tuple(truth.shape) != (G.shape[-1],):
        raise PluginError(f"the problem's hypergradient has shape {tuple(truth.shape)}; expected ({G.shape[-1]},)")
    bad = int((~torch.isfinite(G)).reshape(G.shape[0], -1).any(1).sum()) if G.numel() else 0
    if bad:
        raise NonFiniteDraws(f"{bad} of {G.shape[0]} draws are non-finite (NaN/Inf)", bad, int(G.shape[0]))
    from blobench.core.errors import ParameterError

    if G.shape[0] < 2:  # one draw has no spread: its "CI" was zero-wide and the unbiasedness test said p = 0
        raise ParameterError(f"bias / variance need at least 2 draws, got {G.shape[0]} (a confidence interval and "
                             "the unbiasedness test need a sample variance)")
    Gn = G.double().numpy()
    tr = truth.double().numpy()
    n, d = Gn.shape
    with np.errstate(over="ignore", invalid="ignore"):
        spread = Gn.std(0, ddof=1)
    if not (np.all(np.isfinite(Gn.mean(0))) and np.all(np.isfinite(spread))):
        raise NonFiniteDraws(f"the draws' mean or variance overflows float64 (draws up to {float(np.abs(Gn).max()):.3g})",
                             int(G.shape[0]), int(G.shape[0]))
    mean = Gn.mean(0)
    sd = Gn.std(0, ddof=1) if n > 1 else np.zeros(d)
    tq = stats.t.ppf(0.5 + level / 2, df=max(n - 1, 1))
    half = tq * sd / math.sqrt(n)
    rows: list[dict[str, Any]] = []
    for j in range(d):
        rows.append({"quantity": "mean", "coord": j, "value": mean[j], "lo": mean[j] - half[j],
                     "hi": mean[j] + half[j], "truth": tr[j]})
    bias = mean - tr
    bnorm = float(np.linalg.norm(bias))
    # CI for ||bias||: the level-confidence ellipsoid {beta: (beta-b)' (S/n)^-1 (beta-b) <= chi2_d} around the
    # sample bias b lies inside the ball of radius r = sqrt(lambda_max(S/n) chi2_d(level)), so
    # ||beta|| is in [max(0, ||b|| - r), ||b|| + r] with probability >= level (conservative; contains ||b||).
    lo = hi = bnorm
    if n > 1 and sd.max(initial=0.0) > 0:
        S = np.atleast_2d(np.cov(Gn, rowvar=False))
        lam_max = float(np.linalg.eigvalsh(S)[-1]) / n
        r = math.sqrt(max(lam_max, 0.0) * stats.chi2.ppf(level, df=d))
        lo, hi = max(0.0, bnorm - r), bnorm + r
    var_tr = float((sd**2).sum())
    mse = float(((Gn - tr) ** 2).sum(1).mean())
    tn = float(np.linalg.norm(tr))
    test = mean_test(Gn, tr, alpha)
    hot = hotelling_test(Gn, tr, alpha)
    rows += [
        {"quantity": "bias_norm", "value": bnorm, "lo": lo, "hi": hi},
        {"quantity": "variance_trace", "value": var_tr},
        {"quantity": "mse", "value": mse},
        {"quantity": "truth_norm", "value": tn},
        {"quantity": "samples", "value": float(n)},
        {"quantity": "unbiased_p_holm", "value": test["p_min_holm"]},
        {"quantity": "unbiased_reject", "value": test["reject"], "alpha": alpha},
        {"quantity": "min_detectable_bias_99", "value": test["min_detectable_bias_99"]},
    ]
    if tn > 1e-10:  # relative bias is undefined at a stationary point (grad Phi = 0)
        rows.append({"quantity": "rel_bias", "value": bnorm / tn})
    if not math.isnan(hot["p_hotelling"]):
        rows += [
            {"quantity": "unbiased_p_hotelling", "value": hot["p_hotelling"]},
            {"quantity": "unbiased_reject_hotelling", "value": hot["reject_hotelling"], "alpha": alpha},
            {"quantity": "min_detectable_bias_99_hotelling", "value": hot["min_detectable_bias_99_hotelling"]},
        ]
    return rows


def _x_at(ctx: CellContext, at: str) -> torch.Tensor:
    p = ctx.problem
    if at == "x0":
        return p.x0()
    if at == "stationary":
        sp = p.stationary_points()
        if not sp:
            from blobench.core.errors import ParameterError

            raise ParameterError(f"metric: problem {p.name!r} has no known stationary point (at='stationary')")
        return sp[0]
    raise AssertionError(at)


AT = Param("str", default="x0", choices=("x0", "stationary"), doc="where to evaluate: the problem's x0 or its stationary point")


@register_metric("bias_variance")
def bias_variance(ctx: CellContext, samples: int = 1000, chunk: int = 1024, at: str = "x0",
                  level: float = 0.95, alpha: float = 0.01) -> list[dict[str, Any]]:
    """Bias, per-coordinate CIs, covariance trace, MSE and a Holm-corrected test of E[estimate] = grad Phi."""
    x = _x_at(ctx, at)
    est = ctx.estimator()
    out = estimate(ctx.problem, est, x, seed=ctx.seed, n=samples, chunk=chunk, device=ctx.device)
    truth = ctx.problem.hypergradient(x)
    rows = summarize_draws(out.grads, truth, level=level, alpha=alpha, seed=ctx.seed)
    cc = calls_columns(out)
    for r in rows:
        r.update(cc)
    rows.append({"quantity": "seconds", "value": out.seconds})
    return rows


bias_variance.params = {
    "samples": Param("int", default=1000, low=2, doc="number of draws M (>= 2: the confidence interval needs a sample variance)"),
    "chunk": Param("int", default=1024, low=1, doc="draws per vmapped call (bounds memory)"),
    "at": AT,
    "level": Param("float", default=0.95, low=0, high=1, low_open=True, high_open=True, doc="confidence level"),
    "alpha": Param("float", default=0.01, low=0, high=1, low_open=True, high_open=True, doc="false-alarm rate of the unbiasedness test"),
}


def fit_loglinear(xs: Any, ys: Any, level: float = 0.95, floor: float = 1e-13,
                  log_x: bool = False) -> tuple[float, float, float, int]:
    """Least-squares slope of log(y) on x (or on log x with ``log_x``), on finite y above ``floor``:
    (slope, lo, hi, points), the ``level`` t-interval of the slope from scipy.stats.linregress
    (NaN interval with fewer than 3 points; NaN slope with fewer than 2)."""
    x = np.asarray(xs, float)
    y = np.asarray(ys, float)
    keep = np.isfinite(y) & (y > floor) & np.isfinite(x)
    if log_x:
        keep &= x > 0
    n = int(keep.sum())
    if n < 2 or len(set(x[keep].tolist())) < 2:
        return float("nan"), float("nan"), float("nan"), n
    xx = np.log(x[keep]) if log_x else x[keep]
    ly = np.log(y[keep])
    r = stats.linregress(xx, ly)
    # the point estimate is numpy's least-squares slope, as fit_geometric_rate has always computed it (linregress
    # differs in the last bit, which would change every recorded rate); linregress gives its standard error
    slope = float(np.polyfit(xx, ly, 1)[0])
    if n < 3:
        return slope, float("nan"), float("nan"), n
    se = float(r.stderr)
    if not math.isfinite(se):  # linregress gives NaN when log y is constant: the residuals are zero
        res = ly - (r.intercept + r.slope * xx)
        se = math.sqrt(float(res @ res) / (n - 2) / float(((xx - xx.mean()) ** 2).sum()))
    h = float(stats.t.ppf(0.5 + level / 2, df=n - 2)) * se
    # the interval covers both least-squares slopes (they differ by rounding only)
    return slope, min(slope, float(r.slope)) - h, max(slope, float(r.slope)) + h, n


def _fit_with_prefactor(xs: Any, ys: Any, level: float, floor: float) -> tuple[float, float, float, int]:
    """OLS of log y = a + p log x + x log(rate) (a polynomial prefactor x^p beside the geometric factor):
    the coefficient of x with its ``level`` t-interval (n - 3 degrees of freedom)."""
    x = np.asarray(xs, float)
    y = np.asarray(ys, float)
    keep = np.isfinite(y) & (y > floor) & (x > 0)
    n = int(keep.sum())
    if n < 3:
        return float("nan"), float("nan"), float("nan"), n
    X = np.column_stack([np.ones(n), np.log(x[keep]), x[keep]])
    ly = np.log(y[keep])
    coef, *_ = np.linalg.lstsq(X, ly, rcond=None)
    if n < 4:
        return float(coef[2]), float("nan"), float("nan"), n
    res = ly - X @ coef
    cov = float(res @ res) / (n - 3) * np.linalg.inv(X.T @ X)
    h = float(stats.t.ppf(0.5 + level / 2, df=n - 3)) * math.sqrt(max(float(cov[2, 2]), 0.0))
    return float(coef[2]), float(coef[2] - h), float(coef[2] + h), n


def fit_rate(budgets: list[float], errors: list[float], floor: float = 1e-13, level: float = 0.95,
             bound: float | None = None, poly_prefactor: bool = False) -> RateFit:
    """Geometric rate of error ~ C rate^budget: exp of the log-linear slope, with its ``level`` interval.

    ``poly_prefactor=True`` fits error ~ C budget^p rate^budget instead (bounds such as ITD's
    (c1 + c2 D)(1 - alpha mu)^D, Ji et al. 2021 Prop. 2, carry a polynomial factor that biases a plain
    log-linear fit upwards over a finite range of budgets)."""
    fit = _fit_with_prefactor if poly_prefactor else (lambda b, e, lv, fl: fit_loglinear(b, e, lv, fl))
    s, lo, hi, n = fit(budgets, errors, level, floor)
    return RateFit(math.exp(s) if math.isfinite(s) else s, math.exp(lo) if math.isfinite(lo) else lo,
                   math.exp(hi) if math.isfinite(hi) else hi, n).with_bound(bound)


def fit_geometric_rate(budgets: list[float], errors: list[float], floor: float = 1e-13) -> float:
    """Least-squares fit of log(error) = a + budget * log(rate), on errors above ``floor``; NaN if < 2 points."""
    return fit_rate(budgets, errors, floor).rate


def theoretical_rate(problem: Problem, estimator: Estimator, budget_param: str) -> tuple[float, str] | None:
    """The geometric rate bound of the hypergradient error in ``budget_param`` that the estimator DECLARES
    (its ``theory`` attribute, :func:`blobench.core.theory.declared_rate`), with its source; None where it
    declares none or the declaration does not apply (e.g. an unrolled target, a missing constant)."""
    from blobench.core.theory import declared_rate

    return declared_rate(problem, estimator, budget_param)


@register_metric("error_vs_budget")
def error_vs_budget(ctx: CellContext, budget: str = "inner_steps", values: list | None = None,
                    samples: int = 1, at: str = "x0") -> list[dict[str, Any]]:
    """||mean estimate - grad Phi|| over a list of budgets (e.g. inner_steps or solver_steps), with the fitted geometric rate.

    The ``fitted_rate`` row's ``value`` (``lo``/``hi``: its 95% interval) is the log-linear fit over every
    budget, a description of the whole sweep. The tested quantity is the asymptotic rate of
    :func:`blobench.measure.rates.asymptotic_rate` (tail fit C D^p q^D on D >= the median budget):
    ``rate``/``rate_lo``/``rate_hi``, ``rate_points`` (tail size), ``rate_method``, the theory's
    bound ``rate_bound`` (:func:`theoretical_rate`; NaN where none applies) and ``rate_violation`` (the whole
    tail interval above the bound): a violation is a finding to record or a bug to fix, never silent. With 4 or
    more budgets, ``rate_poly``/``rate_poly_lo``/``rate_poly_hi`` give the geometric factor of an
    error ~ C budget^p rate^budget fit: ITD's error bound (c1 + c2 D)(1 - alpha mu)^D (Ji et al. 2021,
    Prop. 2) makes the plain fit exceed 1 - alpha mu (flagged) while this one does not. A
    ``theoretical_rate`` row is written beside it where a bound exists.
    """
    from blobench.core.errors import ParameterError

    values = list(values if values is not None else [1, 2, 4, 8, 16, 32])
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise ParameterError(f"metric 'error_vs_budget': values must be a non-empty list of integers >= 0, got {values!r}")
    x = _x_at(ctx, at)
    truth = ctx.problem.hypergradient(x)
    tn = float(torch.linalg.norm(truth))
    rows: list[dict[str, Any]] = []
    errs = []
    for v in values:
        est = ctx.estimator(**{budget: v})
        out = estimate(ctx.problem, est, x, seed=ctx.seed, n=samples, device=ctx.device)
        err = float(torch.linalg.norm(out.grads.double().mean(0) - truth))
        errs.append(err)
        base = {"budget_param": budget, "budget": v, **calls_columns(out)}
        rows.append({**base, "quantity": "error", "value": err})
        rows.append({**base, "quantity": "rel_error", "value": err / tn if tn > 0 else err})
    th = theoretical_rate(ctx.problem, ctx.estimator(), budget)
    whole = fit_rate(values, errs)  # descriptive: every budget, log-linear (the row's value, as always recorded)
    fit = asymptotic_rate(values, errs, bound=th[0] if th else None)  # the tested quantity (blobench.measure.rates)
    cols = fit.columns()
    if len(values) >= 4:  # beside it, the geometric factor of a C budget^p rate^budget fit (bounds such as ITD's D q^D)
        pf = fit_rate(values, errs, poly_prefactor=True)
        cols.update({"rate_poly": pf.rate, "rate_poly_lo": pf.rate_lo, "rate_poly_hi": pf.rate_hi})
    rows.append({"quantity": "fitted_rate", "budget_param": budget, "value": whole.rate, "lo": whole.rate_lo,
                 "hi": whole.rate_hi, **cols, "rate_method": RATE_METHOD, "rate_points": fit.points,
                 "rate_source": th[1] if th else ""})
    if th:
        rows.append({"quantity": "theoretical_rate", "budget_param": budget, "value": th[0], "rate_source": th[1]})
    return rows


error_vs_budget.params = {
    "budget": Param("str", default="inner_steps", doc="estimator parameter swept"),
    "values": Param("list", default=None, optional=True, doc="budgets (list of integers)"),
    "samples": Param("int", default=1, low=1, doc="draws averaged per budget"),
    "at": AT,
}


def budget_cell(ctx: CellContext, budget: str, value: Any) -> tuple[Problem, Estimator]:
    """(problem, estimator) of the cell with ``budget`` set to ``value``: an estimator parameter
    (e.g. inner_steps) or, failing that, a problem parameter (e.g. an unrolled problem's unroll_steps)."""
    from blobench.core import api
    from blobench.core.errors import ParameterError
    from blobench.core.registry import ESTIMATORS, PROBLEMS

    est_cls = ESTIMATORS.get(ctx.estimator_name)
    if budget in est_cls.params:
        return ctx.problem, ctx.estimator(**{budget: value})
    prob_cls = PROBLEMS.get(ctx.problem.name)
    if budget in prob_cls.params:
        return api.problem(ctx.problem.name, **{**ctx.problem.p, budget: value}), ctx.estimator()
    raise ParameterError(
        f"budget {budget!r} is neither a parameter of estimator {ctx.estimator_name!r} "
        f"({', '.join(sorted(est_cls.params)) or 'none'}) nor of problem {ctx.problem.name!r} "
        f"({', '.join(sorted(prob_cls.params)) or 'none'})")


def _budget_values(name: str, values: Any, default: list[int]) -> list[int]:
    from blobench.core.errors import ParameterError

    values = list(values if values is not None else default)
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise ParameterError(f"metric {name!r}: values must be a non-empty list of integers >= 0, got {values!r}")
    return values


def _one_draw(problem: Problem, est: Estimator, x: torch.Tensor, seed: int, device: str):
    """A closure running one pre-drawn estimate (noise drawn here, outside any measurement)."""
    from blobench.core.oracles import Oracles
    from blobench.measure.sampling import draw_noise

    noise = draw_noise(problem, est, 1, seed, device)
    nz = {k: v[0] for k, v in noise.items()}
    o = Oracles(problem.on(device))
    xd = x.to(device)

    def call():
        o.reset()
        return est.estimate(o, xd, nz, None)

    return call, o


def _draws_call(problem: Problem, est: Estimator, x: torch.Tensor, seed: int, device: str, n: int, chunk: int):
    from blobench.measure.sampling import draw_noise, run_draws

    noise = draw_noise(problem, est, n, seed, device)
    xd, pd = x.to(device), problem.on(device)
    return lambda: run_draws(pd, est, xd, noise, n, chunk=chunk, vmapped=True)


def _linear_slope(b: list[float], v: list[float]) -> float:
    if len(set(b)) < 2:
        return float("nan")
    return float(np.polyfit(np.asarray(b, float), np.asarray(v, float), 1)[0])


def _budget_call(ctx: CellContext, budget: str, v: int, x: torch.Tensor, draws: int, chunk: int):
    """The measured call at budget v (one estimate, or ``draws`` vmapped draws) and a function giving its
    ``calls_*`` columns from the call's result (shared by memory_vs_budget and time_vs_budget)."""
    prob, est = budget_cell(ctx, budget, v)
    if draws == 1:
        call, o = _one_draw(prob, est, x, ctx.seed, ctx.device)
        return call, lambda result: {f"calls_{k}": float(c) for k, c in o.snapshot().items()}
    call = _draws_call(prob, est, x, ctx.seed, ctx.device, draws, chunk)
    return call, lambda result: {f"calls_{k}": float(c.double().mean()) for k, c in result[1].items()}


@register_metric("memory_vs_budget")
def memory_vs_budget(ctx: CellContext, budget: str = "inner_steps", values: list | None = None,
                     draws: int = 1, chunk: int = 1024, at: str = "x0") -> list[dict[str, Any]]:
    """Peak tensor memory of one estimate (or of ``draws`` vmapped draws) over a budget.

    CPU: deterministic running peak of the profiler's allocation events; CUDA:
    max_memory_allocated after a reset (blobench.measure.memory). Noise is drawn before the
    measurement. Also reports process peak RSS (secondary) and the fitted bytes per
    unit of budget (linear least squares): ~0 for constant-memory estimators
    (recompute-mode ITD, UFO), ~dim_y * 8 bytes per step for a stored trajectory.
    """
    from blobench.measure.memory import peak_memory

    values = _budget_values("memory_vs_budget", values, [10, 100, 1000])
    x = _x_at(ctx, at)
    rows: list[dict[str, Any]] = []
    peaks = []
    for v in values:
        call, calls_of = _budget_call(ctx, budget, v, x, draws, chunk)
        m = peak_memory(call, device=ctx.device)
        cc = calls_of(m.get("result"))
        peaks.append(m["peak_bytes"])
        base = {"budget_param": budget, "budget": v, **cc}
        rows.append({**base, "quantity": "peak_bytes", "value": float(m["peak_bytes"])})
        rows.append({**base, "quantity": "rss_peak_bytes", "value": float(m["rss_peak_bytes"])})
    rows.append({"quantity": "bytes_per_budget", "budget_param": budget, "value": _linear_slope(values, peaks)})
    if len(values) >= 2 and peaks[0] > 0:
        rows.append({"quantity": "peak_ratio_last_first", "budget_param": budget, "value": peaks[-1] / peaks[0]})
    return rows


memory_vs_budget.params = {
    "budget": Param("str", default="inner_steps", doc="estimator parameter (or problem parameter, e.g. unroll_steps) swept"),
    "values": Param("list", default=None, optional=True, doc="budgets (list of integers; default [10, 100, 1000])"),
    "draws": Param("int", default=1, low=1, doc="1: one estimate; >1: that many vmapped draws in chunks"),
    "chunk": Param("int", default=1024, low=1, doc="draws per vmapped call"),
    "at": AT,
}


@register_metric("time_vs_budget")
def time_vs_budget(ctx: CellContext, budget: str = "inner_steps", values: list | None = None,
                   draws: int = 1, chunk: int = 1024, repeats: int = 5, warmup: int = 1,
                   at: str = "x0") -> list[dict[str, Any]]:
    """Wall-clock seconds of one estimate (or ``draws`` vmapped draws) over a budget: median and IQR.

    Warm-up calls first, torch.cuda.synchronize around each timed call on GPU; noise is
    drawn and the estimator built before timing, and no ground truth is evaluated inside
    it (blobench.measure.timing). Also the fitted seconds per unit of budget.
    """
    from blobench.measure.timing import time_call

    values = _budget_values("time_vs_budget", values, [1, 10, 100])
    x = _x_at(ctx, at)
    rows: list[dict[str, Any]] = []
    meds = []
    for v in values:
        call, calls_of = _budget_call(ctx, budget, v, x, draws, chunk)
        t = time_call(call, repeats=repeats, warmup=warmup, device=ctx.device)
        cc = calls_of(t.get("result"))
        meds.append(t["median_s"])
        base = {"budget_param": budget, "budget": v, **cc}
        rows.append({**base, "quantity": "seconds_median", "value": t["median_s"], "lo": t["q1_s"], "hi": t["q3_s"]})
        rows.append({**base, "quantity": "seconds_iqr", "value": t["iqr_s"]})
        if draws > 1:
            rows.append({**base, "quantity": "seconds_per_draw", "value": t["median_s"] / draws})
    rows.append({"quantity": "seconds_per_budget", "budget_param": budget, "value": _linear_slope(values, meds)})
    return rows


time_vs_budget.params = {
    "budget": Param("str", default="inner_steps", doc="estimator parameter (or problem parameter) swept"),
    "values": Param("list", default=None, optional=True, doc="budgets (list of integers; default [1, 10, 100])"),
    "draws": Param("int", default=1, low=1, doc="1: one estimate; >1: that many vmapped draws in chunks"),
    "chunk": Param("int", default=1024, low=1, doc="draws per vmapped call"),
    "repeats": Param("int", default=5, low=1, doc="timed repetitions (median and IQR over them)"),
    "warmup": Param("int", default=1, low=0, doc="untimed warm-up calls"),
    "at": AT,
}


def metric_param_spec(fn: Callable) -> dict[str, Param]:
    return getattr(fn, "params", {})
