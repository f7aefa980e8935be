"""The claims gate (issue 7): every registered claim at "ci" size, one test per claim, plus the gate logic itself.

The gate fails when a claim's measured outcome differs from its recorded expectation ("holds", or "not
reproduced" with evidence) or when its negative control passes. The gate logic is tested on claims
registered here for the duration of a test only: one that holds with a failing control, one whose control
passes, one whose outcome differs from its expectation, and a recorded "not reproduced" one.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from blobench import harness
from blobench.gate.claim_base import Claim, Verdict, check
from blobench.cli import main
from blobench.core.errors import BlobenchError
from blobench.measure.metrics import RateFit, fit_geometric_rate
from blobench.core.registry import CLAIMS

# ----------------------------------------------------------------------------- the CI gate over real claims

REAL_CLAIMS = CLAIMS.names()


@pytest.mark.skipif(not REAL_CLAIMS, reason="no claims registered in claims/ yet")
@pytest.mark.parametrize("name", REAL_CLAIMS)
def test_claim_gate_ci(name):
    r = CLAIMS.get(name)().run("ci")
    detail = (f"{name} ({r.citation}): measured {r.measured}; predicted {r.predicted}; expected {r.expected}, "
              f"outcome {r.outcome}; control ({r.control}) {'HOLDS' if r.control_holds else 'fails'}: "
              f"{r.evidence.get('control_measured')}")
    assert r.passed, f"{r.why()} -- {detail}"
    assert r.control_holds is False and r.outcome == r.expected


def test_every_claim_documents_itself():
    for name in REAL_CLAIMS:
        c = CLAIMS.get(name)
        assert c.citation and c.statement and c.control, f"claim {name!r} lacks citation/statement/control"
        assert c.expected in ("holds", "not reproduced"), f"claim {name!r}: expected={c.expected!r}"
        if c.expected == "not reproduced":
            assert c.evidence_note, f"claim {name!r} is recorded 'not reproduced' without evidence_note"


# ----------------------------------------------------------------------------- gate logic on test claims

def _itd_rate(estimator: str, kappa: float, budgets: tuple[int, ...] = (10, 20, 30, 40)) -> float:
    """Fitted geometric rate of ||estimate - grad Phi|| over inner_steps on a small quadratic (float64)."""
    p = harness.problem("quadratic", dim=4, kappa=kappa)
    x = p.x0()
    truth = p.hypergradient(x)
    budgets = list(budgets)
    errs = [float(torch.linalg.norm(harness.estimate(p, harness.estimator(estimator, inner_steps=k), x).grads[0] - truth))
            for k in budgets]
    return fit_geometric_rate(budgets, errs)


class _RateClaim(Claim):
    """ITD's hypergradient error contracts at 1 - mu/L in the inner steps (Ji, Yang & Liang 2021, Prop. 2)."""

    citation = "Ji, Yang & Liang 2021 (ICML), Prop. 2"
    statement = "fitted rate of ITD's error in inner_steps within 5% of 1 - 1/kappa"
    control = "the first-order estimator fo (bias does not vanish)"
    factor = 1.0  # predicted rate 1 - factor/kappa
    rate_bound = float("nan")  # the bound the fitted rate is flagged against
    main_estimator, control_estimator = "itd", "fo"
    control_budgets = (10, 20, 30, 40)

    def evaluate(self, size: str, control: bool) -> Verdict:
        kappa = 5.0
        rate = _itd_rate(self.control_estimator if control else self.main_estimator, kappa,
                         self.control_budgets if control else (10, 20, 30, 40))
        pred = 1 - self.factor / kappa
        # an interval of +-0.01 around the fitted rate: a rate without one is never flagged (issue 26)
        fit = RateFit(rate, rate - 0.01, rate + 0.01, 4, self.rate_bound)
        return Verdict(np.abs(rate - pred) <= 0.05 * pred, f"rate {rate:.4f}", f"{pred:.4f}", {"rate": rate},
                       [fit.columns("itd rate")])


