"""Section: outer-loop convergence (metric ``convergence``), one figure per experiment, plus the landscape of
one-dimensional problems.

Rows of the figure: the quantities the problem has (||grad Phi(x_t)||^2 always; Phi(x_t) - Phi* and the
distance to the nearest stationary point only where they are known, i.e. finite); columns: outer iteration,
cumulative oracle calls, wall-clock time. Mean over seeds with a 95 % band (mean +- 1.96 s.e.m.) where an
experiment has >= 2 seeds (stochastic curves; deterministic duplicates are removed before, see
``base.dedup_deterministic``).
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch

from blobench.report import style
from blobench.report.base import Context, experiments, labelled, legend_labels, ok, params, section, with_params
from blobench.report.page import Doc, slug as anchor_slug

QUANTITIES = ("grad_norm_sq", "value_gap", "dist_stationary")
#: plain-text names (captions, tables)
PLAIN = {"grad_norm_sq": "||grad Phi(x_t)||^2", "value_gap": "Phi(x_t) - Phi*", "dist_stationary": "distance to nearest stationary point"}
#: axis labels in mathtext (the plain-text names stay in tables); ``target_labels`` swaps Phi for M^(r) on
#: algorithm-based (unrolled) problems, whose objective is the r-step meta-objective (DESIGN.md, ABLO)
LABELS = {"grad_norm_sq": r"$\|\nabla\Phi(x_t)\|^2$", "value_gap": r"$\Phi(x_t) - \Phi^*$",
          "dist_stationary": r"$\mathrm{dist}(x_t, \mathcal{X}^*)$ (nearest stationary point)"}
UNROLLED_LABELS = {"grad_norm_sq": r"$\|\nabla M^{(r)}(x_t)\|^2$", "value_gap": r"$M^{(r)}(x_t) - M^{(r)*}$",
                   "dist_stationary": LABELS["dist_stationary"]}
#: quantities drawn on a log axis whenever they have positive values (non-positive ones are left out of the line)
ALWAYS_LOG = ("grad_norm_sq", "value_gap", "dist_stationary")


def target_kind(problem: str, pparams: dict) -> str:
    """"argmin" or "unrolled": the problem's ``target.kind`` ("argmin" where the problem cannot be built)."""
    try:
        from blobench.report.base import problem_instance

        return str(getattr(problem_instance(problem, json.dumps(pparams, sort_keys=True)).target, "kind", "argmin"))
    except Exception:  # an unknown plugin or bad params: the bilevel default
        return "argmin"


def target_labels(problem: str, pparams: dict) -> dict[str, str]:
    return UNROLLED_LABELS if target_kind(problem, pparams) == "unrolled" else LABELS


def with_calls_total(c: pd.DataFrame) -> pd.DataFrame:
    """``c`` with ``calls_total``: the cumulative oracle calls of all kinds (the ``calls_*`` columns, missing as 0)."""
    calls = [k for k in c.columns if k.startswith("calls_")]
    return c.assign(calls_total=c[calls].fillna(0).sum(axis=1) if calls else np.nan)


def curves(c: pd.DataFrame, xcol: str) -> pd.DataFrame:
    """Mean over seeds of (x, value) per (estimator config, iteration), with a 95 % normal band.

    (One grouping and pandas' own mean/std kernels: the same numbers as a named ``agg``, in half the time.)"""
    keys = ["estimator", "estimator_params", "problem_params", "iteration"]
    g = c[keys + ([xcol] if xcol not in keys else []) + ["value"]].groupby(keys)
    m = g.mean()
    x = m[xcol] if xcol in m else pd.Series(m.index.get_level_values(xcol).to_numpy(dtype=float), index=m.index)
    r = pd.DataFrame({"x": x, "y": m["value"], "sd": g["value"].std(), "n": g.size()}).reset_index()
    half = 1.96 * r["sd"].fillna(0) / np.sqrt(r["n"].clip(lower=1))
    r["lo"], r["hi"] = r["y"] - half, r["y"] + half
    return r.sort_values(["estimator", "estimator_params", "iteration"])


