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
        if "problem" in g.columns and g["problem"].astype(str).str.startswith(("jl-", "ji-ncsc")).any():
            render_instance_bounds(ctx, doc, str(exp), g, x)
            continue
        with style.themed():
            fig, axes = style.new_figure(1, 1, w=6.0, h=4.2, legend_rows=4)
            ax = axes[0][0]
            eps = draw_complexity(ax, g, x=x, colors={e: ctx.color(e) for e in g["estimator"].unique()})
            style.legend_outside(fig, [ax])
            has_lb = bool(((g["quantity"] == "lower_bound_calls") & g["value"].notna()).any())
            bound_text = ("with the lower bound" if has_lb else
                          "no lower bound drawn: this problem has no zero-respecting bound (e.g. a stochastic one)")
            rec = style.save(fig, ctx.out, f"complexity_{exp}",
                             f"{exp}: oracle calls to reach eps = {eps:g} against {x}, {bound_text}", "complexity")
        ctx.figures.append(rec)
        doc.img(rec["png"], rec["caption"], rec["svg"])


def draw_instance_bounds(ax, g: pd.DataFrame, x: str, colors: dict | None = None) -> float:
    """Measured calls to eps against ``x`` beside the instance's own bounds, for Ji & Liang's instances (jl-scsc, jl-csc)
    and Ji 2025's ji-ncsc: the exact per-instance span bound (``lower_bound_calls``, black; on ji-ncsc the zero chain's
    T n, Theorem 1's count, for targets below Lemma 3's floor) and, where the metric wrote it, Theorem 4's bound
    with the proof's constants (``theorem_bound_calls``, grey dashed). eps is the smallest target every estimator
    reached; each label carries the fitted exponent with its 95% interval. Returns the eps drawn."""
    from blobench.measure.complexity import fit_exponent

    meas = g[(g["quantity"] == "calls_to_eps") & g["value"].notna()]
    common = None
    for _, h in meas.groupby("estimator"):
        s = set(h["eps"].astype(float))
        common = s if common is None else common & s
    eps = min(common) if common else float(g["eps"].astype(float).min())
    sel = g[g["eps"].astype(float) == eps]
    for name, h in sorted(sel[sel["quantity"] == "calls_to_eps"].groupby("estimator")):
        h = h.groupby(x)["value"].mean().sort_index()
        f = fit_exponent(h.index, h.to_numpy())
        ax.loglog(h.index, h.to_numpy(), "o-", color=(colors or {}).get(name),
                  label=f"{name}: slope {f['slope']:.2f} [{f['lo']:.2f}, {f['hi']:.2f}]")
    for q, fmt_, lab in (("lower_bound_calls", "-", "exact per-instance bound"),
                         ("theorem_bound_calls", "--", "Theorem 4 with the proof's constants")):
        b = sel[sel["quantity"] == q]
        if b.empty:
            continue
        b = b.groupby(x)["value"].max().sort_index()
        b = b[b > 0]
        if b.empty:
            continue
        f = fit_exponent(b.index, b.to_numpy())
        ax.loglog(b.index, b.to_numpy(), fmt_, color="black" if q == "lower_bound_calls" else "grey", lw=2,
                  label=f"{lab}: slope {f['slope']:.2f}")
    ax.set_xlabel(x)
    ax.set_ylabel(f"oracle calls to reach eps = {eps:g}")
    return float(eps)


def render_instance_bounds(ctx: Context, doc: Doc, exp: str, g: pd.DataFrame, x: str) -> None:
    """One panel for an experiment on Ji & Liang's own instances: :func:`draw_instance_bounds`, and a table of calls
    and bounds per swept value (docs/lower_bounds.md explains each bound and its constants)."""
    with style.themed():
        fig, axes = style.new_figure(1, 1, w=6.0, h=4.2, legend_rows=4)
        ax = axes[0][0]
        eps = draw_instance_bounds(ax, g, x, colors={e: ctx.color(e) for e in g["estimator"].unique()})
        style.legend_outside(fig, [ax])
        rec = style.save(fig, ctx.out, f"complexity_{exp}",
                         f"{exp}: oracle calls to reach eps = {eps:g} against {x}, beside the instance's own bounds",
                         "complexity")
    ctx.figures.append(rec)
    doc.img(rec["png"], rec["caption"], rec["svg"])
    sel = g[g["eps"].astype(float) == eps]
    tab = sel.pivot_table(index=x, columns=sel["estimator"].where(sel["quantity"] == "calls_to_eps", sel["quantity"]),
                          values="value", aggfunc="max")
    doc.p(f"{exp}: calls to eps = {eps:g} per method beside the exact per-instance bound (lower_bound_calls) and "
          "Theorem 4's bound with the proof's constants (theorem_bound_calls).")
    doc.table(tab.reset_index())
