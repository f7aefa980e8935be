"""blobench/claims/ji2021.py: cheap mechanism tests. The claims themselves run once, at size "ci", in
tests/test_claims_gate.py (rule and control) and their mutations in tests/test_mutations.py."""
import math

import numpy as np
import pytest
import torch

import blobench.core.registry
import blobench.core.numerics
from blobench import harness
from blobench.claims import ji2021
from blobench.core.oracles import Oracles
from blobench.measure.sampling import draw_noise

NAMES = ["ji-itd-rate", "ji-aid-cg-bound", "ji-neumann-bound", "ji-stocbio-neumann", "ji-stocbio-variance",
         "ji-bio-sublinear", "ji-kappa-exponent", "ji-oracle-counts"]


def test_all_ji_claims_registered_with_citation_and_control():
    names = set(harness.claims())
    for n in NAMES:
        assert n in names
        c = blobench.core.registry.CLAIMS.get(n)
        assert c.citation and c.statement and c.control and c.expected in ("holds", "not reproduced")


def _fd(p, x, h=1e-6):
    return torch.tensor([(p.value(x + h * e) - p.value(x - h * e)) / (2 * h)
                         for e in torch.eye(p.dim_x, dtype=torch.float64)])


@pytest.mark.parametrize("name,kw", [("flat-tail", {"dim": 3, "kappa": 3.0, "tail": 0.5}), ("kappa-hard", {"kappa": 5.0, "rho": 0.2})])
def test_new_problems_ground_truth(name, kw):
    """Closed-form hypergradients against central differences of the value, and against ITD run long (float64)."""
    p = harness.problem(name, **kw)
    x = p.x0() + torch.tensor([0.3, -0.2, 0.1][: p.dim_x], dtype=torch.float64)
    g = p.hypergradient(x)
    assert torch.allclose(g, _fd(p, x), atol=1e-7)
    itd = harness.estimate(p, harness.estimator("itd", inner_steps=200), x).grads[0]
    assert torch.allclose(itd, g, atol=1e-10)


def test_kappa_hard_outer_conditioning_is_kappa_squared():
    p = harness.problem("kappa-hard", kappa=8.0)
    c = p.constants
    assert c["L_phi"] == pytest.approx(64.0) and c["mu_phi"] == pytest.approx(1.0)
    (xs,) = p.stationary_points()
    assert float(p.hypergradient(xs).abs().max()) < 1e-12
    H = torch.stack([p.hypergradient(e) - p.hypergradient(torch.zeros(2, dtype=torch.float64)) for e in torch.eye(2, dtype=torch.float64)])
    assert float(torch.linalg.eigvalsh(0.5 * (H + H.T)).max()) == pytest.approx(64.0)


def test_flat_tail_is_bounded_below_and_gd_exponent():
    p = harness.problem("flat-tail", dim=1, tail=0.5)
    assert 0 < p.value(torch.tensor([1e6], dtype=torch.float64)) < 2e-3 and p.value(p.x0()) < 1.0  # (1e12)^(-1/4)
    # exact GD, beta = 1/L_phi: ||grad||^2 decays like k^{-(2a+2)/(a+2)} = k^{-1.2} late in the run
    x, beta, g = p.x0(), 1.0 / p.constants["L_phi"], []
    for _ in range(4000):
        gr = p.hypergradient(x)
        g.append(float(gr @ gr))
        x = x - beta * gr
    s = np.polyfit(np.log([1000, 4000]), np.log([g[999], g[3999]]), 1)[0]
    assert s == pytest.approx(p.constants["gd_grad_sq_exponent"], abs=0.02)


def test_lanczos_optimum_is_the_krylov_a_norm_minimiser():
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    A = Q @ np.diag(np.linspace(1, 20, 6)) @ Q.T
    b = rng.standard_normal(6)
    vs = np.linalg.solve(A, b)
    for N in (1, 2, 3):
        K = np.column_stack([np.linalg.matrix_power(A, j) @ b for j in range(N)])  # monomial basis (small N: fine)
        L = np.linalg.cholesky(A)
        c, *_ = np.linalg.lstsq(L.T @ K, L.T @ vs, rcond=None)  # min ||K c - v*||_A
        assert np.allclose(ji2021._lanczos_optimum(A, b, N), K @ c, atol=1e-10)
    assert np.allclose(ji2021._lanczos_optimum(A, b, 6), vs, atol=1e-10)


