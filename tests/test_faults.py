"""Fault isolation: failing, NaN-returning, diverging and sleeping estimators in one run.

The faulty estimators live in a plugin file (written here, registered in this process and
shipped to the loky workers through ``run(..., plugins=[...])``), so every other cell of the
run must still complete, with its status, message and traceback recorded.
"""
from __future__ import annotations

import json
import textwrap

import pytest

from blobench import harness
from blobench.cli import main
from blobench.core.registry import load_plugin_file
from blobench.engine.runner import read_summary

FAULTY_PLUGIN = textwrap.dedent('''
    """Deliberately broken estimators for the runner's fault-isolation tests."""
    import time

    from blobench import harness
    from blobench.core.estimator_base import INNER_STEPS


    class _Base(harness.Estimator):
        params = {"inner_steps": INNER_STEPS}


    @harness.register_estimator("test-raises")
    class Raises(_Base):
        def estimate(self, oracles, x, noise, state=None):
            raise RuntimeError("deliberate failure in test-raises")


    @harness.register_estimator("test-nan")
    class ReturnsNaN(_Base):
        def estimate(self, oracles, x, noise, state=None):
            return harness.Estimate(oracles.exact(x) * float("nan"))


    @harness.register_estimator("test-diverges")
    class Diverges(_Base):
        def estimate(self, oracles, x, noise, state=None):
            return harness.Estimate(oracles.exact(x) + 1e30)


    @harness.register_estimator("test-sleeps")
    class Sleeps(_Base):
        def estimate(self, oracles, x, noise, state=None):
            for _ in range(400):  # 20 s in short sleeps, far beyond any test's --cell-timeout
                time.sleep(0.05)
            return harness.Estimate(oracles.exact(x))


    @harness.register_estimator("test-c-sleep")
    class CSleep(_Base):
        """One 20 s call that never returns to the interpreter (as a long torch kernel would)."""

        def estimate(self, oracles, x, noise, state=None):
            time.sleep(20)
            return harness.Estimate(oracles.exact(x))


    @harness.register_estimator("test-slow-exact")
    class SlowExact(_Base):
        """The exact hypergradient after a pause (to be killed mid-run)."""

        def estimate(self, oracles, x, noise, state=None):
            time.sleep(0.15)
            return harness.Estimate(oracles.exact(x))
''')

QUAD = {"dim": 3, "kappa": 10}


def write_plugin(folder) -> str:
    path = folder / "faulty_estimators.py"
    path.write_text(FAULTY_PLUGIN)
    load_plugin_file(str(path))  # registers them in this (test) process too
    return str(path)


def fault_matrix(estimators: list[str]) -> dict:
    return {"name": "faults", "seeds": [0], "experiment": [{
        "name": "faults", "problem": "quadratic", "problem_params": QUAD, "estimators": estimators,
        "metric": "error_vs_budget", "metric_params": {"budget": "inner_steps", "values": [1, 4]}}]}


@pytest.fixture
def plugin(in_tmp):
    return write_plugin(in_tmp)


def test_each_fault_gets_its_status_and_the_rest_completes(plugin, in_tmp):
    m = fault_matrix(["itd", "test-raises", "test-nan", "test-diverges", "test-sleeps", "aid-cg"])
    # 6 s: generous for a healthy cell on a loaded 2-core machine, a third of the sleeper's 20 s
    run_dir = harness.run(m, jobs=2, plugins=[plugin], cell_timeout=6, progress=False)
    df = harness.load(run_dir)
    st = df.drop_duplicates("key").set_index("estimator")
    assert st.loc["itd", "status"] == "ok" and st.loc["aid-cg", "status"] == "ok"
    assert st.loc["test-raises", "status"] == "failed"
    assert "deliberate failure in test-raises" in st.loc["test-raises", "message"]
    assert "RuntimeError" in st.loc["test-raises", "traceback"]
    assert st.loc["test-nan", "status"] == "diverged" and "non-finite" in st.loc["test-nan", "message"]
    assert st.loc["test-diverges", "status"] == "diverged" and "bound" in st.loc["test-diverges", "message"]
    assert st.loc["test-sleeps", "status"] == "timeout"
    assert st.loc["test-sleeps", "cell_seconds"] < 15, "the timeout must stop the 20 s cell early"
    # the healthy cells computed real numbers: ITD's error shrinks with the number of inner steps
    itd = df[(df.estimator == "itd") & (df.quantity == "error")].set_index("budget")["value"]
    assert 0 < itd[4] < itd[1]
    s = read_summary(run_dir)
    assert s["partial"] and s["statuses"] == {"ok": 2, "failed": 1, "diverged": 2, "timeout": 1}
    assert {f["status"] for f in s["failures"]} == {"failed", "diverged", "timeout"}


