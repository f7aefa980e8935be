"""``blobench plot RUN --x calls --y grad_norm_sq --where ... --hue estimator --out fig.pdf``: one figure from the
command line, in the report's style (the same theme, one fixed colour / line style / marker per method, mathtext
labels, log axes for gaps and squared norms), as PDF, SVG or PNG (by the extension of ``--out``).

``--y`` is a quantity of the run's rows (``grad_norm_sq``, ``value_gap``, ``error``, ``bias_norm``, ...).
``--x``: ``iteration``, ``calls`` (cumulative oracle calls, all kinds), ``seconds`` (``seconds_elapsed``),
``budget``, or any numeric column. ``--hue``: a column (``estimator``, ``problem``, ``seed``, ...) or a parameter
name (``inner_steps``; problem or estimator parameter); one line per value, mean over seeds with a 95 % band
where a line has several seeds.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from blobench.core.errors import BlobenchError
from blobench.report import style
from blobench.report.base import estimator_names, params

X_ALIASES = {"iteration": "iteration", "iterations": "iteration", "calls": "calls_total", "oracle_calls": "calls_total",
             "seconds": "seconds_elapsed", "time": "seconds_elapsed", "budget": "budget"}
X_LABELS = {"iteration": r"outer iteration $t$", "calls_total": "oracle calls (all kinds, cumulative)",
            "seconds_elapsed": "wall-clock time (s)", "budget": "budget (iterations)"}
Y_LABELS = {"grad_norm_sq": r"$\|\nabla\Phi(x_t)\|^2$", "value_gap": r"$\Phi(x_t) - \Phi^*$",
            "dist_stationary": r"$\mathrm{dist}(x_t, \mathcal{X}^*)$", "error": r"$\|\hat{g} - \nabla\Phi(x)\|$",
            "rel_error": r"$\|\hat{g} - \nabla\Phi\| / \|\nabla\Phi\|$",
            "bias_norm": r"$\|\mathbb{E}[\hat{g}] - \nabla\Phi\|$", "variance_trace": r"$\mathrm{tr}\,\mathrm{Cov}[\hat{g}]$"}
LOG_Y = ("grad_norm_sq", "value_gap", "dist_stationary", "error", "rel_error", "bias_norm", "variance_trace", "mse")
FORMATS = (".pdf", ".svg", ".png")


def _hue_values(d: pd.DataFrame, hue: str) -> pd.Series:
    if hue in d.columns:
        return d[hue].astype(str)
    vals = []
    for pp, ep in zip(d.get("problem_params", pd.Series([""] * len(d))), d.get("estimator_params", pd.Series([""] * len(d)))):
        p = {**params(pp), **params(ep)}
        vals.append(str(p.get(hue, "-")))
    if all(v == "-" for v in vals):
        raise BlobenchError(f"plot --hue {hue!r}: neither a column nor a parameter of the selected rows")
    return pd.Series(vals, index=d.index)


def plot(run: str | Path, y: str, x: str = "iteration", where: Any = None, hue: str = "estimator",
         out: str | Path = "figure.pdf", title: str | None = None) -> Path:
    """Draw ``y`` against ``x`` for the rows of ``run`` (a slice with ``where``), one line per ``hue``; returns ``out``."""
    from blobench.engine.store import resolve_run
    from blobench.report.results import apply_where, load_named

    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise BlobenchError(f"plot --out {str(out)!r}: the extension must be one of {', '.join(FORMATS)}")
    run_dir = resolve_run(run)
    df = apply_where(load_named(run_dir), where)
    d = df[(df["status"] == "ok") & (df["quantity"] == y)] if "status" in df else df[df["quantity"] == y]
    if d.empty:
        have = ", ".join(sorted(df["quantity"].dropna().astype(str).unique())[:20]) if "quantity" in df else ""
        raise BlobenchError(f"plot --y {y!r}: no such quantity in the selected rows (quantities: {have})")
    xcol = X_ALIASES.get(x, x)
    if xcol == "calls_total":
        calls = [k for k in d.columns if k.startswith("calls_")]
        d = d.assign(calls_total=d[calls].fillna(0).sum(axis=1) if calls else np.nan)
    if xcol not in d or pd.to_numeric(d[xcol], errors="coerce").notna().sum() == 0:
        raise BlobenchError(f"plot --x {x!r}: the rows of {y!r} have no such column (try iteration, calls, seconds, budget)")
    d = d.assign(_x=pd.to_numeric(d[xcol], errors="coerce"), _y=pd.to_numeric(d["value"], errors="coerce"),
                 _hue=_hue_values(d, hue))
    d = d[d["_x"].notna() & d["_y"].notna()]
    styles = style.method_styles(estimator_names(df))
    with style.themed():
        fig, axes = style.new_figure(1, 1, w=6.0, h=4.2, legend_rows=1)
        ax = axes[0][0]
        pos = d["_y"][d["_y"] > 0]
        log = y in LOG_Y and style.force_log(ax, pos) or (y not in LOG_Y and style.log_if_positive(ax, d["_y"]))
        for i, (h, g) in enumerate(sorted(d.groupby("_hue"), key=lambda t: t[0])):
            if hue == "estimator" and h in styles:
                color, ls, mk = styles[h]
            else:
                color, ls, mk = None, style.LINESTYLES[i % len(style.LINESTYLES)], style.MARKERS[i % len(style.MARKERS)]
            step = "iteration" if "iteration" in g and g["iteration"].notna().all() else "_x"
            m = g.groupby(step).agg(x=("_x", "mean"), y=("_y", "mean"), sd=("_y", "std"), n=("_y", "size")).sort_values("x")
            yy = m["y"].where(m["y"] > 0) if log else m["y"]
            line = ax.plot(m["x"], yy, ls, color=color, marker=mk, ms=3.5, markevery=max(1, len(m) // 8),
                           label=f"{hue}={h}" if hue != "estimator" else str(h))[0]
            if (m["n"] > 1).any():
                half = 1.96 * m["sd"].fillna(0) / np.sqrt(m["n"])
                style.band(ax, m["x"], m["y"] - half, m["y"] + half, line.get_color())
        if log:
            style.tidy_log_axis(ax)
        ax.set_xlabel(X_LABELS.get(xcol, xcol))
        ax.set_ylabel(Y_LABELS.get(y, y.replace("_", " ")))
        from blobench.report.results import where_text

        ax.set_title(title or (f"{run_dir.name}" + (f" [{where_text(where)}]" if where else "")))
        style.legend_outside(fig, [ax])
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out)
        style.plt().close(fig)
    return out
