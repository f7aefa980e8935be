"""Section: any metric whose rows carry ``budget``, ``value`` and ``quantity`` (``memory_vs_budget``,
``time_vs_budget``, and third-party metrics of that shape), one figure per experiment and metric.

One panel per quantity, value versus budget, in human units (B/KiB/MiB for bytes, us/ms/s for seconds), log
axes only where every value is positive and spans a factor >= 4, the lo-hi band where the metric records one
(e.g. the interquartile range of repeated timings). Budget-less rows (fitted slopes) form a summary table.
"""
from __future__ import annotations

import pandas as pd

from blobench.report import style
from blobench.report.base import Context, experiments, labelled, legend_labels, ok, section
from blobench.report.page import Doc

BUDGET_METRICS = ("memory_vs_budget", "time_vs_budget")


def _figure(ctx: Context, metric: str, name: str, d: pd.DataFrame, labels: dict, stem: str) -> dict | None:
    qs = [q for q in sorted(d["quantity"].dropna().unique()) if d.loc[d["quantity"] == q, "value"].notna().any()]
    if not qs:
        return None
    multi_problem = d["problem_label"].nunique() > 1
    with style.themed():
        fig, axes = style.new_figure(1, len(qs), w=4.8, h=3.6, legend_rows=1)
        for ax, qn in zip(axes[0], qs):
            s = d[(d["quantity"] == qn) & d["value"].notna()]
            unit = style.unit_of(qn)
            log = style.log_if_positive(ax, s["value"])
            if log and (s["budget"] > 0).all() and s["budget"].max() / s["budget"].min() >= 4:
                ax.set_xscale("log", base=2)
            for i, ((est, ep, pp, pl), g) in enumerate(sorted(s.groupby(["estimator", "estimator_params",
                                                                          "problem_params", "problem_label"]),
                                                              key=lambda t: t[0])):
                has_band = "lo" in g and "hi" in g and g["lo"].notna().all() and g["hi"].notna().all()
                g = g.groupby("budget", as_index=False).agg(
                    value=("value", "mean"), **({"lo": ("lo", "mean"), "hi": ("hi", "mean")} if has_band else {}))
                g = g.sort_values("budget")
                ls, mk = ctx.ls(est), ctx.marker(est)
                lab = labels.get((est, ep, pp), est) + (f" / {pl}" if multi_problem else "")
                ax.plot(g["budget"], g["value"], ls, marker=mk, ms=4, color=ctx.color(est), label=lab)
                if has_band:
                    style.band(ax, g["budget"], g["lo"], g["hi"], ctx.color(est))
            bp = s["budget_param"].dropna().unique() if "budget_param" in s else []
            ax.set_xlabel("budget" + (f": {bp[0]}" if len(bp) else "") + " (iterations)")
            if ax.get_xscale() == "log":
                from matplotlib.ticker import NullFormatter, ScalarFormatter

                ax.xaxis.set_major_formatter(ScalarFormatter())
                ax.xaxis.set_minor_formatter(NullFormatter())
            style.unit_axis(ax, unit)
            ax.set_ylabel(qn.replace("_", " ") + (f" ({'B, KiB, MiB' if unit == 'bytes' else 's, ms'})"
                                                    if unit else ""))
            ax.set_title(qn + (" (band: lo-hi)" if "lo" in s and s["lo"].notna().any() else ""))
        style.legend_outside(fig, axes[0])
        cap = f"{name}: {metric.replace('_', ' ')}, value versus budget per quantity (log axes where positive)"
        return style.save(fig, ctx.out, stem, cap, metric)


def render_metric(ctx: Context, doc: Doc, metric: str) -> bool:
    d = ok(ctx.df, metric)
    if d.empty or "budget" not in d or d["budget"].isna().all():
        return False
    doc.h(2, f"{metric.replace('_', ' ')} ({metric})", anchor=metric)
    summary = labelled(d[d["budget"].isna()])
    d = labelled(d[d["budget"].notna()])
    d = d.assign(budget=d["budget"].astype(float), value=pd.to_numeric(d["value"], errors="coerce"))
    for i, (name, e) in enumerate(experiments(d, ctx.experiment_order)):
        doc.h(3, name, anchor=f"{metric}-{name}")
        rec = _figure(ctx, metric, name, e, legend_labels(e), f"{metric}_{name}")
        if rec:
            ctx.figures.append(rec)
            doc.img(rec["png"], rec["caption"], rec["svg"])
        t = e.pivot_table(index=["problem_label", "estimator_label", "quantity"], columns="budget", values="value",
                          aggfunc="mean").reset_index().rename(columns={"problem_label": "problem",
                                                                        "estimator_label": "estimator"})
        t.columns = [c if isinstance(c, str) else f"r={c:g}" for c in t.columns]
        with doc.details(f"{name}: values per budget (table)"):
            doc.table(t)
    if not summary.empty:
        summary = summary.assign(value=pd.to_numeric(summary["value"], errors="coerce"))
        st = summary.pivot_table(index=["problem_label", "estimator_label"], columns="quantity", values="value",
                                 aggfunc="mean").reset_index().rename(columns={"problem_label": "problem",
                                                                               "estimator_label": "estimator"})
        doc.p("Fitted summaries (mean over seeds):")
        doc.table(st)
    return True


@section("budget_metrics", order=50)
def render(ctx: Context, doc: Doc) -> None:
    for mt in ctx.metrics():
        if mt in ctx.done:
            continue
        if mt in BUDGET_METRICS or ("budget" in ctx.df and ok(ctx.df, mt)["budget"].notna().any()):
            if render_metric(ctx, doc, mt):
                ctx.done.add(mt)
