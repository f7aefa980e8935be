"""Runner inputs (issue 17, "untested behaviour" 4): the BLOBENCH_PLUGINS variable, ``run --report`` and
thread pinning in the workers."""
from __future__ import annotations

import json
import os
import textwrap

import pytest
import torch

from blobench import harness
from blobench.cli import main
from blobench.engine.runner import read_summary

THREADS_PLUGIN = textwrap.dedent('''
    """A metric that reports the threads its worker computes with, and an estimator only this file defines."""
    import os

    import torch

    from blobench import harness
    from blobench.core.estimator_base import INNER_STEPS


    @harness.register_metric("inputs-threads")
    def threads(ctx):
        return [{"quantity": "torch_threads", "value": float(torch.get_num_threads())},
                {"quantity": "omp_env", "value": float(os.environ.get("OMP_NUM_THREADS", "-1"))}]


    threads.params = {}


    @harness.register_estimator("inputs-env-only")
    class EnvOnly(harness.Estimator):
        params = {"inner_steps": INNER_STEPS}

        def estimate(self, oracles, x, noise, state=None):
            return harness.Estimate(oracles.exact(x))
''')


def matrix(estimator="inputs-env-only", metric="error_vs_budget", seeds=(0,)):
    mp = {"budget": "inner_steps", "values": [1]} if metric == "error_vs_budget" else {}
    return {"name": "inputs", "seeds": list(seeds), "experiment": [{
        "problem": "quadratic", "problem_params": {"dim": 3, "kappa": 10}, "estimator": estimator,
        "metric": metric, "metric_params": mp}]}


@pytest.fixture
def plugin_file(in_tmp):
    p = in_tmp / "inputs_plugin.py"
    p.write_text(THREADS_PLUGIN)
    return p


def test_blobench_plugins_variable_reaches_main_process_and_workers(in_tmp, plugin_file, monkeypatch):
    """A plugin named only in BLOBENCH_PLUGINS (os.pathsep-separated, with a second entry) is loaded in the
    main process (validation) and in every worker (the cells compute). (Planted: plugin_paths ignoring the
    variable: the matrix fails validation with "unknown estimator".)"""
    other = in_tmp / "empty_plugin.py"
    other.write_text("X = 1\n")
    monkeypatch.setenv("BLOBENCH_PLUGINS", os.pathsep.join([str(plugin_file), str(other)]))
    run_dir = harness.run(matrix(seeds=(0, 1)), jobs=2, progress=False)
    s = read_summary(run_dir)
    assert s["statuses"] == {"ok": 2}
    man = json.loads((run_dir / "manifest.json").read_text())
    assert man["plugins"] == [str(plugin_file), str(other)]
    monkeypatch.setenv("BLOBENCH_PLUGINS", str(in_tmp / "missing.py"))
    with pytest.raises(harness.BlobenchError, match="BLOBENCH_PLUGINS names .*missing.py.*does not exist"):
        harness.run(matrix(), progress=False)


def test_workers_are_pinned_to_one_thread(in_tmp, plugin_file, monkeypatch):
    """Each worker computes with one torch thread and OMP_NUM_THREADS=1 whatever the parent has, so jobs do
    not oversubscribe the cores. (Planted: a worker without _pin_threads reports the parent's 3 threads.)"""
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    old = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        for jobs, timeout in ((2, None), (1, 60)):
            run_dir = harness.run(matrix(estimator="fo", metric="inputs-threads"), jobs=jobs, cell_timeout=timeout,
                                  plugins=[str(plugin_file)], run_id=f"j{jobs}", progress=False)
            df = harness.load(run_dir).set_index("quantity")["value"]
            assert df["torch_threads"] == 1.0 and df["omp_env"] == 1.0, (jobs, df)
    finally:
        torch.set_num_threads(old)


def test_run_with_report_writes_the_report_and_prints_both_paths(in_tmp, capsys):
    """`blobench run --report` writes the run, then the report of that run, and prints both paths.
    (Planted: --report ignored: no index.html.)"""
    (in_tmp / "m.toml").write_text(textwrap.dedent('''
        name = "withreport"
        [[experiment]]
        problem = "quadratic"
        problem_params = { dim = 3, kappa = 10 }
        estimators = ["itd", "aid-cg"]
        metric = "error_vs_budget"
        metric_params = { budget = "inner_steps", values = [1, 2, 4] }
    '''))
    assert main(["run", "m.toml", "-q", "--report", "--reports-dir", "rep"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0] == os.path.join("runs", "withreport")
    page = in_tmp / "rep" / "withreport" / "index.html"
    assert page.is_file() and os.path.join("rep", "withreport") in out[1]
    assert "itd" in page.read_text() and "aid-cg" in page.read_text()
