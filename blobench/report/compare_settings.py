"""``compare`` of two settings (issue 26): cells that exist in one run only (``mine`` with inner_steps=20,
``mine-k40`` with inner_steps=40) are aligned by problem, estimator, metric and seed, their differing parameters
are named, their rows are paired on (quantity, coord, iteration, budget), and paired figures are drawn (run A
solid, run B dashed, one colour per method)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from blobench.report.base import params

ALIGN = ["problem", "estimator", "metric", "seed", "device"]
ROWS = ["quantity", "coord", "iteration", "budget_param", "budget"]


def _all_params(r: pd.Series) -> dict[str, Any]:
    out = {}
    for col, pre in (("problem_params", "problem."), ("estimator_params", ""), ("metric_params", "metric.")):
        for k, v in params(r.get(col)).items():
            out[pre + k] = v
    return out


def _diff(a: dict, b: dict) -> str:
    keys = sorted(set(a) | set(b))
    ch = [f"{k}: {json.dumps(a.get(k, '-'), default=str)} -> {json.dumps(b.get(k, '-'), default=str)}"
          for k in keys if json.dumps(a.get(k), default=str) != json.dumps(b.get(k), default=str)]
    return "; ".join(ch) or "(same parameters)"


def pair_settings(A: pd.DataFrame, B: pd.DataFrame, only_a: set, only_b: set) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(settings, paired rows). ``only_a``/``only_b``: cell keys present in one run only. Cells of A and B are paired
    when they agree on problem, estimator, metric, seed and device (the n-th of A with the n-th of B, in
    parameter order, where several match). ``settings``: one row per pair with the differing parameters;
    ``paired``: their ok rows side by side (value_a, value_b, ratio)."""
    a = A[A["key"].isin(only_a)]
    b = B[B["key"].isin(only_b)]
    if a.empty or b.empty:
        return pd.DataFrame(), pd.DataFrame()
    ca = a.drop_duplicates("key")
    cb = b.drop_duplicates("key")
    for d in (ca, cb):
        for c in ALIGN:
            if c not in d:
                d[c] = np.nan
    sets, rows = [], []
    ga = {k: g for k, g in ca.groupby([ca[c].astype(str) for c in ALIGN])}
    gb = {k: g for k, g in cb.groupby([cb[c].astype(str) for c in ALIGN])}
    for k in sorted(set(ga) & set(gb)):
        xa = ga[k].sort_values(["problem_params", "estimator_params", "metric_params"])
        xb = gb[k].sort_values(["problem_params", "estimator_params", "metric_params"])
        for (_, ra), (_, rb) in zip(xa.iterrows(), xb.iterrows()):
            diff = _diff(_all_params(ra), _all_params(rb))
            pa = a[(a["key"] == ra["key"]) & (a["status"] == "ok")]
            pb = b[(b["key"] == rb["key"]) & (b["status"] == "ok")]
            cols = [c for c in ROWS if c in pa and c in pb]
            keys = [f"_k_{c}" for c in cols]  # join on the text of each row id (NaN == NaN), keep A's typed columns
            fa = pa[cols + ["value"]].assign(**{f"_k_{c}": pa[c].astype(str) for c in cols})
            fb = pb[["value"]].assign(**{f"_k_{c}": pb[c].astype(str) for c in cols})
            m = fa.merge(fb, on=keys, suffixes=("_a", "_b")).drop(columns=keys)
            m = m.assign(value_a=pd.to_numeric(m["value_a"], errors="coerce"),
                         value_b=pd.to_numeric(m["value_b"], errors="coerce"))
            pair = f"{ra['problem']} / {ra['estimator']} / {ra['metric']} / seed {ra.get('seed')}"
            rows.append(m.assign(pair=pair, problem=ra["problem"], estimator=ra["estimator"], metric=ra["metric"],
                                 seed=ra.get("seed"), differing=diff))
            both = m[np.isfinite(m["value_a"]) & np.isfinite(m["value_b"])]
            last = both.iloc[-1] if len(both) else None
            sets.append({"problem": ra["problem"], "estimator": ra["estimator"], "metric": ra["metric"],
                         "seed": ra.get("seed"), "differing parameters (A -> B)": diff, "rows paired": len(both),
                         "status A -> B": f"{ra['status']} -> {rb['status']}",
                         "last paired row": "-" if last is None else
                         f"{last['quantity']}: {last['value_a']:.4g} -> {last['value_b']:.4g}"})
    paired = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    return pd.DataFrame(sets), paired


def paired_figures(paired: pd.DataFrame, out: Path, names: tuple[str, str], pal: dict) -> list[dict]:
    """One figure per metric: convergence pairs as curves (A solid, B dashed) of each quantity against the
    iteration, error_vs_budget against the budget, anything else as B against A (dashed: unchanged)."""
    from blobench.report import style

    recs = []
    if paired.empty:
        return recs
    for metric, g in paired.groupby("metric"):
        xcol = "iteration" if metric == "convergence" else "budget" if metric == "error_vs_budget" else None
        if xcol is not None and xcol in g:
            g = g[pd.to_numeric(g[xcol], errors="coerce").notna()].assign(_x=lambda d: pd.to_numeric(d[xcol], errors="coerce"))
        qs = sorted(g["quantity"].astype(str).unique())[:3] if xcol is not None else []
        with style.themed():
            if xcol is not None and qs:
                fig, axes = style.new_figure(1, len(qs), w=4.6, h=3.4, legend_rows=2)
                for ax, q in zip(axes[0], qs):
                    h = g[g["quantity"] == q]
                    for (pair, diff), hp in h.groupby(["pair", "differing"]):
                        hp = hp.groupby("_x")[["value_a", "value_b"]].mean().sort_index()
                        est = pair.split(" / ")[1]
                        ax.plot(hp.index, hp["value_a"], "-", color=pal.get(est), label=f"{est} (A: {names[0]})")
                        ax.plot(hp.index, hp["value_b"], "--", color=pal.get(est), label=f"{est} (B: {names[1]})")
                    style.log_if_positive(ax, pd.concat([h["value_a"], h["value_b"]]))
                    ax.set_xlabel(xcol)
                    ax.set_ylabel(q)
                style.legend_outside(fig, list(axes[0]), ncol=2)
            else:
                fig, axes = style.new_figure(1, 1, w=5.5, h=4.5, legend_rows=1)
                ax = axes[0][0]
                for est, h in g.groupby("estimator"):
                    ax.scatter(h["value_a"], h["value_b"], s=16, color=pal.get(str(est)), label=str(est))
                v = pd.concat([g["value_a"], g["value_b"]])
                v = v[np.isfinite(v)]
                if len(v):
                    style.reference_line(ax.plot([v.min(), v.max()], [v.min(), v.max()], "--", color="0.5",
                                                 label="unchanged")[0])
                ax.set_xlabel(f"value in A ({names[0]})")
                ax.set_ylabel(f"value in B ({names[1]})")
                style.legend_outside(fig, [ax])
            diffs = "; ".join(sorted(set(g["differing"])))[:200]
            recs.append(style.save(fig, out, f"compare_settings_{metric}",
                                   f"{metric}: paired cells, A ({names[0]}) solid vs B ({names[1]}) dashed; "
                                   f"differing: {diffs}", "compare"))
    return recs
