"""Reports: ``reports/<run-id>/index.html`` and ``report.md`` with seaborn figures beside them.

``write_report(run)`` reads a run folder (DESIGN.md, "Runner, store, report") and writes one
section per metric present in it, each robust to the others being absent:

- **error_vs_budget**: ||estimate - grad Phi|| versus the swept budget on a log scale, the
  fitted geometric rate (``measures.fit_geometric_rate``) beside the theoretical one. The
  theoretical rate is taken from rows ``quantity == "theoretical_rate"`` when a metric writes
  them; otherwise it is derived from the problem's constants for the two textbook cases:
  inner gradient descent with step alpha contracts at ``1 - alpha*mu`` (``inner_steps``; Ji,
  Yang & Liang 2021, Prop. 2 / Lemma 5), conjugate gradient at ``(sqrt(kappa)-1)/(sqrt(kappa)+1)``
  (``solver_steps`` of ``aid-cg``; Nocedal & Wright 2006, eq. 5.36).
- **bias_variance**: bias norm (with its confidence interval) and variance trace versus the
  estimator parameter that varies between cells (e.g. batch size), plus a table.
- **convergence** (rows with ``iteration``, ``seconds_elapsed`` and ``calls_*`` columns):
  grad_norm_sq / value_gap / dist_stationary versus iterations, total oracle calls and
  seconds, mean over seeds with a 95 % normal band (mean +- 1.96 s.e.m.) where >= 2 seeds.
- **memory_vs_budget / time_vs_budget** (and any other metric with a ``budget`` column):
  value versus budget per quantity, read generically from ``budget``/``value``/``quantity``.
- every other metric: a table of the mean value per cell and quantity.
- failed cells (status != ok) with their one-line message, and the claims table.

Claims table: ``write_report(run, claims=...)`` accepts claim results (``ClaimResult`` or
their ``row()`` dicts) or a path to a claims JSON written by ``claim_base.save_results``; without
it, ``<run folder>/claims.json`` is used when present (``blobench report RUN --claims`` runs the
claims and saves that file first). One colour per estimator is used across every figure.
"""
from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import torch

from .store import load, read_manifest, resolve_run

CONVERGENCE_QUANTITIES = ("grad_norm_sq", "value_gap", "dist_stationary")
CONVERGENCE_LABELS = {"grad_norm_sq": "||grad Phi(x_t)||^2", "value_gap": "Phi(x_t) - Phi*",
                      "dist_stationary": "distance to nearest stationary point"}
DPI = 80


# ----------------------------------------------------------------------------- helpers

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _palette(names: Iterable[str]) -> dict[str, tuple]:
    """One colour per estimator name, stable across every figure of a report (sorted order, tab10)."""
    import seaborn as sns

    names = sorted(set(str(n) for n in names))
    colors = sns.color_palette("tab10", max(len(names), 1))
    return {n: colors[i % len(colors)] for i, n in enumerate(names)}


def _fmt(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (float, np.floating)):
        return "nan" if not np.isfinite(v) else f"{v:.4g}"
    return str(v).replace("\n", " ")


def _md_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "_(none)_\n"
    cols = list(df.columns)
    out = "| " + " | ".join(str(c) for c in cols) + " |\n|" + "---|" * len(cols) + "\n"
    for _, r in df.iterrows():
        out += "| " + " | ".join(_fmt(r[c]).replace("|", "\\|") for c in cols) + " |\n"
    return out


def _html_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "<p><em>(none)</em></p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r[c]))}</td>" for c in df.columns) + "</tr>"
                   for _, r in df.iterrows())
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _params(s: Any) -> dict:
    if isinstance(s, str) and s:
        try:
            return json.loads(s)
        except json.JSONDecodeError:
            return {}
    return {}


def _with_params(name: str, params: dict) -> str:
    return name + ("(" + ",".join(f"{k}={v}" for k, v in params.items()) + ")" if params else "")


def _label(row) -> tuple[str, str]:
    """(problem label, estimator label) with their parameters."""
    return (_with_params(row["problem"], _params(row.get("problem_params"))),
            _with_params(row["estimator"], _params(row.get("estimator_params"))))


def _labelled(d: pd.DataFrame) -> pd.DataFrame:
    d = d.copy()
    if d.empty:
        d["problem_label"] = []
        d["estimator_label"] = []
        return d
    labs = d.apply(_label, axis=1, result_type="expand")
    d["problem_label"], d["estimator_label"] = labs[0], labs[1]
    return d


