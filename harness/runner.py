"""The matrix runner: matrix -> cells -> workers -> one atomic parquet shard per cell -> run folder.

``run_cell`` is a top-level function of plain data, so it can be shipped to a joblib
(loky) worker process or a Dask worker. Each cell seeds its generators from its own
seed, never from global state, so CPU results are bit-identical whatever the schedule.

Fault isolation: a cell whose estimator raises is ``failed``; one whose metric output
holds NaN/Inf or a magnitude above ``diverge_bound`` is ``diverged``; one that runs past
``cell_timeout`` seconds is ``timeout``; a ``cuda`` cell on a machine without a GPU is
``unavailable``. Each is recorded with its message and traceback; the other cells go on.

Timeouts use SIGALRM where the cell runs on a process's main thread (jobs=1, loky
workers) and an asynchronous exception otherwise (Dask worker threads); the latter fires
at the next Python bytecode, so a single long C call finishes before it is stopped.

With ``--backend dask --scheduler ADDRESS`` the workers write shards straight into the
run folder (by absolute path) and import plugin files by the same paths, so on a real
cluster both must live on a filesystem every worker sees at the same path.

Plugin files (``blobench --plugin FILE``, ``run(..., plugins=[FILE])`` or the
``BLOBENCH_PLUGINS`` environment variable, paths separated by ``os.pathsep``) are
loaded in every worker before its first cell.
"""
from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import json
import math
import os
import platform
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Iterator, Sequence

import pandas as pd

from .errors import BlobenchError, ParameterError
from .matrix import Cell, Matrix, cell_key, load_matrix, validate_cells
from .progress import BAD, Progress
from .store import (RunLock, finished_keys, log_status, remove_stale_temporaries, shard_statuses,
                    write_current_keys, write_manifest, write_shard)
from .store import atomic_write_bytes

BACKENDS = ("loky", "dask")
DIVERGE_BOUND = 1e12
_loaded_plugins: dict[str, tuple[int, int]] = {}  # path -> (mtime_ns, size) when imported


class CellTimeout(BaseException):
    """Raised inside a cell that ran past its time limit (BaseException: estimators' ``except Exception`` cannot swallow it)."""


def _jsonable(d: dict[str, Any]) -> str:
    return json.dumps(d, sort_keys=True, default=str)


def plugin_paths(plugins: Sequence[str] | None = None) -> list[str]:
    """Absolute plugin file paths from the argument and the BLOBENCH_PLUGINS environment variable."""
    env = [p for p in os.environ.get("BLOBENCH_PLUGINS", "").split(os.pathsep) if p]
    out: list[str] = []
    for p in [*(plugins or []), *env]:
        a = os.path.abspath(p)
        if not os.path.isfile(a):
            raise BlobenchError(f"plugin file {p!r} does not exist")
        if a not in out:
            out.append(a)
    return out


def load_plugins(paths: Sequence[str]) -> None:
    """Import each plugin file once per process (again if it changed on disk)."""
    from .registry import discover, load_plugin_file

    discover()
    for p in paths:
        st = os.stat(p)
        stamp = (st.st_mtime_ns, st.st_size)
        if _loaded_plugins.get(p) != stamp:  # first use, or the file changed since: (re)import it
            load_plugin_file(p)
            _loaded_plugins[p] = stamp


@contextlib.contextmanager
def _deadline(seconds: float | None) -> Iterator[None]:
    """Raise CellTimeout in the current thread after ``seconds`` (None or 0: no limit)."""
    if not seconds:
        yield
        return
    msg = f"cell exceeded --cell-timeout of {seconds:g} s"
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        def _alarm(signum, frame):  # noqa: ARG001
            raise CellTimeout(msg)

        old = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
        return
    tid = threading.get_ident()
    lock = threading.Lock()
    state = {"armed": True, "fired": False}

    def _fire() -> None:
        with lock:
            if state["armed"]:
                state["fired"] = True
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid), ctypes.py_object(CellTimeout))

    timer = threading.Timer(seconds, _fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        with lock:
            state["armed"] = False
            timer.cancel()
            if state["fired"]:  # clear an exception that may still be pending
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid), None)


def _divergence(rows: list[dict[str, Any]], bound: float) -> str:
    """Why the metric rows mean divergence ("" if they do not): a NaN/Inf value or |value| > bound.

    A NaN in a ``fitted_*`` row is allowed (a rate cannot be fitted once the error sits at
    the float floor, e.g. an exact estimator); an Inf is never allowed.
    """
    nums = []
    for r in rows:
        v = r.get("value")
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        v = float(v)
        if v != v and str(r.get("quantity", "")).startswith("fitted_"):
            continue
        nums.append(v)
    bad = [v for v in nums if not math.isfinite(v)]
    if bad:
        return f"{len(bad)} non-finite value(s) in the metric's output"
    big = [v for v in nums if abs(v) > bound]
    if big:
        return f"{len(big)} value(s) beyond the divergence bound {bound:g} (max |value| {max(abs(v) for v in big):.3g})"
    return ""


