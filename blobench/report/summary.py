"""Section: what a reader needs first. The summary (run metadata, cells by status, claims with their gate
verdicts and their measured outcomes counted apart) and the findings digest (violations, claims that do not
reproduce, failed cells, the best and worst method per slice, each linked to its section). Rendered after every
other section (it lists what they found) and placed first, before the table of contents."""
from __future__ import annotations

import pandas as pd

from blobench.report.base import Context, section
from blobench.report.claims import claims_rows
from blobench.report.page import Doc


def claim_counts(claims: object) -> tuple[dict[str, int], dict[str, int], list[str]]:
    """(gate verdicts, measured outcomes, names of the claims whose outcome is "not reproduced").

    A gate PASS means the measured outcome equals the recorded expectation, which may itself be "not
    reproduced": the two counts are shown apart, never as one number."""
    t = claims_rows(claims)
    if t.empty:
        return {}, {}, []
    gates = t["gate"].astype(str).str.split().str[0].value_counts().to_dict() if "gate" in t else {}
    outcome = t["outcome"].astype(str) if "outcome" in t else pd.Series([], dtype=str)
    kinds = outcome.where(~outcome.str.startswith("error"), "error")
    outs = kinds.value_counts().to_dict()
    notrep = t.loc[outcome.str.startswith("not reproduced"), "claim"].astype(str).tolist() if "claim" in t else []
    return {k: int(v) for k, v in gates.items()}, {k: int(v) for k, v in outs.items()}, notrep


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
    failed = pd.DataFrame()
    if ctx.raw.empty:
        doc.p("No finished cells.")
    else:
        cells = ctx.raw.drop_duplicates("key")
        failed = cells[cells["status"] != "ok"]
        doc.p(f"Finished cells: {len(cells)}; ok: {int((cells['status'] == 'ok').sum())}; "
              f"failed/diverged/timeout: {len(failed)}."
              + (f" Deterministic cells deduplicated across seeds: {ctx.deduplicated} (identical values; the "
                 "lowest seed is shown)." if ctx.deduplicated else ""))
        per = cells.groupby(["metric", "status"]).size().rename("cells").reset_index()
        per = per.pivot_table(index="metric", columns="status", values="cells", aggfunc="sum", fill_value=0)
        with doc.details("cells per metric and status"):
            doc.table(per.reset_index())
    notrep: list[str] = []
    bad = pd.DataFrame()
    if ctx.claims:
        gates, outs, notrep = claim_counts(ctx.claims)
        src = f" ({ctx.claims_source})" if getattr(ctx, "claims_source", "") else ""
        doc.p("Claims" + src + ": gate verdicts " + ", ".join(f"{v} {k}" for k, v in sorted(gates.items()))
              + "; measured outcomes " + ", ".join(f"{v} {k}" for k, v in sorted(outs.items()))
              + " (a gate PASS means the outcome matches the recorded expectation, which may be \"not reproduced\"; "
                "see Claims).")
        t = claims_rows(ctx.claims)
        bad = t[t["gate"].astype(str).str.startswith("FAIL")] if "gate" in t else t.iloc[0:0]
        for _, r in bad.iterrows():
            doc.flag(f"claim {r['claim']}: gate {r['gate']} (expected {r.get('expected')}, measured outcome "
                     f"{r.get('outcome')}; measured {r.get('measured')} vs predicted {r.get('predicted')})")
    else:
        doc.p("Claims: none with this run. Add them with `blobench report RUN --claims` (runs every claim at ci "
              "size and saves RUN/claims.json), or save `blobench check --json RUN/claims.json` first; a later "
              "report of any run in the same runs folder then shows the latest claims results.")
    if ctx.violations:
        doc.p(f"Flagged violations: {len(ctx.violations)} measured value(s) outside their theoretical bound.")
    else:
        doc.p("Flagged violations: none (no asymptotic rate whose whole interval lies above its theoretical bound).")

    # ------------------------------------------------------------------ the findings digest
    doc.h(2, "Findings", anchor="findings")
    items: list[str] = []
    for v in ctx.violations:
        items.append((f"VIOLATION ({v['section']}): {v['what']}: measured {v['measured']:.5g} > predicted "
                      f"{v['predicted']:.5g} ({v.get('source')})", v.get("anchor", v["section"])))
    if notrep:
        items.append((f"claims recorded \"not reproduced\" ({len(notrep)}): {', '.join(notrep)}", "claims"))
    for _, r in bad.iterrows():
        items.append((f"claim gate FAIL: {r['claim']} (expected {r.get('expected')}, outcome {r.get('outcome')})",
                      "claims"))
    if not failed.empty:
        by = failed.groupby(["metric", "status"]).size()
        first = str(failed["message"].iloc[0]) if "message" in failed else ""
        items.append((f"failed cells: {len(failed)} (" + ", ".join(f"{m} {s}: {n}" for (m, s), n in by.items())
                      + (f"; first: {first[:160]}" if first else "") + ")", "failed"))
    items += list(getattr(ctx, "findings", []))
    if items:
        doc.ul(items)
    else:
        doc.p("Nothing flagged: no violation, no failed cell, every claim as recorded.")
    if ctx.violations:
        v = pd.DataFrame(ctx.violations)
        v["_flag"] = True
        with doc.details(f"{len(ctx.violations)} flagged violation(s) (table)"):
            doc.table(v[[c for c in ["section", "what", "measured", "predicted", "source", "_flag"] if c in v]])
