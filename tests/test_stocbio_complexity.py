"""blobench/claims/ji2021.py (stocBiO's sample complexity): stocBiO's samples to eps (Ji, Yang, Liang 2021, Corollary 2).

The sample count is the oracle layer's count times the batch size (checked against stocBiO's documented
per-step accounting), the claim holds at ci size with its control failing, and the mutation really bites.
"""
import math

import numpy as np
import torch

import blobench.core.registry
from blobench import harness
from blobench.claims import ji2021 as sc


def _claim(name="stocbio-sample-complexity"):
    c = blobench.core.registry.CLAIMS.get(name)
    return c() if isinstance(c, type) else c


def test_registered_with_citation_and_control():
    for name in ("stocbio-sample-complexity", "stocbio-kappa-exponent"):
        assert name in set(harness.claims())
        c = blobench.core.registry.CLAIMS.get(name)
        assert "2010.07962" in c.citation and c.statement and c.control and c.expected == "holds"


def test_samples_are_counted_calls_times_batch():
    p = harness.problem("quadratic", dim=4, kappa=2, mu=1.0, rho=1.0, noise=1.0, seed=0)
    r = sc.samples_to_eps(p, 0.08, 25, 2, 1 / 2.2)
    assert r["reached"]
    Q, K, B = r["Q"], r["K"], r["batch_size"]
    assert Q == math.ceil(0.5 * 2 * math.log(1 / 0.08))
    steps = K - 1  # estimates made to produce x_1 .. x_{K-1}
    # per estimate: D grad_y g, grad_x f + grad_y f, Q HV, 1 JV (blobench/estimators/stocbio.py's accounting)
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
    (name, caught_by, patch), = [m for m in sc.MUTATIONS if m[0] == "stocbio-batch-size-ignored"]
    assert caught_by == ("stocbio-sample-complexity", "stocbio-kappa-exponent")
    import blobench.estimators.stocbio as sb

    orig = sb.draw_batches
    with patch():
        assert sb.draw_batches is not orig
        assert not _claim().evaluate("ci", False).holds
        v = _claim("stocbio-kappa-exponent").evaluate("ci", False)
        assert not v.holds and not any(r["reached"] for r in v.evidence["runs"])
    assert sb.draw_batches is orig


# ----------------------------------------------------------------------------- kappa dependence

def test_kappa_schedule_and_samples_are_counted_calls_times_batch():
    p = sc.kappa_problem(8.0)
    c = p.constants
    assert c["kappa"] == 8.0 and c["mu"] == 1.0 and c["L"] == 8.0
    # beta's bound on L_Phi holds: ||B^T A^-2 B + rho I|| <= rho + ||B||^2 / mu^2
    L_phi = float(np.linalg.eigvalsh(p.hessian_phi().numpy()).max())
    assert L_phi <= 1 / sc.kappa_outer_lr(p) and sc.kappa_outer_lr(p) == sc.kappa_outer_lr(sc.kappa_problem(2.0))
    Q = sc.neumann_steps(8.0, 0.04)
    assert Q == math.ceil(0.5 * 8 * math.log(25)) == 13
    r = sc.samples_to_eps(p, 0.04, 50, 2, sc.kappa_outer_lr(p), steps_over_eps=sc.KAPPA_STEPS_OVER_EPS)
    assert r["reached"] and r["Q"] == r["D"] == Q and r["outer_cap"] == 125
    steps = r["K"] - 1
    assert r["samples_Gc_f"] == steps * 2 * 50 and r["samples_JV"] == steps * 50
    assert r["samples_HV"] == r["samples_Gc_g"] == steps * Q * 50


def test_kappa_claim_holds_and_control_fails_at_ci():
    c = _claim("stocbio-kappa-exponent")
    v = c.evaluate("ci", False)
    assert v.holds, v.measured
    runs = v.evidence["runs"]
    assert [r["kappa"] for r in runs] == [2.0, 4.0, 8.0, 16.0] and all(r["reached"] for r in runs)
    assert [r["Q"] for r in runs] == [sc.neumann_steps(k, sc.KAPPA_EPS) for k in (2.0, 4.0, 8.0, 16.0)]
    fits = v.evidence["fits"]
    for kind, bound in sc.KAPPA_BOUNDS.items():
        assert fits[kind]["lo"] <= bound and fits[kind]["n"] == 4
    # the measured exponents are far below Corollary 2's: on this instance (mu held) only Q, D grow with kappa,
    # so the per-iteration HV / grad_y g samples grow about as Q (exponent ~0.9) and K does not grow
    assert fits["Gc_f"]["slope"] < 1.0 and fits["HV"]["slope"] < 1.5
    assert not any(r["rate_violation"] for r in v.rates)
    ctl = c.evaluate("ci", True)
    assert not ctl.holds
    cr = ctl.evidence["runs"]
    assert all(r["Q"] == 4 for r in cr)
    # the small kappa still reach eps with Q = 4; the large ones stall above it (the truncation bias)
    assert cr[0]["reached"] and not cr[-1]["reached"] and cr[-1]["final_running_avg"] > 2 * sc.KAPPA_EPS


def test_mutation_neumann_capped_is_caught():
    (name, caught_by, patch), = [m for m in sc.MUTATIONS if m[0] == "stocbio-neumann-terms-capped"]
    assert caught_by == ("stocbio-kappa-exponent",)
    import blobench.estimators.stocbio as sb

    orig = sb.neumann
    with patch():
        p = sc.kappa_problem(16.0)
        x = p.x0()
        # the patch reaches the estimator: the same draws give another estimate once it is lifted
        kw = dict(inner_steps=3, batch_size=5)
        a = harness.estimate(p, harness.estimator("stocbio", solver_steps=26, **kw), x, seed=0, n=4).grads
        assert not _claim("stocbio-kappa-exponent").evaluate("ci", False).holds
    b = harness.estimate(p, harness.estimator("stocbio", solver_steps=26, **kw), x, seed=0, n=4).grads
    assert sb.neumann is orig and not torch.equal(a, b)


def test_kappa_rule_fails_when_one_kappa_is_unreached_or_an_exponent_exceeds_its_bound():
    runs = [{"kappa": k, "reached": True, "K": 30, "Q": sc.neumann_steps(k, 0.04), "final_running_avg": 0.03,
             **{f"samples_{n}": 1000.0 * k ** e for n, e in (("Gc_f", 0.2), ("Gc_g", 1.0), ("JV", 0.2), ("HV", 1.0),
                                                             ("total", 0.9))}}
            for k in (2.0, 4.0, 8.0, 16.0)]
    const = {"eps": 0.04}
    assert sc.kappa_verdict(runs, const).holds
    # three reached kappa still fit an exponent: the rule must fail on the unreached one itself
    one_short = [dict(r) for r in runs]
    one_short[-1] = {k: v for k, v in one_short[-1].items() if not k.startswith("samples_")} | {"reached": False}
    assert math.isfinite(sc.kappa_verdict(one_short, const).evidence["fits"]["Gc_f"]["lo"])
    assert not sc.kappa_verdict(one_short, const).holds
    # Gc(f) samples growing as kappa^6 exceed Corollary 2's kappa^5
    steep = [dict(r, samples_Gc_f=1000.0 * r["kappa"] ** 6) for r in runs]
    v = sc.kappa_verdict(steep, const)
    assert not v.holds and [r["rate_violation"] for r in v.rates] == [True, False, False, False]
