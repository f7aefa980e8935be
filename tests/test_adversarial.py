"""The adversarial suite of issue 12: what a hostile or clumsy user does to the runner, each as a test.

Every case failed on the engine before issue 12 (the docstring of each test names what it did then).
Matrices are tiny (quadratic dim 3, a handful of cells); the suite runs in well under 2 minutes on a
quiet machine. Cases that need worker processes share one run where they can.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from blobench import harness
from blobench.cli import main
from blobench.engine.runner import read_summary
from blobench.engine.store import RunLock

ADV_PLUGIN = textwrap.dedent('''
    """Adversarial plugins: a cell that kills its worker, one long C call, NaN draws, a slow problem build."""
    import os
    import signal
    import sys
    import time

    from blobench import harness
    from blobench.core.estimator_base import INNER_STEPS
    from blobench.core.params import Param
    from blobench.problems.quadratic import Quadratic


    class _Base(harness.Estimator):
        params = {"inner_steps": INNER_STEPS}


    @harness.register_estimator("adv-kills-worker")
    class KillsWorker(_Base):
        """SIGKILLs the process it runs in, as the out-of-memory killer does (only inside a pool worker)."""

        def estimate(self, oracles, x, noise, state=None):
            if "_cellproc" not in sys.argv[0]:
                raise RuntimeError("adv-kills-worker refuses to kill a process that is not a blobench worker")
            os.kill(os.getpid(), signal.SIGKILL)


    @harness.register_estimator("adv-c-sleep")
    class CSleep(_Base):
        """One 30 s call that never returns to the interpreter (as one long torch kernel)."""

        def estimate(self, oracles, x, noise, state=None):
            time.sleep(30)
            return harness.Estimate(oracles.exact(x))


    @harness.register_estimator("adv-nan")
    class NaNs(_Base):
        def estimate(self, oracles, x, noise, state=None):
            return harness.Estimate(oracles.exact(x) * float("nan"))


    @harness.register_problem("adv-slow-build")
    class SlowBuild(Quadratic):
        """The quadratic, whose construction takes 30 s when slow=true (a large problem's set-up)."""

        params = {**Quadratic.params, "slow": Param("bool", default=False)}

        def setup(self):
            if self.p["slow"]:
                time.sleep(30)
            super().setup()
''')

QUAD = {"dim": 3, "kappa": 10}
EVB = {"budget": "inner_steps", "values": [1, 4]}


def small(name: str = "adv", seeds=(0, 1), estimators=("itd", "aid-cg")) -> dict:
    return {"name": name, "seeds": list(seeds), "experiment": [{
        "name": "q", "problem": "quadratic", "problem_params": QUAD, "estimators": list(estimators),
        "metric": "error_vs_budget", "metric_params": EVB}]}


@pytest.fixture
def plugin(in_tmp):
    from blobench.core.registry import load_plugin_file

    path = in_tmp / "adv_plugin.py"
    path.write_text(ADV_PLUGIN)
    load_plugin_file(str(path))
    return str(path)


def table(run_dir) -> pd.DataFrame:
    df = harness.load(run_dir).drop(columns=["cell_seconds"])
    return df.sort_values(["key", "quantity", "budget"], na_position="first").reset_index(drop=True)


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("blobench: error: "), err
    assert "Traceback" not in err
    return lines[0]


# -- 1. corrupted shards never load as numbers; a rerun recomputes them and says so ---------------------------

def _first_shard(run_dir: Path) -> Path:
    return sorted((run_dir / "cells").glob("*.parquet"))[0]


def test_flipped_bytes_are_refused_by_load_and_recomputed_by_a_rerun(in_tmp, capsys):
    """Before: flipping 4 bytes in a shard's data changed a confidence bound with no error."""
    run_dir = harness.run(small(), progress=False)
    ref = table(run_dir)
    shard = _first_shard(run_dir)
    data = bytearray(shard.read_bytes())
    mid = len(data) // 3
    data[mid:mid + 4] = bytes(b ^ 0xFF for b in data[mid:mid + 4])
    shard.write_bytes(bytes(data))
    with pytest.raises(harness.BlobenchError, match=f"{shard.name}: checksum mismatch") as e:
        harness.load(run_dir)
    assert "\n" not in str(e.value)
    assert main(["report", str(run_dir), "--reports-dir", str(in_tmp / "rep")]) == 2
    assert shard.name in one_error_line(capsys.readouterr().err)
    # a rerun moves it aside, recomputes it, says so; the table is bit-identical to the clean one
    harness.run(small(), progress=True)
    err = capsys.readouterr().err
    assert f"shard {shard.name}: checksum mismatch" in err and "recomputing" in err
    s = read_summary(run_dir)
    assert s["ran"] == 1 and [q["key"] for q in s["quarantined"]] == [shard.stem]
    assert (run_dir / "corrupt" / f"{shard.stem}.0.parquet").read_bytes() == bytes(data)
    pd.testing.assert_frame_equal(table(run_dir), ref, check_exact=True)


def test_truncated_shard_is_recomputed_even_with_retry_failed(in_tmp):
    """Before: a truncated shard made every rerun print "all ok" (with --retry-failed too) while load crashed."""
    run_dir = harness.run(small(), progress=False)
    ref = table(run_dir)
    shard = _first_shard(run_dir)
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(harness.BlobenchError, match="checksum mismatch"):
        harness.load(run_dir)
    harness.run(small(), progress=False, retry_failed=True)
    assert read_summary(run_dir)["ran"] == 1
    pd.testing.assert_frame_equal(table(run_dir), ref, check_exact=True)


def test_shard_copied_over_another_is_refused_and_recomputed(in_tmp):
    """Before: a shard copied over another gave one cell twice and one missing, silently."""
    run_dir = harness.run(small(), progress=False)
    ref = table(run_dir)
    a, b = sorted((run_dir / "cells").glob("*.parquet"))[:2]
    shutil.copyfile(a, b)  # the shard only: its checksum no longer matches
    with pytest.raises(harness.BlobenchError, match=f"{b.name}: checksum mismatch"):
        harness.load(run_dir)
    harness.run(small(), progress=False)
    pd.testing.assert_frame_equal(table(run_dir), ref, check_exact=True)
    # the shard and its checksum file copied together: the key inside the checksum file gives it away
    from blobench.engine.store import sum_path

    shutil.copyfile(a, b)
    shutil.copyfile(sum_path(run_dir, a.stem), sum_path(run_dir, b.stem))
    with pytest.raises(harness.BlobenchError, match=f"{b.name}: its checksum file names cell '{a.stem}'"):
        harness.load(run_dir)
    harness.run(small(), progress=False)
    assert read_summary(run_dir)["ran"] == 1
    pd.testing.assert_frame_equal(table(run_dir), ref, check_exact=True)


def test_key_inside_the_shard_is_checked_by_load(in_tmp):
    """A shard whose bytes and checksum agree but which holds another cell's rows (written under the wrong
    name) is refused: load checks the key recorded inside the parquet file."""
    from blobench.engine.store import write_shard

    run_dir = harness.run(small(), progress=False)
    a, b = sorted((run_dir / "cells").glob("*.parquet"))[:2]
    df = pd.read_parquet(a)
    write_shard(run_dir, b.stem, df)  # the sidecar matches the bytes; the rows and metadata name cell a
    with pytest.raises(harness.BlobenchError, match=f"holds cell '{a.stem}', not '{b.stem}'"):
        harness.load(run_dir)


# -- 2, 3, 6. a dead worker, a huge problem, a slow build and one long C call in one run --------------------

def test_dead_worker_huge_problem_slow_build_and_c_call_each_get_a_status(plugin, in_tmp, capsys):
    """Before: SIGKILL of one worker ended the run (rc 1, TerminatedWorkerError, no summary); a dim = 200000
    problem was built in the main process and aborted the run before any cell; a 30 s problem build ran
    in the main process outside --cell-timeout; and the timeout could not stop one long C call."""
    (in_tmp / "m.toml").write_text(textwrap.dedent('''
        name = "hostile"
        [[experiment]]
        name = "estimators"
        problem = "quadratic"
        problem_params = { dim = 3, kappa = 10 }
        estimators = ["itd", "adv-kills-worker", "adv-c-sleep", "aid-cg"]
        metric = "error_vs_budget"
        metric_params = { budget = "inner_steps", values = [1, 4] }

        [[experiment]]
        name = "problems"
        problem = "adv-slow-build"
        problem_params = { dim = [3, 200000], kappa = 10, slow = [false, true] }
        estimator = "fo"
        metric = "error_vs_budget"
        metric_params = { budget = "inner_steps", values = [1] }
    '''))
    t0 = time.perf_counter()
    rc = main(["--plugin", plugin, "run", "m.toml", "-j", "2", "--cell-timeout", "6"])
    wall = time.perf_counter() - t0
    assert rc == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err
    run_dir = in_tmp / "runs" / "hostile"
    df = harness.load(run_dir).drop_duplicates("key")
    st = {(r.problem, r.estimator, r.problem_params): r for r in df.itertuples()}
    q = json.dumps(QUAD, sort_keys=True)

    def cell(problem, est, dim=3, slow=None):
        pp = json.loads(q) if problem == "quadratic" else {"dim": dim, "kappa": 10, "slow": slow}
        return st[(problem, est, json.dumps(pp, sort_keys=True))]

    assert cell("quadratic", "itd").status == "ok" and cell("quadratic", "aid-cg").status == "ok"
    dead = cell("quadratic", "adv-kills-worker")
    assert dead.status == "failed" and dead.message.startswith("worker died: signal 9")
    csleep = cell("quadratic", "adv-c-sleep")
    assert csleep.status == "timeout" and csleep.cell_seconds < 15
    assert cell("adv-slow-build", "fo", 3, False).status == "ok"
    assert cell("adv-slow-build", "fo", 3, True).status == "timeout"
    huge = cell("adv-slow-build", "fo", 200000, False)
    assert huge.status == "failed" and "memory" in huge.message.lower()
    assert cell("adv-slow-build", "fo", 200000, True).status == "timeout"
    s = read_summary(run_dir)
    assert s["statuses"] == {"ok": 3, "failed": 2, "timeout": 3}, s["statuses"]
    # two 30 s sleeps and two 30 s builds were each stopped at 6 s (workers start in parallel on the side)
    assert wall < 100, wall
    # a cell that always kills its worker does not make the matrix unfinishable: a retry records it again
    assert main(["--plugin", plugin, "run", "m.toml", "-j", "2", "-q", "--retry-failed", "--cell-timeout", "6"]) == 3
    assert read_summary(run_dir)["ran"] == 5


# -- 4. SIGTERM is handled as Ctrl-C --------------------------------------------------------------------------

def test_sigterm_stops_the_workers_releases_the_lock_and_resumes(plugin, in_tmp):
    """Before: SIGTERM exited 143 with no message and left two workers running after the lock was released."""
    psutil = pytest.importorskip("psutil")
    m = small("term", seeds=range(4), estimators=["itd", "adv-c-sleep"])
    (in_tmp / "m.json").write_text("")  # (unused: the CLI reads TOML)
    (in_tmp / "m.toml").write_text(textwrap.dedent(f'''
        name = "term"
        seeds = {list(range(4))}
        [[experiment]]
        problem = "quadratic"
        problem_params = {{ dim = 3, kappa = 10 }}
        estimators = ["itd", "adv-c-sleep"]
        metric = "error_vs_budget"
        metric_params = {{ budget = "inner_steps", values = [1, 4] }}
    '''))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "blobench", "--plugin", plugin, "run", "m.toml", "-j", "2", "-q"],
                            cwd=in_tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    run_dir = in_tmp / "runs" / "term"
    deadline = time.monotonic() + 150
    # wait until both workers are busy (the c-sleep cells hold them for 30 s)
    while time.monotonic() < deadline and proc.poll() is None:
        kids = psutil.Process(proc.pid).children(recursive=True)
        if len(kids) >= 2 and len(list((run_dir / "cells").glob("*.parquet"))) >= 1:
            break
        time.sleep(0.2)
    kids = psutil.Process(proc.pid).children(recursive=True)
    assert len(kids) >= 2, proc.communicate()
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert lines == ["blobench: terminated (SIGTERM); finished cells are saved, rerun the same command to resume"]
    time.sleep(0.5)
    alive = [k.pid for k in kids if k.is_running() and k.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"workers still running after SIGTERM: {alive}"
    RunLock(run_dir).acquire().release()  # the lock was released
    n = len(list((run_dir / "cells").glob("*.parquet")))
    assert 1 <= n < 8
    # resumable: the rest runs (the sleepers stopped by a short timeout), nothing is duplicated
    harness.run(m, plugins=[plugin], jobs=2, cell_timeout=3, progress=False)
    s = read_summary(run_dir)
    assert s["skipped"] == n and s["missing"] == 0 and s["cells"] == 8


# -- 5. run ids stay inside the runs folder; cleanup touches only blobench's files -----------------------------

@pytest.mark.parametrize("rid", ["../x", "..", ".", "ABSOLUTE", "a/b", ""])
def test_run_ids_that_escape_the_runs_folder_are_refused(in_tmp, capsys, rid):
    """Before: --run-id ../x, an absolute path and .. were accepted (.. wrote run files into the parent)."""
    outside = in_tmp.parent / f"abs-run-{in_tmp.name}"
    rid = str(outside) if rid == "ABSOLUTE" else rid
    (in_tmp / "m.toml").write_text('name = "m"\n[[experiment]]\nproblem = "quadratic"\nestimator = "itd"\n'
                                   'metric = "error_vs_budget"\nmetric_params = { budget = "inner_steps", values = [1] }\n')
    before = set(os.listdir(in_tmp.parent))
    assert main(["run", "m.toml", "--run-id", rid]) == 2
    assert "run id" in one_error_line(capsys.readouterr().err)
    assert set(os.listdir(in_tmp.parent)) == before and not (in_tmp / "runs").exists()
    assert not outside.exists()


def test_cleanup_touches_only_files_blobench_names(in_tmp):
    """Before: the stale-temporary cleanup deleted any ".tmp-*" file, e.g. the user's own .tmp-notes.txt."""
    run_dir = in_tmp / "runs" / "adv"
    (run_dir / "cells").mkdir(parents=True)
    mine = [run_dir / ".tmp-notes.txt", run_dir / "cells" / ".tmp-notes.txt"]
    for p in mine:
        p.write_text("the user's notes")
    stale = [run_dir / ".blobench-tmp-abc.json", run_dir / "cells" / ".blobench-tmp-def.parquet"]
    for p in stale:
        p.write_bytes(b"torn")
    harness.run(small(), progress=False)
    assert all(p.read_text() == "the user's notes" for p in mine)
    assert not any(p.exists() for p in stale)


def test_paths_naming_files_are_one_line_errors(in_tmp, capsys):
    """Before: --runs-dir, --run-id or report --out naming an existing file gave a traceback."""
    (in_tmp / "m.toml").write_text('name = "m"\n[[experiment]]\nproblem = "quadratic"\nestimator = "itd"\n'
                                   'metric = "error_vs_budget"\nmetric_params = { budget = "inner_steps", values = [1] }\n')
    (in_tmp / "afile").write_text("x")
    assert main(["run", "m.toml", "--runs-dir", "afile"]) == 2
    assert "afile" in one_error_line(capsys.readouterr().err)
    (in_tmp / "runs").mkdir()
    (in_tmp / "runs" / "taken").write_text("x")
    assert main(["run", "m.toml", "--run-id", "taken"]) == 2
    assert "taken" in one_error_line(capsys.readouterr().err)
    run_dir = harness.run(small(seeds=[0], estimators=["itd"]), progress=False)
    assert main(["report", str(run_dir), "--out", "afile"]) == 2
    assert "afile" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("err", ["ENOSPC", "EROFS"])
def test_full_or_read_only_disk_is_one_line_naming_the_path(in_tmp, capsys, monkeypatch, err):
    """Before: a full or read-only disk gave an OSError traceback."""
    import errno

    import blobench.engine.store as store

    code = getattr(errno, err)

    def broken_fsync(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(store.os, "fsync", broken_fsync)
    (in_tmp / "m.toml").write_text('name = "m"\n[[experiment]]\nproblem = "quadratic"\nestimator = "itd"\n'
                                   'metric = "error_vs_budget"\nmetric_params = { budget = "inner_steps", values = [1] }\n')
    assert main(["run", "m.toml"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert os.strerror(code) in line and str(Path("runs") / "m") in line


# -- 7. every listed traceback case is one line and exit 2 -------------------------------------------------------

BAD_PLUGINS = {
    "syntax": ("def broken(:\n    pass\n", "syntax error at line 1"),
    "no_dim_x": (textwrap.dedent('''
        import torch
        from blobench import harness
        @harness.register_problem("adv-no-dim-x")
        class NoDim(harness.Problem):
            params = {}
            def outer(self, x, y, batch=None): return (y ** 2).sum()
            def inner(self, x, y, batch=None): return ((y - x) ** 2).sum()
            def value(self, x): return 0.0
            def hypergradient(self, x): return torch.zeros(2, dtype=torch.float64)
    '''), "dim_x is not set"),
    "param_not_param": (textwrap.dedent('''
        from blobench import harness
        @harness.register_estimator("adv-int-param")
        class IntParam(harness.Estimator):
            params = {"k": 3}
            def estimate(self, oracles, x, noise, state=None): return harness.Estimate(oracles.exact(x))
    '''), "params['k'] must be a harness.Param"),
    "wrong_hypergradient": (textwrap.dedent('''
        import torch
        from blobench import harness
        from blobench.problems.quadratic import Quadratic

        @harness.register_problem("adv-wrong-hypergrad")
        class Wrong(Quadratic):
            def hypergradient(self, x): return torch.zeros(self.dim_x + 1, dtype=torch.float64)
    '''), "hypergradient(x) has shape (11,); expected (10,)"),
    "import_raises": ("raise RuntimeError('no licence server')\n", "failed to import: RuntimeError: no licence server"),
}


@pytest.mark.parametrize("case", sorted(BAD_PLUGINS))
def test_broken_plugins_are_one_line_at_registration(in_tmp, capsys, case):
    """Before: a syntax error, a Problem without dim_x, params = {"k": 3} (registered, then `describe`
    crashed) and a hypergradient of the wrong shape (IndexError later) were tracebacks."""
    src, want = BAD_PLUGINS[case]
    path = in_tmp / f"adv_bad_{case}.py"
    path.write_text(src)
    assert main(["--plugin", str(path), "list", "problems"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert want in line and str(path) in line, line


def test_plugin_errors_in_estimate_are_one_line(plugin, in_tmp, capsys):
    """Before: a huge dim in `estimate` (memory error) and a raising plugin estimator were tracebacks;
    an unknown name gave no hint that a plugin file might define it."""
    (in_tmp / "raiser.py").write_text(textwrap.dedent('''
        from blobench import harness
        @harness.register_estimator("adv-raises")
        class Raises(harness.Estimator):
            params = {}
            def estimate(self, oracles, x, noise, state=None): raise RuntimeError("deliberate")
    '''))
    assert main(["--plugin", str(in_tmp / "raiser.py"), "estimate", "quadratic", "adv-raises", "-n", "4"]) == 2
    assert "adv-raises" in one_error_line(capsys.readouterr().err)
    assert main(["estimate", "quadratic", "fo", "-P", "dim=200000", "-n", "2"]) == 2
    assert "out of memory" in one_error_line(capsys.readouterr().err)
    assert main(["estimate", "quadratic", "adv-not-registered"]) == 2
    assert "--plugin" in one_error_line(capsys.readouterr().err)


# -- 8. non-finite estimates are `diverged` with their count ---------------------------------------------------

def test_nan_estimates_are_diverged_in_run_and_estimate(plugin, in_tmp, capsys):
    """Before: NaN draws passed `estimate` with exit 0 and surfaced in `run` as
    "LinAlgError: Eigenvalues did not converge"."""
    assert main(["--plugin", plugin, "estimate", "quadratic", "adv-nan", "-P", "dim=3", "-n", "50"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "diverged" in err[0] and "50 of 50 draws are non-finite" in err[0]
    m = {"name": "nan", "experiment": [{"problem": "quadratic", "problem_params": {**QUAD, "noise": 0.3},
                                        "estimators": ["adv-nan", "itd"], "metric": "bias_variance",
                                        "metric_params": {"samples": 40}}]}
    df = harness.load(harness.run(m, plugins=[plugin], progress=False)).drop_duplicates("key").set_index("estimator")
    assert df.loc["adv-nan", "status"] == "diverged"
    assert df.loc["adv-nan", "message"] == "40 of 40 draws are non-finite (NaN/Inf)"
    assert df.loc["itd", "status"] == "ok"


# -- 9. the smaller ones -----------------------------------------------------------------------------------------

def test_empty_sweep_is_an_error_not_an_empty_run(in_tmp, capsys):
    """Before: problem_params = {dim = []} expanded to 0 cells and wrote an empty run."""
    (in_tmp / "m.toml").write_text('name = "m"\n[[experiment]]\nproblem = "quadratic"\nproblem_params = { dim = [] }\n'
                                   'estimator = "itd"\nmetric = "bias_variance"\n')
    assert main(["run", "m.toml"]) == 2
    assert "'dim' is an empty list" in one_error_line(capsys.readouterr().err)
    assert not (in_tmp / "runs").exists()


def test_a_huge_matrix_asks_for_yes(in_tmp, capsys, monkeypatch):
    """Before: a 76,000-cell matrix started without a word. (The threshold is lowered to 5 cells here.)"""
    monkeypatch.setenv("BLOBENCH_CONFIRM_CELLS", "5")
    m = small("big", seeds=range(4))  # 8 cells
    (in_tmp / "m.toml").write_text(textwrap.dedent('''
        name = "big"
        seeds = [0, 1, 2, 3]
        [[experiment]]
        problem = "quadratic"
        problem_params = { dim = 3, kappa = 10 }
        estimators = ["itd", "aid-cg"]
        metric = "error_vs_budget"
        metric_params = { budget = "inner_steps", values = [1] }
    '''))
    assert main(["run", "m.toml"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "8 cells to run" in line and "--yes" in line and "estimated time" in line
    assert not (in_tmp / "runs").exists()
    assert main(["run", "m.toml", "--yes", "-q"]) == 0
    with pytest.raises(harness.BlobenchError, match="--yes"):
        harness.run(m, run_id="api", progress=False)
    assert harness.run(m, run_id="api", progress=False, yes=True).is_dir()


def test_unreachable_dask_scheduler_leaves_no_run_folder(in_tmp, monkeypatch):
    """Before: an unreachable Dask scheduler left an empty run folder behind."""
    pytest.importorskip("distributed")
    monkeypatch.setenv("BLOBENCH_DASK_CONNECT_TIMEOUT", "1")
    with pytest.raises(harness.BlobenchError, match="cannot reach the Dask scheduler"):
        harness.run(small(), backend="dask", scheduler="tcp://127.0.0.1:9", progress=False)
    assert not (in_tmp / "runs").exists()


@pytest.mark.slow
def test_dask_quiet_is_quiet(in_tmp):
    """Before: Dask printed "Worker process still alive ... killing" even with -q. (slow: a LocalCluster.)"""
    pytest.importorskip("distributed")
    (in_tmp / "m.toml").write_text('name = "m"\n[[experiment]]\nproblem = "quadratic"\nestimator = "itd"\n'
                                   'metric = "error_vs_budget"\nmetric_params = { budget = "inner_steps", values = [1] }\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    r = subprocess.run([sys.executable, "-m", "blobench", "run", "m.toml", "--backend", "dask", "-j", "2", "-q"],
                       cwd=in_tmp, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
