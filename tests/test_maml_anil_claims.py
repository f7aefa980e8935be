"""MAML and ANIL claims: cheap mechanism tests (the claims themselves run once, at size "ci", in
tests/test_claims_gate.py): the decision rules discriminate on hand-made inputs, the ground truth of the
new task family is exact, the positive controls see the trend, and the evidence notes come from numbers."""
import json
import math

import pytest
import torch

from blobench import harness
from blobench.claims import anil
from blobench.claims.anil import fewer, iterations_to_eps, more
from blobench.claims.maml import converges, growth_experiment, lipschitz_and_step

MAML = ["maml-meta-gradient-growth", "maml-step-size-convergence", "maml-convex-no-step-condition"]
ANIL = ["anil-strongly-convex-more-steps-faster", "anil-nonconvex-trend-reverses"]


def test_claims_record_expectations():
    from blobench.core.registry import CLAIMS

    for n in MAML:
        assert CLAIMS.get(n).expected == "holds"
    assert CLAIMS.get(ANIL[0]).expected == CLAIMS.get(ANIL[1]).expected == "not reproduced"
    for n in ANIL:
        c = CLAIMS.get(n)
        assert c.evidence_note and c.positive_control and "anil_evidence.json" in c.evidence_note


def test_growth_matches_exact_spectral_rate():
    """Fixed alpha on indefinite tasks: ||grad Phi_N|| grows like (1 + alpha lambda_-)^{2N} (Jacobian squared),
    inside the claim's window [1 + alpha lambda_-, (1 + alpha L)^2]; convex tasks do not grow."""
    ev = growth_experiment("indefinite", "ci")
    a, lam = ev["alpha_fixed"], ev["rows"][0]["neg_curv"]
    assert ev["growth_factor"] == pytest.approx((1 + a * lam) ** 2, rel=0.02)
    assert growth_experiment("convex", "ci")["growth_factor"] < 1.0


def test_itd_meta_gradient_agrees_with_closed_form_at_large_N():
    p = harness.problem("meta-quadratic", unroll_steps=30, unroll_lr=0.25)
    x = torch.ones(p.dim_x, dtype=torch.float64)
    g = p.hypergradient(x)
    e = harness.estimate(p, harness.estimator("itd"), x, n=1)
    assert float(torch.linalg.norm(e.grads[0] - g) / torch.linalg.norm(g)) < 1e-10
    assert float(torch.linalg.norm(g)) > 1e2  # and it really is huge: (1.125)^60 growth


def test_convergence_detector_flags_divergence():
    bad = converges(harness.problem("meta-quadratic", unroll_steps=50, unroll_lr=0.25), 1.0, 50)
    assert bad["diverged"] and not bad["converged"]
    good = converges(harness.problem("meta-quadratic", unroll_steps=50, unroll_lr=0.005), 1.0, 400)
    assert good["converged"] and good["grad_sq_min"] <= 1e-8 * good["grad_sq_0"]


# ----------------------------------------------------------------------------- meta-cosine (Thm. 1's setting)

def test_meta_cosine_ground_truth():
    """Meta-gradient against central differences of Phi_N and against the itd estimator (reverse mode through
    the counted oracles); curvature against differences of the meta-gradient."""
    p = harness.problem("meta-cosine", unroll_steps=6, unroll_lr=0.2, tasks=3)
    x = torch.tensor([0.37], dtype=torch.float64)
    g = p.hypergradient(x)
    h = 1e-6
    assert float(g) == pytest.approx((p.value(x + h) - p.value(x - h)) / (2 * h), abs=1e-8)
    itd = harness.estimate(p, harness.estimator("itd"), x).grads[0]
    assert torch.allclose(itd, g, atol=1e-13)
    c = p.curvature_many(x)
    assert float(c) == pytest.approx(float(p.hypergradient(x + 1e-5) - p.hypergradient(x - 1e-5)) / 2e-5, abs=1e-6)
    assert p.value(torch.tensor([50.0], dtype=torch.float64)) >= p.constants["phi_lower_bound"]