def _ok(df: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    d = df[df["status"] == "ok"] if "status" in df else df
    if metric is not None:
        d = d[d["metric"] == metric]
    return d


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    _plt().close(fig)
    return path


def _style_cycle(i: int) -> tuple[str, str]:
    styles = ["-", "--", ":", "-."]
    markers = ["o", "s", "^", "D", "v", "P", "X"]
    return styles[i % len(styles)], markers[i % len(markers)]


def _legend(ax) -> None:
    h, lab = ax.get_legend_handles_labels()
    if h:
        ax.legend(fontsize=6, loc="best")


# ----------------------------------------------------------------------------- theory rates

def theoretical_rate(problem: str, problem_params: dict, estimator: str, estimator_params: dict,
                     budget_param: str) -> tuple[float, str] | None:
    """The textbook geometric rate of the error in ``budget_param``, or None where none applies.

    ``inner_steps`` (itd, aid-*; inner GD with step alpha, default 1/L): ``1 - alpha*mu`` (Ji, Yang &
    Liang 2021, ICML, Prop. 2 and Lemma 5: the inner error and the ITD Jacobian contract at this
    rate). ``solver_steps`` of ``aid-cg``: the CG bound ``(sqrt(kappa)-1)/(sqrt(kappa)+1)`` (Nocedal &
    Wright 2006, eq. 5.36). First-order ``fo`` has a non-vanishing bias, so no rate is drawn for it.
    """
    if estimator in ("fo", "exact"):
        return None
    try:
        import harness

        c = harness.problem(problem, **problem_params).constants
        mu, L = float(c["mu"]), float(c["L"])
    except Exception:  # a problem without constants or with unknown params: nothing to draw
        return None
    if budget_param == "inner_steps":
        lr = estimator_params.get("inner_lr") or 1.0 / L
        r = max(abs(1 - lr * mu), abs(1 - lr * L))
        return (r, "1 - alpha*mu") if r < 1 else None
    if budget_param == "solver_steps" and estimator == "aid-cg":
        k = L / mu
        return (math.sqrt(k) - 1) / (math.sqrt(k) + 1), "CG (sqrt(k)-1)/(sqrt(k)+1)"
    return None


# ----------------------------------------------------------------------------- sections

class _Doc:
    """Blocks rendered both to markdown and to HTML."""

    def __init__(self) -> None:
        self.blocks: list[tuple[str, Any]] = []

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", (level, text)))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def ul(self, items: list[str]) -> None:
        self.blocks.append(("ul", items))

    def table(self, df: pd.DataFrame) -> None:
        self.blocks.append(("table", df))

    def img(self, name: str, alt: str) -> None:
        self.blocks.append(("img", (name, alt)))

    def markdown(self) -> str:
        out: list[str] = []
        for kind, v in self.blocks:
            if kind == "h":
                out += ["#" * v[0] + " " + v[1], ""]
            elif kind == "p":
                out += [v, ""]
            elif kind == "ul":
                out += [f"- {i}" for i in v] + [""]
            elif kind == "table":
                out += [_md_table(v)]
            elif kind == "img":
                out += [f"![{v[1]}]({v[0]})", ""]
        return "\n".join(out) + "\n"

    def html(self, title: str) -> str:
        out = []
        for kind, v in self.blocks:
            if kind == "h":
                out.append(f"<h{v[0]}>{html.escape(v[1])}</h{v[0]}>")
            elif kind == "p":
                out.append(f"<p>{html.escape(v)}</p>")
            elif kind == "ul":
                out.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in v) + "</ul>")
            elif kind == "table":
                out.append(_html_table(v))
            elif kind == "img":
                out.append(f'<figure><img src="{html.escape(v[0])}" alt="{html.escape(v[1])}">'
                           f"<figcaption>{html.escape(v[1])}</figcaption></figure>")
        css = ("body{font-family:sans-serif;max-width:1200px;margin:1em auto;padding:0 1em;color:#222}"
               "table{border-collapse:collapse;font-size:12px;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px}"
               "th{background:#eee}img{max-width:100%}figure{margin:.5em 0}figcaption{font-size:12px;color:#555}")
        # data-images-loaded is set once every <img> has decoded (read by the headless-browser test)
        script = ("<script>window.addEventListener('load',function(){var im=document.images,ok=0;"
                  "for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0)ok++;}"
                  "document.body.setAttribute('data-images-total',im.length);"
                  "document.body.setAttribute('data-images-loaded',ok);});</script>")
        return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                f"<style>{css}</style>{script}</head><body>\n" + "\n".join(out) + "\n</body></html>\n")


