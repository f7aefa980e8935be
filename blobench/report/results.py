"""Results one can work with: ``blobench export | compare | runs`` and ``report --where`` (issue 16).

- ``blobench export RUN --format csv|json|parquet [--where estimator=aid-cg ...] [--out PATH]``: the run's tidy
  rows (``harness.load``), optionally a slice, to stdout (csv, json) or a file.
- ``blobench report RUN --where ...``: the report of a slice (``write_report(..., where=...)``).
- ``blobench compare RUN_A RUN_B``: what changed between two runs, cell by cell: values (beyond ``--rtol``),
  statuses, timings (cell seconds), cells only in one run, and the code revisions and versions from the
  manifests; printed as tables and written as a page with figures (``reports/compare-A-vs-B/``).
- ``blobench runs``: the run folders under ``--runs-dir`` with their status (running, complete, partial),
  cell counts by status, creation time and code revision.

``--where`` terms (repeatable, all must hold): ``col=v`` (``col=v1,v2``: any of them), ``col!=v``, ``col<v``,
``col<=v``, ``col>v``, ``col>=v``. ``col`` is a column of the tidy rows (estimator, metric, seed, quantity,
status, experiment, ...) or a parameter name inside ``estimator_params``/``problem_params``/``metric_params``
(``inner_steps=10``); values compare as numbers where both sides are numbers, else as text.

The commands plug into the CLI through :func:`add_parsers` (one call in ``blobench.cli.build_parser``).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blobench.core.errors import BlobenchError

if TYPE_CHECKING:
    import pandas as pd

# numpy and pandas are imported inside the functions: building the CLI parser (add_parsers) stays cheap

PARAM_COLUMNS = ("estimator_params", "problem_params", "metric_params")
_TERM = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*(==|!=|<=|>=|=|<|>)\s*(.*)$")
#: identity of a cell across runs (its key also hashes code, so it changes when code changes)
CELL_ID = ["experiment", "problem", "problem_params", "estimator", "estimator_params", "metric", "metric_params",
           "seed", "device"]
#: identity of a row within a cell
ROW_ID = ["quantity", "coord", "iteration", "budget_param", "budget"]


# ----------------------------------------------------------------------------- --where

def parse_where(where: Any) -> list[tuple[str, str, str]]:
    """``["k=v", ...]`` or ``{"k": v}`` -> [(key, op, value text)]; malformed terms raise BlobenchError."""
    if not where:
        return []
    if isinstance(where, dict):
        return [(str(k), "=", ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v))
                for k, v in where.items()]
    if isinstance(where, str):
        where = [where]
    out = []
    for term in where:
        m = _TERM.match(str(term))
        if not m or not m.group(3).strip():
            raise BlobenchError(f"--where expects KEY=VALUE (or !=, <, <=, >, >=), got {term!r}")
        op, val = m.group(2), m.group(3).strip()
        if op == "==":  # the Python spelling means the same (before: "estimator==itd" compared with "=itd": empty slice)
            op = "="
        if op in ("=", "!=") and val.startswith("="):
            raise BlobenchError(f"--where expects KEY=VALUE (or !=, <, <=, >, >=), got {term!r}")
        out.append((m.group(1), op, val))
    return out


def where_text(where: Any) -> str:
    return " and ".join(f"{k}{op}{v}" for k, op, v in parse_where(where))


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if not math.isnan(f) else None


def _match(value: Any, op: str, want: str) -> bool:
    if op in ("=", "!="):
        alts = [w.strip() for w in want.split(",")] if op == "=" else [want]
        hit = False
        for w in alts:
            a, b = _num(value), _num(w)
            if a is not None and b is not None:
                hit |= a == b
            else:
                hit |= str(value) == w or (value is None and w.lower() in ("none", "null"))
        return hit if op == "=" else not hit
    a, b = _num(value), _num(want)
    if a is None or b is None:
        return False
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def apply_where(df: pd.DataFrame, where: Any) -> pd.DataFrame:
    """The rows of ``df`` where every ``--where`` term holds (see the module docstring)."""
    import numpy as np
    terms = parse_where(where)
    if not terms or df.empty:
        return df
    mask = np.ones(len(df), dtype=bool)
    for key, op, want in terms:
        if key in df.columns:
            vals = df[key].tolist()
        else:
            found = False
            vals = [None] * len(df)
            for pc in PARAM_COLUMNS:
                if pc not in df:
                    continue
                parsed = df[pc].map(lambda s: json.loads(s) if isinstance(s, str) and s else {})
                for i, p in enumerate(parsed):
                    if isinstance(p, dict) and key in p:
                        vals[i] = p[key]
                        found = True
            if not found:
                cols = ", ".join(c for c in df.columns if not c.startswith("calls_"))
                raise BlobenchError(f"--where: unknown key {key!r}: neither a column ({cols}) nor a parameter in "
                                    f"{'/'.join(PARAM_COLUMNS)}")
        mask &= np.array([_match(v, op, want) for v in vals], dtype=bool)
    return df[mask].reset_index(drop=True)


def by_experiment(raw: Any, man: dict) -> Any:
    """The rows with each experiment of the run's matrix under its current name, through the manifest's
    ``experiments`` map (name -> cell keys): a shard records the one experiment that first ran it, so a second
    experiment with the same cells was dropped from the report and a renamed one kept its old label. A cell of
    several experiments appears once per experiment; rows of keys the map does not name (a run written before
    the map) keep their shard's name."""
    import pandas as pd

    exps = man.get("experiments")
    if not isinstance(exps, dict) or not exps or raw.empty or "key" not in raw:
        return raw
    parts, named = [], set()
    for name, keys in exps.items():
        if not isinstance(keys, list):
            continue
        part = raw[raw["key"].isin(keys)]
        if len(part):
            parts.append(part.assign(experiment=str(name)))
        named |= set(keys)
    rest = raw[~raw["key"].isin(named)]
    if len(rest):
        parts.append(rest)
    return pd.concat(parts, ignore_index=True) if parts else raw