class _Holds(_RateClaim):
    pass


class _ControlPasses(_RateClaim):
    control = "aid-cg instead of itd (also contracts: a control that cannot fail)"
    control_estimator = "aid-cg"


class _RateViolation(_RateClaim):
    """Holds by its own rule, but its fitted rate (0.8) lies above the bound it reports (0.7): flagged, not failed."""

    rate_bound = 0.7


class _WrongExpectation(_RateClaim):
    statement = "fitted rate within 5% of 1 - 2/kappa (wrong prediction recorded as holding)"
    factor = 2.0


class _NotReproduced(_RateClaim):
    statement = "fo's error contracts at 1 - 1/kappa"
    expected = "not reproduced"
    evidence_note = "fo's fitted rate is 1.0: its error is a constant bias"
    main_estimator = "fo"
    control = "fo over small budgets (1-4 inner steps): the rule must fail there too"
    control_estimator = "fo"
    control_budgets = (1, 2, 3, 4)


TEST_CLAIMS = {"t-holds": _Holds, "t-control-passes": _ControlPasses, "t-wrong-expectation": _WrongExpectation,
               "t-not-reproduced": _NotReproduced, "t-rate-violation": _RateViolation}


@pytest.fixture
def test_claims(monkeypatch):
    for n, cls in TEST_CLAIMS.items():
        monkeypatch.setattr(cls, "name", n)
        monkeypatch.setitem(CLAIMS._items, n, cls)  # removed again when the test ends
    return TEST_CLAIMS


def test_gate_logic(test_claims):
    res = {r.name: r for r in check([n for n in test_claims if n != "t-rate-violation"])}
    h = res["t-holds"]
    assert h.passed and h.outcome == "holds" and not h.control_holds and h.why() == ""
    assert float(h.measured.split()[1]) == pytest.approx(0.8, rel=0.05)
    assert float(h.evidence["control_measured"].split()[1]) > 0.99  # fo: no contraction
    c = res["t-control-passes"]
    assert c.outcome == "holds" and c.control_holds and not c.passed and "negative control" in c.why()
    w = res["t-wrong-expectation"]
    assert w.outcome == "not reproduced" and not w.control_holds and not w.passed and "differs" in w.why()
    n = res["t-not-reproduced"]
    assert n.expected == n.outcome == "not reproduced" and not n.control_holds and n.passed
    assert [r.row()["gate"] for r in res.values()] == ["PASS", "FAIL", "FAIL", "PASS"]


