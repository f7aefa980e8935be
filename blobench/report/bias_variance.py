"""Section: bias and variance at fixed x (metric ``bias_variance``), one figure per experiment.

Bias norm ||E[g] - grad Phi|| with its 95 % confidence interval (error bars; an interval reaching 0 is drawn
down to the axis bottom, never to 1e-16) and variance trace tr Cov[g], against the estimator parameter that
varies within the experiment (batch size, steps, ...). Parameters swept together (a zipped matched-budget
sweep, e.g. inner_steps with solver_steps) are drawn as one line whose ticks show every value. Cells that lack
the swept parameter (``exact``) are drawn as horizontal reference levels; an experiment where nothing varies
is drawn per estimator. Legends show resolved parameter values (defaults filled in), never ``None``.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from blobench.report import style
from blobench.report.base import Context, estimator_params, experiments, labelled, ok, section
from blobench.report.page import Doc

#: relative float64 rounding level below which a bias (a variance: its square) counts as an exact zero
ROUNDING = 1e-12
KEEP = ["bias_norm", "variance_trace", "mse", "rel_bias", "unbiased_p_holm", "samples"]
YLAB = {"bias_norm": r"bias $\|\mathbb{E}[\hat{g}] - \nabla\Phi\|$", "variance_trace": r"variance $\mathrm{tr}\,\mathrm{Cov}[\hat{g}]$"}


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)


def sweep(cells: pd.DataFrame) -> tuple[str | None, list[str], list[str]]:
    """(x parameter, parameters zipped with it, other varying parameters) over the cells' resolved params."""
    res = [estimator_params(r) for _, r in cells.iterrows()]
    keys = sorted({k for p in res for k in p})
    varying = [k for k in keys if len({json.dumps(p.get(k), default=str) for p in res if k in p}) > 1]
    numeric = [k for k in varying if all(_num(p[k]) for p in res if k in p)]
    if not numeric:
        return None, [], varying
    # the x axis: the numeric parameter present in the most cells, then with the most distinct values
    xkey = max(numeric, key=lambda k: (sum(k in p for p in res), len({p.get(k) for p in res}), -keys.index(k)))
    zipped = []
    for k in varying:
        if k == xkey:
            continue
        pairs = {(p.get(xkey), json.dumps(p.get(k), default=str)) for p in res if xkey in p and k in p}
        fwd = len({a for a, _ in pairs}) == len(pairs)
        back = len({b for _, b in pairs}) == len(pairs)
        if pairs and fwd and back:
            zipped.append(k)
    others = [k for k in varying if k != xkey and k not in zipped]
    return xkey, zipped, others


