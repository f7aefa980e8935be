"""Reports (issue 7): every section from a synthetic run folder, any subset of metrics, theory rates, claims table."""
from __future__ import annotations

import json
import math
import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from blobench import harness
from blobench.gate.claim_base import ClaimResult, load_results, save_results
from blobench.cli import main
from blobench.core.errors import BlobenchError
from blobench.report import theoretical_rate, write_report
from blobench.engine.store import write_manifest, write_shard

CALLS = ["calls_grad_x_f", "calls_grad_y_f", "calls_grad_y_g", "calls_hvp", "calls_jvp"]


def _cell(key, metric, estimator, rows, seed=0, status="ok", message="", ep=None, pp=None):
    base = {"key": key, "experiment": "synthetic", "problem": "quadratic", "problem_params": json.dumps(pp or {"dim": 4}),
            "estimator": estimator, "estimator_params": json.dumps(ep or {}), "metric": metric, "metric_params": "{}",
            "seed": seed, "device": "cpu", "status": status, "message": message, "traceback": "", "cell_seconds": 0.1}
    if not rows:
        rows = [{"quantity": "error", "value": float("nan")}]
    return pd.DataFrame([{**base, **r} for r in rows])


def _convergence_rows(rate, seed):
    rows = []
    rng = np.random.default_rng(seed)
    for t in range(20):
        b = {"iteration": t, "seconds_elapsed": 0.01 * t + 0.001 * seed, **{c: 3.0 * t for c in CALLS}}
        v = rate ** t * (1 + 0.05 * rng.standard_normal())
        rows += [{**b, "quantity": "grad_norm_sq", "value": v}, {**b, "quantity": "value_gap", "value": v / 2},
                 {**b, "quantity": "dist_stationary", "value": math.sqrt(v)}]
    rows.append({"quantity": "diverged", "value": 0.0})
    return rows


def make_run(root: Path, metrics: set[str], name: str = "synth") -> Path:
    """A run folder with synthetic cells of the requested metrics (plus one failed cell)."""
    run_dir = root / "runs" / name
    write_manifest(run_dir, {"matrix_path": "synthetic.toml", "cells": 0, "created": "now", "git_revision": "abc",
                             "versions": {"torch": "x"}, "machine": {"platform": "test", "cpus": 2}, "devices": {}})
    cells = []
    if "error_vs_budget" in metrics:
        for est, r in (("itd", 0.75), ("fo", 1.0)):
            rows = [{"budget_param": "inner_steps", "budget": b, "quantity": "error", "value": 0.5 * r ** b}
                    for b in (1, 2, 4, 8)]
            rows.append({"budget_param": "inner_steps", "quantity": "fitted_rate", "value": r})
            cells.append(_cell(f"evb-{est}", "error_vs_budget", est, rows, pp={"dim": 4, "kappa": 4}))
    if "bias_variance" in metrics:
        for est in ("itd", "aid-cg"):
            for bs in (1, 4, 16):
                rows = [{"quantity": "bias_norm", "value": 0.1 / bs, "lo": 0.08 / bs, "hi": 0.12 / bs},
                        {"quantity": "variance_trace", "value": 1.0 / bs}, {"quantity": "mse", "value": 1.0 / bs},
                        {"quantity": "unbiased_p_holm", "value": 0.5}, {"quantity": "samples", "value": 100.0}]
                cells.append(_cell(f"bv-{est}-{bs}", "bias_variance", est, rows, ep={"batch_size": bs}))
    if "convergence" in metrics:
        for est, r in (("itd", 0.8), ("aid-cg", 0.7)):
            for seed in (0, 1, 2):
                cells.append(_cell(f"cv-{est}-{seed}", "convergence", est, _convergence_rows(r, seed), seed=seed))
    if "memory_vs_budget" in metrics:
        for est, slope in (("itd", 800.0), ("itd-recompute", 0.0)):
            rows = [{"budget_param": "inner_steps", "budget": b, "quantity": "peak_bytes", "value": 1000 + slope * b}
                    for b in (4, 16, 64)]
            rows.append({"budget_param": "inner_steps", "quantity": "bytes_per_budget", "value": slope})
            cells.append(_cell(f"mem-{est}", "memory_vs_budget", est, rows))
    if "odd_metric" in metrics:
        cells.append(_cell("odd", "odd_metric", "itd", [{"quantity": "thing", "value": 3.0}]))
    cells.append(_cell("bad", "error_vs_budget" if "error_vs_budget" in metrics else sorted(metrics)[0], "itd", [],
                       status="failed", message="ParameterError: boom"))
    for c in cells:
        write_shard(run_dir, c["key"].iloc[0], c)
    return run_dir


