"""Nesterov AGD inner solver (inner_solver="agd"), AccBiO and the outer loop's Nesterov momentum (Ji & Liang 2023).

Against exact truth: AGD reaches the inner solution at the accelerated rate; ITD through AGD equals the
autograd derivative of f(x, y_D(x)) with y_D the AGD iterate; AID/AccBiO with enough steps equal the
exact hypergradient; oracle counts are the documented ones; the outer momentum converges to x* in
about sqrt(kappa) times fewer iterations than plain GD; "none" is plain gradient descent.
"""
import math

import pytest
import torch

from blobench import harness
from blobench.core.numerics import agd, inner_agd, inner_gd, strongly_convex_momentum
from blobench.core.oracles import Oracles
from blobench.measure.outer import outer_loop
from blobench.measure.sampling import estimate


def test_inner_agd_accelerates_and_counts():
    p = harness.problem("quadratic", dim=20, kappa=100)
    o = Oracles(p)
    x = torch.ones(20, dtype=torch.float64)
    ys = p.inner_solution(x)
    lr, mu = 1 / p.constants["L"], p.constants["mu"]
    m = strongly_convex_momentum(lr, mu)
    assert m == pytest.approx((10 - 1) / (10 + 1))
    y0 = torch.zeros(20, dtype=torch.float64)
    ya, traj = inner_agd(o, x, y0, 120, lr, m, keep=True)
    assert o.counts["grad_y_g"] == 120 and len(traj) == 120
    yg, _ = inner_gd(o, x, y0, 120, lr)
    ea, eg = float(torch.linalg.norm(ya - ys)), float(torch.linalg.norm(yg - ys))
    assert ea < 1e-4 * float(torch.linalg.norm(ys))  # (1 - 1/sqrt(kappa))^120 ~ 3e-6 (x sqrt(kappa))
    assert eg > 100 * ea  # GD: (1 - 1/kappa)^120 ~ 0.3
    # convex schedule (no mu) still converges, and momentum 0 is GD exactly
    yc, _ = agd(lambda k, z: o.grad_y_g(x, z), y0, 300, lr, None)
    assert float(torch.linalg.norm(yc - ys)) < float(torch.linalg.norm(yg - ys))
    y_m0, _ = agd(lambda k, z: o.grad_y_g(x, z), y0, 50, lr, 0.0)
    assert torch.equal(y_m0, inner_gd(o, x, y0, 50, lr)[0])