def _figure(ctx: Context, name: str, cp: pd.DataFrame, labels: dict, stem: str) -> dict | None:
    cp = cp.assign(value=pd.to_numeric(cp["value"], errors="coerce"))
    qs = [q for q in QUANTITIES if np.isfinite(cp.loc[cp["quantity"] == q, "value"]).any()]
    if not qs:
        return None
    calls = [k for k in cp.columns if k.startswith("calls_")]
    xs = [("iteration", r"outer iteration $t$", None)]
    if calls and cp[calls].notna().any().any():
        cp = with_calls_total(cp)
        xs.append(("calls_total", "oracle calls (all kinds, cumulative)", None))
    if "seconds_elapsed" in cp and cp["seconds_elapsed"].notna().any():
        xs.append(("seconds_elapsed", "wall-clock time", "seconds"))
    nseeds = int(cp["seed"].nunique()) if "seed" in cp else 1
    # an experiment sweeping problem parameters: one line per problem configuration, named by what varies
    pps = {pp: params(pp) for pp in cp["problem_params"].dropna().unique()}
    pkeys = sorted({k for p in pps.values() for k in p})
    pvary = [k for k in pkeys if len({json.dumps(p.get(k), default=str) for p in pps.values()}) > 1]
    common = {k: v for k, v in next(iter(pps.values()), {}).items() if k not in pvary}

    def label(est: str, ep: str, pp: str) -> str:
        lab = labels.get((est, ep, pp), est)
        return lab + (" / " + ", ".join(f"{k}={pps[pp].get(k)}" for k in pvary) if pvary else "")

    with style.themed():
        fig, axes = style.new_figure(len(qs), len(xs), w=4.3, h=3.1, legend_rows=1)
        ylabels = target_labels(str(cp["problem"].iloc[0]), next(iter(pps.values()), {}))
        for row, qn in zip(axes, qs):
            cq = cp[(cp["quantity"] == qn) & cp["value"].notna()]
            for ax, (xcol, xlab, unit) in zip(row, xs):
                cur = curves(cq, xcol)
                pos = cq["value"][cq["value"] > 0]
                log = style.log_if_positive(ax, pos) or (qn in ALWAYS_LOG and style.force_log(ax, pos))
                for i, ((est, ep, pp), g) in enumerate(cur.groupby(["estimator", "estimator_params",
                                                                     "problem_params"])):
                    ls, mk = ctx.ls(est), ctx.marker(est)
                    y = g["y"].where(g["y"] > 0) if log else g["y"]
                    if pvary:  # estimator -> colour and marker; problem configuration -> line style
                        ls = style.LINESTYLES[list(pps).index(pp) % len(style.LINESTYLES)]
                    ax.plot(g["x"], y, ls, color=ctx.color(est), marker=mk, ms=3.5,
                            markevery=max(1, len(g) // 8), label=label(est, ep, pp))
                    if nseeds > 1:
                        style.band(ax, g["x"], g["lo"], g["hi"], ctx.color(est))
                ax.set_xlabel(xlab)
                style.unit_axis(ax, unit, axis="x")
                ax.set_ylabel(ylabels[qn])
                if log:
                    style.tidy_log_axis(ax)
        style.legend_outside(fig, list(axes.flat))
        fig.suptitle(f"{name}: {with_params(cp['problem'].iloc[0], common)}"
                     + (f" (lines: {', '.join(pvary)})" if pvary else ""))
        missing = [PLAIN[q] for q in QUANTITIES if q not in qs]
        cap = (f"{name}: convergence versus iterations, oracle calls and time; mean over {nseeds} seed(s)"
               + (", band: 95% CI of the mean over seeds" if nseeds > 1 else " (one seed: no band)")
               + (f"; not drawn (unknown for this problem): {', '.join(missing)}" if missing else ""))
        return style.save(fig, ctx.out, stem, cap, "convergence")


#: the target of the "to eps" columns: this fraction of the mean ||grad Phi(x_0)||^2 of the experiment
REACH_FRACTION = 1e-3


NOT_REACHED = "not reached"


def settle_index(y: np.ndarray, eps: float) -> tuple[int | None, int | None]:
    """(first index from which every later value of ``y`` is <= eps, first index where y <= eps at all).

    The first crossing alone is no convergence: a method that dips below eps and comes back (an oscillating or
    biased method, e.g. FO on a toy problem) would look fastest. NaN counts as above eps."""
    below = np.asarray(y, float) <= eps
    first = int(np.argmax(below)) if below.any() else None
    if not below.size or not below[-1]:
        return None, first
    above = np.flatnonzero(~below)
    return (int(above[-1]) + 1 if above.size else 0), first


def to_target(cp: pd.DataFrame, fraction: float = REACH_FRACTION) -> tuple[pd.DataFrame, str]:
    """Per (problem, estimator) label: the first evaluated iteration AFTER WHICH the seed-mean ||grad Phi(x_t)||^2
    stays <= eps = ``fraction`` x the experiment's mean ||grad Phi(x_0)||^2 (:func:`settle_index`), with the
    cumulative oracle calls and seconds there (means over seeds), and ``eps_note``: "not reached", or, for a
    curve that crossed eps earlier and left it again, where it first crossed. Returns the table and the
    caption's description of eps."""
    g = cp[(cp["quantity"] == "grad_norm_sq")].assign(value=lambda d: pd.to_numeric(d["value"], errors="coerce"))
    g = g[g["value"].notna()]
    if g.empty or not (g["iteration"] == 0).any():
        return pd.DataFrame(), ""
    eps = fraction * float(g.loc[g["iteration"] == 0, "value"].mean())
    g = with_calls_total(g)
    if "seconds_elapsed" not in g:
        g = g.assign(seconds_elapsed=np.nan)
    rows = []
    for (pl, el), h in g.groupby(["problem_label", "estimator_label"]):
        m = h.groupby("iteration").agg(y=("value", "mean"), calls=("calls_total", "mean"),
                                       secs=("seconds_elapsed", "mean")).sort_index()
        settled, first = settle_index(m["y"].to_numpy(), eps)
        if settled is None:
            note = NOT_REACHED + (f" (crossed eps at t={m.index[first]:g}, left it again)" if first is not None else "")
            row = {"iteration_to_eps": NOT_REACHED, "calls_to_eps": NOT_REACHED, "seconds_to_eps": NOT_REACHED}
        else:
            at = m.iloc[settled]
            note = (f"crossed eps first at t={m.index[first]:g}, left it again" if first is not None and first < settled
                    else "")
            row = {"iteration_to_eps": float(m.index[settled]), "calls_to_eps": float(at["calls"]),
                   "seconds_to_eps": float(at["secs"]) if np.isfinite(at["secs"]) else "-"}
        rows.append({"problem": pl, "estimator": el, **row, "eps_note": note})
    return pd.DataFrame(rows), (f"; to eps: first evaluated iteration after which the seed-mean ||grad Phi||^2 "
                                f"stays <= {eps:.3g} ({fraction:g} x the initial value)")


def best_worst(ctx: Context, name: str, t: pd.DataFrame, col: str, what: str, anchor: str) -> None:
    """Add "best and worst method of this slice" (lowest and highest ``col``, finite values only) to the findings."""
    if t.empty or col not in t or "estimator" not in t:
        return
    v = pd.to_numeric(t[col], errors="coerce")
    ok_ = t[np.isfinite(v)].assign(_v=v[np.isfinite(v)])
    if ok_["estimator"].nunique() < 2:  # one method (a sweep of problem parameters): nothing to rank
        return
    b, w = ok_.loc[ok_["_v"].idxmin()], ok_.loc[ok_["_v"].idxmax()]
    one = t["problem"].nunique() == 1
    ctx.findings.append((f"{name}: best {b['estimator']}" + ("" if one else f" on {b['problem']}")
                         + f" ({what} {b['_v']:.3g}), worst {w['estimator']}" + ("" if one else f" on {w['problem']}")
                         + f" ({w['_v']:.3g})" + (f" on {b['problem']}" if one else ""), anchor_slug(anchor)))


@section("convergence", order=40)
def render(ctx: Context, doc: Doc) -> None:
    d = ok(ctx.df, "convergence")
    if d.empty or "iteration" not in d:
        return
    ctx.done.add("convergence")
    doc.h(2, "Outer-loop convergence (convergence)", anchor="convergence")
    c = labelled(d[d["quantity"].isin(QUANTITIES) & d["iteration"].notna()])
    n = 0
    for name, cp in experiments(c, ctx.experiment_order):
        doc.h(3, name, anchor=f"convergence-{name}")
        rec = _figure(ctx, name, cp, legend_labels(cp), f"convergence_{name}")
        if rec:
            n += 1
            ctx.figures.append(rec)
            doc.img(rec["png"], rec["caption"], rec["svg"])
        last = cp.sort_values("iteration").groupby(["problem_label", "estimator_label", "seed", "quantity"]).tail(1)
        t = last.pivot_table(index=["problem_label", "estimator_label"], columns="quantity", values="value",
                             aggfunc="mean").reset_index().rename(columns={"problem_label": "problem",
                                                                           "estimator_label": "estimator"})
        div = labelled(d[(d["quantity"] == "diverged") & d["key"].isin(cp["key"])])
        if not div.empty and not t.empty:
            dv = div.groupby(["problem_label", "estimator_label"])["value"].sum().rename("diverged_seeds").reset_index()
            t = t.merge(dv.rename(columns={"problem_label": "problem", "estimator_label": "estimator"}),
                        on=["problem", "estimator"], how="left")
        reach, eps_txt = to_target(cp)
        if not reach.empty and not t.empty:
            t = t.merge(reach, on=["problem", "estimator"], how="left")
        best_worst(ctx, name, t, "grad_norm_sq", "final ||grad Phi||^2", f"convergence-{name}")
        with doc.details(f"{name}: final values (mean over seeds){eps_txt}"):
            doc.table(t)


@section("landscape", order=45)
def landscape(ctx: Context, doc: Doc) -> None:
    """For one-dimensional problems with convergence cells: Phi (M^(r) for unrolled problems) over x with each
    estimator's outer-loop end point marked, and the first-order fixed point where the problem knows it
    (the UFO-BLO counterexample, Likhosherstov et al. 2021, Sec. 3)."""
    from blobench.core import api

    c = ok(ctx.df, "convergence")
    if c.empty or "quantity" not in c:
        return
    ends = c[c["quantity"] == "x_final"]
    if ends.empty:
        return
    groups = [(k, g) for k, g in ends.groupby(["problem", "problem_params"]) if g["coord"].max() == 0]
    if not groups:
        return
    with style.themed():
        fig, axes = style.new_figure(1, len(groups), w=6.0, h=4.0, legend_rows=1)
        for ax, ((pname, pparams), g) in zip(axes[0], groups):
            prob = api.problem(pname, **params(pparams))
            xs = pd.to_numeric(g["value"]).to_numpy()
            lo, hi = min(xs.min(), -10.0), max(xs.max(), 30.0)
            grid = np.linspace(lo, hi, 400)
            val = lambda v: float(prob.value(torch.tensor([v], dtype=torch.float64)))  # noqa: E731
            style.reference_line(ax.plot(grid, [val(v) for v in grid], color="0.3", lw=1.3,
                                         label=r"$M^{(r)}(x)$" if target_kind(pname, params(pparams)) == "unrolled"
                                         else r"$\Phi(x)$")[0])
            for est, ge in g.groupby("estimator"):
                xe = pd.to_numeric(ge["value"]).to_numpy()
                ax.scatter(xe, [val(v) for v in xe], color=ctx.color(est), s=45, zorder=3,
                           label=f"{est} end point(s)")
            fo_fp = getattr(prob, "fo_fixed_point", None)
            if callable(fo_fp):
                xf = float(fo_fp().reshape(-1)[0])
                style.reference_line(ax.axvline(xf, color="0.5", ls=":", label=f"FO fixed point x={xf:.3g}"))
            for sp in prob.stationary_points():
                style.reference_line(ax.axvline(float(sp.reshape(-1)[0]), color="0.7", ls="--", lw=0.9,
                                                label="stationary point"))
            ax.set_xlabel(r"$x$ (outer variable)")
            ax.set_ylabel(r"$M^{(r)}(x)$ (loss units)" if target_kind(pname, params(pparams)) == "unrolled"
                          else r"$\Phi(x)$ (loss units)")
            ax.set_title(with_params(pname, params(pparams)))
        style.legend_outside(fig, axes[0])
        rec = style.save(fig, ctx.out, "landscape", "objective landscape with end points", "convergence")
    ctx.figures.append(rec)
    doc.h(3, "Objective with end points (one-dimensional problems)", anchor="landscape")
    doc.p("Phi over x with each estimator's final outer iterate; dashed: known stationary points; dotted: the point "
          "where the first-order update vanishes in expectation.")
    doc.img(rec["png"], rec["caption"], rec["svg"])
