"""Section: the summary at the top of the page: run metadata, cells by metric and status, claims verdicts,
and every flagged violation (linked to its section). Rendered after every other section (it lists what they
flagged) and placed first."""
from __future__ import annotations

import pandas as pd

from blobench.report.base import Context, section
from blobench.report.claims import claims_rows, verdict_counts
from blobench.report.page import Doc


@section("summary", order=0)
def render(ctx: Context, doc: Doc) -> None:
    man = ctx.manifest
    doc.h(2, "Summary", anchor="summary")
    m = man.get("machine", {}) or {}
    dev = man.get("devices", {}) or {}
    doc.ul([f"matrix: {man.get('matrix_path')} ({man.get('cells')} cells)",
            f"created: {man.get('created')}", f"git revision: {man.get('git_revision')}",
            f"versions: {', '.join(f'{k} {v}' for k, v in (man.get('versions') or {}).items())}",
            f"machine: {m.get('platform')} ({m.get('cpus')} CPUs)",
            f"devices: CUDA {dev.get('cuda_name') or 'none'}"])
    if ctx.raw.empty:
        doc.p("No finished cells.")
    else:
        cells = ctx.raw.drop_duplicates("key")
        doc.p(f"Finished cells: {len(cells)}; ok: {int((cells['status'] == 'ok').sum())}; "
              f"failed/diverged/timeout: {int((cells['status'] != 'ok').sum())}."
              + (f" Deterministic cells deduplicated across seeds: {ctx.deduplicated} (identical values; the "
                 "lowest seed is shown)." if ctx.deduplicated else ""))
        per = cells.groupby(["metric", "status"]).size().rename("cells").reset_index()
        per = per.pivot_table(index="metric", columns="status", values="cells", aggfunc="sum", fill_value=0)
        doc.table(per.reset_index())
    if ctx.claims:
        counts = verdict_counts(ctx.claims)
        doc.p("Claims: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + " (see Claims).")
        t = claims_rows(ctx.claims)
        bad = t[t["gate"].astype(str).str.startswith("FAIL")] if "gate" in t else t.iloc[0:0]
        for _, r in bad.iterrows():
            doc.flag(f"claim {r['claim']}: gate {r['gate']} (expected {r.get('expected')}, measured outcome "
                     f"{r.get('outcome')}; measured {r.get('measured')} vs predicted {r.get('predicted')})")
    if ctx.violations:
        doc.p(f"Flagged violations: {len(ctx.violations)} measured value(s) outside their theoretical bound.")
        v = pd.DataFrame(ctx.violations)
        v["_flag"] = True
        doc.table(v[[c for c in ["section", "what", "measured", "predicted", "source", "_flag"] if c in v]])
    else:
        doc.p("Flagged violations: none (no fitted rate above its theoretical bound).")
