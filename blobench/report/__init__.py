"""Reports: ``reports/<run-id>/index.html`` and ``report.md``, with every figure as PNG and SVG beside them.

``write_report(run)`` reads a run folder (docs/design.md, "Runner, store, report") and writes a navigable page:
a summary at the top (run metadata, cells by status, claims verdicts, flagged violations), a table of
contents with anchors, one section per metric with one sub-section (and figure) per experiment, collapsible
tables (``<details>``), tables sortable by clicking a header, all offline. ``figures.json`` beside the figures
records, per figure, its caption and, per axes, what it draws (see ``style.save``).

Layout of the package (one module per section; the page template and the figure style apart):

- ``page.py``: the page template (markdown + HTML, TOC, details, sortable tables, violation flags);
- ``style.py``: the figure style (seaborn theme, one colour per estimator, human units, legends outside,
  PNG + SVG + the figure manifest);
- ``base.py``: the :class:`Context` sections read, the section registry (:func:`section`), data helpers;
- ``theory.py``: theoretical rates with their sources, and the violation rule;
- sections: ``summary`` (placed first, rendered last), ``error_budget``, ``bias_variance``,
  ``convergence`` (and the 1-D landscape), ``budget`` (memory/time and any metric with a ``budget``
  column), ``claims`` (table, kappa scaling, few-shot table), ``generic`` (other metrics, failed cells).

Adding a section (e.g. a complexity figure) takes one module and one import line. In
``blobench/report/complexity.py``::

    from blobench.report.base import Context, ok, section
    from blobench.report.page import Doc
    from blobench.report import style

    @section("complexity", order=60)          # position on the page: sections render in increasing order
    def render(ctx: Context, doc: Doc) -> None:
        d = ok(ctx.df, "complexity")          # the run's rows of that metric (status ok)
        if d.empty:
            return                            # nothing to show: write nothing
        ctx.done.add("complexity")            # so the generic table section skips this metric
        doc.h(2, "Complexity (complexity)", anchor="complexity")   # an h2 is a TOC entry and a <section>
        with style.themed():
            fig, axes = style.new_figure(1, 1)
            ...                               # draw; colours from ctx.color(estimator)
            style.legend_outside(fig, axes[0])
            rec = style.save(fig, ctx.out, "complexity", "caption", "complexity")   # PNG + SVG + manifest
        ctx.figures.append(rec)
        doc.img(rec["png"], rec["caption"], rec["svg"])

then add ``complexity`` to the section imports of ``blobench/report/write.py`` (a section defined in another package
registers the same way once imported). Orders in use: summary 0, error_vs_budget 20, bias_variance 30,
convergence 40, landscape 45, budget metrics 50, claims 70, other metrics 80, failed cells 90.
"""
from __future__ import annotations

import importlib
from typing import Any

# The writer (and its section modules, which import torch and matplotlib) load on first use, so that
# ``blobench export`` / ``compare`` / ``runs`` and ``blobench.report.results`` stay light.
_LAZY = {"write_report": "write", "theoretical_rate": "theory", "rate_violation": "theory", "claims_rows": "claims",
         "fewshot_section": "claims", "kappa_scaling_section": "claims", "load_claims": "claims", "section": "base",
         "Context": "base", "SECTIONS": "base", "Doc": "page", "GENERATED": "write", "BUDGET_METRICS": "write"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"blobench.report.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'blobench.report' has no attribute {name!r}")


__all__ = sorted(_LAZY)