ALL = {"error_vs_budget", "bias_variance", "convergence", "memory_vs_budget", "odd_metric"}


def _rate_row(text: str, start: str) -> str:
    """The fitted-vs-theory table row of (problem | estimator), flagged ("**VIOLATION** ") or not."""
    return [ln for ln in text.splitlines() if re.match(r"\| (\*\*VIOLATION\*\* )?" + re.escape(start) + r" \| inner_steps \|", ln)][0]


def _img_names(html_text: str) -> list[str]:
    import re

    return re.findall(r'<img src="([^"]+)"', html_text)


def test_full_report_has_every_section(tmp_path):
    run_dir = make_run(tmp_path, ALL)
    md = write_report(run_dir, tmp_path / "reports")
    out = md.parent
    text = md.read_text()
    for heading in ("Error versus budget", "Bias and variance", "Outer-loop convergence", "memory vs budget",
                    "odd_metric", "Failed cells"):
        assert heading in text, heading
    assert "ParameterError: boom" in text and "## Claims" not in text
    html_text = (out / "index.html").read_text()
    imgs = _img_names(html_text)
    assert set(imgs) == {"error_vs_budget_synthetic.png", "bias_variance_synthetic.png", "convergence_synthetic.png",
                         "memory_vs_budget_synthetic.png"}  # named after their experiment
    for name in imgs:  # every image referenced exists beside index.html, is a real PNG and small
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and 2_000 < len(data) < 400_000, name
    # the fitted-vs-theory table: itd fitted 0.75; kappa=4, alpha=1/L -> 1 - 1/4 = 0.75; fo has no theoretical rate
    row = _rate_row(text, "quadratic(dim=4,kappa=4) | itd")
    assert "| 0.75 | [0.75, 0.75] | 4 | 0.75 |" in row
    fo = _rate_row(text, "quadratic(dim=4,kappa=4) | fo")
    assert "| - | - |" in fo and "nan" not in fo  # no bound: "-", not "nan" (issue 26)
    # convergence final-value table: the mean over 3 seeds of the LAST iterate (t=19) of each curve,
    # recomputed from the synthetic rows (0.8**19 (1 + 0.05 z_s) for itd); the table prints 4 significant digits
    assert "diverged_seeds" in text
    for est, rate in (("itd", 0.8), ("aid-cg", 0.7)):
        head = [ln for ln in text.splitlines() if ln.startswith("| problem | estimator | dist_stationary")][0]
        cols = [c.strip() for c in head.strip("|").split("|")]
        row = [ln for ln in text.splitlines() if ln.startswith(f"| quadratic(dim=4) | {est} | ")
               and ln.count("|") == head.count("|")][0]
        cells = dict(zip(cols, (c.strip() for c in row.strip("|").split("|"))))
        for q in ("grad_norm_sq", "value_gap", "dist_stationary"):
            want = np.mean([[r["value"] for r in _convergence_rows(rate, s) if r.get("iteration") == 19
                             and r["quantity"] == q][0] for s in (0, 1, 2)])
            assert float(cells[q]) == pytest.approx(want, rel=1e-3), (est, q, cells[q], want)
            if q == "grad_norm_sq":
                assert want == pytest.approx(rate**19, rel=0.1)  # the promised neighbourhood of rate**19
        assert cells["diverged_seeds"] == "0"
    # memory: per-budget table and the budget-less fitted summary
    assert "| quadratic(dim=4) | itd | peak_bytes | 4200 | 1.38e+04 | 5.22e+04 |" in text
    assert "| quadratic(dim=4) | itd-recompute | 0 |" in text


