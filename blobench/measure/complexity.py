"""Oracle complexity: counted oracle calls to reach a target accuracy, against lower and upper bounds.

The ``complexity`` metric runs the shared outer loop (:func:`blobench.measure.outer.outer_loop`, with Nesterov
momentum for estimators that declare it, e.g. AccBiO) until the target accuracy is reached and reports, for
every target eps, the oracle calls counted by the oracle layer up to the first iterate that reaches it:
Gc(f) (grad_x f + grad_y f), Gc(g) (grad_y g), JV, HV separately and their total (Ji, Yang, Liang 2021,
Def. 2's complexity measures; Ji & Liang 2023, Sec. 2). Accuracy is Phi(x) - Phi* for a convex outer
objective and ||grad Phi(x)||^2 otherwise (``criterion="auto"`` picks the first when the problem declares
a ``mu_x`` constant, i.e. a known convex Phi, and the problem knows Phi*).

The *stopping rule* (``stopping``) says which iterate counts as having reached eps. ``"first-iterate"`` (the
default, and the only rule for deterministic methods): the first iterate of the one trajectory whose accuracy
is <= eps. For stochastic methods that rule stops at the first lucky iterate of one noisy trajectory (an
estimator stuck at its noise floor dips below eps now and then), so two rules over ``seeds`` independent runs
are offered, each seed's randomness drawn from its own generator (seed ``seed * seeds + s``, s < seeds):

- ``"seed-mean"``: the first evaluation point k at which mean_s acc(x_k^s) <= eps (E acc(x_k) estimated over
  the seeds);
- ``"running-mean"``: the first K <= max_steps at which (1/K) sum_{k<K} mean_s acc(x_k^s) <= eps, the
  quantity that stochastic nonconvex theorems bound (Ji, Yang, Liang 2021, Thm 3: (1/K) sum_k
  E||grad Phi(x_k)||^2), with the calls counted up to x_{K-1}.

Both run every seed for ``max_steps`` iterations (no early stop: the mean needs them all) and report the calls
averaged over the seeds (identical across seeds for fixed-length estimators such as stocBiO).

Beside each measurement it writes the problem's own lower bound when it has one (the chain instances'
exact zero-respecting bound, ``calls_lower_bound(eps)``, blobench/problems/lb_scsc.py) and each method's upper-bound
*order* (:func:`upper_bound_order`), so the report can draw measured calls against both bounds on log-log
axes (:func:`plot_complexity`) with fitted exponents and intervals (:func:`fit_exponent`, scipy's
linregress with a t-interval).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

from blobench.core.oracles import ORACLE_NAMES
from blobench.core.params import Param
from blobench.core.registry import register_metric

CRITERIA = ("auto", "value_gap", "grad_norm_sq")
STOPPING = ("first-iterate", "seed-mean", "running-mean")
BUDGET_RULES = ("fixed", "theory")


def calls_by_kind(calls: dict[str, float]) -> dict[str, float]:
    """Gc(f), Gc(g) (grad_y g and grad_x g), JV, HV and total from per-oracle counts; function values of f and g
    (the fully first-order and zeroth-order methods' oracles) and the ``exact`` oracle count in the total only."""
    gf = float(calls.get("grad_x_f", 0)) + float(calls.get("grad_y_f", 0))
    gg = float(calls.get("grad_y_g", 0)) + float(calls.get("grad_x_g", 0))
    out = {"Gc_f": gf, "Gc_g": gg, "JV": float(calls.get("jvp", 0)), "HV": float(calls.get("hvp", 0))}
    out["total"] = (sum(out.values()) + float(calls.get("exact", 0)) + float(calls.get("f_value", 0))
                    + float(calls.get("g_value", 0)))
    return out


def theory_budget(estimator_name: str, params: dict[str, Any], constants: dict[str, float], scale: float = 1.0
                  ) -> dict[str, int]:
    """Inner and solver steps per outer iteration as the methods' analyses set them (up to the log factor):
    inner GD needs ~kappa_y steps, inner AGD ~sqrt(kappa_y) (Ji & Liang 2023, AccBiO's D); CG / the AGD
    linear solver ~sqrt(kappa_y), Neumann / fixed-point ~kappa_y (Ji et al. 2021, Alg. 1; AccBiO's N)."""
    if estimator_name == "accbio-alg1":  # Theorem 9's N = M rule lives in the estimator (steps_rule)
        return {}
    k = float(constants.get("kappa_y", constants.get("kappa", 1.0)))
    agd = params.get("inner_solver", "agd" if estimator_name == "accbio" else "gd") == "agd"
    D = max(1, math.ceil(scale * (math.sqrt(k) if agd else k)))
    fast_solver = estimator_name in ("aid-cg", "accbio")
    N = max(1, math.ceil(scale * (math.sqrt(k) if fast_solver else k)))
    return {"inner_steps": D, "solver_steps": N}


def upper_bound_order(estimator_name: str, params: dict[str, Any], constants: dict[str, float], eps: float,
                      criterion: str) -> float:
    """The order of the oracle calls a method needs, from its analysis, as the product (outer iterations) x
    (calls per outer iteration), with the problem's own kappa_x = L_Phi / mu_Phi and kappa_y = L / mu_y:

    - outer GD: kappa_x log(1/eps) iterations (strongly convex Phi), 1/eps (convex, on Phi - Phi*);
      outer Nesterov (AccBiO's accelerated outer loop; Ji & Liang 2023): sqrt(kappa_x) log(1/eps), resp. 1/sqrt(eps);
    - per iteration: GD inner kappa_y, AGD inner sqrt(kappa_y) (the log of the inner accuracy dropped).

    Orders only (constants and log factors of the inner solve dropped): the figure scales each to the
    method's first measurement. NaN where no bound applies (e.g. ||grad Phi||^2 targets)."""
    kx = float(constants.get("kappa_x", float("nan")))
    ky = float(constants.get("kappa_y", constants.get("kappa", float("nan"))))
    accelerated = estimator_name in ("accbio", "accbio-alg1")
    agd_inner = params.get("inner_solver", "agd" if accelerated else "gd") == "agd"
    nesterov = accelerated
    per_iter = math.sqrt(ky) if agd_inner else ky
    if criterion != "value_gap":
        return float("nan")
    if float(constants.get("mu_x", 0.0)) > 0:
        outer = (math.sqrt(kx) if nesterov else kx) * math.log(1.0 / eps)
    else:
        L = float(constants.get("L_phi", 1.0))
        outer = math.sqrt(L / eps) if nesterov else L / eps
    return outer * per_iter


def fit_exponent(x: Any, y: Any, level: float = 0.95) -> dict[str, float]:
    """Least-squares slope of log y on log x (scipy.stats.linregress) with its t-interval at ``level``.
    NaNs with fewer than 3 points (no interval from 2)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    x, y = np.log(x[keep]), np.log(y[keep])
    if x.size < 3 or np.ptp(x) == 0:
        return {"slope": float("nan"), "lo": float("nan"), "hi": float("nan"), "stderr": float("nan"), "n": int(x.size),
                "intercept": float("nan")}
    r = stats.linregress(x, y)
    t = stats.t.ppf(0.5 + level / 2, df=x.size - 2)
    return {"slope": float(r.slope), "lo": float(r.slope - t * r.stderr), "hi": float(r.slope + t * r.stderr),
            "stderr": float(r.stderr), "n": int(x.size), "intercept": float(r.intercept)}


def calls_to_target(problem, estimator, eps: list[float], criterion: str = "auto", max_steps: int = 5000,
                    outer_lr: float | None = None, momentum: str = "auto", seed: int = 0,
                    stopping: str = "first-iterate", seeds: int = 1) -> dict[str, Any]:
    """Run the outer loop until the smallest eps is reached (or ``max_steps``) and return, per eps, the counted
    oracle calls (by kind) and the iteration of the first iterate that reaches it (None if never).

    ``stopping`` (module docstring): "first-iterate" (default; ``seeds`` must be 1), or "seed-mean" /
    "running-mean" over ``seeds`` runs (:func:`_stochastic_calls_to_target`)."""
    from blobench.core.errors import ParameterError
    from blobench.measure.outer import outer_loop

    if stopping not in STOPPING:
        raise ParameterError(f"complexity: stopping must be one of {STOPPING}, got {stopping!r}")
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise ParameterError(f"complexity: seeds must be an integer >= 1, got {seeds!r}")
    if stopping == "first-iterate" and seeds != 1:
        raise ParameterError("complexity: stopping='first-iterate' follows one trajectory (seeds=1); use "
                             "'seed-mean' or 'running-mean' to average over seeds")
    crit = resolve_criterion(problem, criterion)
    c = problem.constants
    lr = outer_lr if outer_lr is not None else 1.0 / float(c.get("L_phi", c.get("L", 1.0)))
    if stopping != "first-iterate":
        return _stochastic_calls_to_target(problem, estimator, eps, crit, max_steps, lr, momentum, seed, stopping,
                                           seeds)
    target = min(eps)
    tr = outer_loop(problem, estimator, max_steps, lr, seed=seed, momentum=momentum,
                    stop=lambda t: getattr(t, crit)[-1] <= target)
    curve = np.asarray(getattr(tr, crit), float)
    out: dict[str, Any] = {"criterion": crit, "outer_lr": lr, "iterations_run": tr.iters[-1], "diverged": tr.diverged,
                           "by_eps": {}}
    for e, i in first_hits(curve, eps).items():
        out["by_eps"][e] = None if i is None else {"iteration": tr.iters[i],
                                                   **calls_by_kind({k: tr.calls[k][i] for k in ORACLE_NAMES})}
    return out


def first_hits(curve: np.ndarray, eps: list[float]) -> dict[float, int | None]:
    """Per eps, the index of the first point of ``curve`` that is <= eps (None if none is)."""
    out: dict[float, int | None] = {}
    for e in eps:
        hit = np.nonzero(curve <= e)[0]
        out[e] = int(hit[0]) if hit.size else None
    return out


def _stochastic_calls_to_target(problem, estimator, eps: list[float], crit: str, max_steps: int, lr: float,
                                momentum: str, seed: int, stopping: str, seeds: int) -> dict[str, Any]:
    """``seeds`` full-length runs (seeds ``seed * seeds + s``); per eps the first point at which the seed-mean
    ("seed-mean") or its running average over x_0 .. x_{K-1} ("running-mean") is <= eps, with the counted
    calls up to that iterate averaged over the seeds. A run that diverges ends the common horizon there."""
    from blobench.measure.outer import outer_loop

    trs = [outer_loop(problem, estimator, max_steps, lr, seed=seed * seeds + s, momentum=momentum)
           for s in range(seeds)]
    n = min(len(tr.iters) for tr in trs)
    m = np.mean(np.asarray([getattr(tr, crit)[:n] for tr in trs], float), 0)
    if stopping == "running-mean":
        m = m[:max_steps]  # the theorem's K <= max_steps iterates x_0 .. x_{K-1}
        curve = np.cumsum(m) / np.arange(1, m.size + 1)
    else:
        curve = m
    out: dict[str, Any] = {"criterion": crit, "stopping": stopping, "seeds": seeds, "outer_lr": lr,
                           "iterations_run": trs[0].iters[n - 1], "diverged": any(tr.diverged for tr in trs),
                           "final": float(curve[-1]), "by_eps": {}}
    for e, i in first_hits(curve, eps).items():
        if i is None:
            out["by_eps"][e] = None
            continue
        calls = {k: float(np.mean([tr.calls[k][i] for tr in trs])) for k in ORACLE_NAMES}
        row = {"iteration": trs[0].iters[i], **calls_by_kind(calls)}
        if stopping == "running-mean":
            row["averaged_iterates"] = i + 1
        out["by_eps"][e] = row
    return out


def resolve_criterion(problem, criterion: str) -> str:
    if criterion != "auto":
        return criterion
    convex = "mu_x" in problem.constants and problem.stationary_points()
    return "value_gap" if convex else "grad_norm_sq"


@register_metric("complexity")
def complexity(ctx, eps: list | None = None, criterion: str = "auto", max_steps: int = 5000,
               outer_lr: float | None = None, momentum: str = "auto", budget_rule: str = "theory",
               budget_scale: float = 1.0, stopping: str = "first-iterate", seeds: int = 1) -> list[dict[str, Any]]:
    """Oracle calls (Gc(f), Gc(g), JV, HV, total) to reach Phi - Phi* <= eps (convex Phi) or ||grad Phi||^2 <= eps,
    with the problem's lower bound and the method's upper-bound order beside each (Ji & Liang 2023).
    ``stopping``/``seeds``: which iterate counts (module docstring); the stochastic rules add the columns
    ``stopping``, ``seeds`` and ``batch_size_used`` (samples = calls x batch size) to every row."""
    from blobench.core.errors import ParameterError

    eps = list(eps if eps is not None else [1e-2, 1e-4, 1e-6])
    if not eps or not all(isinstance(e, (int, float)) and not isinstance(e, bool) and e > 0 for e in eps):
        raise ParameterError(f"metric 'complexity': eps must be a non-empty list of positive numbers, got {eps!r}")
    p = ctx.problem
    c = p.constants
    overrides = theory_budget(ctx.estimator_name, ctx.estimator_params, c, budget_scale) if budget_rule == "theory" else {}
    overrides = {k: v for k, v in overrides.items() if k in type(ctx.estimator()).params}
    est = ctx.estimator(**overrides)
    res = calls_to_target(p, est, eps, criterion, max_steps, outer_lr, momentum, seed=ctx.seed, stopping=stopping,
                          seeds=seeds)
    crit = res["criterion"]
    base = {"criterion": crit, "kappa_x": c.get("kappa_x", float("nan")), "kappa_y": c.get("kappa_y", c.get("kappa")),
            "mu_x": c.get("mu_x", float("nan")), "mu_y": c.get("mu_y", c.get("mu", float("nan"))),
            "inner_steps_used": float(est.p.get("inner_steps") or float("nan")),
            "solver_steps_used": float(est.p.get("solver_steps", float("nan")) or float("nan"))}
    if stopping != "first-iterate":  # default rows keep their columns exactly
        base.update({"stopping": stopping, "seeds": float(seeds),
                     "batch_size_used": float(est.p.get("batch_size", float("nan")) or float("nan"))})
    rows: list[dict[str, Any]] = []
    lb = getattr(p, "calls_lower_bound", None)
    for e in eps:
        hit = res["by_eps"][e]
        ub = upper_bound_order(ctx.estimator_name, est.p, c, e, crit)
        row = {**base, "eps": e, "upper_bound_order": ub}
        if hit is None:
            rows.append({**row, "quantity": "calls_to_eps", "value": float("nan"), "reached": 0.0})
        else:
            rows.append({**row, "quantity": "calls_to_eps", "value": hit["total"], "reached": 1.0,
                         "iterations": float(hit["iteration"]),
                         **{f"calls_{k}": hit[k] for k in ("Gc_f", "Gc_g", "JV", "HV")},
                         **({"averaged_iterates": float(hit["averaged_iterates"])}
                            if "averaged_iterates" in hit else {})})
        if lb is not None and crit == getattr(p, "lower_bound_criterion", "value_gap"):
            rows.append({**row, "quantity": "lower_bound_calls", "value": float(lb(e))})
            thm = getattr(p, "theorem4_calls", None)  # jl-scsc: Theorem 4 with the proof's constants (Ji & Liang 2023)
            if thm is not None:
                rows.append({**row, "quantity": "theorem_bound_calls", "value": float(thm(e))})
    rows.append({**base, "quantity": "diverged", "value": float(res["diverged"])})
    return rows


complexity.params = {
    "eps": Param("list", default=None, optional=True, doc="target accuracies (default [1e-2, 1e-4, 1e-6])"),
    "criterion": Param("str", default="auto", choices=CRITERIA, doc="value_gap (convex Phi), grad_norm_sq, or auto"),
    "max_steps": Param("int", default=5000, low=1, doc="outer-iteration cap"),
    "outer_lr": Param("float", optional=True, low=0, low_open=True, doc="beta (default 1/L_phi or 1/L)"),
    "momentum": Param("str", default="auto", choices=("none", "nesterov", "auto"),
                      doc="outer Nesterov momentum; auto: as the estimator declares (AccBiO: nesterov)"),
    "budget_rule": Param("str", default="theory", choices=BUDGET_RULES,
                         doc="theory: inner/solver steps from kappa_y as each method's analysis sets them; fixed: as given"),
    "budget_scale": Param("float", default=1.0, low=0, low_open=True, doc="multiplier of the theory budgets"),
    "stopping": Param("str", default="first-iterate", choices=STOPPING,
                      doc="which iterate reaches eps: the first of one run (deterministic methods), or over `seeds` "
                          "runs the first whose seed-mean / running average of the accuracy is <= eps (stochastic)"),
    "seeds": Param("int", default=1, low=1, doc="independent runs averaged by the seed-mean / running-mean rules"),
}


# ----------------------------------------------------------------------------- figure

#: widest 95 % interval of a fitted exponent that is drawn as a slope: narrower than 1, it tells kappa from kappa^2
SLOPE_MAX_WIDTH = 1.0


def slope_text(fit: dict[str, float]) -> str:
    """A fitted exponent for a legend: "slope 1.98 [1.94, 2.03]" when its 95 % interval means something (3 or
    more points, width <= :data:`SLOPE_MAX_WIDTH`); otherwise it says why no slope is given (e.g. stocBiO
    0.90 [-1.74, 3.53] from 3 points: "no slope: 3 points, 95% interval [-1.74, 3.53] too wide")."""
    n, lo, hi = int(fit.get("n", 0)), fit.get("lo", float("nan")), fit.get("hi", float("nan"))
    if n < 3 or not (np.isfinite(lo) and np.isfinite(hi)):
        return f"no slope: {n} point(s), no interval"
    if hi - lo > SLOPE_MAX_WIDTH:
        return f"no slope: {n} points, 95% interval [{lo:.2f}, {hi:.2f}] too wide"
    return f"slope {fit['slope']:.2f} [{lo:.2f}, {hi:.2f}]"


def draw_complexity(ax: Any, df, x: str = "kappa_y", eps: float | None = None, colors: dict | None = None) -> float:
    """Draw measured oracle calls to reach eps against ``x`` on log-log axes ``ax``: one colour per estimator
    (measured points, fitted exponent with its 95% interval in the label), the problem's lower bound (black), and
    each method's upper-bound order scaled to its first measurement (dashed). ``eps`` defaults to the smallest
    target every estimator reached. Returns the eps drawn."""
    import matplotlib.pyplot as plt

    d = df[df["metric"] == "complexity"] if "metric" in df.columns else df
    meas = d[(d["quantity"] == "calls_to_eps") & d["value"].notna()]
    if eps is None:
        common = None
        for _, g in meas.groupby("estimator"):
            s = set(g["eps"].astype(float))
            common = s if common is None else common & s
        eps = min(common) if common else float(meas["eps"].min())
    default = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, g) in enumerate(sorted(meas[meas["eps"].astype(float) == eps].groupby("estimator"))):
        g = g.groupby(x, as_index=False).agg({"value": "mean", "upper_bound_order": "first"}).sort_values(x)
        fit = fit_exponent(g[x], g["value"])
        col = (colors or {}).get(name, default[i % len(default)])
        ax.loglog(g[x], g["value"], "o-", color=col,
                  label=f"{name}: {slope_text(fit)}")
        ub = g["upper_bound_order"].astype(float).to_numpy()
        if np.isfinite(ub).all() and ub[0] > 0:
            ax.loglog(g[x], ub * g["value"].iloc[0] / ub[0], "--", color=col, alpha=0.7,
                      label=f"{name} upper bound (order): slope {fit_exponent(g[x], ub)['slope']:.2f}")
    lbr = d[(d["quantity"] == "lower_bound_calls") & (d["eps"].astype(float) == eps)]
    if len(lbr):
        lbg = lbr.groupby(x)["value"].max().sort_index()
        fit = fit_exponent(lbg.index, lbg.to_numpy())
        ax.loglog(lbg.index, lbg.to_numpy(), "k-", lw=2,
                  label=f"lower bound (zero-respecting span): slope {fit['slope']:.2f} [{fit['lo']:.2f}, {fit['hi']:.2f}]")
    ax.set_xlabel(x)
    ax.set_ylabel(f"oracle calls to reach eps = {eps:g}")
    return float(eps)


def calls_table(df) -> "Any":
    """One row per estimator, one column per eps: counted oracle calls to reach eps (mean over the rows of a cell
    group), with the outer iterations in parentheses, "not reached" for a censored row (reached = 0) and a final
    column with the cell's own divergence flag. Used by the report for slices without a condition-number sweep."""
    import pandas as pd

    d = df[df["metric"] == "complexity"] if "metric" in df.columns else df
    meas = d[d["quantity"] == "calls_to_eps"]
    eps_all = sorted({float(e) for e in meas["eps"]}, reverse=True)
    rows = []
    for name, g in sorted(meas.groupby("estimator")):
        row: dict[str, Any] = {"estimator": name}
        for e in eps_all:
            h = g[g["eps"].astype(float) == e]
            vals = pd.to_numeric(h["value"], errors="coerce")
            if h.empty:
                row[f"eps={e:g}"] = ""
            elif vals.notna().all():
                its = pd.to_numeric(h.get("iterations"), errors="coerce").mean() if "iterations" in h else float("nan")
                row[f"eps={e:g}"] = f"{vals.mean():.4g}" + (f" ({its:.0f} it)" if its == its else "")
            else:
                row[f"eps={e:g}"] = "not reached" if vals.isna().all() else f"{int(vals.notna().sum())}/{len(vals)} reached"
        dv = pd.to_numeric(d[(d["quantity"] == "diverged") & (d["estimator"] == name)]["value"], errors="coerce")
        row["diverged"] = "yes" if bool((dv > 0).any()) else "no"
        rows.append(row)
    return pd.DataFrame(rows)


def draw_calls_vs_eps(ax: Any, df, colors: dict | None = None) -> None:
    """Measured oracle calls against 1/eps on log-log axes, one line per estimator over the targets it reached
    (fitted exponent in 1/eps with its 95% interval in the label from three targets on; the slope through the two
    points from two)."""
    import matplotlib.pyplot as plt

    d = df[df["metric"] == "complexity"] if "metric" in df.columns else df
    meas = d[(d["quantity"] == "calls_to_eps") & d["value"].notna()]
    default = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, g) in enumerate(sorted(meas.groupby("estimator"))):
        g = g.assign(inv=1.0 / g["eps"].astype(float)).groupby("inv", as_index=False)["value"].mean().sort_values("inv")
        col = (colors or {}).get(name, default[i % len(default)])
        if len(g) >= 3:
            fit = fit_exponent(g["inv"], g["value"])
            label = f"{name}: slope {fit['slope']:.2f} [{fit['lo']:.2f}, {fit['hi']:.2f}]"
        elif len(g) == 2:  # two targets: the slope through both points, no interval
            lx, ly = np.log(g["inv"].to_numpy(float)), np.log(g["value"].to_numpy(float))
            label = f"{name}: slope {(ly[1] - ly[0]) / (lx[1] - lx[0]):.2f} (2 targets)"
        else:
            label = f"{name} (one target reached)"
        ax.loglog(g["inv"], g["value"], "o-", color=col, label=label)
    ax.set_xlabel("1 / eps")
    ax.set_ylabel("oracle calls to reach eps")