def error_budget_section(df: pd.DataFrame, out: Path, pal: dict, doc: _Doc) -> Path | None:
    d = _ok(df, "error_vs_budget")
    if d.empty:
        return None
    doc.h(2, "Error versus budget (error_vs_budget)")
    err = _labelled(d[d["quantity"] == "error"])
    theory_rows = _labelled(d[d["quantity"] == "theoretical_rate"])
    fits = _labelled(d[d["quantity"] == "fitted_rate"])
    rows = []
    for _, r in fits.iterrows():
        bp = str(r.get("budget_param"))
        tr = theory_rows[(theory_rows["key"] == r["key"])] if "key" in theory_rows else theory_rows.iloc[0:0]
        if len(tr):
            th, src = float(tr["value"].iloc[0]), "metric"
        else:
            t = theoretical_rate(r["problem"], _params(r.get("problem_params")), r["estimator"],
                                 _params(r.get("estimator_params")), bp)
            th, src = (t if t else (float("nan"), "-"))
        rows.append({"problem": r["problem_label"], "estimator": r["estimator_label"], "budget": bp,
                     "seed": r.get("seed"), "fitted_rate": float(r["value"]), "theoretical_rate": th,
                     "theory (upper bound)": src})
    table = pd.DataFrame(rows)
    if not table.empty:
        table = table.sort_values(["problem", "budget", "estimator"], kind="stable")
    path = None
    if not err.empty:
        plt = _plt()
        err["budget"] = err["budget"].astype(float)
        err["value"] = err["value"].astype(float).clip(lower=1e-16)
        panels = sorted(err.groupby(["problem_label", "budget_param"]).groups.keys())
        ncol = min(len(panels), 3)
        nrow = math.ceil(len(panels) / ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(4.4 * ncol, 3.4 * nrow), squeeze=False)
        for ax, (pl, bp) in zip(axes.flat, panels):
            sub = err[(err["problem_label"] == pl) & (err["budget_param"] == bp)]
            for i, (el, g) in enumerate(sorted(sub.groupby("estimator_label"), key=lambda t: t[0])):
                g = g.groupby("budget", as_index=False)["value"].mean().sort_values("budget")
                est = el.split("(")[0]
                ls, mk = _style_cycle(i)
                ax.plot(g["budget"], g["value"], ls, marker=mk, ms=3, color=pal.get(est), label=f"{el} measured")
                ex = sub[sub["estimator_label"] == el].iloc[0]
                t = theoretical_rate(ex["problem"], _params(ex.get("problem_params")), est,
                                     _params(ex.get("estimator_params")), bp)
                if t is not None and len(g):
                    b0, e0 = float(g["budget"].iloc[0]), float(g["value"].iloc[0])
                    bb = np.linspace(b0, float(g["budget"].max()), 50)
                    ax.plot(bb, np.clip(e0 * t[0] ** (bb - b0), 1e-16, None), color=pal.get(est), lw=1.3,
                            alpha=0.8, ls=(0, (1, 1)), label=f"{est} theory rate {t[0]:.3g} ({t[1]})")
            ax.set_yscale("log")
            ax.set_xlabel(f"budget: {bp} (iterations)")
            ax.set_ylabel("||estimate - grad Phi(x)|| (log)")
            ax.set_title(pl, fontsize=8)
            _legend(ax)
        for ax in list(axes.flat)[len(panels):]:
            ax.axis("off")
        fig.tight_layout()
        path = _save(fig, out / "error_vs_budget.png")
        doc.img("error_vs_budget.png", "hypergradient error versus budget; dotted: theoretical geometric rate "
                "anchored at the first measured point")
    doc.p("Fitted geometric rate (least squares on log error, errors above 1e-13) beside the theoretical rate.")
    doc.table(table)
    return path


