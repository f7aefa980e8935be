"""Sections: a table for every metric no other section drew, and the failed cells with their messages."""
from __future__ import annotations

import pandas as pd

from blobench.report.base import Context, labelled, ok, section
from blobench.report.page import Doc


@section("other_metrics", order=80)
def render(ctx: Context, doc: Doc) -> None:
    for metric in ctx.metrics():
        if metric in ctx.done:
            continue
        d = labelled(ok(ctx.df, metric))
        if d.empty:
            continue
        ctx.done.add(metric)
        doc.h(2, f"{metric}", anchor=metric)
        d = d[d["coord"].isna()] if "coord" in d else d
        d = d.assign(value=pd.to_numeric(d["value"], errors="coerce"))
        t = d.groupby(["problem_label", "estimator_label", "quantity"])["value"].mean().reset_index()
        doc.table(t.rename(columns={"problem_label": "problem", "estimator_label": "estimator", "value": "mean value"}))


@section("failed", order=90)
def failed(ctx: Context, doc: Doc) -> None:
    if ctx.raw.empty:
        return
    cells = ctx.raw.drop_duplicates("key")
    bad = cells[cells["status"] != "ok"]
    doc.h(2, "Failed cells", anchor="failed")
    doc.table(bad[[c for c in ["experiment", "problem", "problem_params", "estimator", "estimator_params", "metric",
                               "seed", "status", "message"] if c in bad.columns]])
