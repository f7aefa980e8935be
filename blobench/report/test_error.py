"""Section: held-out error against time and oracle calls (issue 25), drawn as benchmark_bilevel draws its figures.

Rows: the ``test_error`` quantity that ``convergence`` records on data problems (the misclassification rate of
the current inner iterate on the test set; ``val_error`` where a problem has no test split), see
:func:`blobench.measure.outer.heldout_rows`. One figure per problem configuration (all its solvers together,
whichever experiments they came from), two panels: error (%) against wall-clock seconds and against cumulative
oracle calls, log-log. As in benchmark_bilevel's ``figures/plot_benchmark_bilevel.py`` (Dagreou et al.,
NeurIPS 2022, Fig. 2-3), each seed's curve is interpolated on a common log grid, the line is the median over
seeds and the band the 20 %-80 % quantiles; so one can put ours beside theirs. Their x axis "calls" counts
samples (oracle calls times the batch size); ours counts oracle calls (every kind, each on one minibatch).

The table beside it: per solver, the final error (median over seeds), the seconds and oracle calls at which
the seed-median curve reaches an error level and stays at or below it (the best final median error among the solvers plus one
percentage point), the final ||grad Phi||^2 (exact, mean over seeds) and the cells' wall time.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from blobench.report import style
from blobench.report.base import Context, labelled, ok, section
from blobench.report.convergence import NOT_REACHED, settle_index
from blobench.report.page import Doc

#: the error level of the "to level" columns: best final median error + this (a fraction: 0.01 = 1 point)
LEVEL_MARGIN = 0.01
GRID = 60


def heldout_quantity(c: pd.DataFrame) -> str | None:
    """``test_error`` if any row has it, else ``val_error``, else None."""
    qs = set(c["quantity"].dropna().unique()) if "quantity" in c else set()
    return "test_error" if "test_error" in qs else "val_error" if "val_error" in qs else None


def _calls(c: pd.DataFrame) -> pd.Series:
    cols = [k for k in c.columns if k.startswith("calls_")]
    return c[cols].fillna(0).sum(axis=1) if cols else pd.Series(np.nan, index=c.index)


def seed_curves(c: pd.DataFrame, xcol: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """One (x, error) curve per seed, sorted by iteration, the first point (x = 0) left out of log axes."""
    out = []
    for _, g in c.sort_values("iteration").groupby("seed"):
        x, y = g[xcol].to_numpy(float), g["value"].to_numpy(float)
        keep = np.isfinite(x) & np.isfinite(y) & (x > 0)
        if keep.sum() >= 1:
            out.append((x[keep], y[keep]))
    return out


def median_band(curves: list[tuple[np.ndarray, np.ndarray]], n: int = GRID):
    """(grid, median, q20, q80): each curve interpolated in log x on a common grid spanning all curves (held
    constant past a curve's ends), then quantiles over curves (benchmark_bilevel's plotting rule)."""
    lo = min(float(x.min()) for x, _ in curves)
    hi = max(float(x.max()) for x, _ in curves)
    grid = np.exp(np.linspace(np.log(lo), np.log(hi), n)) if hi > lo else np.array([lo])
    vals = np.array([np.interp(np.log(grid), np.log(x), y) for x, y in curves])
    return grid, np.quantile(vals, 0.5, axis=0), np.quantile(vals, 0.2, axis=0), np.quantile(vals, 0.8, axis=0)


def summary_table(c: pd.DataFrame, grad: pd.DataFrame, q: str) -> tuple[pd.DataFrame, float]:
    """Per solver: final error (median over seeds), seconds and calls where the seed-median curve first reaches
    the level (best final median + LEVEL_MARGIN), final ||grad Phi||^2 (mean over seeds), the cells' wall time
    (``cell_seconds``: setup, solver and truth together; summed over the solver's cells). Returns the table and
    the level."""
    rows = []
    med = {}
    for est, g in c.groupby("estimator_label"):
        m = g.groupby("iteration").agg(err=("value", "median"), secs=("seconds_elapsed", "median"),
                                       calls=("calls_total", "median")).sort_index()
        med[est] = m
    if not med:
        return pd.DataFrame(), float("nan")
    level = min(float(m["err"].iloc[-1]) for m in med.values()) + LEVEL_MARGIN
    for est, m in med.items():
        # the first evaluation from which the seed-median error stays at or below the level (the report's rule for
        # every "to eps" column): a curve that dips below it and leaves again has not reached it
        at, _ = settle_index(m["err"].to_numpy(), level)
        gl = grad[grad["estimator_label"] == est]
        last = gl.sort_values("iteration").groupby("seed").tail(1)
        cells = c[c["estimator_label"] == est].drop_duplicates("key")
        w = cells["cell_seconds"] if "cell_seconds" in cells else pd.Series(dtype=float)
        rows.append({"solver": est, f"final {q}": float(m["err"].iloc[-1]),
                     "iterations": int(m.index[-1]),
                     "seconds to level": float(m["secs"].iloc[at]) if at is not None else NOT_REACHED,
                     "calls to level": float(m["calls"].iloc[at]) if at is not None else NOT_REACHED,
                     "final grad_norm_sq": float(last["value"].mean()) if len(last) else np.nan,
                     "cells": int(len(cells)),
                     "cell wall s (sum)": float(w.sum()) if len(w) else np.nan})
    return pd.DataFrame(rows).sort_values(f"final {q}"), level


@section("test-error", order=42)
def render(ctx: Context, doc: Doc) -> None:
    d = ok(ctx.df, "convergence")
    if d.empty or "quantity" not in d:
        return
    q = heldout_quantity(d)
    if q is None:
        return
    d = labelled(d.assign(value=pd.to_numeric(d["value"], errors="coerce")))
    c = d[(d["quantity"] == q) & d["iteration"].notna()].copy()
    c["calls_total"] = _calls(c)
    if "seconds_elapsed" not in c:
        c["seconds_elapsed"] = np.nan
    grad = d[d["quantity"] == "grad_norm_sq"]
    doc.h(2, f"Held-out error against time and oracle calls ({q})", anchor="test-error")
    doc.p(f"The {q.replace('_', ' ')} of the current inner iterate along the outer loop (the convergence metric's "
          f"held-out rows), drawn as benchmark_bilevel's figures: median over seeds, band 20%-80% quantiles, "
          f"curves interpolated on a log grid, log-log axes.")
    for n, (pl, cp) in enumerate(c.groupby("problem_label", sort=False)):
        doc.h(3, pl, anchor=f"test-error-{n}")
        xs = [("seconds_elapsed", "wall-clock time (s, solver only)"), ("calls_total", "oracle calls (cumulative)")]
        nseeds = int(cp["seed"].nunique())
        # legend: the estimator's name, with its parameters only where one estimator has several configurations
        cfgs = cp.drop_duplicates("estimator_label").groupby("estimator")["estimator_label"].nunique()
        short = {lab: (est if cfgs[est] == 1 else lab)
                 for est, lab in cp.drop_duplicates("estimator_label")[["estimator", "estimator_label"]].itertuples(
                     index=False)}
        with style.themed():
            fig, axes = style.new_figure(1, len(xs), w=4.6, h=3.4, legend_rows=1)
            for ax, (xcol, xlab) in zip(axes.flat, xs):
                for est, g in cp.groupby("estimator_label"):
                    curves = seed_curves(g, xcol)
                    if not curves:
                        continue
                    grid, med, lo, hi = median_band(curves)
                    name = g["estimator"].iloc[0]
                    color = ctx.color(name)  # colour, line style and marker: the method's, as in every figure
                    ax.plot(grid, 100 * med, ctx.ls(name), color=color, marker=ctx.marker(name), ms=3.5,
                            markevery=max(1, len(grid) // 8), label=short[est])
                    if len(curves) > 1:
                        style.band(ax, grid, 100 * lo, 100 * hi, color)
                ax.set_xscale("log")
                style.log_if_positive(ax, cp["value"])
                ax.set_xlabel(xlab)
                ax.set_ylabel(f"{q.replace('_', ' ')} (%)")
            style.legend_outside(fig, list(axes.flat))
            fig.suptitle(pl)
            cap = (f"{pl}: {q} (%) of the inner iterate against solver seconds and oracle calls; median over "
                   f"{nseeds} seed(s)" + (", band 20%-80% quantiles over seeds" if nseeds > 1 else " (one seed: no band)"))
            rec = style.save(fig, ctx.out, f"test_error_{n}", cap, "test-error")
        ctx.figures.append(rec)
        doc.img(rec["png"], rec["caption"], rec["svg"])
        t, level = summary_table(cp, grad[grad["problem_label"] == pl], q)
        doc.p(f"Level: {100 * level:.2f}% (the best final median {q} among these solvers + "
              f"{100 * LEVEL_MARGIN:g} point); seconds and calls are medians over seeds at the first evaluated "
              f"iteration from which the seed-median error stays at or below it ({NOT_REACHED}: never, or it "
              f"left the level again).")
        doc.table(t)