def load_named(run_dir: Path, stale: bool = False) -> Any:
    """A run's rows with each experiment under its current name (:func:`by_experiment` over the manifest's map):
    what ``export``, ``compare`` and ``plot`` read. The report applies the same map to the manifest it has already
    read for its plugins, so all four name an experiment alike."""
    from blobench.engine.store import load, read_manifest

    raw = load(run_dir, stale=stale)
    try:
        man = read_manifest(run_dir)
    except BlobenchError:
        return raw
    return by_experiment(raw, man)


# ----------------------------------------------------------------------------- export

def export(run: str | Path, fmt: str, out: str | None = None, where: Any = None, stale: bool = False) -> str | None:
    """Write the run's rows (a slice with ``where``) as csv/json/parquet to ``out`` ("-" or None: stdout for
    csv/json); returns the path written, or None for stdout."""
    from blobench.engine.store import resolve_run

    df = apply_where(load_named(resolve_run(run), stale=stale), where)
    if fmt not in ("csv", "json", "parquet"):
        raise BlobenchError(f"--format must be csv, json or parquet, got {fmt!r}")
    to_stdout = out in (None, "-")
    if fmt == "parquet" and to_stdout:
        raise BlobenchError("--format parquet needs --out PATH (parquet is binary)")
    if fmt == "csv":
        text = df.to_csv(index=False)
    elif fmt == "json":
        text = df.to_json(orient="records", lines=False, double_precision=15)
    if to_stdout:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return None
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        _parquet_safe(df).to_parquet(path, index=False)
    else:
        path.write_text(text)
    return str(path)


