"""Golden checks of the report's verdicts on constructed runs (issue 26): the rate flag tests the asymptotic
rate (blobench.measure.rates) and fires only when its whole interval lies above the bound; the "to eps"
columns count the first time after which a curve stays below eps."""
from __future__ import annotations

import json
import math
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