def _est(p, name, x, state=None, **kw):
    e = harness.estimator(name, **kw)
    o = Oracles(p)
    nz = {k: v[0] for k, v in draw_noise(p, e, 1, seed=1).items()}
    return e.estimate(o, x, nz, state), o.snapshot()


def test_breakages_do_what_they_say_and_are_undone():
    p = harness.problem("quadratic", dim=4, kappa=4)
    x = ji2021._x(p)
    good, calls = _est(p, "aid-cg", x, inner_steps=5, solver_steps=3)
    assert calls["hvp"] == 3
    with ji2021.skip_cg_step():
        _, c2 = _est(p, "aid-cg", x, inner_steps=5, solver_steps=3)
        assert c2["hvp"] == 2 and blobench.core.numerics.cg is not None
    with ji2021.drop_implicit_term():
        dropped, _ = _est(p, "aid-cg", x, inner_steps=5, solver_steps=3)
    fo, _ = _est(p, "fo", x, inner_steps=5)
    assert torch.allclose(dropped.grad, fo.grad, atol=1e-14)  # only grad_x f at y_D remains
    itd, ci = _est(p, "itd", x, inner_steps=5)
    with ji2021.itd_wrong_sign():
        flip, _ = _est(p, "itd", x, inner_steps=5)
    with ji2021.jv_uncounted():
        _, cj = _est(p, "itd", x, inner_steps=5)
    assert ci["jvp"] == 5 and cj["jvp"] == 0 and cj["hvp"] == 5
    gx = p.p["rho"] * x
    assert torch.allclose(flip.grad - gx, -(itd.grad - gx), atol=1e-14)
    # every patch undone: the same numbers and counts as before
    again, c3 = _est(p, "aid-cg", x, inner_steps=5, solver_steps=3)
    assert torch.equal(again.grad, good.grad) and c3 == calls
    assert _est(p, "itd", x, inner_steps=5)[1]["jvp"] == 5


def test_reuse_hessian_batch_equals_the_series_with_every_batch_set_to_the_first():
    """Independent check of the stocBiO reuse mutation: the patched estimator on the drawn noise equals the
    unpatched one on noise whose Q Hessian batches are all copies of the first."""
    p = harness.problem("quadratic", dim=3, kappa=4, noise=0.5)
    e = harness.estimator("stocbio", inner_steps=4, solver_steps=5, batch_size=2)
    nz = {k: v[0] for k, v in draw_noise(p, e, 1, seed=2).items()}
    x = ji2021._x(p)
    with ji2021.reuse_hessian_batch():
        reused = e.estimate(Oracles(p), x, nz, None).grad
    same = {k: (v[:1].expand_as(v).clone() if k.startswith("hess/") else v) for k, v in nz.items()}
    assert torch.allclose(reused, e.estimate(Oracles(p), x, same, None).grad, atol=1e-14)
    assert not torch.allclose(reused, e.estimate(Oracles(p), x, nz, None).grad, atol=1e-6)


def test_itd_rate_rule_fails_on_a_mis_set_step():
    v = ji2021.ITDRate().experiment("ci", alpha_scale=0.5)
    assert not v.holds and abs(v.evidence["fitted_rate"] - v.evidence["theory_rate"]) > ji2021.ITDRate.TOL
    assert v.rates[0]["rate_violation"] is True


def test_merged_control_holds_if_any_holds():
    from blobench.gate.claim_base import Verdict

    ok, bad = Verdict(True, "a", "p"), Verdict(False, "b", "p")
    assert ji2021._merge([("x", lambda: bad), ("y", lambda: ok)]).holds
    assert not ji2021._merge([("x", lambda: bad), ("y", lambda: bad)]).holds
    assert math.isfinite(len(ji2021.MUTATIONS))
