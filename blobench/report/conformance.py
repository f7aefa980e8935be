"""Report section: the conformance matrix of ``blobench verify --all`` (issue 22), from ``<run>/conformance.json``
(written by ``blobench verify --all --matrix <run>/conformance.md``; ``make report`` does it for the reference run)."""
from __future__ import annotations

import json

from blobench.report.base import Context, section
from blobench.report.page import Doc


@section("conformance", order=75)
def conformance_section(ctx: Context, doc: Doc) -> None:
    path = ctx.run_dir / "conformance.json"
    if not path.is_file():
        return
    data = json.loads(path.read_text())
    from blobench.gate.verify.common import Check
    from blobench.gate.verify.card import matrix_cells
    from blobench.gate.verify.conformance import reason

    import pandas as pd

    rows = [Check(**r) for r in data["rows"]]
    doc.h(2, "Conformance matrix (blobench verify)")
    doc.p(f"Every built-in estimator and problem through the verify battery at size {data.get('size', 'ci')} "
          f"({len(rows)} checks, {sum(r.failed for r in rows)} failures; docs/verify.md defines each property). "
          "A cell aggregates a property over the battery's problems.")
    for kind in ("estimator", "problem"):
        cells = matrix_cells([r for r in rows if r.kind == kind])
        props = list(dict.fromkeys(p for c in cells.values() for p in c))
        doc.table(pd.DataFrame([{kind: s, **{p: c.get(p, "") for p in props}} for s, c in cells.items()]))
    fails = [r for r in rows if r.failed]
    if fails:
        doc.p("Failures and their recorded reasons:")
        doc.ul([f"{r.subject} {r.prop} on {r.problem}: {r.measured}. {reason(r.subject, r.prop) or 'UNEXPLAINED'}"
                for r in fails])
