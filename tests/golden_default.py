"""Digests of the default matrix's results, timing columns aside (issue 13: "bit-identical to before").

"Before" is the code before issue 13, commit :data:`BEFORE` (5282bda). A float64 result is bit-identical
only on one kind of machine: BLAS and LAPACK (MKL in torch, OpenBLAS in numpy) pick their kernels by
processor, so the same code rounds differently on another CPU. The digests that the first machine
recorded (tests/data/default_matrix_digests.json, an AVX2-era host) are therefore not a reference on any
other machine. The reference is computed here, live: :func:`before_digests` exports the tree of
:data:`BEFORE` from this repository's history (``git archive``) and runs this module's
:func:`cell_digest` on it in a subprocess, on this machine, with this machine's libraries; the current
code must give the same digests cell for cell.

``python -m tests.golden_default [--recorded] [EXPERIMENT ...]`` compares every non-timing cell of
matrices/default.toml (or the experiments named) with the live reference (``--recorded``: with the
committed file instead, meaningful only on the machine kind that wrote it). Each digest is a SHA-256 of a
cell's result rows (every column but the timing ones, floats by their exact hex form).
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).parent
DIGESTS = HERE / "data" / "default_matrix_digests.json"
ROOT = HERE.parent
#: the code before issue 13, whose results the current code must reproduce bit for bit
BEFORE = "5282bda5eeab22d53411115a35e2bb05e07f0212"
#: quantities and columns that are wall-clock (allowed to differ run to run); process RSS (rss_*) is left out too
TIMING = {"seconds", "seconds_median", "seconds_per_budget", "cell_seconds", "seconds_elapsed"}
TIMING_METRICS = {"time_vs_budget"}


def _canon(v):
    if isinstance(v, float):
        return "nan" if math.isnan(v) else float(v).hex()
    if isinstance(v, (int, str, bool)) or v is None:
        return v
    if isinstance(v, torch.Tensor):
        return _canon(v.tolist())
    if isinstance(v, (list, tuple)):
        return [_canon(u) for u in v]
    if isinstance(v, dict):
        return {str(k): _canon(u) for k, u in sorted(v.items())}
    try:
        return float(v).hex()
    except (TypeError, ValueError):
        return str(v)


#: columns and rows that later issues added to every cell (not results of 5282bda, so not part of its digests):
#: fitted rates' intervals, bounds and violation flags (issue 11), the new oracles' call counts (issue 15, 0 for
#: every estimator that existed then).
ADDED_COLUMNS = ("calls_grad_x_g", "calls_f_value", "calls_g_value")
ADDED_ROWS = ("theoretical_rate",)


def _added_later(row: dict, key: str) -> bool:
    if key in ADDED_COLUMNS:
        return row[key] == 0
    return key.startswith("rate") or (row.get("quantity") == "fitted_rate" and key in ("lo", "hi"))


def _engine():
    """(api, CellContext, validate, METRICS) of the tree this module sits in: the current ``blobench`` package,
    or, in the exported tree of :data:`BEFORE`, its top-level ``harness`` package (the layout before the
    namespace move; the editable install would otherwise hand that tree the current code)."""
    if (ROOT / "blobench").is_dir():
        from blobench.core import api
        from blobench.core.params import validate
        from blobench.core.registry import METRICS
        from blobench.measure.metrics import CellContext
    else:
        import importlib

        api = importlib.import_module("harness.api")
        CellContext = importlib.import_module("harness.measures").CellContext
        validate = importlib.import_module("harness.params").validate
        METRICS = importlib.import_module("harness.registry").METRICS
    return api, CellContext, validate, METRICS


def cell_digest(cell) -> str:
    """SHA-256 of one cell's result rows, timing columns aside."""
    api, CellContext, validate, METRICS = _engine()

    torch.set_num_threads(1)
    problem = api.problem(cell.problem, **cell.problem_params)
    fn = METRICS.get(cell.metric)
    mparams = validate(f"metric {cell.metric!r}", getattr(fn, "params", {}), cell.metric_params)
    torch.manual_seed(cell.seed)
    ctx = CellContext(problem, cell.estimator, dict(cell.estimator_params), seed=cell.seed, device=cell.device)
    rows = fn(ctx, **mparams)
    keep = [{k: _canon(v) for k, v in sorted(r.items()) if k not in TIMING and not k.startswith("rss")
             and not _added_later(r, k)}
            for r in rows if r.get("quantity") not in TIMING and not str(r.get("quantity", "")).startswith("rss")
            and r.get("quantity") not in ADDED_ROWS]
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()


