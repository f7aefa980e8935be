"""blobench verify (issue 22): theory declared once, the problem and estimator batteries, the planted-bug
plugins (each must be caught), a correct plugin (must pass), the CLI and its outputs."""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from xml.etree import ElementTree as ET

import pytest

from blobench import harness
from blobench.core import theory
from blobench.core.registry import ESTIMATORS, PROBLEMS, _plugin_files, discover, load_plugin_file
from blobench.gate.verify import FAIL, NA, PASS, verify

PLUGINS = os.path.join(os.path.dirname(__file__), "verify_plugins")


@contextmanager
def plugin(fname: str):
    """Load a plugin file, and leave the registries as they were afterwards (other tests list the built-ins)."""
    discover()  # the built-ins first: restoring a registry saved before discovery would empty it
    saved = dict(ESTIMATORS._items), dict(PROBLEMS._items), dict(_plugin_files)
    load_plugin_file(os.path.join(PLUGINS, fname))
    try:
        yield
    finally:
        ESTIMATORS._items.clear(), ESTIMATORS._items.update(saved[0])
        PROBLEMS._items.clear(), PROBLEMS._items.update(saved[1])
        _plugin_files.clear(), _plugin_files.update(saved[2])


def failed_props(rows) -> set[str]:
    return {r.prop for r in rows if r.verdict in (FAIL, "error")}


# -- theory declared once -------------------------------------------------------------------------------------------

def test_every_builtin_estimator_declares_its_own_theory():
    builtin = [n for n in harness.estimators() if ESTIMATORS.get(n).__module__.startswith("blobench.estimators.")]
    assert len(builtin) >= 31  # earlier tests register plugins in this process: only the shipped ones are checked
    for n in builtin:
        cls = ESTIMATORS.get(n)
        assert "theory" in cls.__dict__, f"{n} inherits its theory from {cls.__mro__[1].__name__}: declare it"
        theory.declarations(cls)  # well-formed


def test_rates_are_read_from_the_declarations():
    from blobench.measure.metrics import theoretical_rate as metric_rate
    from blobench.report.theory import theoretical_rate as report_rate

    p = harness.problem("quadratic", dim=5, kappa=10.0)
    for est, budget, want in [("itd", "inner_steps", 0.9), ("aid-neumann", "solver_steps", 0.9),
                              ("aid-cg", "solver_steps", (10 ** 0.5 - 1) / (10 ** 0.5 + 1))]:
        e = harness.estimator(est)
        assert metric_rate(p, e, budget)[0] == pytest.approx(want)
        assert report_rate("quadratic", {"dim": 5, "kappa": 10.0}, est, {}, budget)[0] == pytest.approx(want)
    # aid-neumann's 1 - eta mu used to be missing from the report's table (issue 22)
    assert report_rate("quadratic", {"dim": 5}, "aid-neumann", {"solver_lr": 0.05}, "solver_steps")[0] == pytest.approx(0.95)
    assert report_rate("quadratic", {"dim": 5}, "fo", {}, "inner_steps") is None


def test_a_malformed_declaration_is_one_plugin_error():
    from blobench.core.errors import PluginError

    class Bad(harness.Estimator):
        name = "bad"
        theory = ("1 - alpha mu",)

    with pytest.raises(PluginError, match="theory must be a tuple"):
        theory.declarations(Bad)


# -- the problem battery --------------------------------------------------------------------------------------------

def test_problem_battery_passes_on_the_quadratic_and_is_discriminating():
    res = verify(["quadratic"])
    assert res.ok, [r for r in res.rows if r.failed]
    verdicts = {r.prop: r.verdict for r in res.rows}
    assert verdicts["hypergradient_fd"] == PASS and verdicts["constants"] == PASS
    assert verdicts["minibatch_mean"] == NA  # deterministic


def test_closed_forms_check_passes_bit_for_bit_on_the_simulated_quadratic_and_is_na_elsewhere():
    """simulated-quadratic's closed-form oracles (issue 29) are autograd's bits; the planted plugin below, whose
    closed form drops a term, fails the same check."""
    from blobench.gate.verify.battery_problem import check_closed_forms

    small = harness.problem("simulated-quadratic", n_inner=24, n_outer=20, dim_inner=6, dim_outer=3, seed=3)
    c = check_closed_forms("simulated-quadratic", small)
    assert (c.verdict, c.measured, c.value) == (PASS, "bit for bit", 0.0)
    assert check_closed_forms("quadratic", harness.problem("quadratic")).verdict == NA


def test_stochastic_problem_checks_run_on_the_noisy_quadratic():
    from blobench.gate.verify import verify_problem

    rows = verify_problem("quadratic", params={"noise": 0.5, "dim": 5})
    v = {r.prop: r.verdict for r in rows}
    assert v["minibatch_mean"] == PASS and v["noise_level"] == PASS and v["sample_deterministic"] == PASS