def test_rate_violation_is_flagged_in_rows_and_cli(test_claims, capsys, tmp_path):
    """A fitted rate whose interval lies above its bound is flagged in the result row and by ``blobench check``
    (exit status unchanged: a violation is a finding to record, the gate decides on outcome and control)."""
    (r,) = check(["t-rate-violation"])
    assert r.passed and r.row()["rate_violation"] is True and "VIOLATION" in r.row()["rates"]
    assert [v["name"] for v in r.rate_violations] == ["itd rate"]
    (h,) = check(["t-holds"])
    assert h.row()["rate_violation"] is False and "VIOLATION" not in h.row()["rates"]
    assert main(["check", "t-rate-violation", "t-holds", "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "RATE VIOLATION t-rate-violation: itd rate 0.79" in out and "] beyond its bound 0.7" in out
    assert "RATE VIOLATION t-holds" not in out
    from blobench.gate.claim_base import load_results

    back = {x.name: x for x in load_results(tmp_path / "r.json")}
    assert back["t-rate-violation"].rate_violations and not back["t-holds"].rate_violations


class _PositiveFails(_NotReproduced):
    """A 'not reproduced' claim whose rule and control both fail, as a bug flattening the effect would make them:
    its positive control (where the effect provably exists) fails too, so the gate must fail."""

    positive_control = "fo over large budgets must contract (it does not: a stand-in for a flattened effect)"

    def evaluate_positive(self, size: str) -> Verdict:
        return self.evaluate(size, control=False)


class _PositiveHolds(_NotReproduced):
    positive_control = "itd, where the rate provably appears"

    def evaluate_positive(self, size: str) -> Verdict:
        return _Holds().evaluate(size, control=False)


def test_positive_control_must_hold(test_claims, monkeypatch):
    for n, cls in (("t-pos-fails", _PositiveFails), ("t-pos-holds", _PositiveHolds)):
        monkeypatch.setattr(cls, "name", n)
        monkeypatch.setitem(CLAIMS._items, n, cls)
    bad, good = check(["t-pos-fails", "t-pos-holds"])
    assert bad.outcome == bad.expected == "not reproduced" and not bad.control_holds
    assert bad.positive_holds is False and not bad.passed and "positive control fails" in bad.why()
    assert good.positive_holds is True and good.passed and "positive_measured" in good.evidence
    (plain,) = check(["t-not-reproduced"])
    assert plain.positive_holds is None and plain.passed


def test_check_rejects_bad_input(test_claims):
    with pytest.raises(BlobenchError, match="unknown claim 't-hold'"):
        check(["t-hold"])
    with pytest.raises(BlobenchError, match="claim size"):
        _Holds().run("huge")


def test_cli_check_exit_codes_and_table(test_claims, capsys, tmp_path):
    assert main(["check", "t-holds", "t-not-reproduced", "--json", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    header = "| claim | citation | measured | predicted | expected | outcome | control_verdict | gate | seconds | rates |"
    assert header in out and "| t-holds | Ji, Yang & Liang 2021 (ICML), Prop. 2 | rate 0." in out
    assert "2/2 claims pass the gate" in out
    data = json.loads((tmp_path / "c.json").read_text())
    assert all(r["control_holds"] is False and r["passed"] is True for r in data["results"])
    assert [r["name"] for r in data["results"]] == ["t-holds", "t-not-reproduced"] and data["size"] == "ci"
    assert main(["check", "t-holds", "t-control-passes"]) == 1
    out = capsys.readouterr().out
    assert "FAIL t-control-passes: its negative control" in out and "holds (BAD)" in out
    assert main(["check", "t-wrong-expectation"]) == 1
    assert "differs from recorded 'holds'" in capsys.readouterr().out
    assert main(["check", "--list"]) == 0
    out = capsys.readouterr().out
    assert "t-not-reproduced" in out and "expected: not reproduced" in out and "Ji, Yang & Liang" in out
    assert main(["check", "t-hold"]) == 2
    assert "unknown claim" in capsys.readouterr().err


def test_report_claims_flag_runs_claims_into_run_folder(test_claims, tmp_path, monkeypatch):
    from tests.test_report import make_run

    run_dir = make_run(tmp_path, {"odd_metric"})
    # only the test claims: the real ones are run by test_claim_gate_ci
    monkeypatch.setattr(CLAIMS, "_items", {n: c for n, c in test_claims.items() if n == "t-holds"})
    assert main(["report", str(run_dir), "--claims", "--reports-dir", str(tmp_path / "reports")]) == 0
    assert (run_dir / "claims.json").is_file()
    text = (tmp_path / "reports" / "synth" / "report.md").read_text()
    assert "| t-holds |" in text and "fails (good)" in text


class _Raises(_RateClaim):
    def evaluate(self, size: str, control: bool) -> Verdict:
        raise RuntimeError("solver blew up")


def test_check_records_a_raising_claim(test_claims, monkeypatch):
    monkeypatch.setattr(_Raises, "name", "t-raises")
    monkeypatch.setitem(CLAIMS._items, "t-raises", _Raises)
    with pytest.raises(RuntimeError):
        check(["t-raises"])
    r = check(["t-holds", "t-raises"], errors="record")
    assert r[0].passed and not r[1].passed and r[1].outcome.startswith("error: RuntimeError: solver blew up")
    assert "the claim raised" in r[1].why() and r[1].row()["gate"] == "FAIL"
    with pytest.raises(BlobenchError, match="errors must be"):
        check(["t-holds"], errors="ignore")
