"""Golden checks of the report's verdicts on constructed runs (issue 26): the rate flag tests the asymptotic
rate (blobench.measure.rates) and fires only when its whole interval lies above the bound; the "to eps"
columns count the first time after which a curve stays below eps."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from blobench.engine.store import write_manifest, write_shard
from blobench.report import write_report
from tests.test_rates import AIDCG_K100, D_DEFAULT
from tests.test_report import _cell


def _manifest(run_dir: Path) -> None:
    write_manifest(run_dir, {"matrix_path": "constructed.toml", "cells": 0, "created": "now", "git_revision": "abc",
                             "versions": {}, "machine": {"platform": "test", "cpus": 2}, "devices": {}})


def _evb(key: str, est: str, pp: dict, budgets: list, errors: list, recorded: dict) -> pd.DataFrame:
    rows = [{"budget_param": "inner_steps", "budget": b, "quantity": "error", "value": e} for b, e in zip(budgets, errors)]
    rows.append({"budget_param": "inner_steps", "quantity": "fitted_rate", **recorded})
    return _cell(key, "error_vs_budget", est, rows, pp=pp)


def _rate_lines(text: str) -> dict[str, str]:
    return {ln.split("|")[2].strip(): ln for ln in text.splitlines()
            if "| inner_steps |" in ln and ln.startswith("| ") and "quadratic(" in ln}


def test_rate_flag_golden_on_a_constructed_run(tmp_path):
    """The default report's only flag was a false alarm: aid-cg on quadratic(kappa=100), whole-range fit 0.9901 >
    0.99 (recorded so by the run). Recomputed with the tail rule it is within its bound; an estimator whose error
    decays at 0.95 against a bound of 0.9 is flagged, with both values, in its section and in the summary."""
    run = tmp_path / "runs" / "golden"
    _manifest(run)
    # as an older run recorded it: a whole-range fit and its violation verdict
    old = {"value": 0.9900831837855063, "rate": 0.9900831837855063, "rate_lo": 0.99002, "rate_hi": 0.99014,
           "rate_bound": 0.99, "rate_violation": True, "rate_source": "1 - alpha*mu"}
    write_shard(run, "a", _evb("a", "aid-cg", {"dim": 20, "kappa": 100}, D_DEFAULT, AIDCG_K100, old))
    D = [10, 20, 30, 40, 50, 60, 70]
    bad = [3.0 * 0.95**d for d in D]
    write_shard(run, "b", _evb("b", "itd", {"dim": 20, "kappa": 10}, D, bad,
                               {"value": 0.95, "rate_bound": 0.9, "rate_source": "1 - alpha*mu"}))
    text = write_report(run, out_dir=tmp_path / "rep").read_text()
    lines = _rate_lines(text)
    assert set(lines) == {"aid-cg", "itd"}
    assert not lines["aid-cg"].startswith("| **VIOLATION**") and "within bound" in lines["aid-cg"]
    assert lines["itd"].startswith("| **VIOLATION**") and "VIOLATION: 0.95 [0.95, 0.95] > predicted 0.9" in lines["itd"]
    assert "Flagged violations: 1 measured value(s)" in text


def test_rate_without_interval_is_not_flagged(tmp_path):
    """Three budgets give an exact fit and no interval: "not tested", never a flag on a point estimate."""
    run = tmp_path / "runs" / "few"
    _manifest(run)
    write_shard(run, "c", _evb("c", "itd", {"dim": 20, "kappa": 10}, [1, 2, 3], [0.95, 0.9025, 0.857375],
                               {"value": 0.95, "rate_bound": 0.9, "rate_source": "1 - alpha*mu"}))
    text = write_report(run, out_dir=tmp_path / "rep").read_text()
    line = _rate_lines(text)["itd"]
    assert "not tested (no interval)" in line and "VIOLATION" not in line


def _curve_rows(est: str, ys: list[float], seeds=(0,)) -> list[dict]:
    return [{"problem_label": "q", "estimator_label": est, "seed": s, "iteration": t, "quantity": "grad_norm_sq",
             "value": y, "calls_grad_y_g": 4.0 * t, "seconds_elapsed": 0.5 * t} for s in seeds for t, y in enumerate(ys)]


def test_to_eps_counts_the_time_after_which_the_curve_stays_below_eps():
    """eps = 1e-3 x the mean initial value (1.0 here). "mono" decays 0.5^t: stays below from t = 10. "dip" (a
    biased method such as FO on a toy problem) touches 1e-4 at t = 2 and plateaus at 1e-2: under the old
    first-crossing rule it looked fastest; now it is "not reached", with the crossing noted. "late" dips at t = 2,
    comes back, and settles at t = 15: its column says 15, and the note says it left eps again."""
    from blobench.report.convergence import settle_index, to_target

    mono = [0.5**t for t in range(20)]
    dip = [1.0, 0.1, 1e-4] + [1e-2] * 17
    late = [1.0, 0.1, 1e-4] + [1e-2] * 12 + [1e-4] * 5
    t, cap = to_target(pd.DataFrame(_curve_rows("mono", mono) + _curve_rows("dip", dip) + _curve_rows("late", late)))
    t = t.set_index("estimator")
    assert t.loc["mono", "iteration_to_eps"] == 10 and t.loc["mono", "calls_to_eps"] == 40
    assert t.loc["mono", "seconds_to_eps"] == 5.0 and t.loc["mono", "eps_note"] == ""
    assert t.loc["dip", "iteration_to_eps"] == "not reached" and t.loc["dip", "calls_to_eps"] == "not reached"
    assert "crossed eps at t=2, left it again" in t.loc["dip", "eps_note"]
    assert t.loc["late", "iteration_to_eps"] == 15 and t.loc["late", "calls_to_eps"] == 60
    assert t.loc["late", "eps_note"] == "crossed eps first at t=2, left it again"
    assert "stays <= 0.001" in cap
    assert settle_index([1.0, float("nan"), 1e-5], 1e-3) == (2, 2)  # NaN counts as above eps
    assert settle_index([], 1e-3) == (None, None)


def test_to_eps_uses_the_seed_mean_curve():
    """Two seeds, one below eps from t = 3 and one oscillating above it until t = 8: the seed mean settles at t = 9
    (mean of 2e-3 and 1e-5 is above eps = 1e-3 until the second seed drops too)."""
    from blobench.report.convergence import to_target

    a = [1.0, 0.1, 0.01] + [1e-5] * 12
    b = [1.0, 0.1, 0.01] + [3e-3] * 6 + [1e-5] * 6
    rows = _curve_rows("m", a, seeds=(0,)) + [{**r, "seed": 1} for r in _curve_rows("m", b, seeds=(0,))]
    t, _ = to_target(pd.DataFrame(rows))
    assert t.set_index("estimator").loc["m", "iteration_to_eps"] == 9


def test_summary_counts_gate_verdicts_and_outcomes_apart_and_findings_list_them(tmp_path):
    """"43 PASS" while 4 claims are recorded "not reproduced" misread as "all reproduce": the summary shows the
    gate verdicts and the measured outcomes apart, and the findings digest names the not-reproduced claims, the
    failed cells and the violations, each linked to its section."""
    from blobench.gate.claim_base import ClaimResult, save_results
    from tests.test_report import make_run

    run = make_run(tmp_path, {"error_vs_budget"})
    res = [ClaimResult("good", "Doe 2020", "s", "holds", "holds", "m", "p", "c", False, True, 0.1, {}),
           ClaimResult("vrbo-rate", "Doe 2021", "s", "not reproduced", "not reproduced", "m", "p", "c", False, True,
                       0.1, {})]
    save_results(res, run / "claims.json", size="ci")
    out = tmp_path / "rep"
    text = write_report(run, out_dir=out).read_text()
    assert "gate verdicts 2 PASS; measured outcomes 1 holds, 1 not reproduced" in text
    lead = text.split("## Contents")[0]
    assert "## Findings" in lead
    assert 'claims recorded "not reproduced" (1): vrbo-rate ([see](#claims))' in lead
    assert "failed cells: 1 (error_vs_budget failed: 1; first: ParameterError: boom) ([see](#failed))" in lead
    assert "- synthetic: best itd (error at budget 8 0.0501), worst fo (0.5) on quadratic(dim=4,kappa=4) ([see](#error_vs_budget-synthetic))" in lead
    page = (out / "index.html").read_text()
    assert "href='#error_vs_budget-synthetic'" in page and "id='error_vs_budget-synthetic'" in page
    assert page.index("id='findings'") < page.index("<nav id='toc'>") < page.index("id='claims'")


def test_report_without_claims_takes_the_latest_claims_of_the_runs_folder(tmp_path):
    """`make run`'s report had no claims section: it now takes the newest claims.json of the runs folder (saying
    where it comes from), or says how to add claims."""
    from blobench.gate.claim_base import ClaimResult, save_results
    from tests.test_report import make_run

    run = make_run(tmp_path, {"error_vs_budget"}, name="default")
    text = write_report(run, out_dir=tmp_path / "r1").read_text()
    assert "Claims: none with this run. Add them with `blobench report RUN --claims`" in text
    other = make_run(tmp_path, {"error_vs_budget"}, name="reference")
    save_results([ClaimResult("good", "Doe 2020", "s", "holds", "holds", "m", "p", "c", False, True, 0.1, {})],
                 other / "claims.json", size="ci")
    text = write_report(run, out_dir=tmp_path / "r2").read_text()
    assert "the latest claims results in this runs folder: reference/claims.json" in text and "## Claims" in text