@pytest.mark.parametrize("subset", [{"error_vs_budget"}, {"bias_variance", "odd_metric"},
                                    {"convergence", "memory_vs_budget"}])
def test_report_is_robust_to_any_subset(tmp_path, subset):
    md = write_report(make_run(tmp_path, subset), tmp_path / "reports")
    html_text = (md.parent / "index.html").read_text()
    for name in _img_names(html_text):
        assert (md.parent / name).is_file()
    absent = {"error_vs_budget": "Error versus budget", "bias_variance": "Bias and variance",
              "convergence": "Outer-loop convergence"}
    for m, heading in absent.items():
        assert (heading in md.read_text()) == (m in subset)


def test_report_of_empty_run_and_missing_run(tmp_path):
    run_dir = tmp_path / "runs" / "empty"
    write_manifest(run_dir, {"cells": 0})
    assert "No finished cells." in write_report(run_dir, tmp_path / "reports").read_text()
    with pytest.raises(BlobenchError, match="no run folder"):
        write_report(tmp_path / "nowhere", tmp_path / "reports")


def test_theoretical_rate_matches_quadratic_constants():
    r, _ = theoretical_rate("quadratic", {"dim": 5, "kappa": 10}, "itd", {}, "inner_steps")
    assert r == pytest.approx(0.9, rel=1e-12)
    r, _ = theoretical_rate("quadratic", {"dim": 5, "kappa": 10}, "itd", {"inner_lr": 0.05}, "inner_steps")
    p = harness.problem("quadratic", dim=5, kappa=10)
    assert r == pytest.approx(1 - 0.05 * p.constants["mu"], rel=1e-12)
    r, _ = theoretical_rate("quadratic", {"dim": 5, "kappa": 9}, "aid-cg", {}, "solver_steps")
    assert r == pytest.approx(0.5, rel=1e-12)
    # negative controls: no rate for the biased first-order estimator, for an unstable step, for unknown problems
    assert theoretical_rate("quadratic", {"dim": 5}, "fo", {}, "inner_steps") is None
    assert theoretical_rate("quadratic", {"dim": 5, "kappa": 10}, "itd", {"inner_lr": 100.0}, "inner_steps") is None
    assert theoretical_rate("no-such-problem", {}, "itd", {}, "inner_steps") is None


def test_measured_itd_rate_agrees_with_theory_on_a_real_run(in_tmp):
    """A real tiny run: ITD's fitted rate is within 2% of 1 - mu/L (Ji et al. 2021), and the report shows both."""
    m = in_tmp / "t.toml"
    m.write_text(textwrap.dedent("""
        name = "rate"
        [[experiment]]
        problem = "quadratic"
        problem_params = { dim = 6, kappa = 5 }
        estimators = ["itd"]
        metric = "error_vs_budget"
        metric_params = { values = [10, 20, 30, 40, 60] }
    """))
    assert main(["run", str(m)]) == 0
    assert main(["report", "rate"]) == 0
    text = (in_tmp / "reports" / "rate" / "report.md").read_text()
    row = _rate_row(text, "quadratic(dim=6,kappa=5) | itd")
    cols = row.split("|")
    fitted, ci = float(cols[5]), cols[6].strip()  # the asymptotic rate's 95% interval sits beside it
    lo, hi = (float(v) for v in ci.strip("[]").split(","))
    theory = float(cols[8])
    assert lo <= fitted <= hi
    assert theory == pytest.approx(0.8, rel=1e-9) and fitted == pytest.approx(theory, rel=0.02)


