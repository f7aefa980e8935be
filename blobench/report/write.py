"""The report writer: ``write_report(run)`` (the package docstring describes the page and its sections)."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from blobench.report import base
from blobench.report import style
from blobench.report.base import (MARKER, SECTIONS, Context, check_owned, is_owned, owned_output,  # noqa: F401
                                  section)
from blobench.report.page import Doc, md_table, render_html, render_markdown
from blobench.report.results import apply_where, by_experiment, where_text  # noqa: F401  (by_experiment: its old home)

# the section modules; importing one registers its sections (add new ones here)
from blobench.report import (bias_variance, budget, complexity, conformance, convergence, error_budget,  # noqa: F401
                             generic, summary)
from blobench.report import claims as _claims_section  # noqa: F401  ('claims' is the writers' argument name)
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


def slice_folder(out_root: Path, run_name: str, where: Any) -> Path:
    """The folder of a ``--where`` slice: its own sibling of the full report, ``<out_root>/<run-id>--<slug of the
    slice>`` (not inside the full report's folder, which each full report replaces)."""
    return out_root / f"{run_name}--{style.slug(where_text(where), max_len=120)}"


def write_report(run: str | Path, out_root: str | Path = "reports", claims: Any = None,
                 out_dir: str | Path | None = None, where: Any = None, progress: bool = False,
                 jobs: int | None = None) -> Path:
    """Write ``<out_root>/<run-id>/report.md`` and ``index.html`` (figures beside them); returns report.md.

    ``claims``: claim results, their rows, or a claims JSON path; default ``<run>/claims.json`` if present.
    ``out_dir`` overrides the output folder (``make report`` writes ``reports/reference``).
    ``where``: a slice of the run (``["estimator=aid-cg", "metric=bias_variance"]``, see
    ``blobench.report.results.apply_where``); the page says which slice it shows, and it goes to its own folder
    (:func:`slice_folder`) unless ``out_dir`` is given.
    The report is written into a temporary folder and swapped in (:func:`owned_output`); ``out_dir`` must be new,
    empty or a folder blobench wrote. ``progress``: one line per section on stderr (what it does, seconds).
    ``jobs``: worker processes that write the figures while the sections draw the next ones (``report --jobs``;
    default: the idle CPUs, at most 4, none when fewer than 2 are idle, :func:`blobench.report.style.default_jobs`);
    the files are the same bytes whatever the number (``tests/test_report_speed.py``).
    """
    from blobench.engine.store import load, read_manifest, resolve_run

    run_dir = resolve_run(run)
    man = read_manifest(run_dir)
    load_manifest_plugins(man)
    raw = by_experiment(load(run_dir), man)
    title = f"blobench report: {run_dir.name}"
    if where:
        raw = apply_where(raw, where)
        title += f" [{where_text(where)}]"
    if out_dir is not None:
        final = Path(out_dir)
    elif where:
        final = slice_folder(Path(out_root), run_dir.name, where)
    else:
        final = Path(out_root) / run_dir.name
    claims_source = ""
    if claims is None:
        claims, claims_source = latest_claims(run_dir)
    t0 = time.perf_counter()
    with owned_output(final) as out:
        with style.parallel_figures(jobs) as workers:
            nfig = _write(run_dir, man, raw, out, title, claims, where, claims_source, progress)
        _say(progress, f"done: {nfig} figure(s) in {time.perf_counter() - t0:.1f} s ("
             + (f"rendered by {workers} worker processes)" if workers else "rendered in this process)"))
    return final / "report.md"


def load_manifest_plugins(man: dict) -> list[str]:
    """Import the plugin files the run recorded (manifest ``plugins``), so ``report RUN`` needs no ``--plugin``;
    a file that is gone is skipped (the sections then show its cells as given). Returns the files loaded."""
    from blobench.engine.runner import load_plugins

    done = []
    for p in man.get("plugins") or []:
        if isinstance(p, str) and Path(p).is_file():
            load_plugins([p])
            done.append(p)
    return done


def latest_claims(run_dir: Path) -> tuple[Path | None, str]:
    """The claims results a report of ``run_dir`` shows when none are given: ``<run>/claims.json``, else the newest
    ``claims.json`` of another run in the same runs folder (``make run``'s report then shows the last
    ``make report`` / ``report --claims`` results), with a line saying where they come from; (None, "") if none."""
    own = run_dir / "claims.json"
    if own.is_file():
        return own, ""
    try:
        found = [p for p in run_dir.parent.glob("*/claims.json") if p.is_file()]
    except OSError:
        found = []
    if not found:
        return None, ""
    newest = max(found, key=lambda p: p.stat().st_mtime)
    import datetime

    when = datetime.datetime.fromtimestamp(newest.stat().st_mtime, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return newest, f"the latest claims results in this runs folder: {newest.parent.name}/claims.json, {when}"


def _say(progress: bool, text: str) -> None:
    if progress:
        print(f"report: {text}", file=sys.stderr, flush=True)


def _write(run_dir: Path, man: dict, raw: Any, out: Path, title: str, claims: Any, where: Any,
           claims_source: str = "", progress: bool = False) -> int:
    t_all = time.perf_counter()
    base.problem_instance.cache_clear()  # built once per report (a plugin may have been redefined since the last)
    _say(progress, f"{run_dir.name}: {len(raw)} rows loaded; writing sections")
    df, dropped = base.dedup_deterministic(raw)
    order = [e.get("name") for e in ((man.get("matrix") or {}).get("experiment") or []) if isinstance(e, dict)]
    ctx = Context(df=df, raw=raw, out=out, run_dir=run_dir, manifest=man, claims=load_claims(claims) or None,
                  pal=style.palette(base.estimator_names(raw)),
                  deduplicated=dropped, experiment_order=order, claims_source=claims_source)
    body = Doc()
    first = Doc()
    for s in SECTIONS:
        if s.name == "summary" or raw.empty and s.name != "claims":
            continue
        t0, nfig = time.perf_counter(), len(ctx.figures)
        s.render(ctx, body)
        if len(ctx.figures) > nfig or time.perf_counter() - t0 > 0.5:
            _say(progress, f"  {s.name}: {len(ctx.figures) - nfig} figure(s), {time.perf_counter() - t0:.1f} s")
    for s in SECTIONS:
        if s.name == "summary":
            s.render(ctx, first)
    header = Doc()
    header.h(1, title)
    if where:
        header.p(f"Slice of the run: {where_text(where)} ({len(raw)} rows).")
    from blobench.report.dashboard import NAME, write_dashboard

    if write_dashboard(df, out, title, ctx.pal) is not None:
        header.link(f"Interactive dashboard ({NAME}: offline; methods, axes, seed bands, parameter filter)", NAME)
    body._ids |= first._ids  # anchors stay unique across the lead and the sections
    (out / "report.md").write_text(render_markdown(header, body, first))
    (out / "index.html").write_text(render_html(title, header, body, first))
    _say(progress, f"page written: {len(ctx.figures)} figure(s) drawn in {time.perf_counter() - t_all:.1f} s"
         + ("; waiting for their files" if style._POOL else ""))
    return len(ctx.figures)
