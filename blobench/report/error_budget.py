"""Section: hypergradient error versus budget (metric ``error_vs_budget``), one figure per experiment.

||estimate - grad Phi|| against the swept budget on a log axis; each theory line (dotted, anchored at the first
measured point) is labelled with its source; the table gives the fitted geometric rate
(the asymptotic tail fit of ``blobench.measure.rates``, recomputed from the error rows, with its interval) beside
the theoretical bound; a rate whose whole interval lies above its bound is flagged in red with both values.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from blobench.report import style
from blobench.report.base import Context, experiments, labelled, legend_labels, ok, params, section
from blobench.report.convergence import best_worst
from blobench.report.page import Doc
from blobench.measure.rates import METHOD, asymptotic_rate
from blobench.report.theory import SHORT, rate_violation, theoretical_rate


def _get(r: pd.Series, col: str) -> float | None:
    v = r.get(col)
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _tail_fit(errors: pd.DataFrame, key: Any, bound: float) -> Any:
    """The asymptotic rate of one cell's error rows (blobench.measure.rates, the rule the metric and the claims
    use), recomputed here so that a run recorded under an older rule is judged by the current one."""
    if errors.empty or key is None or "key" not in errors:
        return None
    e = errors[errors["key"] == key]
    if e.empty:
        return None
    g = e.groupby("budget")["value"].mean()
    return asymptotic_rate(g.index.to_numpy(float), g.to_numpy(float), bound=bound)


def rate_table(d: pd.DataFrame) -> pd.DataFrame:
    """One row per fitted rate: the asymptotic rate (tail fit, with its interval), the predicted bound, its
    source, the verdict (a violation only when the whole interval lies above the bound), and the whole-range
    log-linear fit for reference."""
    theory_rows = d[d["quantity"] == "theoretical_rate"]
    fits = labelled(d[d["quantity"] == "fitted_rate"])
    errors = d[(d["quantity"] == "error") & d["budget"].notna()] if "budget" in d else d.iloc[0:0]
    if not errors.empty:
        errors = errors.assign(budget=pd.to_numeric(errors["budget"], errors="coerce"),
                               value=pd.to_numeric(errors["value"], errors="coerce"))
    labels = legend_labels(d)
    rows = []
    for _, r in fits.iterrows():
        bp = str(r.get("budget_param"))
        bound, src = _get(r, "rate_bound"), str(r.get("rate_source") or "") or None
        if bound is None:
            tr = theory_rows[theory_rows["key"] == r["key"]] if "key" in theory_rows else theory_rows.iloc[0:0]
            if len(tr):
                bound, src = float(tr["value"].iloc[0]), src or "recorded by the metric"
            else:
                t = theoretical_rate(r["problem"], params(r.get("problem_params")), r["estimator"],
                                     params(r.get("estimator_params")), bp)
                bound, src = (t if t else (float("nan"), "-"))
        fit = _tail_fit(errors, r.get("key"), bound)
        if fit is not None:
            rate, lo, hi, n = fit.rate, fit.rate_lo, fit.rate_hi, fit.points
            viol = fit.rate_violation
        else:  # no error rows (an exported table): the recorded tail columns, else the recorded fit
            rate = _get(r, "rate") if _get(r, "rate") is not None else float(r["value"])
            lo, hi, n = _get(r, "rate_lo"), _get(r, "rate_hi"), _get(r, "rate_points")
            viol = rate_violation(rate, bound, lo)
        lo = float("nan") if lo is None else lo
        hi = float("nan") if hi is None else hi
        row = {"problem": r["problem_label"], "estimator": r["estimator_label"],
               "label": labels.get((r["estimator"], r["estimator_params"], r["problem_params"]), r["estimator"]),
               "budget": bp, "seed": r.get("seed"), "asymptotic_rate": rate,
               "95% CI": f"[{lo:.5g}, {hi:.5g}]" if math.isfinite(lo) and math.isfinite(hi) else
               "- (too few budgets for an interval)",
               "tail points": int(n) if n is not None and math.isfinite(n) else None,
               "theoretical_rate": bound, "theory (upper bound)": src,
               "whole-range fit": float(r["value"])}
        if viol:
            verdict = f"VIOLATION: {rate:.5g} [{lo:.5g}, {hi:.5g}] > predicted {bound:.5g}"
        elif not math.isfinite(bound):
            verdict = "no bound"
        elif not math.isfinite(lo):
            verdict = "not tested (no interval)"
        else:
            verdict = "within bound"
        row.update({"verdict": verdict, "_flag": viol})
        rows.append(row)
    t = pd.DataFrame(rows)
    if not t.empty:
        t = t.sort_values(["problem", "budget", "estimator"], kind="stable").reset_index(drop=True)
    return t


def _figure(ctx: Context, name: str, err: pd.DataFrame, labels: dict, stem: str) -> dict | None:
    panels = sorted(err.groupby(["problem_label", "budget_param"]).groups.keys())
    if not panels:
        return None
    nrow, ncol = style.grid_shape(len(panels))
    with style.themed():
        fig, axes = style.new_figure(nrow, ncol, w=5.4 if ncol > 1 else 6.4, h=3.8, legend_rows=2)
        flat = list(axes.flat)
        for ax, (pl, bp) in zip(flat, panels):
            sub = err[(err["problem_label"] == pl) & (err["budget_param"] == bp)]
            for i, ((est, ep, pp), g0) in enumerate(sorted(sub.groupby(["estimator", "estimator_params",
                                                                        "problem_params"]), key=lambda t: t[0])):
                lab = labels.get((est, ep, pp), est)
                g = g0.groupby("budget", as_index=False)["value"].mean().sort_values("budget")
                g = g[g["value"] > 0]  # an exact zero error has no place on a log axis: it stays in the table
                if g.empty:
                    continue
                ls, mk = ctx.ls(est), ctx.marker(est)
                ax.plot(g["budget"], g["value"], ls, marker=mk, ms=4, color=ctx.color(est), label=f"{lab}")
                t = theoretical_rate(g0["problem"].iloc[0], params(pp), est, params(ep), bp)
                if t is not None:
                    b0, e0 = float(g["budget"].iloc[0]), float(g["value"].iloc[0])
                    bb = np.linspace(b0, float(g["budget"].max()), 50)
                    yy = e0 * t[0] ** (bb - b0)
                    keep = yy >= g["value"].min() / 100  # the theory line stops two decades under the data
                    style.reference_line(ax.plot(bb[keep], yy[keep], color=ctx.color(est), lw=1.2, alpha=0.85,
                                                 ls=(0, (1, 1.5)),
                                                 label=f"{est} theory {t[0]:.3g} ({SHORT.get(t[1], t[1])})")[0])
            style.log_if_positive(ax, sub["value"][sub["value"] > 0])
            ax.set_xlabel(f"budget: {bp} (iterations)")
            ax.set_ylabel(r"$\|\hat{g} - \nabla\Phi(x)\|$")
            if ax.get_yscale() == "log":
                style.tidy_log_axis(ax)
            ax.set_title(pl)
        style.drop_unused(flat, len(panels))
        style.legend_outside(fig, flat, ncol=2)
        cap = (f"{name}: hypergradient error versus budget (log y); dotted: the theoretical geometric rate with "
               "its source, anchored at the first measured point")
        return style.save(fig, ctx.out, stem, cap, "error_vs_budget")


@section("error_vs_budget", order=20)
def render(ctx: Context, doc: Doc) -> None:
    d = ok(ctx.df, "error_vs_budget")
    if d.empty:
        return
    ctx.done.add("error_vs_budget")
    doc.h(2, "Error versus budget (error_vs_budget)", anchor="error_vs_budget")
    doc.p(f"Asymptotic geometric rate ({METHOD}; blobench.measure.rates: the theorems bound the rate as the "
          "budget grows, so the first budgets are left out and a polynomial prefactor is fitted beside it) with "
          "its 95% interval, beside the theoretical upper bound and its source. A rate is flagged in red only when "
          "its whole interval lies above the bound. The whole-range log-linear fit is shown for reference.")
    table = rate_table(d)
    flagged = table[table["_flag"]] if not table.empty else table
    for _, f in flagged.iterrows():
        src = f["theory (upper bound)"]
        ctx.violations.append({"section": "error_vs_budget", "anchor": "error_vs_budget",
                               "what": f"{f['problem']} / {f['estimator']} / {f['budget']}",
                               "measured": f["asymptotic_rate"], "predicted": f["theoretical_rate"], "source": src})
        doc.flag(f"{f['problem']}, {f['estimator']}, budget {f['budget']}: asymptotic rate "
                 f"{f['asymptotic_rate']:.5g} {f['95% CI']} exceeds the theoretical bound {f['theoretical_rate']:.5g} ({src})")
    shown = table.drop(columns=["label"]) if not table.empty else table
    if "theoretical_rate" in shown:  # no bound is "-", not "nan" (issue 26)
        shown = shown.assign(theoretical_rate=[v if isinstance(v, (int, float)) and math.isfinite(v) else "-"
                                               for v in shown["theoretical_rate"]])
    doc.table(shown)
    err = labelled(d[(d["quantity"] == "error") & d["budget"].notna()])
    if err.empty:
        return
    err = err.assign(budget=err["budget"].astype(float), value=pd.to_numeric(err["value"], errors="coerce"))
    for i, (name, e) in enumerate(experiments(err, ctx.experiment_order)):
        doc.h(3, f"{name}", anchor=f"error_vs_budget-{name}")
        rec = _figure(ctx, name, e, legend_labels(e), f"error_vs_budget_{name}")
        if rec:
            ctx.figures.append(rec)
            doc.img(rec["png"], rec["caption"], rec["svg"])
        top = e[e["budget"] == e["budget"].max()].groupby(["problem_label", "estimator_label"], as_index=False)["value"].mean()
        best_worst(ctx, name, top.rename(columns={"problem_label": "problem", "estimator_label": "estimator"}),
                   "value", f"error at budget {e['budget'].max():g}", f"error_vs_budget-{name}")
        with doc.details("errors per budget (table)"):
            t = e.pivot_table(index=["problem_label", "estimator_label"], columns="budget", values="value",
                              aggfunc="mean").reset_index().rename(columns={"problem_label": "problem",
                                                                            "estimator_label": "estimator"})
            t.columns = [c if isinstance(c, str) else f"{c:g}" for c in t.columns]
            doc.table(t)