def test_meta_cosine_lipschitz_peaks_at_the_centres():
    """At x = c_i task i sits at its maximum: its term of Phi_N'' is (a - b)(1 + alpha lambda_-)^{2N} / T exactly."""
    N, a = 16, 0.2
    p = harness.problem("meta-cosine", unroll_steps=N, unroll_lr=a)
    pred = (p.p["b"] - p.p["a"]) * (1 + a * p.constants["neg_curv"]) ** (2 * N) / p.p["tasks"]
    one = harness.problem("meta-cosine", unroll_steps=N, unroll_lr=a, tasks=1)
    exact = (one.p["a"] - one.p["b"]) * (1 + a * one.constants["neg_curv"]) ** (2 * N)  # one task, at its centre
    assert float(one.curvature_many(one.cs.reshape(-1))) == pytest.approx(exact, rel=1e-10)
    assert p.lipschitz() == pytest.approx(pred, rel=0.01)  # the centre term dominates at N = 16
    scaled = harness.problem("meta-cosine", unroll_steps=N, unroll_lr=a / N)
    assert scaled.lipschitz() < 1.0


def test_stable_step_uses_the_descent_lemma():
    """beta_max is the largest grid step with sufficient decrease at every step: at N = 1 it is within the grid's
    factor 2 of 1/L_N; a grid of only huge steps gives 0."""
    r = lipschitz_and_step(1, 0.2, 10)
    assert 0.5 / r["L_N"] <= r["beta_max"] <= 4.0 / r["L_N"]
    assert lipschitz_and_step(1, 0.2, 10, (64.0, 128.0))["beta_max"] == 0.0


# ----------------------------------------------------------------------------- ANIL

def test_trend_rules_discriminate():
    assert fewer({1: 100, 2: 80, 4: 70, 8: 60}) and not more({1: 100, 2: 80, 4: 70, 8: 60})
    assert more({1: 20, 2: 30, 4: 40, 8: 60}) and not fewer({1: 20, 2: 30, 4: 40, 8: 60})
    assert not fewer({1: 50, 2: 50, 4: 50, 8: 50}) and not more({1: 50, 2: 50, 4: 50, 8: 50})
    assert not fewer({1: 100, 2: 150, 4: 70, 8: 60})  # not monotone


def test_iterations_to_eps_is_the_first_such_k():
    p = harness.problem("anil-fewshot", unroll_steps=1, tasks=2)
    k = iterations_to_eps(p, 2.0, 0.5, 200)
    assert 1 <= k <= 200
    x = p.x0()
    g0 = p.hypergradient(x)
    norms = []
    for _ in range(k + 1):
        g = p.hypergradient(x)
        norms.append(float(g @ g))
        x = x - 2.0 * g
    assert norms[k] <= 0.5 * float(g0 @ g0) and all(v > 0.5 * float(g0 @ g0) for v in norms[:k])  # minimal
    assert math.isfinite(norms[k])


def test_theory_beta_is_one_over_the_hessian_norm():
    p = harness.problem("meta-quadratic", curvature="convex", mu_ratio=0.1, tasks=1, unroll_steps=2, unroll_lr=0.1)
    p._phi = lambda x: 0.5 * x @ (p.M @ x) - p.m @ x  # Phi_N up to a constant: its Hessian is M
    assert anil.theory_beta(p) == pytest.approx(1.0 / p.constants["L_phi"], rel=1e-12)


@pytest.mark.parametrize("cls", [anil.AnilStronglyConvex, anil.AnilNonconvex])
def test_positive_controls_see_the_trend_and_a_flattening_bug_fails_them(cls, monkeypatch):
    v = cls().evaluate_positive("ci")
    assert v.holds, v.measured
    monkeypatch.setattr(anil, "iterations_to_eps", lambda *a, **k: 50)  # K_eps flattened in N
    assert not cls().evaluate_positive("ci").holds


def test_evidence_notes_are_generated_from_the_recorded_numbers(tmp_path, monkeypatch):
    data = json.loads(anil.EVIDENCE_FILE.read_text())
    note = anil.evidence_note("nonconvex")
    for beta in ("fixed", "theory"):
        for v in data["nonconvex"][beta]["mean_K"].values():
            assert f"{float(v):.1f}" in note
    assert anil.AnilNonconvex.evidence_note == note
    data["nonconvex"]["theory"]["mean_K"] = {"1": 123.4, "2": 5.0, "4": 6.0, "8": 7.0}
    f = tmp_path / "ev.json"
    f.write_text(json.dumps(data))
    monkeypatch.setattr(anil, "EVIDENCE_FILE", f)
    assert "123.4, 5.0, 6.0, 7.0" in anil.evidence_note("nonconvex")
