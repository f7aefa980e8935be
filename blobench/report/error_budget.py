"""Section: hypergradient error versus budget (metric ``error_vs_budget``), one figure per experiment.

||estimate - grad Phi|| against the swept budget on a log axis; each theory line (dotted, anchored at the first
measured point) is labelled with its source; the table gives the fitted geometric rate
(``measures.fit_geometric_rate``, with its interval when the metric records ``rate_lo``/``rate_hi``) beside
the theoretical bound, and a fitted rate above its bound is flagged in red with both values.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from blobench.report import style
from blobench.report.base import Context, experiments, labelled, legend_labels, ok, params, section
from blobench.report.page import Doc
from blobench.report.theory import SHORT, rate_violation, theoretical_rate


def _get(r: pd.Series, col: str) -> float | None:
    v = r.get(col)
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def rate_table(d: pd.DataFrame) -> pd.DataFrame:
    """One row per fitted rate: measured (with interval), predicted bound, its source, the verdict."""
    theory_rows = d[d["quantity"] == "theoretical_rate"]
    fits = labelled(d[d["quantity"] == "fitted_rate"])
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
        fitted, lo, hi = float(r["value"]), _get(r, "rate_lo"), _get(r, "rate_hi")
        viol = rate_violation(fitted, bound, lo, r.get("rate_violation") if "rate_violation" in r else None)
        row = {"problem": r["problem_label"], "estimator": r["estimator_label"],
               "label": labels.get((r["estimator"], r["estimator_params"], r["problem_params"]), r["estimator"]),
               "budget": bp, "seed": r.get("seed"), "fitted_rate": fitted}
        if lo is not None or hi is not None:
            row["fitted 95% CI"] = f"[{lo:.4g}, {hi:.4g}]" if lo is not None and hi is not None else "-"
        row.update({"theoretical_rate": bound, "theory (upper bound)": src,
                    "verdict": ("VIOLATION: measured %.4g > predicted %.4g" % (fitted, bound)) if viol else
                    ("within bound" if math.isfinite(bound) else "no bound"), "_flag": viol})
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
                ls, mk = style.style_cycle(i)
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
            ax.set_ylabel("||estimate - grad Phi(x)||")
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
    doc.p("Fitted geometric rate (least squares on log error, errors above 1e-13) beside the theoretical upper "
          "bound and its source; a fitted rate above its bound is flagged in red.")
    table = rate_table(d)
    flagged = table[table["_flag"]] if not table.empty else table
    for _, f in flagged.iterrows():
        src = f["theory (upper bound)"]
        ctx.violations.append({"section": "error_vs_budget", "anchor": "error_vs_budget",
                               "what": f"{f['problem']} / {f['estimator']} / {f['budget']}",
                               "measured": f["fitted_rate"], "predicted": f["theoretical_rate"], "source": src})
        doc.flag(f"{f['problem']}, {f['estimator']}, budget {f['budget']}: fitted rate {f['fitted_rate']:.4g} "
                 f"exceeds the theoretical bound {f['theoretical_rate']:.4g} ({src})")
    doc.table(table.drop(columns=["label"]) if not table.empty else table)
    err = labelled(d[(d["quantity"] == "error") & d["budget"].notna()])
    if err.empty:
        return
    err = err.assign(budget=err["budget"].astype(float), value=pd.to_numeric(err["value"], errors="coerce"))
    for i, (name, e) in enumerate(experiments(err, ctx.experiment_order)):
        doc.h(3, f"{name}", anchor=f"error_vs_budget-{name}")
        rec = _figure(ctx, name, e, legend_labels(e), "error_vs_budget" if i == 0 else f"error_vs_budget_{i}")
        if rec:
            ctx.figures.append(rec)
            doc.img(rec["png"], rec["caption"], rec["svg"])
        with doc.details("errors per budget (table)"):
            t = e.pivot_table(index=["problem_label", "estimator_label"], columns="budget", values="value",
                              aggfunc="mean").reset_index().rename(columns={"problem_label": "problem",
                                                                            "estimator_label": "estimator"})
            t.columns = [c if isinstance(c, str) else f"{c:g}" for c in t.columns]
            doc.table(t)
