"""The report writer: ``write_report(run)`` (the package docstring describes the page and its sections)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from blobench.report import base
from blobench.report import style
from blobench.report.base import SECTIONS, Context, section
from blobench.report.page import Doc, md_table, render_html, render_markdown
from blobench.report.results import apply_where, where_text

# the section modules; importing one registers its sections (add new ones here)
from blobench.report import (bias_variance, budget, claims, complexity, conformance, convergence, error_budget,  # noqa: F401
                             generic, summary)
from blobench.report import test_error  # noqa: F401,E402  (issue 25: held-out error against time and calls)

from blobench.report.claims import claims_rows, fewshot_section, kappa_scaling_section, load_claims  # noqa: E402
from blobench.report.theory import rate_violation, theoretical_rate  # noqa: E402

# names kept from the single-module report.py
_Doc = Doc
_md_table = md_table
BUDGET_METRICS = budget.BUDGET_METRICS

__all__ = ["write_report", "theoretical_rate", "rate_violation", "claims_rows", "fewshot_section",
           "kappa_scaling_section", "section", "Context", "Doc", "SECTIONS"]

GENERATED = ("*.png", "*.svg", style.MANIFEST)


def write_report(run: str | Path, out_root: str | Path = "reports", claims: Any = None,  # noqa: F811 (the argument)
                 out_dir: str | Path | None = None, where: Any = None) -> Path:
    """Write ``<out_root>/<run-id>/report.md`` and ``index.html`` (figures beside them); returns report.md.

    ``claims``: claim results, their rows, or a claims JSON path; default ``<run>/claims.json`` if present.
    ``out_dir`` overrides the output folder (``make report`` writes ``reports/reference``).
    ``where``: a slice of the run (``["estimator=aid-cg", "metric=bias_variance"]``, see
    ``blobench.report.results.apply_where``); the page says which slice it shows.
    """
    from blobench.engine.store import load, read_manifest, resolve_run

    run_dir = resolve_run(run)
    man = read_manifest(run_dir)
    raw = load(run_dir)
    title = f"blobench report: {run_dir.name}"
    if where:
        raw = apply_where(raw, where)
        title += f" [{where_text(where)}]"
    out = Path(out_dir) if out_dir is not None else Path(out_root) / run_dir.name
    out.mkdir(parents=True, exist_ok=True)
    for pattern in GENERATED:  # figures of a previous report of this run that may no longer apply
        for old in out.glob(pattern):
            old.unlink()
    if claims is None and (run_dir / "claims.json").is_file():
        claims = run_dir / "claims.json"
    df, dropped = base.dedup_deterministic(raw)
    order = [e.get("name") for e in ((man.get("matrix") or {}).get("experiment") or []) if isinstance(e, dict)]
    ctx = Context(df=df, raw=raw, out=out, run_dir=run_dir, manifest=man, claims=load_claims(claims) or None,
                  pal=style.palette(base.estimator_names(raw)),
                  deduplicated=dropped, experiment_order=order)
    body = Doc()
    first = Doc()
    for s in SECTIONS:
        if s.name == "summary" or raw.empty and s.name != "claims":
            continue
        s.render(ctx, body)
    for s in SECTIONS:
        if s.name == "summary":
            s.render(ctx, first)
    first.extend(body)
    header = Doc()
    header.h(1, title)
    if where:
        header.p(f"Slice of the run: {where_text(where)} ({len(raw)} rows).")
    path = out / "report.md"
    path.write_text(render_markdown(header, first))
    (out / "index.html").write_text(render_html(title, header, first))
    return path