def _figure(ctx: Context, name: str, d: pd.DataFrame, stem: str) -> dict | None:
    q = d[d["quantity"].isin(["bias_norm", "variance_trace"])].copy()
    q["value"] = pd.to_numeric(q["value"], errors="coerce")
    if q.empty:
        return None
    # values at float64 rounding level (relative to ||grad Phi||) are zeros: drawn nowhere, kept in the table
    tn = d[d["quantity"] == "truth_norm"].groupby("key")["value"].mean()
    scale = q["key"].map(tn).fillna(1.0).astype(float)
    floor = np.where(q["quantity"] == "bias_norm", ROUNDING * scale, (ROUNDING * scale) ** 2)
    q.loc[q["value"] <= floor, "value"] = 0.0
    cells = q.drop_duplicates("key")
    xkey, zipped, others = sweep(cells)
    res = {r["key"]: estimator_params(r) for _, r in cells.iterrows()}
    multi_problem = q["problem_label"].nunique() > 1

    def group(r) -> str:
        p = res[r["key"]]
        g = r["estimator"] + ("(" + ", ".join(f"{k}={p[k]}" for k in others if k in p) + ")"
                              if any(k in p for k in others) else "")
        return g + (f" / {r['problem_label']}" if multi_problem else "")

    q["group"] = [group(r) for _, r in q.iterrows()]
    q["x"] = [res[k].get(xkey) if xkey else None for k in q["key"]]
    with style.themed():
        fig, axes = style.new_figure(1, 2, w=5.2, h=3.8, legend_rows=2)
        for ax, qn in zip(axes[0], ["bias_norm", "variance_trace"]):
            s = q[q["quantity"] == qn]
            swept = s[s["x"].map(_num)] if xkey else s.iloc[0:0]
            flat = s.drop(swept.index)
            positive = s["value"][s["value"] > 0]
            if positive.empty:
                ax.remove()
                continue
            if xkey and not swept.empty:
                xs_all = sorted(set(swept["x"]))
                for i, (gl, g) in enumerate(sorted(swept.groupby("group"), key=lambda t: t[0])):
                    est = g["estimator"].iloc[0]
                    agg = {"value": ("value", "mean")}
                    if qn == "bias_norm" and "lo" in g:
                        agg.update(lo=("lo", "mean"), hi=("hi", "mean"))
                    a = g.groupby("x", as_index=False).agg(**agg).sort_values("x")
                    a = a[a["value"] > 0]  # exact zeros (deterministic estimators): table only
                    if a.empty:
                        continue
                    ls, mk = ctx.ls(est), ctx.marker(est)
                    ax.plot(a["x"], a["value"], ls, marker=mk, ms=5, color=ctx.color(est), label=gl)
                    if "lo" in a and a["lo"].notna().all():
                        a["lo"] = a["lo"].astype(float)
                        low = np.where(a["lo"] > 0, a["lo"], np.nan)
                        ax.vlines(a["x"], low, a["hi"].astype(float), color=ctx.color(est), lw=2.2, alpha=0.45)
                        zero = a[~(a["lo"] > 0)]
                        if len(zero):  # the interval includes 0: dotted, down to a decade under the point
                            ax.vlines(zero["x"], zero["value"] / 10, zero["hi"].astype(float), color=ctx.color(est),
                                      lw=2.2, alpha=0.45, linestyles=":")
                for _, g in flat.groupby("group"):
                    v = g["value"].mean()
                    if v > 0:
                        est = g["estimator"].iloc[0]
                        style.reference_line(ax.axhline(v, color=ctx.color(est), ls="--", lw=1.2,
                                                        label=f"{g['group'].iloc[0]} (no {xkey})"))
                zero = sorted(g for g, v in s.groupby("group")["value"].max().items() if not v > 0)
                if zero:  # exact zeros have no place on a log axis: named in the panel, values in the table
                    ax.text(0.01, 0.01, "exactly 0: " + ", ".join(zero), transform=ax.transAxes, ha="left",
                            va="bottom", fontsize=8.5, color="0.3")
                xl = xkey + ("".join(f" / {k}" for k in zipped) if zipped else "")
                ax.set_xlabel(xl + (" (zipped: one matched-budget sweep)" if zipped else ""))
                if len(xs_all) > 1 and min(xs_all) > 0 and max(xs_all) / min(xs_all) >= 4:
                    ax.set_xscale("log", base=2)
                ticks = xs_all
                ax.set_xticks(ticks)
                tick_p = {}
                for k, p in res.items():
                    if p.get(xkey) in ticks:
                        tick_p.setdefault(p.get(xkey), p)
                ax.set_xticklabels([("/".join([f"{t:g}"] + [str(tick_p[t].get(k)) for k in zipped]))
                                    for t in ticks])
                ax.minorticks_off()
            else:
                labels, zeros = [], []
                for i, (gl, g) in enumerate(sorted(s.groupby("group"), key=lambda t: t[0])):
                    est = g["estimator"].iloc[0]
                    v = g["value"].mean()
                    labels.append(gl)
                    if not v > 0:
                        zeros.append(i)
                        continue
                    ax.plot([i], [v], "o", ms=7, color=ctx.color(est), label=gl)
                    if qn == "bias_norm" and "lo" in g and g["lo"].notna().all():
                        lo, hi = float(g["lo"].mean()), float(g["hi"].mean())
                        ax.vlines([i], lo if lo > 0 else v / 10, hi, color=ctx.color(est), lw=2.2, alpha=0.45,
                                  linestyles="-" if lo > 0 else ":")
                for i in zeros:  # an exact zero: written at the bottom of its column
                    ax.text(i, 0.02, "0 (exact zero)", transform=ax.get_xaxis_transform(), ha="center",
                            va="bottom", fontsize=9, color="0.3")
                ax.set_xticks(range(len(labels)))
                ax.set_xticklabels(labels, rotation=20, ha="right")
                ax.set_xlabel("estimator")
            style.log_if_positive(ax, positive)
            ax.set_ylabel(YLAB[qn])
            ax.set_title("bias norm, bars: 95% CI" if qn == "bias_norm" else "variance trace")
        style.legend_outside(fig, axes[0], ncol=3)
        cap = (f"{name}: bias norm (95% CI bars; dotted bar: the interval includes 0, drawn to a decade below the "
               "point) and variance trace"
               + (f" versus {xkey}" + (f" zipped with {', '.join(zipped)}" if zipped else "") if xkey else
                  " per estimator") + "; zeros (below 1e-12 of ||grad Phi|| for the bias, its square for the variance: float64 rounding) "
               "appear in the table only")
        return style.save(fig, ctx.out, stem, cap, "bias_variance")


@section("bias_variance", order=30)
def render(ctx: Context, doc: Doc) -> None:
    d = ok(ctx.df, "bias_variance")
    if d.empty:
        return
    ctx.done.add("bias_variance")
    doc.h(2, "Bias and variance (bias_variance)", anchor="bias_variance")
    d = labelled(d)
    for i, (name, e) in enumerate(experiments(d, ctx.experiment_order)):
        doc.h(3, name, anchor=f"bias_variance-{name}")
        rec = _figure(ctx, name, e, f"bias_variance_{name}")
        if rec:
            ctx.figures.append(rec)
            doc.img(rec["png"], rec["caption"], rec["svg"])
        q = e[e["quantity"].isin(KEEP)]
        t = q.pivot_table(index=["problem_label", "estimator_label", "seed"], columns="quantity", values="value",
                          aggfunc="first").reset_index()
        t = t.rename(columns={"problem_label": "problem", "estimator_label": "estimator"})
        ci = e[e["quantity"] == "bias_norm"].set_index(["problem_label", "estimator_label", "seed"])
        if "lo" in ci and len(t):
            idx = list(zip(t["problem"], t["estimator"], t["seed"]))
            t["bias 95% CI"] = [f"[{ci.loc[k, 'lo']:.3g}, {ci.loc[k, 'hi']:.3g}]" if k in ci.index else "" for k in idx]
        with doc.details(f"{name}: values per cell (table)"):
            doc.table(t[[c for c in ["problem", "estimator", "seed", "bias_norm", "bias 95% CI"] + KEEP[1:]
                         if c in t.columns]])
