"""claims/stocbio_complexity.py: stocBiO's samples to eps (Ji, Yang, Liang 2021, Corollary 2).

The sample count is the oracle layer's count times the batch size (checked against stocBiO's documented
per-step accounting), the claim holds at ci size with its control failing, and the mutation really bites.
"""
import math

import harness
from claims import stocbio_complexity as sc


def _claim():
    c = harness.registry.CLAIMS.get("stocbio-sample-complexity")
    return c() if isinstance(c, type) else c


def test_registered_with_citation_and_control():
    assert "stocbio-sample-complexity" in set(harness.claims())
    c = harness.registry.CLAIMS.get("stocbio-sample-complexity")
    assert "2010.07962" in c.citation and c.statement and c.control and c.expected == "holds"


def test_samples_are_counted_calls_times_batch():
    p = harness.problem("quadratic", dim=4, kappa=2, mu=1.0, rho=1.0, noise=1.0, seed=0)
    r = sc.samples_to_eps(p, 0.08, 25, 2, 1 / 2.2)
    assert r["reached"]
    Q, K, B = r["Q"], r["K"], r["batch_size"]
    assert Q == math.ceil(0.5 * 2 * math.log(1 / 0.08))
    steps = K - 1  # estimates made to produce x_1 .. x_{K-1}
    # per estimate: D grad_y g, grad_x f + grad_y f, Q HV, 1 JV (estimators/stocbio.py's accounting)
    assert r["samples_Gc_g"] == steps * Q * B
    assert r["samples_Gc_f"] == steps * 2 * B
    assert r["samples_HV"] == steps * Q * B and r["samples_JV"] == steps * B
    assert r["samples_total"] == steps * (2 * Q + 3) * B


def test_claim_holds_and_control_fails_at_ci():
    c = _claim()
    v = c.evaluate("ci", False)
    assert v.holds, v.measured
    assert all(r["reached"] for r in v.evidence["runs"])
    assert v.evidence["fit_Gc_f"]["lo"] <= 2.0 <= v.evidence["fit_Gc_f"]["hi"] + 0.5
    assert not any(r["rate_violation"] for r in v.rates)
    ctl = c.evaluate("ci", True)
    assert not ctl.holds
    assert not all(r["reached"] for r in ctl.evidence["runs"])


def test_mutation_batch_ignored_is_caught():
    (name, caught_by, patch), = sc.MUTATIONS
    assert caught_by == ("stocbio-sample-complexity",)
    import estimators.stocbio as sb

    orig = sb.draw_batches
    with patch():
        assert sb.draw_batches is not orig
        assert not _claim().evaluate("ci", False).holds
    assert sb.draw_batches is orig