def bias_variance_section(df: pd.DataFrame, out: Path, pal: dict, doc: _Doc) -> Path | None:
    d = _ok(df, "bias_variance")
    if d.empty:
        return None
    doc.h(2, "Bias and variance (bias_variance)")
    keep = ["bias_norm", "variance_trace", "mse", "rel_bias", "unbiased_p_holm", "samples"]
    q = _labelled(d[d["quantity"].isin(keep)])
    t = q.pivot_table(index=["problem_label", "estimator_label", "seed"], columns="quantity", values="value",
                      aggfunc="first").reset_index()
    t = t.rename(columns={"problem_label": "problem", "estimator_label": "estimator"})
    doc.table(t[[c for c in ["problem", "estimator", "seed"] + keep if c in t.columns]])
    # the x axis: the estimator parameter that varies most across the cells of a problem
    plt = _plt()
    bn = _labelled(d[d["quantity"].isin(["bias_norm", "variance_trace"])])
    eps = bn["estimator_params"].map(_params)
    keys = sorted({k for p in eps for k in p})
    varying = [k for k in keys if len({json.dumps(p.get(k)) for p in eps}) > 1]
    xkey = varying[0] if varying else None
    if xkey is not None:
        bn["x"] = [p.get(xkey) for p in eps]
        bn = bn[bn["x"].map(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v))]
    if xkey is None or bn.empty:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
        for ax, qn in zip(axes, ["bias_norm", "variance_trace"]):
            s = bn[bn["quantity"] == qn].groupby("estimator")["value"].mean()
            ax.bar(s.index, s.values.clip(1e-16), color=[pal.get(e) for e in s.index])
            ax.set_yscale("log")
            ax.set_ylabel(f"{qn} (log)")
            ax.set_xlabel("estimator")
    else:
        px = bn["estimator_params"].map(_params)
        others = [k for k in varying if k != xkey and len({json.dumps(p.get(k)) for p in px}) > 1]
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        for ax, qn in zip(axes, ["bias_norm", "variance_trace"]):
            s = bn[(bn["quantity"] == qn) & (bn["value"].astype(float) > 1e-20)].copy()  # exact zeros: table only
            s["group"] = s["estimator"] + s["estimator_params"].map(
                lambda p: "".join(f",{k}={_params(p).get(k)}" for k in others))
            if s["problem_label"].nunique() > 1:
                s["group"] = s["group"] + " / " + s["problem_label"]
            for i, (gl, g) in enumerate(sorted(s.groupby("group"), key=lambda t: t[0])):
                est = g["estimator"].iloc[0]
                g = g.groupby("x", as_index=False).agg(value=("value", "mean"), lo=("lo", "mean"), hi=("hi", "mean"))
                g = g.sort_values("x")
                ls, mk = _style_cycle(i)
                ax.plot(g["x"], g["value"], ls, marker=mk, ms=3, color=pal.get(est), label=gl)
                if qn == "bias_norm" and g["lo"].notna().all():
                    ax.fill_between(g["x"], g["lo"].clip(lower=1e-16), g["hi"].clip(lower=1e-16),
                                    color=pal.get(est), alpha=0.15)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel(f"{xkey} (log2 scale)")
            ax.set_ylabel("bias ||E[g] - grad Phi|| (log)" if qn == "bias_norm" else "variance tr Cov[g] (log)")
            ax.set_title("bias norm, band: 95% CI" if qn == "bias_norm" else "variance trace", fontsize=8)
            _legend(ax)
    fig.tight_layout()
    _save(fig, out / "bias_variance.png")
    doc.img("bias_variance.png", "bias norm and variance trace" + (
        f" versus {xkey}; cells without {xkey} and exact zeros appear in the table only" if xkey else " per estimator"))
    return out / "bias_variance.png"


def _convergence_curves(c: pd.DataFrame, xcol: str) -> pd.DataFrame:
    """Mean over seeds of (x, value) per (estimator label, iteration), with a 95 % normal band."""
    g = c.groupby(["estimator_label", "estimator", "iteration"])
    r = g.agg(x=(xcol, "mean"), y=("value", "mean"), sd=("value", "std"), n=("value", "size")).reset_index()
    half = 1.96 * r["sd"].fillna(0) / np.sqrt(r["n"].clip(lower=1))
    r["lo"], r["hi"] = r["y"] - half, r["y"] + half
    return r.sort_values(["estimator_label", "iteration"])