def test_negative_control_healthy_run_is_not_partial(plugin, in_tmp):
    """Control: the same harness on healthy estimators reports no failure and exit code 0."""
    m = fault_matrix(["itd", "aid-cg", "test-slow-exact"])
    (in_tmp / "ok.json").write_text(json.dumps(m))
    run_dir = harness.run(m, jobs=1, plugins=[plugin], cell_timeout=30, progress=False)
    s = read_summary(run_dir)
    assert not s["partial"] and s["statuses"] == {"ok": 3}


def test_cli_exit_code_3_and_failure_summary(plugin, in_tmp, capsys):
    import tomllib  # noqa: F401  (the matrix is written as TOML below)

    (in_tmp / "m.toml").write_text(textwrap.dedent('''
        name = "cli-faults"
        [[experiment]]
        problem = "quadratic"
        problem_params = { dim = 3, kappa = 10 }
        estimators = ["itd", "test-raises"]
        metric = "error_vs_budget"
        metric_params = { budget = "inner_steps", values = [1, 2] }
    '''))
    assert main(["--plugin", plugin, "run", "m.toml"]) == 3
    err = capsys.readouterr().err
    assert "failed:" in err and "deliberate failure in test-raises" in err
    # rerun: nothing recomputed, still partial; --retry-failed reruns only the failed cell
    assert main(["--plugin", plugin, "run", "m.toml", "-q"]) == 3
    assert read_summary(in_tmp / "runs" / "cli-faults")["ran"] == 0
    assert main(["--plugin", plugin, "run", "m.toml", "-q", "--retry-failed"]) == 3
    assert read_summary(in_tmp / "runs" / "cli-faults")["ran"] == 1


def test_timeout_on_a_worker_thread_is_a_hard_bound_even_inside_one_c_call(plugin, in_tmp):
    """Dask runs cells on worker threads: run_cell(..., timeout=) runs the cell in a child process killed at
    the deadline, so even one 20 s call that never returns to Python (time.sleep, a long torch kernel) is
    stopped. (Planted: the former asynchronous exception, which fires only at the next bytecode, lets it
    run its 20 s.)"""
    import threading

    from blobench.engine.matrix import cell_key, load_matrix
    from blobench.engine.runner import run_cell

    cell = load_matrix(fault_matrix(["test-c-sleep"])).cells[0]
    out = {}
    t = threading.Thread(target=lambda: out.update(run_cell(cell, cell_key(cell), str(in_tmp / "r"), 1, 1.0,
                                                            (plugin,))))
    t.start()
    t.join(180)  # a fresh interpreter imports torch before the deadline starts: slow on a loaded machine
    assert not t.is_alive() and out["status"] == "timeout" and out["seconds"] < 10, out
    df = harness.load(in_tmp / "r") if (in_tmp / "r" / "manifest.json").exists() else None
    from blobench.engine.store import read_shard

    assert read_shard(in_tmp / "r", cell_key(cell))["status"].iloc[0] == "timeout"
    assert df is None


def test_cuda_cells_are_unavailable_without_a_gpu(in_tmp):
    import torch

    m = fault_matrix(["itd"])
    m["devices"] = ["cpu", "cuda"]
    run_dir = harness.run(m, jobs=1, progress=False)
    st = harness.load(run_dir).drop_duplicates("key").set_index("device")["status"]
    assert st["cpu"] == "ok"
    if torch.cuda.is_available():
        assert st["cuda"] == "ok"
    else:
        assert st["cuda"] == "unavailable"
        assert not read_summary(run_dir)["partial"], "an unavailable device is not a failure"


def test_bad_run_arguments_raise_parameter_errors(in_tmp):
    m = fault_matrix(["itd"])
    for kw, word in (({"jobs": 0}, "jobs"), ({"backend": "mpi"}, "backend"), ({"cell_timeout": -1}, "timeout"),
                     ({"scheduler": "tcp://x:1"}, "scheduler")):
        with pytest.raises(harness.ParameterError, match=word):
            harness.run(m, progress=False, **kw)


def test_divergence_rule_censored_rows_and_the_metrics_own_flag():
    """A complexity row whose eps was not reached (value NaN, reached = 0) is an outcome, not a divergence; a NaN
    anywhere else, an Inf even in a censored row, and a metric's own ``diverged`` row at 1 mark the cell diverged."""
    from blobench.engine.runner import _divergence

    censored = [{"quantity": "calls_to_eps", "value": float("nan"), "reached": 0.0},
                {"quantity": "calls_to_eps", "value": 120.0, "reached": 1.0}, {"quantity": "diverged", "value": 0.0}]
    assert _divergence(censored, 1e12) == ""
    assert "non-finite" in _divergence([{"quantity": "calls_to_eps", "value": float("nan"), "reached": 1.0}], 1e12)
    assert "non-finite" in _divergence([{"quantity": "calls_to_eps", "value": float("nan")}], 1e12)
    assert "non-finite" in _divergence([{"quantity": "calls_to_eps", "value": float("inf"), "reached": 0.0}], 1e12)
    assert "diverged" in _divergence(censored[:2] + [{"quantity": "diverged", "value": 1.0}], 1e12)