@pytest.mark.parametrize("fname, name, prop", [
    ("bad_problem_grad.py", "vp-wrong-hypergradient", "hypergradient_fd"),
    ("bad_problem_mu.py", "vp-wrong-mu", "constants"),
    ("bad_problem_closed.py", "vp-wrong-closed-form", "closed_forms"),
])
def test_planted_problem_bug_is_caught(fname, name, prop):
    with plugin(fname):
        res = verify([name])
    assert not res.ok and prop in failed_props(res.rows)


def test_constants_without_L_is_one_line_not_a_keyerror():
    from blobench.gate.verify.battery_problem import check_basics
    from blobench.problems.quadratic import Quadratic

    class NoL(Quadratic):
        name = "nol"

        @property
        def constants(self):
            return {"mu": 1.0}

    c = check_basics("nol", NoL(dim=3))
    assert c.verdict == FAIL and "declares 'mu' but not 'L'" in c.measured


# -- the estimator battery: planted bugs caught, a correct plugin passes --------------------------------------------

PLANTED = [
    ("bad_underreport.py", "vp-underreport", "oracle_honesty"),
    ("bad_global_state.py", "vp-global-state", "purity"),
    ("bad_rate.py", "vp-bad-rate", "rate[solver_steps]"),
    ("bad_biased.py", "vp-biased", "unbiased"),
    ("bad_nondeterministic.py", "vp-nondeterministic", "determinism"),
    ("bad_chunk.py", "vp-chunk", "chunk_invariance"),
    ("bad_neumann_short.py", "vp-neumann-short", "cost_formula"),
]


@pytest.mark.parametrize("fname, name, prop", PLANTED, ids=[p[1] for p in PLANTED])
def test_planted_estimator_bug_is_caught(fname, name, prop):
    with plugin(fname):
        res = verify([name], problems=["quadratic"])
    assert prop in failed_props(res.rows), [(r.prop, r.verdict, r.measured) for r in res.rows]


def test_correct_plugin_passes_everywhere():
    with plugin("good_neumann.py"):
        res = verify(["vp-damped-neumann"], problems=["quadratic", "quadratic-noisy", "kappa-hard"])
    assert res.ok, [(r.prop, r.problem, r.measured) for r in res.rows if r.failed]
    v = {(r.prop, r.problem): r.verdict for r in res.rows}
    assert v[("rate[solver_steps]", "quadratic")] == PASS and v[("oracle_honesty", "quadratic-noisy")] == PASS


def test_oracle_probe_sees_work_the_oracles_do_not_count():
    """The independent layer, not the Oracles' own counters: an estimator differentiating the problem directly
    (bypassing its oracles) is charged by the probe."""
    from torch.func import grad

    from blobench.gate.verify.oracle_probe import ReferenceOracles, instrument, measured_vs_reported

    p = harness.problem("quadratic", dim=3)
    q, tally = instrument(p)
    o = ReferenceOracles(q)
    x = p.x0()
    y = o.init_inner(x)
    o.grad_y_g(x, y)
    grad(o.problem.inner, argnums=1)(x, y, None)  # uncounted by the oracles
    m = measured_vs_reported(o.snapshot(), tally)
    assert m["g evaluations"] == (2, 1)


# -- builtins: the fast subset of the conformance matrix ------------------------------------------------------------

@pytest.mark.parametrize("name", ["exact", "itd", "aid-cg"])
def test_builtin_passes_verify_on_kappa_hard(name):
    res = verify([name], problems=["kappa-hard"])
    assert res.ok, [(r.prop, r.measured) for r in res.rows if r.failed]


def test_found_by_verify_maml_refuses_a_minibatch_problem_with_one_line():
    from blobench.core.errors import ParameterError

    p = harness.problem("quadratic", dim=3, noise=0.5)
    with pytest.raises(ParameterError, match="must be algorithm-based"):
        harness.estimate(p, harness.estimator("maml"), n=2)
    with pytest.raises(ParameterError, match="must be algorithm-based"):
        harness.estimate(p, harness.estimator("ufo"), n=2)


def test_found_by_verify_hoag_refuses_an_unrolled_problem_with_one_line():
    from blobench.core.errors import ParameterError

    with pytest.raises(ParameterError, match="argmin"):
        harness.estimate(harness.problem("meta-linreg"), harness.estimator("hoag"), n=1)


# -- CLI and outputs ------------------------------------------------------------------------------------------------