def convergence_section(df: pd.DataFrame, out: Path, pal: dict, doc: _Doc) -> list[Path]:
    d = _ok(df, "convergence")
    if d.empty or "iteration" not in d:
        return []
    doc.h(2, "Outer-loop convergence (convergence)")
    c = _labelled(d[d["quantity"].isin(CONVERGENCE_QUANTITIES) & d["iteration"].notna()])
    calls = [k for k in c.columns if k.startswith("calls_")]
    c["calls_total"] = c[calls].fillna(0).sum(axis=1) if calls else np.nan
    xs = [("iteration", "outer iteration t")]
    if calls:
        xs.append(("calls_total", "oracle calls (all kinds, cumulative)"))
    if "seconds_elapsed" in c:
        xs.append(("seconds_elapsed", "wall-clock seconds"))
    plt = _plt()
    paths = []
    nseeds = int(c["seed"].nunique()) if "seed" in c else 1
    for problem_label, cp in sorted(c.groupby("problem_label"), key=lambda t: t[0]):
        qs = [q for q in CONVERGENCE_QUANTITIES if q in set(cp["quantity"])]
        fig, axes = plt.subplots(len(qs), len(xs), figsize=(4.2 * len(xs), 3.0 * len(qs)), squeeze=False)
        for row, qn in zip(axes, qs):
            cq = cp[cp["quantity"] == qn]
            for ax, (xcol, xlab) in zip(row, xs):
                cur = _convergence_curves(cq, xcol)
                for i, (el, g) in enumerate(cur.groupby("estimator_label")):
                    est = g["estimator"].iloc[0]
                    ls, _ = _style_cycle(i)
                    ax.plot(g["x"], g["y"].clip(lower=1e-300), ls, color=pal.get(est), label=el, lw=1.2)
                    if nseeds > 1:
                        ax.fill_between(g["x"], g["lo"].clip(lower=1e-300), g["hi"].clip(lower=1e-300),
                                        color=pal.get(est), alpha=0.2)
                positive = (cq["value"] > 0).all()
                if positive:
                    ax.set_yscale("log")
                ax.set_xlabel(xlab)
                ax.set_ylabel(CONVERGENCE_LABELS[qn] + (" (log)" if positive else ""))
            _legend(row[0])
        fig.suptitle(problem_label, fontsize=9)
        fig.tight_layout()
        name = f"convergence_{len(paths)}.png"
        paths.append(_save(fig, out / name))
        doc.img(name, f"{problem_label}: convergence versus iterations, oracle calls and seconds; "
                f"mean over {nseeds} seed(s)" + (", band: 95% CI of the mean" if nseeds > 1 else ""))
    last = c.sort_values("iteration").groupby(["problem_label", "estimator_label", "seed", "quantity"]).tail(1)
    t = last.pivot_table(index=["problem_label", "estimator_label"], columns="quantity", values="value",
                         aggfunc="mean").reset_index().rename(columns={"problem_label": "problem",
                                                                       "estimator_label": "estimator"})
    div = _labelled(d[d["quantity"] == "diverged"])
    if not div.empty:
        dv = div.groupby(["problem_label", "estimator_label"])["value"].sum().rename("diverged_seeds").reset_index()
        t = t.merge(dv.rename(columns={"problem_label": "problem", "estimator_label": "estimator"}),
                    on=["problem", "estimator"], how="left")
    doc.p("Final values (mean over seeds):")
    doc.table(t)
    return paths