def _result(name, passed=True, control_holds=False, outcome="holds"):
    return ClaimResult(name, "Doe 2020, Thm 1", "s", "holds", outcome, "rate 0.5", "<= 0.6", "perturbed",
                       np.bool_(control_holds), passed, 0.1, {"main": {"x": np.float64(1.0)}})


def test_claims_table_from_results_and_json(tmp_path):
    run_dir = make_run(tmp_path, {"odd_metric"})
    res = [_result("good"), _result("bad", passed=False, control_holds=True)]
    path = save_results(res, run_dir / "claims.json")
    back = load_results(path)
    assert [r.name for r in back] == ["good", "bad"] and back[1].control_holds is True
    assert back[0].control_holds is False and back[0].evidence["main"]["x"] == 1.0  # numpy -> JSON numbers
    text = write_report(run_dir, tmp_path / "reports").read_text()  # picks up <run>/claims.json
    assert "## Claims" in text and "| good | Doe 2020, Thm 1 | rate 0.5 | <= 0.6 |" in text
    assert "holds (BAD)" in text and "fails (good)" in text and "FAIL" in text
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(BlobenchError, match="not a claims results file"):
        load_results(tmp_path / "junk.json")


def test_cli_report_with_claims_file_and_out(tmp_path, capsys):
    run_dir = make_run(tmp_path, {"bias_variance"})
    cf = save_results([_result("only")], tmp_path / "c.json")
    out = tmp_path / "ref"
    assert main(["report", str(run_dir), "--claims-file", str(cf), "--out", str(out)]) == 0
    assert (out / "index.html").is_file() and "| only |" in (out / "report.md").read_text()
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no run folder" in capsys.readouterr().err


def test_kappa_scaling_figure_from_claim_evidence(tmp_path):
    """Claims whose evidence records counts against kappa get a log-log figure with their fitted exponents."""
    from blobench.gate.claim_base import ClaimResult
    from blobench.report.page import Doc as _Doc
    from blobench.report import kappa_scaling_section

    ev = {"kappa": [2, 4, 8], "iterations": [10.0, 40.0, 160.0], "exponents": {"iterations": 2.0}, "eps": 1e-4}
    r = ClaimResult("k", "cite", "stmt", "holds", "holds", "m", "<= 3", "ctl", False, True, 0.1, {"main": ev})
    doc = _Doc()
    path = kappa_scaling_section([r], tmp_path, doc)
    assert path is not None and path.stat().st_size > 1000
    md = doc.markdown()
    assert "Kappa scaling" in md and "| k | iterations | 2 |" in md
    no = ClaimResult("n", "c", "s", "holds", "holds", "m", "p", "ctl", False, True, 0.1, {"main": {"x": 1}})
    assert kappa_scaling_section([no], tmp_path / "b", _Doc()) is None


def test_landscape_figure_marks_end_points(in_tmp):
    """One-dimensional convergence cells record their end points; the report draws Phi with them marked."""
    from blobench import harness
    from blobench.report import write_report

    m = {"name": "land", "experiment": [{
        "problem": "ufo-counterexample", "estimators": ["fo", "maml"], "metric": "convergence",
        "metric_params": {"outer_steps": 20, "outer_lr": 10.0, "schedule": "harmonic", "eval_every": 10}}]}
    run = harness.run(m, progress=False)
    df = harness.load(run)
    ends = df[df["quantity"] == "x_final"]
    assert set(ends["estimator"]) == {"fo", "maml"} and len(ends) == 2
    rep = write_report(run)
    assert (rep.parent / "landscape.png").stat().st_size > 1000
    assert "landscape.png" in rep.read_text()