@pytest.mark.parametrize("name,kw", [("quadratic", dict(dim=6, kappa=20)), ("lb-scsc", dict(dim=8, mu_y=0.2))])
@pytest.mark.parametrize("D", [1, 7])
def test_itd_through_agd_is_the_exact_unrolled_derivative(name, kw, D):
    p = harness.problem(name, **kw)
    x = torch.randn(p.dim_x, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    lr = 1 / p.constants["L"]
    m = strongly_convex_momentum(lr, p.constants["mu"])

    def F(x_):
        y, z = torch.zeros(p.dim_y, dtype=torch.float64), torch.zeros(p.dim_y, dtype=torch.float64)
        for _ in range(D):
            yn = z - lr * torch.func.grad(p.inner, argnums=1)(x_, z, None)
            z = yn + m * (yn - y)
            y = yn
        return p.outer(x_, y, None)

    truth = torch.func.grad(F)(x)
    out = estimate(p, harness.estimator("itd", inner_steps=D, inner_solver="agd"), x, n=1)
    assert torch.allclose(out.grads[0], truth, rtol=1e-10, atol=1e-12)
    c = {k: float(v.double().mean()) for k, v in out.calls.items()}
    assert c["grad_y_g"] == D and c["hvp"] == D and c["jvp"] == D
    # GD and AGD differ (the option does something)
    gd = estimate(p, harness.estimator("itd", inner_steps=D), x, n=1).grads[0]
    if D > 1:
        assert not torch.allclose(gd, truth)


@pytest.mark.parametrize("name", ["aid-cg", "aid-neumann", "accbio"])
def test_agd_estimators_reach_the_exact_hypergradient(name):
    p = harness.problem("lb-scsc", dim=12, mu_x=0.1, mu_y=0.2)
    x = torch.randn(12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    kw = dict(inner_steps=150, solver_steps=150, inner_solver="agd")
    if name == "aid-neumann":
        kw["solver_steps"] = 600
    g = estimate(p, harness.estimator(name, **kw), x, n=1).grads[0]
    truth = p.hypergradient(x)
    assert float(torch.linalg.norm(g - truth)) < 1e-8 * float(torch.linalg.norm(truth))


def test_accbio_oracle_counts_and_warm_start():
    p = harness.problem("lb-scsc", dim=10)
    e = harness.estimator("accbio", inner_steps=4, solver_steps=6)
    assert e.p["warm_start"] and e.p["inner_solver"] == "agd" and e.outer_momentum == "nesterov"
    o = Oracles(p)
    x = p.x0() + 0.1
    est = e.estimate(o, x, {}, None)
    assert o.snapshot() == {"grad_x_f": 1, "grad_y_f": 1, "grad_y_g": 4, "hvp": 6, "jvp": 1, "exact": 0,
                            "grad_x_g": 0, "f_value": 0, "g_value": 0}
    assert set(est.state) == {"y", "v"}
    # warm start: a second estimate at the same x from the carried state is more accurate
    o.reset()
    est2 = e.estimate(o, x, {}, est.state)
    truth = p.hypergradient(x)
    assert float(torch.linalg.norm(est2.grad - truth)) < float(torch.linalg.norm(est.grad - truth))
    assert o.snapshot()["hvp"] == 6  # AGD on the quadratic: no extra residual call when warm-started


def test_outer_nesterov_momentum_accelerates():
    """Exact hypergradients on lb-scsc: iterations to Phi - Phi* <= 1e-8 drop from ~kappa_x to ~sqrt(kappa_x)."""
    p = harness.problem("lb-scsc", dim=40, mu_x=0.02, mu_y=0.5)
    c = p.constants
    lr = 1 / c["L_phi"]
    e = harness.estimator("exact")
    its = {}
    for mom in ("none", "nesterov"):
        tr = outer_loop(p, e, 3000, lr, momentum=mom, stop=lambda t: t.value_gap[-1] <= 1e-8)
        assert tr.value_gap[-1] <= 1e-8
        its[mom] = tr.iters[-1]
    kx = c["L_phi"] / c["mu_x"]
    assert its["none"] > 0.5 * kx  # GD: ~ kappa log(gap0/eps) / 2
    assert its["nesterov"] < 4 * math.sqrt(kx) * math.log(1e8)
    assert its["nesterov"] * 3 < its["none"]


def test_outer_momentum_none_is_plain_gd_and_auto_follows_the_estimator():
    p = harness.problem("lb-scsc", dim=10)
    e = harness.estimator("aid-cg", inner_steps=5, solver_steps=5, warm_start=True)
    tr = outer_loop(p, e, 5, 0.3)
    x = p.x0()
    st = None
    o = Oracles(p)
    for _ in range(5):
        est = e.estimate(o, x, {}, st)
        x, st = x - 0.3 * est.grad, est.state
    assert torch.equal(tr.x_final, x)
    acc = harness.estimator("accbio")
    a = outer_loop(p, acc, 5, 0.3, momentum="auto")
    n = outer_loop(p, acc, 5, 0.3, momentum="nesterov")
    g = outer_loop(p, acc, 5, 0.3, momentum="none")
    assert torch.equal(a.x_final, n.x_final) and not torch.equal(a.x_final, g.x_final)


def test_bad_inner_solver_is_named():
    with pytest.raises(harness.ParameterError, match="inner_solver"):
        harness.estimator("aid-cg", inner_solver="newton")
    with pytest.raises(harness.ParameterError, match="momentum"):
        outer_loop(harness.problem("lb-scsc", dim=4), harness.estimator("accbio"), 2, 0.1, momentum="heavy")
