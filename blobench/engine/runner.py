"""The matrix runner: matrix -> cells -> workers -> one atomic parquet shard per cell -> run folder.

``run_cell`` is a top-level function of plain data, so it can be shipped to a worker
process or a Dask worker. Each cell seeds its generators from its own seed, never from
global state, so CPU results are bit-identical whatever the schedule.

Fault isolation: a cell whose problem or estimator raises is ``failed``; one whose
metric output holds NaN/Inf or a magnitude above ``diverge_bound``, or whose estimator
returned non-finite draws, is ``diverged``; one that runs past ``cell_timeout`` seconds is
``timeout``; a ``cuda`` cell on a machine without a GPU is ``unavailable``. Each is
recorded with its message and traceback; the other cells go on. Problems are built
inside their cell (under its timeout and isolation); the main process only checks the
parameters against the declared specs.

Workers: with ``jobs > 1`` or a ``cell_timeout``, cells run in a pool of worker
processes (:class:`_Pool`, forked from a server that has imported torch and the
plugins once). A worker that dies (the out-of-memory killer's SIGKILL, a segfault)
makes its cell ``failed`` ("worker died: signal 9") and is replaced; a worker past its
cell's deadline is killed and replaced, so ``--cell-timeout`` bounds even one long torch
call. With ``jobs=1`` and no timeout cells run in the calling process. On Dask, a cell
with a timeout runs in a child process of the Dask worker that is killed at the deadline.

SIGTERM (``timeout``, Slurm, Kubernetes, systemd) is handled as Ctrl-C: the pool is
stopped, the lock released, one line printed; rerunning resumes.

With ``--backend dask --scheduler ADDRESS`` the workers write shards straight into the
run folder (by absolute path) and import plugin files by the same paths, so on a real
cluster both must live on a filesystem every worker sees at the same path.

Plugin files (``blobench --plugin FILE``, ``run(..., plugins=[FILE])`` or the
``BLOBENCH_PLUGINS`` environment variable, paths separated by ``os.pathsep``) are
loaded in every worker before its first cell.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import pickle
import platform
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

from blobench import __version__
from blobench.core.errors import BlobenchError, NonFiniteDraws, ParameterError
from blobench.engine.matrix import Cell, Matrix, cell_inputs, cell_key, load_matrix, validate_cells
from blobench.engine.progress import BAD, Progress
from blobench.engine.store import (RunLock, atomic_write_bytes, check_shards, finished_keys, log_status, quarantine,
                    remove_stale_temporaries, shard_statuses, validate_run_id, write_current_keys, write_manifest,
                    write_shard)

BACKENDS = ("loky", "dask")
DIVERGE_BOUND = 1e12
#: cells to run above which ``run`` asks for ``yes=True`` (``--yes``); env BLOBENCH_CONFIRM_CELLS overrides
CONFIRM_CELLS = 10000
_loaded_plugins: dict[str, tuple[int, int]] = {}  # path -> (mtime_ns, size) when imported


class RunTerminated(KeyboardInterrupt):
    """SIGTERM arrived during a run; handled exactly as Ctrl-C (a KeyboardInterrupt)."""


def _jsonable(d: dict[str, Any]) -> str:
    return json.dumps(d, sort_keys=True, default=str)


def plugin_paths(plugins: Sequence[str] | None = None) -> list[str]:
    """Absolute plugin file paths from the argument and the BLOBENCH_PLUGINS environment variable."""
    env = [p for p in os.environ.get("BLOBENCH_PLUGINS", "").split(os.pathsep) if p]
    out: list[str] = []
    for p in [*(plugins or []), *env]:
        a = os.path.abspath(p)
        if not os.path.isfile(a):
            src = "BLOBENCH_PLUGINS names" if p in env and p not in (plugins or []) else "plugin file"
            raise BlobenchError(f"{src} {p!r}, which does not exist")
        if a not in out:
            out.append(a)
    return out


def load_plugins(paths: Sequence[str], check: bool = False) -> None:
    """Import each plugin file once per process (again if it changed on disk)."""
    from blobench.core.registry import discover, load_plugin_file

    discover()
    for p in paths:
        st = os.stat(p)
        stamp = (st.st_mtime_ns, st.st_size)
        if _loaded_plugins.get(p) != stamp:  # first use, or the file changed since: (re)import it
            load_plugin_file(p, check=check)
            _loaded_plugins[p] = stamp


def _divergence(rows: list[dict[str, Any]], bound: float) -> str:
    """Why the metric rows mean divergence ("" if they do not): a NaN/Inf value, |value| > bound, or a
    ``diverged`` row the metric set to 1 (its own run left the finite region).

    A NaN is allowed in a ``fitted_*`` row (a rate cannot be fitted once the error sits at the float
    floor, e.g. an exact estimator) and in a row that says ``reached = 0`` (a censored measurement: the
    complexity metric's calls to an eps not reached within ``max_steps``, an outcome, not a divergence);
    an Inf is never allowed.
    """
    nums = []
    for r in rows:
        v = r.get("value")
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        v = float(v)
        if v != v and (str(r.get("quantity", "")).startswith("fitted_") or r.get("reached") == 0):
            continue
        if r.get("quantity") == "diverged" and v > 0:
            return "the metric's run diverged (its 'diverged' row is 1)"
        nums.append(v)
    bad = [v for v in nums if not math.isfinite(v)]
    if bad:
        return f"{len(bad)} non-finite value(s) in the metric's output"
    big = [v for v in nums if abs(v) > bound]
    if big:
        return f"{len(big)} value(s) beyond the divergence bound {bound:g} (max |value| {max(abs(v) for v in big):.3g})"
    return ""


def _cell_frame(cell: Cell, key: str, status: str, message: str, tb: str, rows: list[dict[str, Any]],
                secs: float, bound: float = DIVERGE_BOUND):
    import pandas as pd

    base = {
        "key": key, "experiment": cell.experiment, "problem": cell.problem,
        "problem_params": _jsonable(cell.problem_params), "estimator": cell.estimator,
        "estimator_params": _jsonable(cell.estimator_params), "metric": cell.metric,
        "metric_params": _jsonable(cell.metric_params), "seed": cell.seed, "device": cell.device,
        "status": status, "message": message, "traceback": tb, "cell_seconds": secs,
        # the divergence bound that decided this shard's status (a resume with another --diverge-bound rewrites the
        # manifest, not the shards it skips)
        "diverge_bound": float(bound),
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
    return df


def record_cell(cell: Cell, key: str, run_dir: str | Path, status: str, message: str, secs: float = 0.0,
                tb: str = "", bound: float = DIVERGE_BOUND) -> dict[str, Any]:
    """Write the shard of a cell that produced no rows (died, timed out) from outside its worker."""
    write_shard(Path(run_dir), key, _cell_frame(cell, key, status, message, tb, [], secs, bound))
    return {"key": key, "status": status, "message": message, "seconds": secs, "label": cell.label()}


def check_inputs(inputs: dict[str, dict[str, str]] | None, reads: Sequence[tuple[str, str]] = ()) -> str:
    """Why the files this process executed or read for a cell differ from those its key was made from ("" if
    they do not). ``inputs`` ({"sources": {path: sha256}, "data": {path: sha256}}, made when the run started:
    blobench.engine.matrix.cell_inputs); ``reads``: the (path, sha256) of the data files the cell parsed
    (blobench.core.data.READ_LOG). A data file read with other bytes, or a data file read at another path than
    the ones the key names (a Dask worker's own copy), or a plugin file whose executed source
    (blobench.core.registry.PLUGIN_DIGESTS) is not the hashed one, is a mismatch. Built-in plugin modules,
    imported normally, are not compared."""
    if not inputs:
        return ""
    from blobench.core.registry import PLUGIN_DIGESTS

    data = inputs.get("data") or {}
    for path, got in reads:
        want = data.get(path)
        if want is not None and got != want:
            return (f"input changed during the run: the data file {path} this cell read has sha256 {got[:12]}..., "
                    f"the run started with {want[:12]}... (the cell's key); not stored as ok: rerun to recompute the "
                    "cell under the new file's key")
        if want is None and data:
            return (f"this cell read the data file {path}, not the file{'s' if len(data) > 1 else ''} "
                    f"{', '.join(sorted(data))} its key was made from (a worker with its own data folder?)")
    for path, want in sorted((inputs.get("sources") or {}).items()):
        got = PLUGIN_DIGESTS.get(path)
        if got is not None and got != want:
            return (f"input changed during the run: the plugin file {path} this cell executed has sha256 "
                    f"{got[:12]}..., the run started with {want[:12]}... (the cell's key); not stored as ok: rerun "
                    "to recompute the cell under the new file's key")
    return ""


def run_cell(cell: Cell, key: str, run_dir: str, threads: int = 1, timeout: float | None = None,
             plugins: Sequence[str] = (), diverge_bound: float = DIVERGE_BOUND,
             inputs: dict[str, dict[str, str]] | None = None, data_dir: str | None = None) -> dict[str, Any]:
    """Compute one cell and write its shard atomically; returns a small summary (status, seconds, message).

    With ``timeout`` the cell runs in a child process killed at the deadline (a hard bound,
    whatever the cell is doing); without, in this process. ``data_dir`` (the client's resolved data folder)
    becomes this process's ``BLOBENCH_DATA``, so a Dask worker reads the files the client hashed; ``inputs``
    ({absolute path: sha256}) are checked after the cell (:func:`check_inputs`): a mismatch is ``failed``.
    """
    if timeout:
        return run_cell_isolated(cell, key, run_dir, timeout, plugins, diverge_bound, inputs, data_dir)
    prev = os.environ.get("BLOBENCH_DATA")
    try:
        return _run_cell_here(cell, key, run_dir, threads, plugins, diverge_bound, inputs, data_dir)
    finally:  # a cell run in the caller's process (jobs=1) leaves the caller's environment as it found it
        if data_dir:
            if prev is None:
                os.environ.pop("BLOBENCH_DATA", None)
            else:
                os.environ["BLOBENCH_DATA"] = prev


def _run_cell_here(cell: Cell, key: str, run_dir: str, threads: int, plugins: Sequence[str], diverge_bound: float,
                   inputs: dict[str, dict[str, str]] | None, data_dir: str | None) -> dict[str, Any]:
    """:func:`run_cell` in this process (``data_dir`` set as BLOBENCH_DATA for the cell; run_cell restores it)."""
    import torch

    torch.set_num_threads(max(1, threads))
    from blobench.core import api
    from blobench.measure.metrics import CellContext
    from blobench.core.params import validate
    from blobench.core.registry import METRICS

    status, message, tb, rows = "ok", "", "", []
    t0 = time.perf_counter()
    if data_dir:
        os.environ["BLOBENCH_DATA"] = data_dir
    from blobench.core.data import READ_LOG

    try:
        load_plugins(plugins)  # imports on a fresh worker; then t0 restarts so cell_seconds is the cell's own time
        t0 = time.perf_counter()
        if cell.device == "cuda" and not torch.cuda.is_available():
            status, message = "unavailable", f"no CUDA device on {platform.node() or 'this machine'}"
        else:
            n_reads = len(READ_LOG)
            problem = api.problem(cell.problem, **cell.problem_params)  # built here, under the cell's isolation
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
        changed = check_inputs(inputs, READ_LOG[n_reads:] if status != "unavailable" else ())
        if changed:
            status, message, rows = "failed", changed, []
    except NonFiniteDraws as exc:
        status, message, tb, rows = "diverged", str(exc), traceback.format_exc(), []
    except BlobenchError as exc:
        status, message, tb, rows = "failed", str(exc), traceback.format_exc(), []
    except MemoryError as exc:
        status, message, tb, rows = "failed", f"MemoryError: out of memory {exc}".strip(), traceback.format_exc(), []
    except Exception as exc:  # noqa: BLE001 - a failing cell is data, not a crash
        status, message, tb, rows = "failed", f"{type(exc).__name__}: {exc}", traceback.format_exc(), []
    except SystemExit as exc:  # a plugin calling sys.exit() must not end the run (with its exit code, no summary)
        status, message, tb, rows = ("failed", f"the cell called sys.exit({exc.code!r}) (SystemExit); a plugin must "
                                     "raise an exception instead", traceback.format_exc(), [])
    secs = time.perf_counter() - t0
    write_shard(Path(run_dir), key, _cell_frame(cell, key, status, message, tb, rows, secs, diverge_bound))
    return {"key": key, "status": status, "message": message, "seconds": secs, "label": cell.label()}


def _as_error(exc: BaseException) -> BaseException:
    """What a worker's error becomes in the runner: an Exception as it is; a SystemExit or KeyboardInterrupt raised
    by a plugin in the worker a BlobenchError (raised as is, it would end the run with the plugin's exit code)."""
    if isinstance(exc, Exception):
        return exc
    return BlobenchError(f"a worker process stopped with {type(exc).__name__}({exc}) (a plugin calling sys.exit()?)")


def _died(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = "?"
        why = " (out of memory?)" if -exitcode == signal.SIGKILL else ""
        return f"worker died: signal {-exitcode} ({name}){why}"
    return f"worker died: exit code {exitcode}"


def _timeout_msg(seconds: float) -> str:
    return f"cell exceeded --cell-timeout of {seconds:g} s (its worker was stopped)"


# -- a cell in a child process (Dask workers, or a direct run_cell(..., timeout=)) -------------------------

def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = "1"
    return env


def run_cell_isolated(cell: Cell, key: str, run_dir: str, timeout: float, plugins: Sequence[str] = (),
                      diverge_bound: float = DIVERGE_BOUND, inputs: dict[str, dict[str, str]] | None = None,
                      data_dir: str | None = None) -> dict[str, Any]:
    """Run one cell in a fresh child process (``python -m blobench.engine._cellproc``), killed once its compute time
    passes ``timeout`` (the clock starts when the child has imported torch and the plugins)."""
    payload = pickle.dumps((cell, key, str(Path(run_dir).resolve()), tuple(plugins), float(diverge_bound), inputs,
                            data_dir))
    import threading

    proc = subprocess.Popen([sys.executable, "-m", "blobench.engine._cellproc"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=_child_env())
    buf = bytearray()
    first = threading.Event()

    def pump() -> None:  # drains the child's stdout as it comes: a big result never blocks it on a full pipe
        assert proc.stdout is not None
        while True:
            b = proc.stdout.read1(1 << 16)
            if not b:
                break
            buf.extend(b)
            first.set()
        first.set()

    reader = threading.Thread(target=pump, daemon=True)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(payload)
        proc.stdin.close()
        reader.start()
        t0 = time.perf_counter()
        if not first.wait(start_timeout()):  # imports (torch, the plugins) hang: outside the cell's deadline, not forever
            proc.kill()
            proc.wait()
            return record_cell(cell, key, run_dir, "failed", _start_msg(), time.perf_counter() - t0,
                               bound=diverge_bound)
        t0 = time.perf_counter()  # the child said it is ready (imports done): the deadline starts now
        if bytes(buf[:1]) == b"R":
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                return record_cell(cell, key, run_dir, "timeout", _timeout_msg(timeout), time.perf_counter() - t0,
                                   bound=diverge_bound)
        else:
            proc.wait()
        reader.join(30)
        out = bytes(buf[1:]) if bytes(buf[:1]) == b"R" else b""
        if proc.returncode == 0 and out:
            res = pickle.loads(out)
            if isinstance(res, BaseException):
                raise _as_error(res)
            return res
        return record_cell(cell, key, run_dir, "failed", _died(proc.returncode), time.perf_counter() - t0,
                           bound=diverge_bound)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def start_timeout() -> float:
    """Seconds a worker may take to start (import torch and the plugins) before it counts as hung:
    ``BLOBENCH_START_TIMEOUT`` (default 300)."""
    try:
        v = float(os.environ.get("BLOBENCH_START_TIMEOUT", "300"))
    except ValueError:
        v = 300.0
    return v if v > 0 and math.isfinite(v) else 300.0


def _start_msg() -> str:
    return (f"worker did not start within {start_timeout():g} s (importing torch and the plugin files; a plugin "
            "import that hangs?); BLOBENCH_START_TIMEOUT sets the limit")


# -- the local worker pool -----------------------------------------------------------------------------------

def _warm_up() -> None:
    """Pay a fresh interpreter's lazy first-call costs (torch.func's and pandas' deferred imports: seconds on
    a loaded machine) before the first cell, on every path: a pool worker before it says it is ready (so a
    cell's deadline measures the cell), the one-cell child process, each Dask worker, and the calling process
    of a serial run (``jobs=1`` without a timeout), so the first cell's seconds are not the imports' (issue 29)."""
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    from blobench.measure import metrics as measures  # noqa: F401
    from blobench.measure.timing import warm_up_autodiff

    warm_up_autodiff("cpu")


def _worker_main(conn, plugins: Sequence[str]) -> None:  # pragma: no cover - runs in the worker process
    """A pool worker: pinned to one thread, deaf to Ctrl-C (the parent stops it), runs cells until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _pin_threads()
    try:
        load_plugins(plugins)
        _warm_up()
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("error", exc))
        return
    conn.send(("ready", None))  # a cell's deadline starts when it is sent to a ready worker
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        try:
            conn.send(("ok", run_cell(*msg)))
        except BaseException as exc:  # noqa: BLE001 - e.g. a full disk: the parent raises it
            conn.send(("error", exc))


class _Worker:
    """One worker process (``python -m blobench.engine._cellproc --serve FD``) talking over a socket pair.

    A fresh interpreter, not a fork: nothing of the parent's state (its __main__ script, its threads) is
    inherited, so ``harness.run`` works from any script, guarded by ``if __name__ == "__main__"`` or not.
    """

    def __init__(self, plugins: Sequence[str]):
        import socket
        from multiprocessing.connection import Connection

        a, b = socket.socketpair()
        self.proc = subprocess.Popen([sys.executable, "-m", "blobench.engine._cellproc", "--serve", str(b.fileno()),
                                      json.dumps(list(plugins))], pass_fds=[b.fileno()], env=_child_env(),
                                     stdin=subprocess.DEVNULL)
        b.close()
        self.conn = Connection(a.detach())
        self.task: tuple[Cell, str] | None = None
        self.t0 = 0.0
        self.ready = False
        self.born = time.perf_counter()

    @property
    def exitcode(self) -> int | None:
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(10)
        finally:
            self.conn.close()


class _Pool:
    """``jobs`` worker processes, each running one cell at a time; dead or overdue workers are replaced."""

    def __init__(self, jobs: int, plugins: Sequence[str]):
        self.plugins = tuple(plugins)
        self.workers = [_Worker(self.plugins) for _ in range(jobs)]

    #: a worker killed while starting (before its first cell) is replaced this many times in a row before the
    #: run gives up (a start that always dies is a broken install, not bad luck)
    START_RETRIES = 3

    def run(self, todo: list[tuple[Cell, str]], run_dir: str, timeout: float | None, bound: float,
            done: Callable[[dict[str, Any]], None], inputs: dict[str, dict[str, str]] | None = None,
            data_dir: str | None = None) -> None:
        from multiprocessing.connection import wait

        inputs = inputs or {}
        failed_starts = 0
        queue = list(reversed(todo))
        while True:
            for w in self.workers:
                if w.ready and w.task is None and queue:
                    c, k = queue.pop()
                    w.task, w.t0 = (c, k), time.perf_counter()
                    try:
                        w.conn.send((c, k, run_dir, 1, None, self.plugins, bound, inputs.get(k), data_dir))
                    except OSError:
                        pass  # the worker is dead: its end of the socket reads as closed below
            busy = [w for w in self.workers if w.task is not None]
            starting = [w for w in self.workers if not w.ready]
            if not busy and (not queue or not starting):
                return
            deadlines = [w.t0 + timeout for w in busy] if timeout else []
            deadlines += [w.born + start_timeout() for w in starting]
            wait_for = max(0.0, min(deadlines) - time.perf_counter()) if deadlines else None
            ready = set(wait([w.conn for w in busy + starting], timeout=wait_for))
            for w in starting:
                i = self.workers.index(w)
                if w.conn in ready:
                    try:
                        tag, res = w.conn.recv()
                    except (EOFError, OSError):  # killed while importing: replace it, unless starts keep dying
                        code = w.exitcode
                        w.kill()
                        failed_starts += 1
                        if failed_starts > self.START_RETRIES:
                            raise BlobenchError(f"worker processes keep dying while starting ({_died(code)}, "
                                                f"{failed_starts} times)") from None
                        self.workers[i] = _Worker(self.plugins)
                        continue
                    if tag == "error":
                        raise _as_error(res)
                    w.ready = tag == "ready"
                    failed_starts = 0
                elif time.perf_counter() - w.born >= start_timeout():
                    w.kill()
                    raise BlobenchError(_start_msg())
            for i, w in enumerate(self.workers):
                if w.task is None:
                    continue
                c, k = w.task
                res = None
                if w.conn in ready:
                    try:
                        tag, res = w.conn.recv()
                    except (EOFError, OSError):  # no answer: the worker died with the cell
                        code = w.exitcode
                        w.kill()
                        res = record_cell(c, k, run_dir, "failed", _died(code), time.perf_counter() - w.t0,
                                          bound=bound)
                        self.workers[i] = w = _Worker(self.plugins)
                    else:
                        if tag == "error":
                            raise _as_error(res)
                elif timeout and time.perf_counter() - w.t0 >= timeout:
                    w.kill()  # reaped before the shard is written: the worker can no longer write
                    res = record_cell(c, k, run_dir, "timeout", _timeout_msg(timeout), time.perf_counter() - w.t0,
                                      bound=bound)
                    self.workers[i] = w = _Worker(self.plugins)
                if res is not None:
                    w.task = None
                    done(res)

    def close(self) -> None:
        for w in self.workers:
            if w.task is None and w.proc.poll() is None:
                try:
                    w.conn.send(None)
                except OSError:
                    pass
        deadline = time.monotonic() + 2
        for w in self.workers:
            if w.task is None:
                try:
                    w.proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
            w.kill()


def git_revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parent.parent).stdout.strip() or "unknown"
    except Exception:  # noqa: BLE001
        return "unknown"


def manifest_for(matrix: Matrix, jobs: int, backend: str) -> dict[str, Any]:
    import numpy
    import pandas as pd
    import torch

    return {
        "matrix": matrix.source, "matrix_path": matrix.path, "name": matrix.name, "cells": len(matrix.cells),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"blobench": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
                     "numpy": numpy.__version__, "pandas": pd.__version__},
        "git_revision": git_revision(),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count()},
        "devices": {"cuda": torch.cuda.is_available(),
                    "cuda_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "jobs": jobs, "backend": backend,
    }


def _pin_threads() -> None:
    """Run on each worker: one torch/BLAS thread per worker so jobs do not fight over cores."""
    import torch

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    torch.set_num_threads(1)


def _dask_client(jobs: int, scheduler: str | None, quiet: bool):
    """Connect to (or start) the Dask cluster before the run folder exists, so an unreachable scheduler
    leaves nothing behind. Returns (client, cluster or None)."""
    import logging

    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise BlobenchError("--backend dask needs dask.distributed: pip install 'blobench[dask]'") from None
    if quiet:  # "Worker process still alive ... killing" and friends
        for name in ("distributed", "distributed.nanny", "distributed.scheduler", "distributed.worker"):
            logging.getLogger(name).setLevel(logging.ERROR)
    if scheduler:
        try:
            wait = os.environ.get("BLOBENCH_DASK_CONNECT_TIMEOUT", "20")
            return Client(scheduler, timeout=f"{float(wait):g}s"), None
        except (OSError, TimeoutError) as exc:
            raise BlobenchError(f"cannot reach the Dask scheduler at {scheduler!r}: {exc}") from None
        except (ValueError, TypeError) as exc:  # "notaurl": no protocol/port
            raise BlobenchError(f"--scheduler {scheduler!r} is not a Dask scheduler address (expected e.g. "
                                f"tcp://HOST:8786): {exc}") from None
    import dask

    # One task per worker thread, none queued behind it on the worker: a cell that kills its worker then takes no
    # queued bystander down with it (the scheduler's default saturation 1.1 holds two tasks on a 1-thread worker).
    # No retries by the scheduler: a task on a worker that died ends KilledWorker at once and _run_dask reruns it
    # alone (the default 3 retries cost a killer cell 4 worker restarts, each importing torch, before that rerun).
    with dask.config.set({"distributed.scheduler.worker-saturation": 1.0, "distributed.scheduler.allowed-failures": 0}):
        cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None, env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
                               silence_logs=logging.ERROR if quiet else logging.WARNING)
    return Client(cluster), cluster


def dask_task_prefix(run_dir: Path) -> str:
    """The prefix of this run's Dask task keys: the run folder's name, a digest of its absolute path and a
    nonce of this invocation, so two runs sharing a scheduler (other run ids, or the same matrix into other
    folders) never share a task (issue 23: with keys ``blobench-cell-<key>`` the second run's cells were the
    first run's tasks and their shards went into the first run's folder)."""
    import hashlib
    import uuid

    tag = hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:10]
    return f"blobench-{Path(run_dir).name[:40]}-{tag}-{uuid.uuid4().hex[:8]}"


def _run_dask(client, todo, run_dir: Path, args: tuple, _done, inputs: dict[str, dict[str, str]] | None = None,
              data_dir: str | None = None) -> None:
    from distributed import as_completed

    client.run(_pin_threads)
    client.run(_warm_up)
    prefix = dask_task_prefix(run_dir)
    inputs = inputs or {}
    futs = {client.submit(run_cell, c, k, str(run_dir.resolve()), 1, *args, inputs=inputs.get(k), data_dir=data_dir,
                          key=f"{prefix}-{k}", pure=False): (c, k) for c, k in todo}
    lost: list[str] = []
    suspects: list[tuple] = []
    why = ""

    def collect(pending: dict) -> None:
        nonlocal why
        for fut in as_completed(list(pending)):
            c, k = pending[fut]
            try:
                r = fut.result()
            except Exception as exc:  # noqa: BLE001
                if type(exc).__name__ == "KilledWorker":
                    if not alone:  # maybe only a bystander of the cell that killed its worker: retried alone below
                        suspects.append((c, k))
                        continue
                    # it killed its worker with nothing else running: its own failure
                    r = record_cell(c, k, run_dir, "failed", f"worker died: {type(exc).__name__}: {exc}", bound=args[2])
                elif isinstance(exc, OSError) and getattr(exc, "filename", None):  # a full disk writing a shard
                    raise
                else:  # the scheduler or the connection went away (cancelled, comm closed): the cell did not run
                    lost.append(k)
                    why = why or f"{type(exc).__name__}: {exc}".strip()
                    continue
            _done(r)

    alone = False
    collect(futs)
    # Issue 23: a cell that kills its worker (a plugin's os._exit, the OOM killer) takes down the cells queued or
    # running beside it on that worker, and the scheduler blames each of them once per death: an innocent cell
    # could end "failed: KilledWorker". Every cell that ended so is rerun alone, one at a time, and only a cell
    # that kills its worker alone is recorded failed.
    alone = True
    for c, k in suspects:
        if lost:
            break
        collect({client.submit(run_cell, c, k, str(run_dir.resolve()), 1, *args, inputs=inputs.get(k),
                               data_dir=data_dir, key=f"{prefix}-{k}-alone", pure=False): (c, k)})
    if lost:
        raise BlobenchError(f"{len(lost)} cell(s) did not run: the Dask scheduler or the connection to it was lost "
                            f"({why[:200]}); they are not recorded as failed: rerun the same command to resume them")


def _estimate_note(run_dir: Path, n_todo: int, jobs: int) -> str:
    """'about X' from the mean cell time of the cells already in this folder, else 'unknown'."""
    secs = []
    for p in sorted((run_dir / "cells").glob("*.parquet"))[:200] if (run_dir / "cells").is_dir() else []:
        try:
            import pyarrow.parquet as pq

            col = pq.read_table(p, columns=["cell_seconds"]).column("cell_seconds").to_pylist()
            secs.append(float(col[0]))
        except Exception:  # noqa: BLE001 - an estimate only
            continue
    if not secs:
        return "estimated time unknown until the first cells finish"
    est = sum(secs) / len(secs) * n_todo / max(1, jobs)
    return f"estimated {est / 3600:.1f} h at the {sum(secs) / len(secs):.2g} s per cell of the cells already here"


def run(matrix: str | Path | dict, jobs: int = 1, backend: str = "loky", runs_dir: str | Path = "runs",
        run_id: str | None = None, progress: bool = True, cell_timeout: float | None = None,
        scheduler: str | None = None, plugins: Sequence[str] | None = None,
        diverge_bound: float = DIVERGE_BOUND, retry_failed: bool = False, yes: bool = False) -> Path:
    """Run every unfinished cell of a matrix into ``runs_dir/<run-id>/`` (default run id: the matrix name).

    Finished cells (a shard whose key matches and whose checksum verifies) are skipped, so
    rerunning resumes; a shard that fails verification is moved to ``<run>/corrupt/`` and its
    cell recomputed. A lock refuses a second concurrent writer to the same folder.
    ``retry_failed`` reruns cells recorded as failed/diverged/timeout; ``cuda`` cells
    recorded ``unavailable`` are rerun whenever a GPU is present. More than
    ``CONFIRM_CELLS`` cells to run need ``yes=True``. Writes ``summary.json`` (statuses,
    timings) into the folder.
    """
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ParameterError(f"jobs must be an integer >= 1, got {jobs!r}")
    if backend not in BACKENDS:
        raise ParameterError(f"unknown backend {backend!r} (allowed: {', '.join(BACKENDS)})")
    if scheduler and backend != "dask":
        raise ParameterError("--scheduler needs --backend dask")
    if cell_timeout is not None and not (isinstance(cell_timeout, (int, float)) and cell_timeout > 0
                                         and math.isfinite(cell_timeout)):
        raise ParameterError(f"cell timeout must be a number of seconds > 0, got {cell_timeout!r}")
    if not (isinstance(diverge_bound, (int, float)) and diverge_bound > 0):
        raise ParameterError(f"divergence bound must be a number > 0, got {diverge_bound!r}")
    if run_id is not None:
        validate_run_id(run_id)
    if Path(runs_dir).exists() and not Path(runs_dir).is_dir():
        raise BlobenchError(f"runs folder {str(runs_dir)!r} is a file, not a folder")
    t_start = time.perf_counter()
    paths = plugin_paths(plugins)
    load_plugins(paths, check=True)  # the plugin contract, shapes on a tiny call included (main process only)
    m = load_matrix(matrix)
    run_dir = Path(runs_dir) / (run_id or m.name)
    if run_dir.exists() and not run_dir.is_dir():
        raise BlobenchError(f"run folder {str(run_dir)!r} is a file, not a folder")
    cache: dict[str, str] = {}
    keyed = [(c, cell_key(c, cache)) for c in m.cells]
    inputs = {k: cell_inputs(c, cache) for c, k in keyed}
    # check parameters against the declared specs only for what may run (problems are built inside the cells)
    before = finished_keys(run_dir)
    maybe = [c for c, k in keyed if k not in before or retry_failed or c.device == "cuda"]
    validate_cells(Matrix(m.name, maybe, m.source, m.path))
    n_keys = len({k for _, k in keyed})
    limit = int(os.environ.get("BLOBENCH_CONFIRM_CELLS", CONFIRM_CELLS))
    n_new = len({k for c, k in keyed if k not in before})
    if n_new > limit and not yes:
        raise BlobenchError(f"{m.path}: {n_new} cells to run ({n_keys} in the matrix; "
                            f"{_estimate_note(run_dir, n_new, jobs)}); above {limit} cells blobench asks first: "
                            "pass --yes (run(..., yes=True)) to start it")
    client = cluster = None
    if backend == "dask":
        client, cluster = _dask_client(jobs, scheduler, quiet=not progress)
    old_term = None
    try:
        import threading

        if threading.current_thread() is threading.main_thread():
            def _term(signum, frame):  # noqa: ARG001
                raise RunTerminated("SIGTERM")

            old_term = signal.signal(signal.SIGTERM, _term)
        return _run_locked(m, keyed, run_dir, n_keys, jobs, backend, client, scheduler, paths, cell_timeout,
                           diverge_bound, retry_failed, progress, t_start, inputs)
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        if client is not None:
            try:
                client.close()
            finally:
                if cluster is not None:
                    cluster.close()


def _warn_hidden(run_dir: Path, m: Matrix, keys: set[str], progress: bool) -> None:
    """One warning line when this matrix replaces another one in the folder: the cells of the matrix last run here
    that this one lacks stay on disk but ``load`` and ``report`` stop showing them (before: silently, e.g. a
    copy-pasted matrix keeping the other's ``name``)."""
    from blobench.engine.store import read_current_keys, read_manifest

    if not (run_dir / "manifest.json").is_file():
        return
    try:
        old_keys = read_current_keys(run_dir) or set()
        old = read_manifest(run_dir)
    except BlobenchError:
        return
    gone = old_keys - keys
    if gone and old.get("matrix") != m.source:
        print(f"blobench: warning: {run_dir} held the results of another matrix ({old.get('matrix_path', '?')}); "
              f"{len(gone)} of its cells are not in {m.path} and will no longer be shown (they stay on disk; "
              "--run-id gives this matrix its own folder)", file=sys.stderr)


def _run_locked(m: Matrix, keyed, run_dir: Path, n_keys: int, jobs: int, backend: str, client, scheduler,
                paths: list[str], cell_timeout, diverge_bound: float, retry_failed: bool, progress: bool,
                t_start: float, inputs: dict[str, dict[str, str]] | None = None) -> Path:
    import torch

    from blobench.core.data import data_dir as _data_dir

    inputs = inputs or {}
    ddir = str(_data_dir().resolve())  # shipped with each cell: a Dask worker reads the client's data folder

    with RunLock(run_dir):
        remove_stale_temporaries(run_dir)
        _warn_hidden(run_dir, m, {k for _, k in keyed}, progress)
        # "cells": distinct cells (a matrix listing one cell twice has one shard for it: counting the listing made
        # ``runs`` say "incomplete 1/3" forever)
        # "experiments": the cell keys of each experiment of this matrix, under its current name: a shard holds one
        # experiment name (the first that ran it), so a second experiment with the same cells, or a renamed one,
        # is shown by the report through this map (issue 23)
        exps: dict[str, list[str]] = {}
        for c, k in keyed:
            if k not in exps.setdefault(c.experiment, []):
                exps[c.experiment].append(k)
        write_manifest(run_dir, {**manifest_for(m, jobs, backend), "cells": n_keys, "listed_cells": len(m.cells),
                                 "experiments": exps,
                                 "plugins": paths, "cell_timeout": cell_timeout,
                                 "diverge_bound": diverge_bound, "scheduler": scheduler})
        write_current_keys(run_dir, [k for _, k in keyed])
        current = {k for _, k in keyed}
        done = finished_keys(run_dir)
        quarantined = []
        for k, why in sorted(check_shards(run_dir, done & current).items()):
            dest = quarantine(run_dir, k)
            done.discard(k)
            quarantined.append({"key": k, "why": why, "moved_to": str(dest)})
            print(f"blobench: shard {k}.parquet: {why}; moved to {dest} and recomputing the cell", file=sys.stderr)
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
        if progress:
            print(f"blobench: {n_keys} cells, {n_keys - len(todo)} already done, {len(todo)} to run -> {run_dir}",
                  file=sys.stderr)
        prog = Progress(len(todo), jobs=jobs, enabled=progress)

        def _done(r: dict[str, Any]) -> None:
            results.append(r)
            log_status(run_dir, r["key"], r["status"])
            prog.update(r)

        results: list[dict] = []
        t_cells = time.perf_counter()
        pool = None
        try:
            if backend == "dask":
                _run_dask(client, todo, run_dir, (cell_timeout, tuple(paths), float(diverge_bound)), _done,
                          inputs, ddir)
            elif jobs == 1 and not cell_timeout:
                if todo:
                    _warm_up()
                for c, k in todo:
                    _done(run_cell(c, k, str(run_dir), 1, None, tuple(paths), float(diverge_bound), inputs.get(k),
                                   ddir))
            elif todo:
                pool = _Pool(min(jobs, len(todo)), paths)
                pool.run(todo, str(run_dir.resolve()), cell_timeout, float(diverge_bound), _done, inputs, ddir)
        finally:
            if pool is not None:
                pool.close()
            prog.close()
        wall_cells = time.perf_counter() - t_cells
        statuses = shard_statuses(run_dir, current - {r["key"] for r in results})
        statuses.update({r["key"]: r["status"] for r in results})
        counts: dict[str, int] = {}
        for s in statuses.values():
            counts[s] = counts.get(s, 0) + 1
        failures = [r for r in results if r["status"] in BAD]
        summary = {
            "cells": n_keys, "ran": len(results), "skipped": n_keys - len(todo), "statuses": counts,
            "partial": any(s in BAD for s in statuses.values()),
            "missing": n_keys - len(statuses), "quarantined": quarantined,
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