def test_fewshot_table_from_claim_evidence():
    """A claim recording per-method accuracies gets the few-shot table, with the equal-compute columns when present."""
    from blobench.gate.claim_base import ClaimResult
    from blobench.report.page import Doc as _Doc
    from blobench.report import fewshot_section

    rows = {"FO": {"acc_iters_mean": 0.78, "acc_iters_ci": [0.77, 0.79], "iterations": 100, "calls": 5600.0,
                   "mean_q": None, "acc_compute_mean": 0.82, "acc_compute_ci": [0.81, 0.83], "iterations_compute": 243},
            "UFO": {"acc_iters_mean": 0.8, "acc_iters_ci": [0.79, 0.81], "iterations": 100, "calls": 12000.0,
                    "mean_q": 0.87}}
    r = ClaimResult("fs", "cite", "stmt.", "holds", "holds", "m", "p", "ctl", False, True, 0.1,
                    {"main": {"rows": rows, "seeds": [0, 1, 2], "test_tasks": 300, "init_accuracy": 0.6}})
    doc = _Doc()
    assert fewshot_section([r], doc)
    md = doc.markdown()
    assert "Few-shot table (fs)" in md and "0.780 [0.770, 0.790]" in md and "0.820 [0.810, 0.830]" in md
    assert "| UFO | 0.800 [0.790, 0.810] | 12000 |" in md and "0.87" in md
    no = ClaimResult("n", "c", "s", "holds", "holds", "m", "p", "ctl", False, True, 0.1, {"main": {"rows": [1]}})
    assert not fewshot_section([no], _Doc())
    r.evidence["main"]["seeds"] = 3  # a count instead of the list of seeds is rendered too
    assert fewshot_section([r], doc) and "Seeds: 3;" in doc.markdown()


# ----------------------------------------------------------------------------- issue 16: navigable, honest report

WRONG_MU_PLUGIN = '''
"""Test plugin: the quadratic problem declaring mu twice too large (a deliberately wrong constant)."""
from blobench import harness
from blobench.core.registry import PROBLEMS


@harness.register_problem("quadratic-wrong-mu")
class WrongMu(PROBLEMS.get("quadratic")):
    """Quadratic whose declared mu is twice the true smallest eigenvalue of grad2_yy g."""

    @property
    def constants(self):
        c = dict(self._constants)
        c["mu"] = 2 * c["mu"]
        c["kappa"] = c["L"] / c["mu"]
        return c
'''

VIOLATION_MATRIX = """
name = "viol"
[[experiment]]
name = "wrong-mu"
problem = "quadratic-wrong-mu"
problem_params = { dim = 2, kappa = 10 }
estimators = ["aid-cg"]
metric = "error_vs_budget"
metric_params = { budget = "inner_steps", values = [1, 2, 4, 8, 16] }
[[experiment]]
name = "right-mu"
problem = "quadratic"
problem_params = { dim = 2, kappa = 10 }
estimators = ["aid-cg"]
metric = "error_vs_budget"
metric_params = { budget = "inner_steps", values = [1, 2, 4, 8, 16] }
"""


def violation_report(root: Path) -> Path:
    """Run and report the wrong-constant plugin beside the correct quadratic (dim 2: eigenvalues mu and L, so
    with alpha = 1/L the error is exactly geometric at 1 - mu/L = 0.9); returns the report folder."""
    plugin = root / "wrong_mu.py"
    plugin.write_text(WRONG_MU_PLUGIN)
    (root / "viol.toml").write_text(VIOLATION_MATRIX)
    runs = root / "runs"
    assert main(["--plugin", str(plugin), "run", str(root / "viol.toml"), "--runs-dir", str(runs), "-q"]) == 0
    assert main(["--plugin", str(plugin), "report", str(runs / "viol"), "--out", str(root / "rep")]) == 0
    return root / "rep"