def plot_complexity(df, path_without_ext: str, x: str = "kappa_y", eps: float | None = None) -> list[str]:
    """:func:`draw_complexity` on a figure of its own, written as ``path_without_ext`` + ".png" and ".svg"."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    draw_complexity(ax, df, x, eps)
    ax.set_title("Oracle complexity against the bounds (Ji & Liang 2023)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths = []
    for ext in ("png", "svg"):
        path = f"{path_without_ext}.{ext}"
        fig.savefig(path, dpi=80)
        paths.append(path)
    plt.close(fig)
    return paths


def split_counters(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A batched estimator state as (per-run part, shared part): 0-dim per-run entries equal in every run (step
    counters such as VRBO's k or SRBA's t, which the estimators read with ``int()``) go unbatched."""
    shared = {k: v[0] for k, v in state.items() if v.dim() == 1 and bool((v == v[0]).all())}
    return {k: v for k, v in state.items() if k not in shared}, shared


def running_mean_runs(problem, estimator, eps: list[float], max_steps: int, outer_lr: float, seeds: int,
                      seed: int = 0, stop_at_target: bool = True) -> dict[str, Any]:
    """:func:`calls_to_target`'s ``stopping="running-mean"`` rule on ||grad Phi||^2 with the ``seeds`` runs
    vectorised: one ``torch.func.vmap``-ed estimator call per outer step for all runs (each run's noise drawn as
    :func:`blobench.measure.outer.outer_loop` draws it for seed ``seed * seeds + s``; constant step, no momentum), and,
    with ``stop_at_target``, no step past the first K at which the running average (1/K) sum_{k<K} mean_s
    ||grad Phi(x_k^s)||^2 (exact, ``problem.hypergradient``) is <= min(eps), nor past the first step at which the sum
    so far over ``max_steps`` exceeds min(eps) (every running average over K <= max_steps iterates is then above it,
    since the terms are >= 0): later iterates cannot change any eps's first K. Returns the same fields as
    :func:`calls_to_target` (``final``: the running average where the run stopped); K and the counted calls equal
    the sequential rule's, the iterates agree to rounding (vmapped kernels). The calls are one run's, counted by the
    oracle layer (a vmapped call counts once)."""
    import torch
    from torch.func import vmap

    from blobench.core.oracles import Oracles

    o = Oracles(problem)
    runs = [seed * seeds + s for s in range(seeds)]
    draws = [estimator.draw(problem, torch.Generator().manual_seed(int(s)), max_steps) or {} for s in runs]
    noise = {k: torch.stack([d[k] for d in draws], 1) for k in draws[0]}  # [steps, runs, ...]
    x = problem.x0().expand(seeds, -1).clone()
    truth = vmap(problem.hypergradient)

    def first(x_, n_):
        r = estimator.estimate(o, x_, n_, None)
        return r.grad, r.state

    def step(x_, n_, batched, shared):
        r = estimator.estimate(o, x_, n_, {**batched, **shared})
        return r.grad, r.state

    first_v, step_v = vmap(first), vmap(step, in_dims=(0, 0, 0, None))
    calls = {k: [0.0] for k in ORACLE_NAMES}
    total, curve, state, diverged = 0.0, [], None, False
    target = min(eps)
    for t in range(max_steps):
        g2 = float((truth(x) ** 2).sum(1).mean())
        total += g2
        curve.append(total / (t + 1))
        if not math.isfinite(g2):
            diverged = True
            break
        if t == max_steps - 1:
            break
        if stop_at_target and (curve[-1] <= target or total / max_steps > target):
            break  # reached, or out of reach: every later K's running average is >= total / max_steps > target
        nz = {k: v[t] for k, v in noise.items()}
        o.reset()
        if state is None:
            d, state = first_v(x, nz)
        else:
            d, state = step_v(x, nz, *split_counters(state))
        counted = o.snapshot()
        for k in ORACLE_NAMES:
            calls[k].append(calls[k][-1] + float(counted[k]))
        x = x - outer_lr * d
    arr = np.asarray(curve, float)
    out: dict[str, Any] = {"criterion": "grad_norm_sq", "stopping": "running-mean", "seeds": seeds, "outer_lr": outer_lr,
                           "iterations_run": len(curve) - 1, "diverged": diverged, "final": float(arr[-1]),
                           "by_eps": {}}
    for e, i in first_hits(arr, eps).items():
        out["by_eps"][e] = None if i is None else {"iteration": i, "averaged_iterates": i + 1,
                                                   **calls_by_kind({k: calls[k][i] for k in ORACLE_NAMES})}
    return out