def landscape_section(df: pd.DataFrame, out: Path, pal: dict, doc: "_Doc") -> Path | None:
    """For one-dimensional problems with convergence cells: Phi (M^(r) for unrolled problems) over x with each
    estimator's outer-loop end point marked, and the first-order fixed point where the problem knows it
    (the UFO-BLO counterexample, Likhosherstov et al. 2021, Sec. 3)."""
    from . import api

    c = _ok(df, "convergence")
    if c.empty or "quantity" not in c:
        return None
    ends = c[c["quantity"] == "x_final"]
    if ends.empty:
        return None
    groups = [(k, g) for k, g in ends.groupby(["problem", "problem_params"]) if g["coord"].max() == 0]
    if not groups:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(groups), figsize=(6.0 * len(groups), 4.0), squeeze=False)
    for ax, ((pname, pparams), g) in zip(axes[0], groups):
        prob = api.problem(pname, **_params(pparams))
        xs = pd.to_numeric(g["value"]).to_numpy()
        lo, hi = min(xs.min(), -10.0), max(xs.max(), 30.0)
        grid = np.linspace(lo, hi, 400)
        ax.plot(grid, [prob.value(torch.tensor([v], dtype=torch.float64)) for v in grid], color="0.3", lw=1.2,
                label="Phi(x)")
        for est, ge in g.groupby("estimator"):
            xe = pd.to_numeric(ge["value"]).to_numpy()
            ax.scatter(xe, [prob.value(torch.tensor([v], dtype=torch.float64)) for v in xe], color=pal.get(est),
                       s=40, zorder=3, label=f"{est} end point(s)")
        fo_fp = getattr(prob, "fo_fixed_point", None)
        if callable(fo_fp):
            xf = float(fo_fp().reshape(-1)[0])
            ax.axvline(xf, color="0.5", ls=":", label=f"FO fixed point x={xf:.3g}")
        for sp in prob.stationary_points():
            ax.axvline(float(sp.reshape(-1)[0]), color="0.7", ls="--", lw=0.8)
        ax.set_xlabel("x (outer variable)")
        ax.set_ylabel("Phi(x) = M^(r)(x) (loss units)")
        ax.set_title(_with_params(pname, _params(pparams)), fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = _save(fig, out / "landscape.png")
    doc.h(3, "Objective with end points (one-dimensional problems)")
    doc.p("Phi over x with each estimator's final outer iterate; dashed: known stationary points; dotted: the point "
          "where the first-order update vanishes in expectation.")
    doc.img(path.name, "objective landscape with end points")
    return path


def budget_metric_section(df: pd.DataFrame, metric: str, out: Path, pal: dict, doc: _Doc) -> Path | None:
    """Generic section for metrics whose rows carry ``budget``, ``value`` and ``quantity`` (memory/time vs r)."""
    d = _ok(df, metric)
    if d.empty or "budget" not in d or d["budget"].isna().all():
        return None
    doc.h(2, f"{metric.replace('_', ' ')} ({metric})")
    summary = _labelled(d[d["budget"].isna()])
    d = _labelled(d[d["budget"].notna()])
    d["budget"] = d["budget"].astype(float)
    d["value"] = pd.to_numeric(d["value"], errors="coerce")
    qs = sorted(d["quantity"].dropna().unique())
    plt = _plt()
    from matplotlib.ticker import ScalarFormatter

    fig, axes = plt.subplots(1, len(qs), figsize=(4.6 * len(qs), 3.5), squeeze=False)
    for ax, qn in zip(axes[0], qs):
        s = d[d["quantity"] == qn]
        for i, ((pl, el), g) in enumerate(sorted(s.groupby(["problem_label", "estimator_label"]), key=lambda t: t[0])):
            has_band = "lo" in g and "hi" in g and g["lo"].notna().all() and g["hi"].notna().all()
            g = g.groupby("budget", as_index=False).agg(
                value=("value", "mean"), **({"lo": ("lo", "mean"), "hi": ("hi", "mean")} if has_band else {}))
            g = g.sort_values("budget")
            ls, mk = _style_cycle(i)
            color = pal.get(el.split("(")[0])
            ax.plot(g["budget"], g["value"], ls, marker=mk, ms=3, color=color, label=f"{el} / {pl}")
            if has_band:
                ax.fill_between(g["budget"], g["lo"], g["hi"], color=color, alpha=0.15)
        bp = s["budget_param"].dropna().unique() if "budget_param" in s else []
        ax.set_xlabel("budget" + (f": {bp[0]}" if len(bp) else "") + " (iterations)")
        if (s["value"] > 0).all():
            ax.set_yscale("log")
            if (s["budget"] > 0).all():
                ax.set_xscale("log")
                ax.xaxis.set_major_formatter(ScalarFormatter())
                ax.xaxis.set_minor_formatter(plt.NullFormatter())
        unit = "bytes" if ("byte" in qn or "mem" in qn) else ("seconds" if ("second" in qn or "time" in qn) else "")
        ax.set_ylabel(qn + (f" ({unit})" if unit and unit not in qn else "") + (" (log)" if ax.get_yscale() == "log" else ""))
        ax.set_title(qn + (" (band: lo-hi)" if "lo" in s and s["lo"].notna().any() else ""), fontsize=8)
        _legend(ax)
    fig.tight_layout()
    path = _save(fig, out / f"{metric}.png")
    doc.img(f"{metric}.png", f"{metric}: value versus budget per quantity (log-log where positive)")
    t = d.pivot_table(index=["problem_label", "estimator_label", "quantity"], columns="budget", values="value",
                      aggfunc="mean").reset_index().rename(columns={"problem_label": "problem", "estimator_label": "estimator"})
    t.columns = [c if isinstance(c, str) else f"r={c:g}" for c in t.columns]
    doc.table(t)
    if not summary.empty:
        summary = summary.assign(value=pd.to_numeric(summary["value"], errors="coerce"))
        st = summary.pivot_table(index=["problem_label", "estimator_label"], columns="quantity", values="value",
                                 aggfunc="mean").reset_index().rename(columns={"problem_label": "problem",
                                                                               "estimator_label": "estimator"})
        doc.p("Fitted summaries (mean over seeds):")
        doc.table(st)
    return path


def generic_section(df: pd.DataFrame, metric: str, doc: _Doc) -> None:
    d = _labelled(_ok(df, metric))
    if d.empty:
        return
    doc.h(2, f"{metric}")
    d = d[d["coord"].isna()] if "coord" in d else d
    d = d.assign(value=pd.to_numeric(d["value"], errors="coerce"))
    t = d.groupby(["problem_label", "estimator_label", "quantity"])["value"].mean().reset_index()
    doc.table(t.rename(columns={"problem_label": "problem", "estimator_label": "estimator", "value": "mean value"}))


def claims_rows(claims: Any) -> pd.DataFrame:
    """Claims table from ClaimResults, their row() dicts, or a claims JSON path."""
    from .claim_base import ClaimResult, load_results

    if isinstance(claims, (str, Path)):
        claims = load_results(claims)
    rows = [c.row() if isinstance(c, ClaimResult) else dict(c) for c in claims]
    cols = ["claim", "citation", "measured", "predicted", "expected", "outcome", "control_verdict", "gate", "seconds"]
    df = pd.DataFrame(rows)
    return df[[c for c in cols if c in df.columns]] if not df.empty else df


def fewshot_section(claims: Any, doc: "_Doc") -> bool:
    """The few-shot accuracy table (UFO-BLO's Table 1 stand-in) from a claim whose evidence holds per-method
    ``rows`` with ``acc_iters_mean`` / ``acc_iters_ci`` (and, when measured, the equal-compute columns)."""
    from .claim_base import ClaimResult

    done = False
    for c in claims:
        if not isinstance(c, ClaimResult):
            continue
        ev = (c.evidence or {}).get("main") or {}
        rows = ev.get("rows")
        if not isinstance(rows, dict) or not all(isinstance(r, dict) and "acc_iters_mean" in r for r in rows.values()):
            continue
        ci = lambda r, k: f"{r[k + '_mean']:.3f} [{r[k + '_ci'][0]:.3f}, {r[k + '_ci'][1]:.3f}]"  # noqa: E731
        table = []
        for method, r in rows.items():
            row = {"method": method, f"accuracy at {r['iterations']} meta-iterations [95% CI]": ci(r, "acc_iters"),
                   "oracle calls": f"{r['calls']:.0f}"}
            if "acc_compute_mean" in r:
                row["accuracy at exact's oracle budget [95% CI]"] = ci(r, "acc_compute")
                row["meta-iterations within budget"] = f"{r['iterations_compute']:.0f}"
            row["mean q"] = "" if r.get("mean_q") is None else f"{r['mean_q']:.2f}"
            table.append(row)
        doc.h(2, f"Few-shot table ({c.name})")
        seeds = ev.get("seeds", [])
        doc.p(f"{c.statement} Seeds: {len(seeds) if isinstance(seeds, list) else seeds}; test tasks: {ev.get('test_tasks')}; accuracy of the "
              f"initialisation: {ev.get('init_accuracy', float('nan')):.3f}. Gate: {c.row()['gate']}.")
        doc.table(pd.DataFrame(table))
        done = True
    return done


def kappa_scaling_section(claims: Any, out: Path, doc: "_Doc") -> Path | None:
    """Figure of the kappa-scaling fits recorded by claims (evidence with a ``kappa`` list and same-length
    count lists, e.g. ji-kappa-exponent): log-log counts versus kappa, with the fitted exponents."""
    from .claim_base import ClaimResult, load_results

    if isinstance(claims, (str, Path)):
        claims = load_results(claims)
    found = []
    for c in claims:
        if not isinstance(c, ClaimResult):
            continue
        ev = (c.evidence or {}).get("main") or {}
        kap = ev.get("kappa")
        if not isinstance(kap, list) or len(kap) < 2:
            continue
        series = {k: v for k, v in ev.items() if k != "kappa" and isinstance(v, list) and len(v) == len(kap)
                  and all(isinstance(x, (int, float)) for x in v)}
        if series:
            found.append((c, kap, series, ev.get("exponents") or {}))
    if not found:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(found), figsize=(5.5 * len(found), 4.0), squeeze=False)
    rows = []
    for ax, (c, kap, series, expo) in zip(axes[0], found):
        for name, vals in series.items():
            lab = f"{name} (fitted exponent {expo[name]:.2f})" if name in expo else name
            ax.plot(kap, vals, marker="o", label=lab)
            if name in expo:
                rows.append({"claim": c.name, "count": name, "fitted exponent": expo[name], "predicted": c.predicted})
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("condition number kappa (log scale)")
        ax.set_ylabel("count to reach eps (iterations / oracle calls, log scale)")
        ax.set_title(c.name, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = _save(fig, out / "kappa_scaling.png")
    doc.h(2, "Kappa scaling")
    doc.p("Counts to reach eps against kappa, from the claims' recorded evidence; the fitted exponent is the "
          "log-log slope, to compare with the thesis's complexity table.")
    doc.img(path.name, "kappa scaling")
    if rows:
        doc.table(pd.DataFrame(rows))
    return path


# ----------------------------------------------------------------------------- entry point

BUDGET_METRICS = ("memory_vs_budget", "time_vs_budget")


def write_report(run: str | Path, out_root: str | Path = "reports", claims: Any = None,
                 out_dir: str | Path | None = None) -> Path:
    """Write ``<out_root>/<run-id>/report.md`` and ``index.html`` (figures beside them); returns report.md.

    ``claims``: claim results, their rows, or a claims JSON path; default ``<run>/claims.json`` if present.
    ``out_dir`` overrides the output folder (``make report`` writes ``reports/reference``).
    """
    run_dir = resolve_run(run)
    man = read_manifest(run_dir)
    df = load(run_dir)
    out = Path(out_dir) if out_dir is not None else Path(out_root) / run_dir.name
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):  # figures of a previous report of this run that may no longer apply
        old.unlink()
    doc = _Doc()
    doc.h(1, f"blobench report: {run_dir.name}")
    m = man.get("machine", {}) or {}
    dev = man.get("devices", {}) or {}
    doc.ul([f"matrix: {man.get('matrix_path')} ({man.get('cells')} cells)",
            f"created: {man.get('created')}", f"git revision: {man.get('git_revision')}",
            f"versions: {', '.join(f'{k} {v}' for k, v in (man.get('versions') or {}).items())}",
            f"machine: {m.get('platform')} ({m.get('cpus')} CPUs)",
            f"devices: CUDA {dev.get('cuda_name') or 'none'}"])
    if claims is None and (run_dir / "claims.json").is_file():
        claims = run_dir / "claims.json"
    if df.empty:
        doc.p("No finished cells.")
    else:
        pal = _palette(df["estimator"].dropna().unique())
        cells = df.drop_duplicates("key")
        doc.p(f"Finished cells: {len(cells)}; ok: {int((cells['status'] == 'ok').sum())}; "
              f"failed/diverged/timeout: {int((cells['status'] != 'ok').sum())}.")
        per = cells.groupby(["metric", "status"]).size().rename("cells").reset_index()
        doc.table(per)
        metrics = [x for x in cells["metric"].dropna().unique()]
        done = set()
        if "error_vs_budget" in metrics:
            error_budget_section(df, out, pal, doc)
            done.add("error_vs_budget")
        if "bias_variance" in metrics:
            bias_variance_section(df, out, pal, doc)
            done.add("bias_variance")
        if "convergence" in metrics:
            if convergence_section(df, out, pal, doc) or _ok(df, "convergence").empty:
                done.add("convergence")
            landscape_section(df, out, pal, doc)
        for mt in sorted(metrics):
            if mt in done:
                continue
            if (mt in BUDGET_METRICS or ("budget" in df and _ok(df, mt)["budget"].notna().any())) \
                    and budget_metric_section(df, mt, out, pal, doc) is not None:
                continue
            generic_section(df, mt, doc)
        bad = cells[cells["status"] != "ok"]
        doc.h(2, "Failed cells")
        doc.table(bad[[c for c in ["problem", "problem_params", "estimator", "estimator_params", "metric", "seed",
                                    "status", "message"] if c in bad.columns]])
    if claims is not None:
        if isinstance(claims, (str, Path)):  # read the claims file once for the table and the kappa figure
            from .claim_base import load_results

            claims = load_results(claims)
        doc.h(2, "Claims")
        doc.p("Gate PASS: the measured outcome equals the recorded expectation and the negative control fails.")
        doc.table(claims_rows(claims))
        kappa_scaling_section(claims, out, doc)
        fewshot_section(claims, doc)
    path = out / "report.md"
    path.write_text(doc.markdown())
    (out / "index.html").write_text(doc.html(f"blobench report: {run_dir.name}"))
    return path