def run_cell(cell: Cell, key: str, run_dir: str, threads: int = 1, timeout: float | None = None,
             plugins: Sequence[str] = (), diverge_bound: float = DIVERGE_BOUND) -> dict[str, Any]:
    """Compute one cell and write its shard atomically; returns a small summary (status, seconds, message)."""
    import torch

    torch.set_num_threads(max(1, threads))
    from . import api
    from .measures import CellContext
    from .params import validate
    from .registry import METRICS

    status, message, tb, rows = "ok", "", "", []
    t0 = time.perf_counter()
    try:
        load_plugins(plugins)  # imports on a fresh worker; then t0 restarts so cell_seconds is the cell's own time
        t0 = time.perf_counter()
        if cell.device == "cuda" and not torch.cuda.is_available():
            status, message = "unavailable", f"no CUDA device on {platform.node() or 'this machine'}"
        else:
            with _deadline(timeout):
                problem = api.problem(cell.problem, **cell.problem_params)
                api.estimator(cell.estimator, **cell.estimator_params)  # validates
                fn = METRICS.get(cell.metric)
                mparams = validate(f"metric {cell.metric!r}", getattr(fn, "params", {}), cell.metric_params)
                torch.manual_seed(cell.seed)
                ctx = CellContext(problem, cell.estimator, dict(cell.estimator_params), seed=cell.seed,
                                  device=cell.device)
                rows = fn(ctx, **mparams)
            if cell.metric not in ("convergence",):
                why = _divergence(rows, diverge_bound)
                if why:
                    status, message = "diverged", why
    except CellTimeout as exc:
        status, message, tb, rows = "timeout", str(exc) or "cell timed out", traceback.format_exc(), []
    except BlobenchError as exc:
        status, message, tb, rows = "failed", str(exc), traceback.format_exc(), []
    except Exception as exc:  # noqa: BLE001 - a failing cell is data, not a crash
        status, message, tb, rows = "failed", f"{type(exc).__name__}: {exc}", traceback.format_exc(), []
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


def _pin_threads() -> None:
    """Run on each Dask worker: one torch/BLAS thread per worker so jobs do not fight over cores."""
    import torch

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    torch.set_num_threads(1)


def _run_dask(todo, run_dir: Path, jobs: int, scheduler: str | None, args: tuple, _done) -> list[dict]:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise BlobenchError("--backend dask needs dask.distributed: pip install 'blobench[dask]'") from None
    results: list[dict] = []
    cluster = None
    try:
        if scheduler:
            try:
                wait = os.environ.get("BLOBENCH_DASK_CONNECT_TIMEOUT", "20")
                client = Client(scheduler, timeout=f"{float(wait):g}s")
            except (OSError, TimeoutError) as exc:
                raise BlobenchError(f"cannot reach the Dask scheduler at {scheduler!r}: {exc}") from None
        else:
            cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address=None, env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
            client = Client(cluster)
        with client:
            client.run(_pin_threads)
            futs = [client.submit(run_cell, c, k, str(run_dir.resolve()), 1, *args, key=f"blobench-cell-{k}", pure=False)
                    for c, k in todo]
            for fut in as_completed(futs):
                r = fut.result()
                results.append(r)
                _done(r)
    finally:
        if cluster is not None:
            cluster.close()
    return results


