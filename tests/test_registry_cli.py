"""Registries, plugin discovery, parameter validation and every CLI command."""
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from blobench import harness
from blobench.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_builtins_are_registered():
    assert {"quadratic"} <= set(harness.problems())
    assert {"exact", "itd", "aid-cg", "fo"} <= set(harness.estimators())
    assert {"bias_variance", "error_vs_budget"} <= set(harness.metrics())


def test_unknown_name_suggests_closest():
    with pytest.raises(harness.UnknownNameError, match="did you mean 'quadratic'"):
        harness.problem("quadratc")
    with pytest.raises(harness.UnknownNameError, match="did you mean 'aid-cg'"):
        harness.estimator("aid_cg")


@pytest.mark.parametrize("kw,msg", [
    (dict(inner_steps=-1), "inner_steps.*out of range"),
    (dict(inner_steps=2.5), "inner_steps.*must be int"),
    (dict(inner_lr=0.0), "inner_lr.*out of range"),
    (dict(solver_stepz=3), "unknown parameter 'solver_stepz'.*did you mean 'solver_steps'"),
])
def test_bad_estimator_parameters(kw, msg):
    with pytest.raises(harness.ParameterError, match=msg):
        harness.estimator("aid-cg", **kw)


PLUGIN = '''
"""A third-party estimator in one file: gradient at y_D scaled by 2 (deliberately wrong)."""
from blobench import harness
from blobench.core.estimator_base import INNER_STEPS, INNER_LR
from blobench.core.numerics import inner_gd

@harness.register_estimator("twice-fo")
class TwiceFO(harness.Estimator):
    """Twice the first-order estimate (a test plugin)."""
    params = {"inner_steps": INNER_STEPS, "inner_lr": INNER_LR}

    def estimate(self, oracles, x, noise, state=None):
        y, _ = inner_gd(oracles, x, oracles.init_inner(x), self.inner_steps(oracles), self.inner_lr(oracles))
        return harness.Estimate(2 * oracles.grad_x_f(x, y))
'''


def test_plugin_file_registers_and_runs(tmp_path, capsys):
    f = tmp_path / "my_plugin.py"
    f.write_text(PLUGIN)
    rc = main(["--plugin", str(f), "estimate", "quadratic", "twice-fo", "-n", "3", "--json", "--at", "1,1,1,1,1,1,1,1,1,1"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "twice-fo" in harness.estimators()
    p = harness.problem("quadratic")
    x = torch.ones(10, dtype=torch.float64)
    fo = harness.estimate(p, harness.estimator("fo"), x).grads[0]
    # twice-fo = 2 * rho * x, its bias is ||2 rho x - grad Phi||
    assert res["bias_norm"] == pytest.approx(float(torch.linalg.norm(2 * fo - p.hypergradient(x))), rel=1e-9)


def test_entry_point_plugins_are_loaded(tmp_path, monkeypatch):
    """A package declaring a `blobench.estimators` entry point is imported by discovery."""
    pkg = tmp_path / "site"
    (pkg / "thirdparty_blo").mkdir(parents=True)
    (pkg / "thirdparty_blo" / "__init__.py").write_text(PLUGIN.replace("twice-fo", "ep-twice-fo"))
    dist = pkg / "thirdparty_blo-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-blo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[blobench.estimators]\ntwice = thirdparty_blo\n")
    monkeypatch.syspath_prepend(str(pkg))
    harness.discover(force=True)
    assert "ep-twice-fo" in harness.estimators()


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "blobench", *args], capture_output=True, text=True, cwd=cwd or ROOT,
                          timeout=300)


def test_cli_bad_name_one_line_exit_2():
    r = run_cli("estimate", "quadratc", "itd")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "did you mean 'quadratic'" in lines[0] and "Traceback" not in r.stderr