def test_violated_bound_is_flagged_with_measured_and_predicted(tmp_path):
    """A problem declaring mu twice too large predicts 1 - 2mu/L = 0.8 while the measured rate is 0.9: flagged in
    red with both values and listed in the summary; the correctly declared problem (0.9 vs 0.9) is not."""
    rep = violation_report(tmp_path)
    text = (rep / "report.md").read_text()
    wrong = _rate_row(text, "quadratic-wrong-mu(dim=2,kappa=10) | aid-cg")
    right = _rate_row(text, "quadratic(dim=2,kappa=10) | aid-cg")
    assert wrong.startswith("| **VIOLATION**") and "VIOLATION: 0.9 [0.9, 0.9] > predicted 0.8" in wrong
    assert not right.startswith("| **VIOLATION**") and "within bound" in right
    page = (rep / "index.html").read_text()
    flagged = re.findall(r"<tr class='violation'>(.*?)</tr>", page)
    assert len(flagged) == 2  # the summary's violation table and the section's rate table, same row
    assert all("quadratic-wrong-mu" in f and ">0.9<" in f and ">0.8<" in f for f in flagged)
    assert "<p class='violation flag'>VIOLATION: quadratic-wrong-mu(dim=2,kappa=10), aid-cg" in page
    assert "Flagged violations: 1 measured value(s)" in text
    # the theory line is labelled with its source in the figure's legend
    figs = json.loads((rep / "figures.json").read_text())
    legend = [t for f in figs for t in f["figure_legend"]]
    assert any("theory 0.8" in t and "Ji+ 2021" in t for t in legend), legend


def test_figures_have_svg_and_no_empty_axes(tmp_path):
    """Every figure is written as PNG and SVG, and every axes of every figure draws finite data (from the
    figure manifest, not pixels); a recorded metric-level rate interval and violation column are honoured."""
    from blobench.report import style

    md = write_report(make_run(tmp_path, ALL), tmp_path / "reports")
    out = md.parent
    figs = json.loads((out / style.MANIFEST).read_text())
    html_text = (out / "index.html").read_text()
    assert {f["png"] for f in figs} == set(_img_names(html_text))
    for f in figs:
        assert (out / f["png"]).stat().st_size > 2000 and (out / f["svg"]).read_text().lstrip().startswith("<?xml")
        assert f["axes"] and all(a["points"] > 0 for a in f["axes"]), (f["name"], f["axes"])
        assert not any(a["legend_inside"] for a in f["axes"]), f["name"]
    # the check can fail: a figure with an empty axes is recorded with 0 points
    with style.themed():
        fig, axes = style.new_figure(1, 2)
        axes[0][0].plot([1, 2], [3, 4])
        rec = style.save(fig, tmp_path / "neg", "neg", "negative control", "test")
    assert [a["points"] for a in rec["axes"]] == [2, 0]


def test_toc_links_resolve_and_tables_sort(tmp_path):
    md = write_report(make_run(tmp_path, ALL), tmp_path / "reports")
    page = (md.parent / "index.html").read_text()
    toc = re.search(r"<nav id='toc'>(.*?)</nav>", page, re.S).group(1)
    links = re.findall(r"href='#([^']+)'", toc)
    ids = set(re.findall(r"id='([^']+)'", page))
    assert len(links) >= 8 and all(a in ids for a in links)
    assert {"error_vs_budget", "bias_variance", "convergence", "memory_vs_budget", "failed"} <= set(links)
    # the summary first, then the findings digest, then the (collapsed) contents, then the sections
    assert page.index("id='summary'") < page.index("id='findings'") < page.index("<nav id='toc'>") \
        < page.index("id='error_vs_budget'")
    assert "<table class='sortable'>" in page and "function bbSort" in page and "<details>" in page
    assert "http://" not in page and "https://" not in page  # offline: nothing fetched


