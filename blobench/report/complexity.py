"""Section: oracle complexity against the lower bound and each method's upper-bound order (issue 14; the
``complexity`` metric of :mod:`blobench.measure.complexity`, Ji & Liang 2023). One log-log panel per experiment: measured
calls to reach eps against the swept condition number, fitted exponents with 95% intervals in the legend."""
from __future__ import annotations

import pandas as pd

from blobench.report import style
from blobench.report.base import Context, ok, section
from blobench.report.page import Doc

#: the swept quantity drawn on the x axis: the first of these columns that varies within an experiment
X_CANDIDATES = ("kappa_y", "kappa_x", "kappa", "mu_y", "mu_x", "dim")


@section("complexity", order=60)
def render(ctx: Context, doc: Doc) -> None:
    from blobench.measure.complexity import calls_table, draw_calls_vs_eps, draw_complexity

    d = ok(ctx.df, "complexity")
    if d.empty:
        return
    ctx.done.add("complexity")
    doc.h(2, "Oracle complexity (complexity)", anchor="complexity")
    doc.p("Oracle calls (Gc(f) + Gc(g) + JV + HV, counted at the oracle layer) to reach eps, against the lower "
          "bound of the zero-respecting span argument (black) and each method's upper-bound order (dashed, scaled "
          "to its first point); Ji & Liang, JMLR 2023 (arXiv 2102.03926). Slopes are least-squares log-log fits "
          "with 95% t-intervals.")
    for exp, g in d.groupby("experiment", sort=True):
        meas = g[g["quantity"] == "calls_to_eps"]
        x = next((c for c in X_CANDIDATES if c in meas.columns
                  and pd.to_numeric(meas[c], errors="coerce").nunique() > 1), None)
        if meas["value"].notna().sum() == 0:
            doc.p(f"{exp}: no target reached by any method.")
            doc.table(calls_table(g))
            continue
        if x is None:  # one instance, several methods: calls against 1/eps, and the table of calls per target
            g = g.assign(value=pd.to_numeric(g["value"], errors="coerce"))
            with style.themed():
                fig, axes = style.new_figure(1, 1, w=6.0, h=4.2, legend_rows=4)
                ax = axes[0][0]
                draw_calls_vs_eps(ax, g, colors={e: ctx.color(e) for e in g["estimator"].unique()})
                style.legend_outside(fig, [ax])
                rec = style.save(fig, ctx.out, f"complexity_{exp}",
                                 f"{exp}: oracle calls to reach eps against 1/eps, per method", "complexity")
            ctx.figures.append(rec)
            doc.img(rec["png"], rec["caption"], rec["svg"])
            doc.p(f"{exp}: calls to reach each eps (outer iterations); 'not reached': not within the slice's "
                  "max_steps (a censored measurement, not a divergence).")
            doc.table(calls_table(g))
            continue
        g = g.assign(**{x: pd.to_numeric(g[x], errors="coerce"), "value": pd.to_numeric(g["value"], errors="coerce")})
        with style.themed():
            fig, axes = style.new_figure(1, 1, w=6.0, h=4.2, legend_rows=4)
            ax = axes[0][0]
            eps = draw_complexity(ax, g, x=x, colors={e: ctx.color(e) for e in g["estimator"].unique()})
            style.legend_outside(fig, [ax])
            rec = style.save(fig, ctx.out, f"complexity_{exp}",
                             f"{exp}: oracle calls to reach eps = {eps:g} against {x}, with the lower bound", "complexity")
        ctx.figures.append(rec)
        doc.img(rec["png"], rec["caption"], rec["svg"])