def run(matrix: str | Path | dict, jobs: int = 1, backend: str = "loky", runs_dir: str | Path = "runs",
        run_id: str | None = None, progress: bool = True, cell_timeout: float | None = None,
        scheduler: str | None = None, plugins: Sequence[str] | None = None,
        diverge_bound: float = DIVERGE_BOUND, retry_failed: bool = False) -> Path:
    """Run every unfinished cell of a matrix into ``runs_dir/<run-id>/`` (default run id: the matrix name).

    Finished cells (a shard whose key matches) are skipped, so rerunning resumes. A lock
    refuses a second concurrent writer to the same folder. ``retry_failed`` reruns cells
    recorded as failed/diverged/timeout; ``cuda`` cells recorded ``unavailable`` are rerun
    whenever a GPU is present. Writes ``summary.json`` (statuses, timings) into the folder.
    """
    import torch

    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ParameterError(f"jobs must be an integer >= 1, got {jobs!r}")
    if backend not in BACKENDS:
        raise ParameterError(f"unknown backend {backend!r} (allowed: {', '.join(BACKENDS)})")
    if scheduler and backend != "dask":
        raise ParameterError("--scheduler needs --backend dask")
    if cell_timeout is not None and not (isinstance(cell_timeout, (int, float)) and cell_timeout > 0):
        raise ParameterError(f"cell timeout must be a number of seconds > 0, got {cell_timeout!r}")
    if not (isinstance(diverge_bound, (int, float)) and diverge_bound > 0):
        raise ParameterError(f"divergence bound must be a number > 0, got {diverge_bound!r}")
    t_start = time.perf_counter()
    paths = plugin_paths(plugins)
    load_plugins(paths)
    m = load_matrix(matrix)
    run_dir = Path(runs_dir) / (run_id or m.name)
    cache: dict[str, str] = {}
    keyed = [(c, cell_key(c, cache)) for c in m.cells]
    # validate (build every problem/estimator) only what may run: finished cells were validated when they ran
    before = finished_keys(run_dir)
    validate_cells(Matrix(m.name, [c for c, k in keyed if k not in before or retry_failed or c.device == "cuda"],
                          m.source, m.path))
    with RunLock(run_dir):
        remove_stale_temporaries(run_dir)
        write_manifest(run_dir, {**manifest_for(m, jobs, backend), "plugins": paths, "cell_timeout": cell_timeout,
                                 "diverge_bound": diverge_bound, "scheduler": scheduler})
        write_current_keys(run_dir, [k for _, k in keyed])
        done = finished_keys(run_dir)
        redo: set[str] = set()
        if retry_failed:
            redo |= {k for k, s in shard_statuses(run_dir, done).items() if s in BAD}
        if torch.cuda.is_available():
            cuda_done = {k for c, k in keyed if c.device == "cuda" and k in done}
            redo |= {k for k, s in shard_statuses(run_dir, cuda_done).items() if s == "unavailable"}
        seen: set[str] = set()
        todo = []
        for c, k in keyed:
            if k in seen or (k in done and k not in redo):
                continue
            seen.add(k)
            todo.append((c, k))
        n_keys = len({k for _, k in keyed})
        if progress:
            print(f"blobench: {n_keys} cells, {n_keys - len(todo)} already done, {len(todo)} to run -> {run_dir}",
                  file=sys.stderr)
        prog = Progress(len(todo), jobs=jobs, enabled=progress)

        def _done(r: dict[str, Any]) -> None:
            log_status(run_dir, r["key"], r["status"])
            prog.update(r)

        args = (cell_timeout, tuple(paths), float(diverge_bound))
        results: list[dict] = []
        t_cells = time.perf_counter()
        try:
            if backend == "dask":
                results = _run_dask(todo, run_dir, jobs, scheduler, args, _done)
            elif jobs == 1 or len(todo) <= 1:
                for c, k in todo:
                    results.append(run_cell(c, k, str(run_dir), 1, *args))
                    _done(results[-1])
            else:
                from joblib import Parallel, delayed, parallel_config

                with parallel_config(backend="loky", inner_max_num_threads=1):
                    # batch_size=1: cells are coarse, and batching would queue a long cell behind others
                    par = Parallel(n_jobs=jobs, return_as="generator_unordered", batch_size=1)
                    for r in par(delayed(run_cell)(c, k, str(run_dir.resolve()), 1, *args) for c, k in todo):
                        results.append(r)
                        _done(r)
        finally:
            prog.close()
        wall_cells = time.perf_counter() - t_cells
        statuses = shard_statuses(run_dir, {k for _, k in keyed} - {r["key"] for r in results})
        statuses.update({r["key"]: r["status"] for r in results})
        counts: dict[str, int] = {}
        for s in statuses.values():
            counts[s] = counts.get(s, 0) + 1
        failures = [r for r in results if r["status"] in BAD]
        summary = {
            "cells": n_keys, "ran": len(results), "skipped": n_keys - len(todo), "statuses": counts,
            "partial": any(s in BAD for s in statuses.values()),
            "missing": n_keys - len(statuses),
            "wall_seconds": time.perf_counter() - t_start, "cells_wall_seconds": wall_cells,
            "cell_seconds_sum": sum(r["seconds"] for r in results), "jobs": jobs, "backend": backend,
            "failures": [{k: r[k] for k in ("key", "status", "label", "message")} for r in failures],
        }
        atomic_write_bytes(run_dir / "summary.json", json.dumps(summary, indent=2).encode())
    if progress:
        print(f"blobench: done in {summary['wall_seconds']:.1f}s: "
              + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())), file=sys.stderr)
        bad_prev = {k: s for k, s in statuses.items() if s in BAD and k not in {r['key'] for r in results}}
        if failures or bad_prev:
            print(f"blobench: {len(failures) + len(bad_prev)} cell(s) did not finish ok "
                  "(--retry-failed reruns them):", file=sys.stderr)
            for r in failures:
                print(f"  {r['status']}: {r['label']}: {r['message']}", file=sys.stderr)
            for k, s in bad_prev.items():
                print(f"  {s}: cell {k} (recorded earlier)", file=sys.stderr)
    return run_dir


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    """The ``summary.json`` the last run into this folder wrote."""
    p = Path(run_dir) / "summary.json"
    return json.loads(p.read_text()) if p.is_file() else {}