def cells(only: list[str] | None = None, matrix: str | None = None):
    """The non-timing cells of the default matrix (``matrix``: that file, e.g. the current one read by older code)."""
    if (ROOT / "blobench").is_dir():
        from blobench.engine.matrix import load_matrix
    else:  # the tree of BEFORE (see _engine)
        import importlib

        load_matrix = importlib.import_module("harness.matrix").load_matrix

    m = load_matrix(Path(matrix) if matrix else ROOT / "matrices" / "default.toml")
    for c in m.cells:
        if c.metric in TIMING_METRICS or (only and c.experiment not in only):
            continue
        yield c


def label(c) -> str:
    return c.label()


class NoHistory(RuntimeError):
    """The repository's history (commit BEFORE) is not at hand, e.g. in a shallow clone or an sdist."""


def export_before(dest: Path) -> Path:
    """The tree of :data:`BEFORE` under ``dest`` (``git archive``), with this module beside its tests."""
    dest.mkdir(parents=True, exist_ok=True)
    if not (dest / "harness").is_dir():
        try:
            tar = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", BEFORE],
                                 capture_output=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError) as e:
            raise NoHistory(f"commit {BEFORE[:7]} (the code before issue 13) is not in this repository's history: {e}")
        with tarfile.open(fileobj=io.BytesIO(tar)) as t:
            try:
                t.extractall(dest, filter="data")
            except TypeError:  # a Python without extraction filters
                t.extractall(dest)
    (dest / "tests").mkdir(exist_ok=True)
    shutil.copyfile(Path(__file__), dest / "tests" / "golden_default.py")
    return dest


def before_digests(dest: Path, only: list[str] | None = None) -> dict[str, str]:
    """label -> digest of the cells of :data:`BEFORE`'s own matrices/default.toml (or ``only`` those
    experiments), computed by the code of :data:`BEFORE` in a fresh interpreter on this machine."""
    tree = export_before(dest)
    code = ("import json, sys\nfrom tests.golden_default import cells, cell_digest\n"
            "print(json.dumps({c.label(): cell_digest(c) for c in cells(json.loads(sys.argv[1]), json.loads(sys.argv[2]))}))")
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(only), "null"],
                         cwd=tree, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"the code of {BEFORE[:7]} failed computing its digests:\n{out.stderr[-3000:]}")
    got = json.loads(out.stdout.strip().splitlines()[-1])
    from blobench import harness  # noqa: F401  (the in-process code is the current one)

    assert Path(harness.__file__).resolve().is_relative_to(ROOT.resolve()), harness.__file__
    return got


def main(argv: list[str]) -> int:
    recorded = "--recorded" in argv
    only = [a for a in argv if not a.startswith("--")] or None
    if recorded:
        old = json.loads(DIGESTS.read_text())
    else:
        with tempfile.TemporaryDirectory() as d:
            old = before_digests(Path(d), only)
    new, bad = {}, []
    for c in cells(only):
        if label(c) not in old:  # an experiment or cell added since
            continue
        t = time.perf_counter()
        d = cell_digest(c)
        new[label(c)] = d
        same = old.get(label(c)) == d
        if not same:
            bad.append(label(c))
        print(f"{'same' if same else 'DIFF'} {time.perf_counter() - t:6.2f}s {label(c)}", flush=True)
    print(f"{len(new) - len(bad)}/{len(new)} cells bit-identical to {'the recorded file' if recorded else BEFORE[:7]}")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
