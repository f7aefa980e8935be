"""Section: the claims table (citations, measured vs predicted, expected vs measured outcome, the negative
control's verdict, the gate), the kappa-scaling figure and the few-shot table built from claims' evidence."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from blobench.report import style
from blobench.report.base import Context, section
from blobench.report.page import Doc

COLUMNS = ["claim", "citation", "measured", "predicted", "expected", "outcome", "control_verdict", "gate", "seconds"]


def load_claims(claims: Any) -> list:
    from blobench.gate.claim_base import load_results

    if claims is None:
        return []
    if isinstance(claims, (str, Path)):
        return load_results(claims)
    return list(claims)


def claims_rows(claims: Any) -> pd.DataFrame:
    """Claims table from ClaimResults, their row() dicts, or a claims JSON path."""
    from blobench.gate.claim_base import ClaimResult

    rows = [c.row() if isinstance(c, ClaimResult) else dict(c) for c in load_claims(claims)]
    df = pd.DataFrame(rows)
    return df[[c for c in COLUMNS if c in df.columns]] if not df.empty else df


def kappa_scaling_section(claims: Any, out: Path, doc: Doc, ctx: Context | None = None) -> Path | None:
    """Figure of the kappa-scaling fits recorded by claims (evidence with a ``kappa`` list and same-length
    count lists, e.g. ji-kappa-exponent): log-log counts versus kappa, each series labelled with its own
    fitted exponent (and its interval where the evidence records ``exponents_ci``)."""
    from blobench.gate.claim_base import ClaimResult

    found = []
    for c in load_claims(claims):
        if not isinstance(c, ClaimResult):
            continue
        ev = (c.evidence or {}).get("main") or {}
        kap = ev.get("kappa")
        if not isinstance(kap, list) or len(kap) < 2:
            continue
        series = {k: v for k, v in ev.items() if k != "kappa" and isinstance(v, list) and len(v) == len(kap)
                  and all(isinstance(x, (int, float)) for x in v)}
        if series:
            found.append((c, kap, series, ev.get("exponents") or {}, ev.get("exponents_ci") or {}))
    if not found:
        return None
    rows = []
    with style.themed():
        fig, axes = style.new_figure(1, len(found), w=5.6, h=4.2, legend_rows=2)
        for ax, (c, kap, series, expo, eci) in zip(axes[0], found):
            for i, (name, vals) in enumerate(series.items()):
                lab = name
                if name in expo:
                    ci = eci.get(name)
                    lab = f"{name}: fitted exponent {expo[name]:.2f}" + (
                        f" [{ci[0]:.2f}, {ci[1]:.2f}]" if isinstance(ci, (list, tuple)) and len(ci) == 2 else "")
                    rows.append({"claim": c.name, "count": name, "fitted exponent": expo[name],
                                 **({"95% CI": f"[{ci[0]:.3g}, {ci[1]:.3g}]"} if isinstance(ci, (list, tuple))
                                    and len(ci) == 2 else {}), "predicted": c.predicted})
                ls, mk = style.style_cycle(i)
                ax.plot(kap, vals, ls, marker=mk, ms=5, label=f"{c.name}: {lab}")
            ax.set_xscale("log", base=2)
            style.log_if_positive(ax, [v for vals in series.values() for v in vals])
            ax.set_xlabel("condition number kappa")
            ax.set_ylabel("count to reach eps (iterations / calls)")
            ax.set_title(f"{c.name} (predicted: {c.predicted})" if len(str(c.predicted)) < 40 else c.name)
        style.legend_outside(fig, axes[0], ncol=2)
        rec = style.save(fig, Path(out), "kappa_scaling", "counts to reach eps versus kappa (log-log), with each "
                         "series' fitted exponent", "claims")
    if ctx is not None:
        ctx.figures.append(rec)
    doc.h(3, "Kappa scaling", anchor="kappa-scaling")
    doc.p("Counts to reach eps against kappa, from the claims' recorded evidence; the fitted exponent is the "
          "log-log slope, to compare with the predicted exponents in the claims table.")
    doc.img(rec["png"], rec["caption"], rec["svg"])
    if rows:
        doc.table(pd.DataFrame(rows))
    return Path(out) / rec["png"]


def fewshot_section(claims: Any, doc: Doc) -> bool:
    """The few-shot accuracy table (UFO-BLO's Table 1 stand-in) from a claim whose evidence holds per-method
    ``rows`` with ``acc_iters_mean`` / ``acc_iters_ci`` (and, when measured, the equal-compute columns)."""
    from blobench.gate.claim_base import ClaimResult

    done = False
    for c in load_claims(claims):
        if not isinstance(c, ClaimResult):
            continue
        ev = (c.evidence or {}).get("main") or {}
        rows = ev.get("rows")
        if not isinstance(rows, dict) or not all(isinstance(r, dict) and "acc_iters_mean" in r for r in rows.values()):
            continue
        ci = lambda r, k: f"{r[k + '_mean']:.3f} [{r[k + '_ci'][0]:.3f}, {r[k + '_ci'][1]:.3f}]"  # noqa: E731
        table = []
        for method, r in rows.items():
            iters = r.get("iterations", ev.get("iters", "?"))  # per row (older evidence) or the run's setting
            calls = r.get("calls", r.get("calls_at_iters"))
            row = {"method": method, f"accuracy at {iters} meta-iterations [95% CI]": ci(r, "acc_iters"),
                   "oracle calls": "-" if calls is None else f"{float(calls):.0f}"}
            if "acc_compute_mean" in r:
                row["accuracy at exact's oracle budget [95% CI]"] = ci(r, "acc_compute")
                row["meta-iterations within budget"] = f"{r['iterations_compute']:.0f}"
            row["mean q"] = "" if r.get("mean_q") is None else f"{r['mean_q']:.2f}"
            table.append(row)
        doc.h(3, f"Few-shot table ({c.name})", anchor=f"fewshot-{c.name}")
        seeds = ev.get("seeds", [])
        init = ev.get("init_accuracy")
        try:
            init_txt = f"{float(init):.3f}" if init is not None and math.isfinite(float(init)) else None
        except (TypeError, ValueError):
            init_txt = None
        text = (f"{c.statement} Seeds: {len(seeds) if isinstance(seeds, list) else seeds}; "
                f"test tasks: {ev.get('test_tasks', 'not recorded')}; accuracy of the initialisation: "
                f"{init_txt if init_txt is not None else 'not recorded by the claim'}. Gate: {c.row()['gate']}.")
        doc.p(text)
        doc.table(pd.DataFrame(table))
        done = True
    return done


@section("claims", order=70)
def render(ctx: Context, doc: Doc) -> None:
    if not ctx.claims:
        return
    doc.h(2, "Claims", anchor="claims")
    doc.p("Gate PASS: the measured outcome equals the recorded expectation and the negative control fails.")
    t = claims_rows(ctx.claims)
    if "gate" in t:
        t["_flag"] = t["gate"].astype(str).str.startswith("FAIL")
    doc.table(t)
    kappa_scaling_section(ctx.claims, ctx.out, doc, ctx)
    fewshot_section(ctx.claims, doc)


def verdict_counts(claims: Any) -> dict[str, int]:
    t = claims_rows(claims)
    if t.empty or "gate" not in t:
        return {}
    g = t["gate"].astype(str).str.split().str[0]
    return {k: int(v) for k, v in g.value_counts().items()}

