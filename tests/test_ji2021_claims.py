"""claims/ji2021.py: every claim reproduces its recorded outcome at size "ci" and its negative control fails."""
import pytest

import harness

FAST = ["ji-aid-cg-bound", "ji-neumann-bound", "ji-stocbio-variance", "ji-kappa-exponent", "ji-oracle-counts"]
SLOWER = ["ji-itd-rate", "ji-stocbio-neumann", "ji-bio-sublinear"]


def test_all_ji_claims_registered_with_citation_and_control():
    names = set(harness.claims())
    for n in FAST + SLOWER:
        assert n in names
        c = harness.registry.CLAIMS.get(n)
        assert c.citation and c.statement and c.control and c.expected in ("holds", "not reproduced")


def _check(name):
    (r,) = harness.check([name], size="ci")
    assert r.outcome == r.expected, (r.measured, r.predicted)
    assert not r.control_holds, r.evidence["control_measured"]
    assert r.passed


@pytest.mark.parametrize("name", FAST)
def test_claim_ci(name):
    _check(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOWER)
def test_claim_ci_slower(name):
    _check(name)


def test_itd_rate_rule_detects_a_mis_set_step():
    """The ITD-rate rule on its own: the control's fitted rate is off by more than the tolerance."""
    from claims.ji2021 import ITDRate

    v = ITDRate().evaluate("ci", control=True)
    assert not v.holds and abs(v.evidence["fitted_rate"] - v.evidence["theory_rate"]) > ITDRate.TOL
