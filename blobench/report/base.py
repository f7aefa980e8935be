"""What every section shares: the report context, the section registry, and the data helpers
(status filter, parameter labels with resolved defaults, deduplication of deterministic cells)."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

from blobench.report.page import Doc


@dataclass
class Context:
    """Everything a section may read, and where it writes.

    df: the run's tidy rows (deterministic duplicates across seeds removed, see :func:`dedup_deterministic`);
    raw: the rows as loaded; out: the report folder (figures go here); pal: estimator -> colour;
    claims: a list of ClaimResult (or row dicts) or None; manifest: the run's manifest.json;
    violations: flagged measured-vs-predicted violations (sections append, the summary lists them);
    figures: the figure records written so far (see ``style.save``); done: metrics already covered.
    """

    df: pd.DataFrame
    raw: pd.DataFrame
    out: Path
    pal: dict
    run_dir: Path
    manifest: dict
    claims: list | None = None
    violations: list[dict] = field(default_factory=list)
    figures: list[dict] = field(default_factory=list)
    done: set = field(default_factory=set)
    deduplicated: int = 0
    experiment_order: list = field(default_factory=list)
    #: where the claims came from when not this run's own claims.json ("" otherwise)
    claims_source: str = ""
    #: lines of the findings digest that sections add: (text, anchor) tuples (best and worst method per slice)
    findings: list = field(default_factory=list)
    #: estimator -> (colour, line style, marker), from the palette's names (filled on first use)
    styles: dict = field(default_factory=dict)

    def metrics(self) -> list[str]:
        return sorted(self.df["metric"].dropna().unique()) if "metric" in self.df else []

    def color(self, estimator: str) -> Any:
        return self.pal.get(str(estimator).split("(")[0])

    def _style(self, estimator: str) -> tuple:
        if not self.styles:
            from blobench.report.style import method_styles

            self.styles = method_styles(self.pal)
        return self.styles.get(str(estimator).split("(")[0], (None, "-", "o"))

    def ls(self, estimator: str) -> str:
        """The method's line style, the same in every figure (``style.method_styles``)."""
        return self._style(estimator)[1]

    def marker(self, estimator: str) -> str:
        """The method's marker, the same in every figure (``style.method_styles``)."""
        return self._style(estimator)[2]


@dataclass
class Section:
    name: str
    order: float
    render: Callable[[Context, Doc], None]


SECTIONS: list[Section] = []


def section(name: str, order: float) -> Callable:
    """Register ``render(ctx, doc)`` as a report section; sections render in increasing ``order``.

    A section that finds nothing to show writes nothing. One with the same name replaces the old one.
    """
    def deco(fn: Callable[[Context, Doc], None]) -> Callable[[Context, Doc], None]:
        SECTIONS[:] = [s for s in SECTIONS if s.name != name] + [Section(name, order, fn)]
        SECTIONS.sort(key=lambda s: s.order)
        return fn

    return deco


# ----------------------------------------------------------------------------- data helpers