def compare_folder_name(a: str, b: str, limit: int = 120) -> str:
    """``compare-A-vs-B``; when that is longer than ``limit`` characters (two long run ids passed the file system's
    255-byte name limit, and ``compare`` failed on the page's folder), each id is cut and a digest of both added."""
    import hashlib

    name = f"compare-{a}-vs-{b}"
    if len(name.encode()) <= limit:
        return name
    tag = hashlib.sha256(f"{a}\0{b}".encode()).hexdigest()[:10]
    return f"compare-{a[:40]}-vs-{b[:40]}-{tag}"


def _parquet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Object columns mixing value types (a sweep ``q = [0.5, "adaptive"]`` gives a column of floats and strings,
    which pyarrow refuses) written as text, missing values kept missing; other columns unchanged."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object:
            kinds = {type(v) for v in out[col] if v is not None and not (isinstance(v, float) and v != v)}
            if len(kinds) > 1:
                out[col] = out[col].map(lambda v: v if v is None or (isinstance(v, float) and v != v) else str(v))
    return out


# ----------------------------------------------------------------------------- runs

def _running_pid(run_dir: Path) -> int | None:
    """The pid of a live blobench process holding the run's lock (the lock is probed, never taken), else None.

    The lock is an ``flock`` that dies with its holder: a lock file whose lock nobody holds is stale, whatever pid
    it names (before, a pid the system had given to another program since made ``runs`` say "running")."""
    lock = run_dir / ".lock"
    try:
        import fcntl

        fd = os.open(lock, os.O_RDONLY)
    except ImportError:  # no flock (Windows): the pid alone
        fd = None
    except OSError:
        return None
    if fd is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            pass  # held by a writer
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)
    try:
        pid = int(lock.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def list_runs(runs_dir: str | Path = "runs") -> pd.DataFrame:
    """One row per run folder: id, status, cells by status, expected cells, created, revision, matrix."""
    import pandas as pd
    from blobench.engine.store import read_manifest, shard_statuses

    root = Path(runs_dir)
    rows = []
    from blobench.core.errors import BlobenchError
    from blobench.engine.store import read_current_keys

    for d in sorted(p for p in root.iterdir() if (p / "manifest.json").is_file()) if root.is_dir() else []:
        try:  # one damaged folder is one row saying so, not the end of the listing
            man = read_manifest(d)
            st = shard_statuses(d)
            keep = read_current_keys(d)
        except BlobenchError as exc:
            rows.append({"run": d.name, "status": "unreadable", "cells": "?", "by status": str(exc)[:200],
                         "created": "", "revision": "", "matrix": ""})
            continue
        if keep is not None:
            st = {k: v for k, v in st.items() if k in keep}
        counts: dict[str, int] = {}
        for v in st.values():
            counts[v] = counts.get(v, 0) + 1
        expected = man.get("cells")
        done = len(st)
        pid = _running_pid(d)
        if pid is not None:
            status = f"running (pid {pid})"
        elif isinstance(expected, int) and done < expected:
            status = "incomplete"
        elif any(k != "ok" for k in counts):
            status = "partial"
        else:
            status = "complete"
        rows.append({"run": d.name, "status": status, "cells": f"{done}/{expected if expected is not None else '?'}",
                     "by status": ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "-",
                     "created": str(man.get("created", ""))[:19],
                     "revision": str(man.get("git_revision") or "")[:10], "matrix": man.get("matrix_path")})
    return pd.DataFrame(rows, columns=["run", "status", "cells", "by status", "created", "revision", "matrix"])


# ----------------------------------------------------------------------------- compare

def _ids(df: pd.DataFrame, cols: list[str]) -> pd.Series:
    import pandas as pd
    present = [c for c in cols if c in df]
    if not len(df):
        return pd.Series([], dtype=object)
    parts = [df[c].map(str) for c in present]
    out = parts[0]
    for p in parts[1:]:
        out = out + "|" + p
    return out


def compare_runs(run_a: str | Path, run_b: str | Path, rtol: float = 1e-9, where: Any = None) -> dict[str, Any]:
    """What changed from run A to run B: a dict of DataFrames (``values``, ``statuses``, ``timings``, ``only_a``,
    ``only_b``) and ``manifests`` (revision/versions side by side). Values compare row by row on
    (cell identity, quantity, coord, iteration, budget); a change is ``|b - a| > rtol * max(|a|, |b|)``
    (NaN equals NaN). Timing quantities (``*second*``) are reported under ``timings``, not ``values``."""
    import numpy as np
    import pandas as pd
    from blobench.engine.store import read_manifest, resolve_run

    da, db = resolve_run(run_a), resolve_run(run_b)
    A, B = load_named(da), load_named(db)
    for d, name in ((A, da), (B, db)):
        if d.empty:
            raise BlobenchError(f"run {str(name)!r} has no finished cells (no shards) to compare")
    A, B = apply_where(A, where), apply_where(B, where)
    for d in (A, B):
        for c in CELL_ID + ROW_ID:
            if c not in d:
                d[c] = np.nan
    cells_a = A.drop_duplicates("key").assign(cell=lambda d: _ids(d, CELL_ID)) if len(A) else A.assign(cell=[])
    cells_b = B.drop_duplicates("key").assign(cell=lambda d: _ids(d, CELL_ID)) if len(B) else B.assign(cell=[])
    label = ["experiment", "problem", "problem_params", "estimator", "estimator_params", "metric", "seed"]
    m = cells_a[["cell"] + label + ["status", "cell_seconds"]].merge(
        cells_b[["cell", "status", "cell_seconds"]], on="cell", how="outer", suffixes=("_a", "_b"), indicator=True)
    only_a = m[m["_merge"] == "left_only"][label + ["status_a"]]
    only_b_cells = cells_b[~cells_b["cell"].isin(cells_a["cell"])]
    only_b = only_b_cells[label + ["status"]].rename(columns={"status": "status_b"})
    both = m[m["_merge"] == "both"]
    statuses = both[both["status_a"] != both["status_b"]][label + ["status_a", "status_b"]]
    timings = both[label + ["cell_seconds_a", "cell_seconds_b"]].copy()
    timings["ratio_b_over_a"] = timings["cell_seconds_b"] / timings["cell_seconds_a"]
    # values, row by row
    ok_a = A[A["status"] == "ok"].assign(cell=lambda d: _ids(d, CELL_ID), row=lambda d: _ids(d, ROW_ID))
    ok_b = B[B["status"] == "ok"].assign(cell=lambda d: _ids(d, CELL_ID), row=lambda d: _ids(d, ROW_ID))
    cols = ["cell", "row"] + label + ["quantity", "coord", "iteration", "budget", "value"]
    v = ok_a[cols].merge(ok_b[["cell", "row", "value"]], on=["cell", "row"], suffixes=("_a", "_b"))
    va = pd.to_numeric(v["value_a"], errors="coerce")
    vb = pd.to_numeric(v["value_b"], errors="coerce")
    same = (va == vb) | (va.isna() & vb.isna()) | ((vb - va).abs() <= rtol * np.maximum(va.abs(), vb.abs()))
    v = v.assign(value_a=va, value_b=vb, rel_change=(vb - va) / va.abs().where(va != 0))
    timing_q = v["quantity"].astype(str).str.contains("second|time")
    values = v[~same & ~timing_q].drop(columns=["cell", "row"])
    compared = int((~timing_q).sum())
    ma, mb = read_manifest(da), read_manifest(db)
    keys = ["git_revision", "created", "matrix_path", "cells"]
    man = [{"field": k, "A": str(ma.get(k)), "B": str(mb.get(k))} for k in keys]
    for k in sorted(set(ma.get("versions") or {}) | set(mb.get("versions") or {})):
        man.append({"field": f"version {k}", "A": str((ma.get("versions") or {}).get(k)),
                    "B": str((mb.get("versions") or {}).get(k))})
    man_df = pd.DataFrame(man)
    man_df["changed"] = man_df["A"] != man_df["B"]
    # compare settings (issue 26): cells in one run only, aligned by problem / estimator / metric / seed
    from blobench.report.compare_settings import pair_settings

    only_a_keys = set(cells_a[~cells_a["cell"].isin(cells_b["cell"])]["key"]) if len(cells_a) else set()
    only_b_keys = set(only_b_cells["key"]) if len(only_b_cells) else set()
    settings, paired = pair_settings(A, B, only_a_keys, only_b_keys)
    return {"a": da, "b": db, "values": values.reset_index(drop=True), "statuses": statuses.reset_index(drop=True),
            "timings": timings.reset_index(drop=True), "only_a": only_a.reset_index(drop=True),
            "only_b": only_b.reset_index(drop=True), "manifests": man_df, "rows_compared": compared,
            "rtol": rtol, "settings": settings, "paired": paired}


def write_compare_report(cmp: dict[str, Any], out: Path) -> Path:
    """A page (report.md, index.html) with the comparison tables and two figures: run B's values against
    run A's (changed rows), and the per-cell time ratio B/A.

    Written like a report (:func:`blobench.report.base.owned_output`): into a temporary folder swapped in for
    ``out`` when complete, so SIGINT or an error mid-compare leaves the previous page whole; a folder blobench did
    not write is refused in one line, nothing deleted."""
    from blobench.report.base import owned_output

    out = Path(out)
    with owned_output(out, writer="compare") as tmp:
        _write_compare(cmp, tmp)
    return out / "report.md"


def _write_compare(cmp: dict[str, Any], out: Path) -> None:
    import numpy as np
    from blobench.report import style
    from blobench.report.page import Doc, render_html, render_markdown

    doc = Doc()
    doc.h(2, "Summary", anchor="summary")
    doc.ul(_summary_lines(cmp))
    doc.h(2, "Code revisions and versions", anchor="manifests")
    doc.table(cmp["manifests"])
    doc.h(2, "Changed values", anchor="values")
    vals = cmp["values"]
    from blobench.report.base import estimator_names as _estimator_names

    pal = style.palette(sorted(set(_estimator_names(cmp["timings"])) | set(vals["estimator"].astype(str))))
    if len(vals):
        pos = vals[(vals["value_a"] > 0) & (vals["value_b"] > 0)]
        if len(pos):
            with style.themed():
                fig, axes = style.new_figure(1, 1, w=5.5, h=4.5, legend_rows=1)
                ax = axes[0][0]
                for est, g in pos.groupby("estimator"):
                    ax.scatter(g["value_a"], g["value_b"], s=18, color=pal.get(str(est)), label=str(est), alpha=0.8)
                lo, hi = float(min(pos["value_a"].min(), pos["value_b"].min())), float(max(pos["value_a"].max(),
                                                                                          pos["value_b"].max()))
                style.reference_line(ax.plot([lo, hi], [lo, hi], color="0.5", ls="--", lw=1, label="unchanged")[0])
                style.log_if_positive(ax, [lo, hi], "x")
                style.log_if_positive(ax, [lo, hi], "y")
                ax.set_xlabel(f"value in {cmp['a'].name} (A)")
                ax.set_ylabel(f"value in {cmp['b'].name} (B)")
                ax.set_title("changed values (positive ones)")
                style.legend_outside(fig, [ax])
                rec = style.save(fig, out, "compare_values", "changed values: run B against run A; dashed: unchanged",
                                 "compare")
            doc.img(rec["png"], rec["caption"], rec["svg"])
    with doc.details(f"{len(vals)} changed value(s) (rtol {cmp['rtol']:g})"):
        doc.table(vals)
    if len(cmp.get("settings", [])):
        from blobench.report.compare_settings import paired_figures

        doc.h(2, "Compared settings (cells aligned by problem, estimator, metric and seed)", anchor="settings")
        doc.table(cmp["settings"])
        pal_s = style.palette(sorted(set(_estimator_names(cmp["paired"]))))
        for rec in paired_figures(cmp["paired"], out, (cmp["a"].name, cmp["b"].name), pal_s):
            doc.img(rec["png"], rec["caption"], rec["svg"])
    doc.h(2, "Changed statuses", anchor="statuses")
    doc.table(cmp["statuses"])
    doc.h(2, "Timings", anchor="timings")
    t = cmp["timings"]
    tt = t[np.isfinite(t["ratio_b_over_a"]) & (t["ratio_b_over_a"] > 0)]
    if len(tt):
        from blobench.report.base import params, with_params

        tt = tt.assign(cell=[f"{x} / {with_params(str(e), params(ep))} s{sd}" for x, e, ep, sd in
                             zip(tt["experiment"], tt["estimator"], tt["estimator_params"], tt["seed"])])
        tt = tt.sort_values("ratio_b_over_a")
        with style.themed():
            fig, axes = style.new_figure(1, 1, w=7.0, h=max(2.5, 0.22 * len(tt) + 1.2))
            ax = axes[0][0]
            ax.barh(range(len(tt)), tt["ratio_b_over_a"], color=[pal.get(str(e)) for e in tt["estimator"]])
            style.reference_line(ax.axvline(1.0, color="0.3", ls="--", lw=1))
            ax.set_yticks(range(len(tt)))
            ax.set_yticklabels(tt["cell"], fontsize=8)
            style.log_if_positive(ax, tt["ratio_b_over_a"], "x", base=2)
            ax.set_xlabel("cell wall time, B / A (1 = unchanged)")
            ax.set_title("per-cell time ratio")
            rec = style.save(fig, out, "compare_timings", "per-cell wall time of run B over run A", "compare")
        doc.img(rec["png"], rec["caption"], rec["svg"])
    with doc.details(f"cell seconds of {len(t)} cell(s) in both runs"):
        doc.table(t)
    doc.h(2, "Cells in one run only", anchor="only")
    doc.p(f"Only in A ({cmp['a'].name}):")
    doc.table(cmp["only_a"])
    doc.p(f"Only in B ({cmp['b'].name}):")
    doc.table(cmp["only_b"])
    header = Doc()
    title = f"blobench compare: {cmp['a'].name} (A) vs {cmp['b'].name} (B)"
    header.h(1, title)
    (out / "report.md").write_text(render_markdown(header, doc))
    (out / "index.html").write_text(render_html(title, header, doc))


def _summary_lines(cmp: dict[str, Any]) -> list[str]:
    import numpy as np
    man = cmp["manifests"].set_index("field")
    rev = man.loc["git_revision"] if "git_revision" in man.index else None
    lines = [f"A: {cmp['a']}  B: {cmp['b']}"]
    if rev is not None:
        lines.append(f"code revision: {str(rev['A'])[:12]} -> {str(rev['B'])[:12]}"
                     + ("" if rev["changed"] else " (same)"))
    lines += [f"values compared: {cmp['rows_compared']}; changed beyond rtol {cmp['rtol']:g}: {len(cmp['values'])}",
              f"cells with a changed status: {len(cmp['statuses'])}",
              f"cells only in A: {len(cmp['only_a'])}; only in B: {len(cmp['only_b'])}"]
    st = cmp.get("settings")
    if st is not None and len(st):
        lines.append(f"settings compared: {len(st)} cell pair(s) aligned by problem, estimator, metric and seed, "
                     f"{int(st['rows paired'].sum())} rows paired; differing: "
                     + "; ".join(sorted(set(st["differing parameters (A -> B)"])))[:300])
    t = cmp["timings"]["ratio_b_over_a"]
    t = t[np.isfinite(t) & (t > 0)]
    if len(t):
        lines.append(f"cell time B/A: median {np.median(t):.3g}, min {t.min():.3g}, max {t.max():.3g} "
                     f"over {len(t)} cells")
    return lines


# ----------------------------------------------------------------------------- printing

def print_table(df: pd.DataFrame, max_rows: int = 40) -> None:
    from blobench.report.page import md_table

    if len(df) > max_rows:
        print(md_table(df.head(max_rows)), end="")
        print(f"... {len(df) - max_rows} more row(s)")
    else:
        print(md_table(df), end="")


def cmd_export(a: argparse.Namespace) -> int:
    path = export(a.run, a.format, a.out, a.where, a.stale)
    if path:
        print(path, file=sys.stderr)
    return 0


def cmd_compare(a: argparse.Namespace) -> int:
    cmp = compare_runs(a.run_a, a.run_b, rtol=a.rtol, where=a.where)
    for line in _summary_lines(cmp):
        print(line)
    for title, key in (("changed values", "values"), ("compared settings", "settings"),
                       ("changed statuses", "statuses"), ("only in A", "only_a"), ("only in B", "only_b")):
        if len(cmp[key]):
            print(f"\n{title}:")
            print_table(cmp[key])
    ch = cmp["manifests"][cmp["manifests"]["changed"]]
    if len(ch):
        print("\nmanifest differences:")
        print_table(ch.drop(columns=["changed"]))
    if not a.no_report:
        out = Path(a.out) if a.out else Path(a.reports_dir) / compare_folder_name(cmp["a"].name, cmp["b"].name)
        print(f"\n{write_compare_report(cmp, out)}")
    return 0


def cmd_runs(a: argparse.Namespace) -> int:
    t = list_runs(a.runs_dir)
    if t.empty:
        print(f"no run folders under {a.runs_dir}/")
        return 0
    print_table(t, max_rows=10 ** 6)
    return 0


WHERE_HELP = ("keep rows where KEY=VALUE (also KEY=V1,V2 / != / < / <= / > / >=); KEY is a column (estimator, "
              "metric, seed, quantity, status, experiment, ...) or a parameter name; repeatable, all must hold")


def add_parsers(sub: Any) -> None:
    """Add ``export``, ``compare`` and ``runs`` to the CLI's subparsers, and ``--where`` to ``report``."""
    s = sub.add_parser("export", help="write a run's tidy rows as csv, json or parquet")
    s.add_argument("run", help="run folder or run id under ./runs")
    s.add_argument("--format", "-f", default="csv", choices=["csv", "json", "parquet"], help="output format (default csv)")
    s.add_argument("--out", "-o", help="output file (default: stdout for csv/json; required for parquet)")
    s.add_argument("--where", "-w", action="append", metavar="KEY=VALUE", help=WHERE_HELP)
    s.add_argument("--stale", action="store_true", help="include cells of older matrix versions kept in the folder")
    s.set_defaults(fn=cmd_export)

    s = sub.add_parser("compare", help="what changed between two runs: values, statuses, timings, code revisions")
    s.add_argument("run_a", metavar="RUN_A", help="the baseline run (folder or id)")
    s.add_argument("run_b", metavar="RUN_B", help="the run compared with it (folder or id)")
    s.add_argument("--rtol", type=float, default=1e-9, help="relative change below which a value counts as unchanged "
                   "(default 1e-9)")
    s.add_argument("--where", "-w", action="append", metavar="KEY=VALUE", help=WHERE_HELP)
    s.add_argument("--reports-dir", default="reports", help="where the comparison page goes (default reports/)")
    s.add_argument("--out", help="output folder of the comparison page (default <reports-dir>/compare-A-vs-B)")
    s.add_argument("--no-report", action="store_true", help="print the tables only, write no page")
    s.set_defaults(fn=cmd_compare)

    s = sub.add_parser("runs", help="list run folders with their status")
    s.add_argument("--runs-dir", default="runs", help="folder holding the runs (default runs/)")
    s.set_defaults(fn=cmd_runs)

    rep = sub.choices.get("report")
    if rep is not None:
        rep.add_argument("--where", "-w", action="append", metavar="KEY=VALUE", help="report a slice: " + WHERE_HELP)

