"""The matrix runner: matrix -> cells -> workers -> one atomic parquet shard per cell -> run folder.

``run_cell`` is a top-level function of plain data, so it can be shipped to a joblib
(loky) worker process. Each cell seeds its generators from its own seed, never from
global state. A cell that raises, or returns NaN/Inf, is recorded with its status and
message; the other cells go on.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import BlobenchError
from .matrix import Cell, Matrix, load_matrix, validate_cells
from .store import finished_keys, write_manifest, write_shard


def _jsonable(d: dict[str, Any]) -> str:
    return json.dumps(d, sort_keys=True, default=str)


def run_cell(cell: Cell, key: str, run_dir: str, threads: int = 1) -> dict[str, Any]:
    """Compute one cell and write its shard; returns a small summary (status, seconds, message)."""
    import torch

    torch.set_num_threads(max(1, threads))
    from . import api
    from .measures import CellContext
    from .params import validate
    from .registry import METRICS, discover

    discover()
    t0 = time.perf_counter()
    status, message, tb, rows = "ok", "", "", []
    try:
        problem = api.problem(cell.problem, **cell.problem_params)
        api.estimator(cell.estimator, **cell.estimator_params)  # validates
        fn = METRICS.get(cell.metric)
        mparams = validate(f"metric {cell.metric!r}", getattr(fn, "params", {}), cell.metric_params)
        torch.manual_seed(cell.seed)
        ctx = CellContext(problem, cell.estimator, dict(cell.estimator_params), seed=cell.seed, device=cell.device)
        rows = fn(ctx, **mparams)
        vals = [r.get("value") for r in rows]
        bad = [v for v in vals if isinstance(v, float) and not math.isfinite(v)]
        if bad and cell.metric not in ("convergence",):
            status, message = "diverged", f"{len(bad)} non-finite value(s) in the metric's output"
    except BlobenchError as exc:
        status, message, tb = "failed", str(exc), traceback.format_exc()
    except Exception as exc:  # noqa: BLE001 - a failing cell is data, not a crash
        status, message, tb = "failed", f"{type(exc).__name__}: {exc}", traceback.format_exc()
    secs = time.perf_counter() - t0
    base = {
        "key": key, "experiment": cell.experiment, "problem": cell.problem,
        "problem_params": _jsonable(cell.problem_params), "estimator": cell.estimator,
        "estimator_params": _jsonable(cell.estimator_params), "metric": cell.metric,
        "metric_params": _jsonable(cell.metric_params), "seed": cell.seed, "device": cell.device,
        "status": status, "message": message, "traceback": tb, "cell_seconds": secs,
    }
    for k, v in cell.problem_params.items():
        base[f"pp_{k}"] = v
    for k, v in cell.estimator_params.items():
        base[f"ep_{k}"] = v
    if not rows:
        rows = [{"quantity": "status", "value": float("nan")}]
    df = pd.DataFrame([{**base, **r} for r in rows])
    for col in df.columns:
        if df[col].dtype == object and col not in ("traceback",):
            if df[col].map(lambda v: isinstance(v, (list, dict))).any():
                df[col] = df[col].map(lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v)
    write_shard(Path(run_dir), key, df)
    return {"key": key, "status": status, "message": message, "seconds": secs, "label": cell.label()}


def git_revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parent.parent).stdout.strip() or "unknown"
    except Exception:  # noqa: BLE001
        return "unknown"


def manifest_for(matrix: Matrix, jobs: int, backend: str) -> dict[str, Any]:
    import numpy
    import torch

    return {
        "matrix": matrix.source, "matrix_path": matrix.path, "name": matrix.name, "cells": len(matrix.cells),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"blobench": "0.1.0", "python": sys.version.split()[0], "torch": torch.__version__,
                     "numpy": numpy.__version__, "pandas": pd.__version__},
        "git_revision": git_revision(),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count()},
        "devices": {"cuda": torch.cuda.is_available(),
                    "cuda_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "jobs": jobs, "backend": backend,
    }


def run(matrix: str | Path | dict, jobs: int = 1, backend: str = "loky", runs_dir: str | Path = "runs",
        run_id: str | None = None, progress: bool = True) -> Path:
    """Run every unfinished cell of a matrix into runs/<run-id>/ (default run id: the matrix name)."""
    m = load_matrix(matrix)
    validate_cells(m)
    run_dir = Path(runs_dir) / (run_id or m.name)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(run_dir, manifest_for(m, jobs, backend))
    done = finished_keys(run_dir)
    todo = [(c, c.key()) for c in m.cells]
    todo = [(c, k) for c, k in todo if k not in done]
    if progress:
        print(f"blobench: {len(m.cells)} cells, {len(m.cells) - len(todo)} already done, {len(todo)} to run -> {run_dir}",
              file=sys.stderr)
    results = []
    if jobs == 1 or len(todo) <= 1:
        for i, (c, k) in enumerate(todo):
            results.append(run_cell(c, k, str(run_dir), threads=1))
            if progress:
                r = results[-1]
                print(f"  [{i + 1}/{len(todo)}] {r['status']:8s} {r['seconds']:6.2f}s  {r['label']}", file=sys.stderr)
    else:
        from joblib import Parallel, delayed

        if backend not in ("loky", "threading", "multiprocessing"):
            raise BlobenchError(f"unknown backend {backend!r} (allowed: loky, threading, multiprocessing)")
        par = Parallel(n_jobs=jobs, backend=backend, return_as="generator_unordered")
        for i, r in enumerate(par(delayed(run_cell)(c, k, str(run_dir), 1) for c, k in todo)):
            results.append(r)
            if progress:
                print(f"  [{i + 1}/{len(todo)}] {r['status']:8s} {r['seconds']:6.2f}s  {r['label']}", file=sys.stderr)
    failed = [r for r in results if r["status"] != "ok"]
    if progress and failed:
        print(f"blobench: {len(failed)} cell(s) did not finish ok:", file=sys.stderr)
        for r in failed:
            print(f"  {r['status']}: {r['label']}: {r['message']}", file=sys.stderr)
    return run_dir