def ok(df: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    d = df[df["status"] == "ok"] if "status" in df else df
    if metric is not None and "metric" in d:
        d = d[d["metric"] == metric]
    return d


def params(s: Any) -> dict:
    if isinstance(s, dict):
        return s
    if isinstance(s, str) and s:
        try:
            return json.loads(s)
        except json.JSONDecodeError:
            return {}
    return {}


def with_params(name: str, p: dict) -> str:
    return name + ("(" + ",".join(f"{k}={fmt_value(v)}" for k, v in p.items()) + ")" if p else "")


def fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


@lru_cache(maxsize=512)
def _resolved(estimator: str, eparams: str, problem: str, pparams: str) -> tuple[tuple[str, Any], ...]:
    return tuple(resolved_params(estimator, params(eparams), problem, params(pparams)).items())


def resolved_params(estimator: str, eparams: dict, problem: str | None = None, pparams: dict | None = None,
                    est: Any = None, prob: Any = None) -> dict:
    """The estimator's parameters with defaults filled in: the declared default, or, for defaults that
    depend on the problem (``inner_steps`` -> r or 10, ``inner_lr`` -> 1/L, ``solver_lr`` -> 1/L), the value
    the estimator would use on that problem (its own ``inner_steps(problem)``-style resolvers)."""
    try:
        from blobench.core import api

        est = est if est is not None else api.estimator(estimator, **eparams)
    except Exception:  # unknown plugin, or params that no longer validate: show them as given
        return dict(eparams)
    out = dict(getattr(est, "p", eparams))
    if any(v is None for v in out.values()):
        try:
            prob = prob if prob is not None else problem_instance(str(problem), json.dumps(pparams or {},
                                                                                         sort_keys=True))
        except Exception:
            prob = None
        for k, v in list(out.items()):
            fn = getattr(est, k, None)
            if v is None and prob is not None and callable(fn):
                try:
                    out[k] = fn(prob)
                except Exception:  # a resolver that needs more than the problem: keep None
                    pass
    return out


@lru_cache(maxsize=256)
def problem_instance(problem: str, pparams_json: str) -> Any:
    """The problem ``problem(**json.loads(pparams_json))``, built once per report process: the sections only read
    it (its target kind, the constants default parameters resolve from), and building one can cost a solve (the
    default report built 96 problems for 25 configurations). Raises what ``api.problem`` raises."""
    from blobench.core import api

    return api.problem(problem, **json.loads(pparams_json))


def estimator_params(row: Any) -> dict:
    """Resolved estimator params of one row (cached per distinct cell configuration)."""
    return dict(_resolved(str(row["estimator"]), str(row.get("estimator_params") or "{}"),
                          str(row["problem"]), str(row.get("problem_params") or "{}")))


def labelled(d: pd.DataFrame) -> pd.DataFrame:
    """Add ``problem_label`` and ``estimator_label`` (name with the params as given in the matrix)."""
    d = d.copy()
    if d.empty:
        d["problem_label"] = []
        d["estimator_label"] = []
        return d
    pl = {v: with_params(p, params(v2)) for v, p, v2 in
          zip(d["problem"] + "\x00" + d["problem_params"].fillna(""), d["problem"], d["problem_params"].fillna(""))}
    el = {v: with_params(e, params(v2)) for v, e, v2 in
          zip(d["estimator"] + "\x00" + d["estimator_params"].fillna(""), d["estimator"], d["estimator_params"].fillna(""))}
    d["problem_label"] = (d["problem"] + "\x00" + d["problem_params"].fillna("")).map(pl)
    d["estimator_label"] = (d["estimator"] + "\x00" + d["estimator_params"].fillna("")).map(el)
    return d


def legend_labels(d: pd.DataFrame) -> dict[tuple[str, str, str], str]:
    """Estimator legend labels: the name plus only the resolved parameters that vary between the estimator's
    cells on the same problem in ``d`` (keys (estimator, estimator_params, problem_params)); never a parameter it
    does not have. Call it on one figure's rows, so labels name what differs within that figure."""
    cfg = d.drop_duplicates(["estimator", "estimator_params", "problem", "problem_params"])
    res = {}
    for _, r in cfg.iterrows():
        res[(r["estimator"], r["estimator_params"], r["problem_params"])] = estimator_params(r)
    out = {}
    for (est, ep, pp), p in res.items():
        same = [q for (e2, _, pp2), q in res.items() if e2 == est and pp2 == pp]
        vary = [k for k in p if len({json.dumps(q.get(k), default=str) for q in same}) > 1]
        out[(est, ep, pp)] = est + ("(" + ", ".join(f"{k}={fmt_value(p[k])}" for k in vary) + ")" if vary else "")
    return out


VOLATILE = ("second", "time", "rss", "wall")


def dedup_deterministic(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Drop the cells that repeat, with another seed, exactly the values of a cell of the same configuration.

    A deterministic problem and estimator give bit-identical rows whatever the seed (docs/design.md,
    "Determinism"), so its seeds add nothing but duplicated rows and curves: the lowest seed is kept.
    Timings and RSS (quantities named ``*second*``, ``*time*``, ``*rss*``, and the ``seconds_elapsed`` column)
    are not compared, since they vary run to run. Returns (rows kept, number of cells dropped).
    """
    if df.empty or "seed" not in df or "key" not in df or df["seed"].nunique() < 2:
        return df, 0
    cfg_cols = [c for c in ("experiment", "problem", "problem_params", "estimator", "estimator_params", "metric",
                            "metric_params", "device") if c in df]
    cfg = df[cfg_cols].fillna("").astype(str).agg("\x00".join, axis=1)
    drop: set[str] = set()
    for _, g in df.assign(_cfg=cfg).groupby("_cfg", sort=False):
        if g["seed"].nunique() < 2 or (g["status"] != "ok").any():
            continue
        sig = {}
        for seed, gs in g.groupby("seed"):
            q = gs["quantity"].astype(str)
            keep = ~q.str.contains("|".join(VOLATILE))
            sub = gs[keep]
            cols = [c for c in ("quantity", "coord", "iteration", "budget", "value", "lo", "hi") if c in sub]
            sig[seed] = sub[cols].sort_values(cols[:4] if len(cols) >= 4 else cols).to_numpy(dtype=object)
        seeds = sorted(sig)
        first = sig[seeds[0]]
        if all(s.shape == first.shape and _same(s, first) for s in (sig[k] for k in seeds[1:])):
            drop |= set(g[g["seed"] != seeds[0]]["key"])
    if not drop:
        return df, 0
    return df[~df["key"].isin(drop)], len(drop)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    for x, y in zip(a.ravel(), b.ravel()):
        if isinstance(x, float) and isinstance(y, float):
            if not (x == y or (np.isnan(x) and np.isnan(y))):
                return False
        elif not (x == y or (pd.isna(x) and pd.isna(y))):
            return False
    return True


def experiments(d: pd.DataFrame, order: list | None = None) -> list[tuple[str, pd.DataFrame]]:
    """(experiment name, its rows), in the matrix's order (``order``), then by name; rows without one are grouped."""
    if "experiment" not in d or d["experiment"].isna().all():
        return [("all", d)]
    rank = {n: i for i, n in enumerate(order or [])}
    names = sorted(set(d["experiment"].fillna("(unnamed)")), key=lambda n: (rank.get(n, len(rank)), n))
    e = d["experiment"].fillna("(unnamed)")
    return [(n, d[e == n]) for n in names]


def estimator_names(raw: Any) -> list[str]:
    """Every registered estimator and every one in the run: the palette then gives an estimator the same colour
    in every report (a slice, a comparison, another run), not only across the figures of one report."""
    from blobench.core import api

    try:
        names = set(api.estimators())
    except Exception:  # registry not importable (a broken plugin): the run's names still get stable colours
        names = set()
    if "estimator" in raw:
        names |= set(raw["estimator"].dropna().astype(str))
    return sorted(names)


#: the file that marks a folder as written by blobench (a report writes into, and replaces, only such a folder)
MARKER = ".blobench-report"


def check_owned(out: Path) -> None:
    """Refuse to write into ``out`` unless it is new, empty, or a folder blobench wrote (it holds :data:`MARKER`).

    A report replaces its whole folder; a user's own folder (``--out ~/paper``) must never lose a file."""
    from blobench.core.errors import BlobenchError

    if out.exists() and not out.is_dir():
        raise BlobenchError(f"report output {str(out)!r} is a file, not a folder")
    if out.is_dir() and not is_owned(out) and any(out.iterdir()):
        raise BlobenchError(f"report output {str(out)!r} is a folder blobench did not write (no {MARKER} in it): "
                            "choose a new or empty folder; a report replaces its whole folder")


def is_owned(out: Path) -> bool:
    """True for a folder blobench wrote: it holds :data:`MARKER`, or (reports written before the marker) a
    ``report.md`` whose title line is blobench's (``# blobench report: ...`` or ``# blobench compare: ...``)."""
    if (out / MARKER).is_file():
        return True
    md = out / "report.md"
    try:
        with md.open() as f:
            first = f.readline()
    except OSError:
        return False
    return first.startswith(("# blobench report: ", "# blobench compare: "))


@contextlib.contextmanager
def owned_output(out: Path, writer: str = "report") -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``out``; on success, mark it and swap it in for ``out``.

    ``out`` must be new, empty, or a folder blobench wrote (:func:`check_owned`); ``writer`` names the command in
    the marker file. ``report`` and ``compare --out`` both write through here.

    An interrupted report (SIGINT, an error) leaves the previous ``out`` untouched and no temporary folder: the
    page never points at figures that are gone. The swap is two renames (old out aside, new in) and a delete."""
    check_owned(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        (tmp / MARKER).write_text(f"written by blobench {writer}; this folder is replaced on each {writer}\n")
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            if old.exists():
                shutil.rmtree(old)
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