def test_cli_bad_param_one_line_exit_2():
    r = run_cli("estimate", "quadratic", "itd", "--param", "inner_steps=-3")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "inner_steps" in r.stderr
    r = run_cli("estimate", "quadratic", "itd", "--param", "inner_steps")
    assert r.returncode == 2 and "k=v" in r.stderr
    r = run_cli("frobnicate")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_cli_list_and_describe(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "quadratic" in out and "aid-cg" in out and "bias_variance" in out
    assert main(["describe", "aid-cg"]) == 0
    out = capsys.readouterr().out
    assert "Ji, Yang, Liang 2021" in out and "solver_steps" in out
    assert main(["describe", "quadratic"]) == 0
    assert "kappa" in capsys.readouterr().out
    assert main(["describe", "nosuchthing"]) == 2


def test_cli_estimate_reports_bias(capsys):
    assert main(["estimate", "quadratic", "aid-cg", "-p", "inner_steps=300", "-p", "solver_steps=10", "-n", "5", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["bias_norm"] < 1e-8 and res["calls_per_draw"]["hvp"] == 10
    assert main(["estimate", "quadratic", "fo", "-P", "noise=0.2", "-n", "200", "--at", "stationary"]) == 0
    # fo misses the implicit term (bias ~0.39 here): the verdict line must say "rejected"; exact must not be rejected
    assert re.search(r"^unbiased\s+rejected$", capsys.readouterr().out, re.M)
    assert main(["estimate", "quadratic", "exact", "-P", "noise=0.2", "-n", "200", "--at", "stationary"]) == 0
    assert re.search(r"^unbiased\s+not rejected$", capsys.readouterr().out, re.M)


def test_cli_run_and_report(in_tmp, capsys):
    m = in_tmp / "tiny.toml"
    m.write_text(textwrap.dedent("""
        name = "tiny"
        [[experiment]]
        problem = "quadratic"
        problem_params = { dim = 3, kappa = [2, 8] }
        estimators = ["itd", "aid-cg"]
        metric = "error_vs_budget"
        metric_params = { values = [1, 2, 4, 8] }
        [[experiment]]
        problem = "quadratic"
        problem_params = { dim = 3, noise = 0.2 }
        estimators = ["exact", "fo"]
        metric = "bias_variance"
        metric_params = { samples = 50 }
    """))
    assert main(["run", str(m)]) == 0
    run_dir = in_tmp / "runs" / "tiny"
    man = json.loads((run_dir / "manifest.json").read_text())
    assert man["cells"] == 6 and "torch" in man["versions"] and "git_revision" in man and "machine" in man
    df = harness.load(run_dir)
    assert set(df["status"]) == {"ok"} and df["key"].nunique() == 6
    assert len(list((run_dir / "cells").glob("*.parquet"))) == 6
    err = df[(df.quantity == "error") & (df.estimator == "itd") & (df.pp_kappa == 8)].sort_values("budget")
    assert [int(b) for b in err["budget"]] == [1, 2, 4, 8]
    # ITD's error need not be monotone at tiny D (a product of two contracting factors), but it contracts overall
    assert err["value"].iloc[-1] < err["value"].iloc[0]
    p = harness.problem("quadratic", dim=3, kappa=8)
    truth = p.hypergradient(p.x0())
    itd4 = harness.estimate(p, harness.estimator("itd", inner_steps=4)).grads[0]
    assert err["value"].iloc[2] == pytest.approx(float(torch.linalg.norm(itd4 - truth)), rel=1e-12)
    assert main(["report", str(run_dir)]) == 0
    rep = in_tmp / "reports" / "tiny" / "report.md"
    assert rep.is_file() and "error_vs_budget" in rep.read_text()
    (png,) = (in_tmp / "reports" / "tiny").glob("error_vs_budget_*.png")  # named after its experiment
    assert png.stat().st_size > 1000


def test_cli_run_bad_matrix_is_one_line(in_tmp):
    m = in_tmp / "bad.toml"
    m.write_text('[[experiment]]\nproblem = "quadratic"\nestimator = "itd"\nmetric = "error_vs_budget"\nproblem_params = {kappa = 0.1}\n')
    r = run_cli("run", str(m), cwd=in_tmp)
    assert r.returncode == 2 and "kappa" in r.stderr and "bad.toml" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    m.write_text('[[experiment]]\nproblem = "quadratic"\nestimator = "itd"\nmetrik = "x"\n')
    r = run_cli("run", str(m), cwd=in_tmp)
    assert r.returncode == 2 and "metrik" in r.stderr