def test_deterministic_cells_are_deduplicated_across_seeds(tmp_path):
    """Identical rows under two seeds (a deterministic cell) are shown once; differing ones (stochastic) stay."""
    from blobench.report.base import dedup_deterministic

    run_dir = tmp_path / "runs" / "dup"
    write_manifest(run_dir, {"cells": 4})
    rows = [{"budget_param": "inner_steps", "budget": b, "quantity": "error", "value": 0.5 ** b} for b in (1, 2, 4)]
    for seed in (0, 1):
        write_shard(run_dir, f"det-{seed}", _cell(f"det-{seed}", "error_vs_budget", "itd",
                                                   rows + [{"quantity": "seconds", "value": 0.1 + seed}], seed=seed))
        noisy = [{**r, "value": r["value"] * (1 + 0.01 * seed)} for r in rows]
        write_shard(run_dir, f"sto-{seed}", _cell(f"sto-{seed}", "error_vs_budget", "aid-cg", noisy, seed=seed))
    df = harness.load(run_dir)
    kept, dropped = dedup_deterministic(df)
    assert dropped == 1 and set(kept["key"]) == {"det-0", "sto-0", "sto-1"}
    text = write_report(run_dir, tmp_path / "reports").read_text()
    assert "Deterministic cells deduplicated across seeds: 1" in text


def test_fewshot_text_without_initial_accuracy_says_so():
    from blobench.report.page import Doc as _Doc
    from blobench.report import fewshot_section

    rows = {"FO": {"acc_iters_mean": 0.78, "acc_iters_ci": [0.77, 0.79], "iterations": 100, "calls": 5600.0}}
    r = ClaimResult("fs", "cite", "stmt.", "holds", "holds", "m", "p", "ctl", False, True, 0.1,
                    {"main": {"rows": rows, "seeds": [0], "test_tasks": 30}})
    doc = _Doc()
    assert fewshot_section([r], doc)
    assert "accuracy of the initialisation: not recorded by the claim." in doc.markdown()
    r.evidence["main"]["init_accuracy"] = 0.5971
    doc = _Doc()
    fewshot_section([r], doc)
    assert "accuracy of the initialisation: 0.597." in doc.markdown()


def test_legends_show_resolved_parameters_and_zipped_sweeps_are_lines(in_tmp):
    """The smoke matrix's zipped (inner_steps, solver_steps) sweep is one line with 4/2 and 16/8 ticks, and no
    legend says None where a default was used."""
    run = harness.run("matrices/smoke.toml" if Path("matrices/smoke.toml").is_file() else
                      str(Path(__file__).parents[1] / "matrices" / "smoke.toml"), progress=False)
    md = write_report(run, in_tmp / "reports")
    figs = {f["name"]: f for f in json.loads((md.parent / "figures.json").read_text())}
    legends = [t for f in figs.values() for t in f["figure_legend"]]
    assert legends and not any("None" in t for t in legends), legends
    zipped = [f for f in figs.values() if "zipped" in f["caption"]]
    assert len(zipped) == 1
    ax = zipped[0]["axes"][0]
    assert "inner_steps / solver_steps" in ax["xlabel"] and ax["lines"] == 1 and ax["points"] >= 2


def test_convergence_to_eps_columns():
    """calls / seconds / iteration to eps = 1e-3 x the mean initial ||grad Phi||^2, from the seed-mean curve: a curve
    0.5^t reaches 1e-3 first at t = 10 (0.5^10 = 9.8e-4); one that halves only every 2 steps does not by t = 19."""
    from blobench.report.convergence import to_target

    rows = []
    for est, rate in (("fast", 0.5), ("slow", 0.5 ** 0.5)):
        for seed in (0, 1):
            for t in range(20):
                rows.append({"problem_label": "q", "estimator_label": est, "seed": seed, "iteration": t,
                             "quantity": "grad_norm_sq", "value": rate ** t * (1.0 + 0.01 * (2 * seed - 1)),
                             "calls_hvp": 3.0 * t, "calls_grad_y_g": 2.0 * t, "seconds_elapsed": 0.1 * t + seed})
    t, cap = to_target(pd.DataFrame(rows))
    t = t.set_index("estimator")
    assert t.loc["fast", "iteration_to_eps"] == 10 and t.loc["fast", "calls_to_eps"] == 50
    assert t.loc["fast", "seconds_to_eps"] == pytest.approx(1.5)
    assert t.loc["slow", "calls_to_eps"] == "not reached" and "0.001" in cap