def test_cli_verify_plugin_fails_with_junit_and_outputs(tmp_path, capsys):
    from blobench.cli import main

    junit = tmp_path / "v.xml"
    with plugin("bad_rate.py"):
        rc = main(["verify", "vp-bad-rate", "--problems", "quadratic", "--junit", str(junit), "--out", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert rc == 1 and "verify FAILED" in out and "rate[solver_steps]" in out
    root = ET.parse(junit).getroot()
    fails = [tc.get("name") for tc in root.iter("testcase") if tc.find("failure") is not None]
    assert "rate[solver_steps][quadratic]" in fails
    data = json.loads((tmp_path / "o" / "verify.json").read_text())
    assert data["ok"] is False and (tmp_path / "o" / "verify.html").exists() and (tmp_path / "o" / "verify.md").exists()


def test_cli_verify_good_plugin_exit_0_and_json(capsys):
    from blobench.cli import main

    with plugin("good_neumann.py"):
        rc = main(["verify", "vp-damped-neumann", "--problems", "kappa-hard", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0 and data["ok"] and {r["verdict"] for r in data["rows"]} <= {PASS, NA}


def test_cli_verify_unknown_name_is_one_line(capsys):
    from blobench.cli import main

    assert main(["verify", "no-such-thing"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("blobench: error:")


# -- the conformance matrix (slow: every built-in; docs/conformance.md is its output) ---------------------------------

@pytest.mark.slow
def test_conformance_matrix_has_every_failure_explained():
    from blobench.gate.verify.conformance import reason, run_matrix

    rows, _ = run_matrix()
    unexplained = [(r.subject, r.prop, r.problem, r.measured) for r in rows if r.failed and not reason(r.subject, r.prop)]
    assert not unexplained, unexplained
    assert {r.subject for r in rows} >= set(harness.estimators()) | set(harness.problems())


# -- declarations no built-in uses yet: each checked both ways --------------------------------------------------------

def _inst(label):
    from blobench.gate.verify.common import instances

    (i,) = [i for i in instances("ci", [label]) if i.label == label]
    return i, i.build()


def test_variance_scaling_declaration_holds_for_sgd_and_fails_when_misdeclared():
    from blobench.gate.verify.battery_estimator import check_variance
    from blobench.gate.verify.common import SIZES

    inst, p = _inst("quadratic-noisy")
    est = harness.estimator("itd", inner_steps=3)  # (fo's estimate on the quadratic, rho x, has no variance at all)
    ok = check_variance("itd", est, p, inst, theory.VarianceScaling("batch_size", -1.0, "minibatch SGD"), SIZES["ci"])
    bad = check_variance("itd", est, p, inst, theory.VarianceScaling("batch_size", -2.0, "misdeclared"), SIZES["ci"])
    assert ok.verdict == PASS and bad.verdict == FAIL, (ok.measured, bad.measured)


def test_memory_declaration_holds_for_cg_and_fails_for_itd_which_stores_its_trajectory():
    from blobench.gate.verify.battery_estimator import check_memory

    inst, p = _inst("quadratic")
    ok = check_memory("aid-cg", harness.estimator("aid-cg"), p, inst, theory.MemoryO1("solver_steps", "CG"))
    bad = check_memory("itd", harness.estimator("itd"), p, inst, theory.MemoryO1("inner_steps", "misdeclared"))
    assert ok.verdict == PASS and bad.verdict == FAIL, (ok.measured, bad.measured)


def test_outer_loop_declaration_fails_with_too_few_inner_steps():
    from blobench.gate.verify.battery_estimator import check_outer

    inst, p = _inst("quadratic")
    c = check_outer("fo", harness.estimator("fo"), p, inst, theory.Converges(200, "misdeclared: fo is biased"))
    assert c.verdict == FAIL, c.measured


def test_report_shows_the_conformance_matrix_of_its_run(tmp_path):
    """The reference report's conformance section: <run>/conformance.json (from verify --all --matrix) -> report.md."""
    import importlib.util

    from blobench.gate.verify import card
    from blobench.report import write_report

    spec = importlib.util.spec_from_file_location("t_report", os.path.join(os.path.dirname(__file__), "test_report.py"))
    tr = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tr)
    run = tr.make_run(tmp_path / "runs", {"bias_variance"})
    rows = verify(["exact"], problems=["kappa-hard"]).rows
    rows[1].verdict, rows[1].measured = FAIL, "planted failure for the section"
    (run / "conformance.json").write_text(card.to_json(rows, 1.0))
    md = write_report(run, tmp_path / "reports").read_text()
    assert "Conformance matrix (blobench verify)" in md and "planted failure for the section" in md and "UNEXPLAINED" in md
    (run / "conformance.json").unlink()
    assert "Conformance matrix" not in write_report(run, tmp_path / "reports2").read_text()
