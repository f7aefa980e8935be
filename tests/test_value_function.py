"""BOME and F2BA (blobench/estimators/value_function.py) against exact truth, with their oracle counts (issue 15)."""
from __future__ import annotations

import pytest
import torch

from blobench import harness
from blobench.core.oracles import ORACLE_NAMES, Oracles
from blobench.measure.outer import outer_loop
from blobench.measure.sampling import estimate

ZERO = dict.fromkeys(ORACLE_NAMES, 0)


@pytest.fixture(scope="module")
def quad():
    return harness.problem("quadratic", dim=5, kappa=4, rho=1.0)


@pytest.fixture(scope="module")
def logreg():
    return harness.problem("logreg-l2", n_train=30, n_val=30, features=4, classes=2, informative=2, outer_reg=0.1)


def _x(p, seed=3):
    return p.x0() + 0.3 * torch.randn(p.dim_x, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _penalty_gradient(q, x, lam):
    """grad L*_lambda(x), L*_lambda = min_z f + lambda g - lambda min_y g, on the quadratic in closed form
    (f = 1/2 ||y - c||^2 + rho/2 ||x||^2, g = 1/2 y'Ay - y'Bx - b'y)."""
    I = torch.eye(q.dim_y, dtype=torch.float64)
    z_lam = torch.linalg.solve(I + lam * q.A, q.c + lam * (q.B @ x + q.b))
    return q.p["rho"] * x - lam * q.B.T @ (z_lam - q.inner_solution(x))


def _one_call(p, e, x, state=None, seed=0):
    o = Oracles(p)
    noise = e.draw(p, torch.Generator().manual_seed(seed), 1) or {}
    est = e.estimate(o, x, {k: v[0] for k, v in noise.items()}, state)
    return est, o.snapshot()


# -- F2BA --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("solver,K", [("gd", 400), ("agd", 120)])
@pytest.mark.parametrize("lam", [3.0, 300.0])
def test_f2ba_converged_direction_is_the_penalty_gradient(quad, solver, K, lam):
    """At converged inner loops F2BA returns grad L*_lambda (Chen, Ma, Zhang 2023, Lemma 4.1), whose distance to
    grad Phi shrinks like 1/lambda."""
    x = _x(quad)
    est, calls = _one_call(quad, harness.estimator("f2ba", penalty=lam, inner_steps=K, inner_solver=solver), x)
    want = _penalty_gradient(quad, x, lam)
    assert torch.allclose(est.grad, want, atol=1e-9 * lam, rtol=0)
    assert calls == {**ZERO, "grad_y_g": 2 * K, "grad_y_f": K, "grad_x_f": 1, "grad_x_g": 2}
    assert set(est.state) == {"y", "z"}


def test_f2ba_penalty_bias_is_one_over_lambda(quad):
    x = _x(quad)
    truth = quad.hypergradient(x)
    b = [float(torch.linalg.norm(_penalty_gradient(quad, x, lam) - truth)) * lam for lam in (1e2, 1e4)]
    assert b[0] == pytest.approx(b[1], rel=0.05) and b[0] > 1e-3


def test_f2ba_with_gd_is_f2sa_without_penalty_growth(quad):
    """Both run the same two first-order loops (F2SA interleaves them step by step): the directions agree."""
    x = _x(quad)
    a = estimate(quad, harness.estimator("f2ba", penalty=20.0, inner_steps=7), x, n=1).grads[0]
    b = estimate(quad, harness.estimator("f2sa", penalty=20.0, inner_steps=7), x, n=1).grads[0]
    assert torch.allclose(a, b, atol=1e-12, rtol=0)


def test_f2ba_warm_starts_from_its_state(quad):
    """Two 1-step calls from the carried (y, z) equal one 2-step call (gd): the state is the inner iterates."""
    x = _x(quad)
    e1, e2 = harness.estimator("f2ba", penalty=5.0, inner_steps=1), harness.estimator("f2ba", penalty=5.0, inner_steps=2)
    first, _ = _one_call(quad, e1, x)
    second, _ = _one_call(quad, e1, x, first.state)
    both, _ = _one_call(quad, e2, x)
    assert torch.allclose(second.grad, both.grad, atol=1e-13, rtol=0)


@pytest.mark.parametrize("pname,lr", [("quad", 0.5), ("logreg", 1.0)])
def test_f2ba_outer_loop_stops_order_one_over_lambda_from_the_stationary_point(request, pname, lr):
    p = request.getfixturevalue(pname)
    d = [outer_loop(p, harness.estimator("f2ba", penalty=lam, inner_steps=20), 300, lr, eval_every=300).dist[-1]
         for lam in (10.0, 1000.0)]
    assert d[1] < 1e-3 and d[0] / d[1] == pytest.approx(100, rel=0.15)


# -- BOME --------------------------------------------------------------------------------------------------------
def test_bome_direction_and_barrier_match_algorithm_1(quad):
    """One BOME step by hand on the quadratic: y_T by T GD steps, grad q_hat, lambda = max((phi - <grad f, grad q>)
    / ||grad q||^2, 0) with phi = eta ||grad q||^2, the x-block returned and the y-block step taken (Liu et al. 2022, Alg. 1)."""
    x, T, alpha, eta, xi = _x(quad), 6, 0.2, 0.5, 0.1
    y = torch.randn(quad.dim_y, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    e = harness.estimator("bome", inner_steps=T, inner_lr=alpha, eta=eta, joint_lr=xi)
    est, calls = _one_call(quad, e, x, {"y": y})
    gy = lambda y_: quad.A @ y_ - quad.B @ x - quad.b  # noqa: E731
    yT = y.clone()
    for _ in range(T):
        yT = yT - alpha * gy(yT)
    qx, qy = -quad.B.T @ y + quad.B.T @ yT, gy(y)
    fx, fy = quad.p["rho"] * x, y - quad.c
    sq = qx @ qx + qy @ qy
    lam = max(float((eta * sq - (fx @ qx + fy @ qy)) / sq), 0.0)
    assert lam > 0  # the barrier is active at this point
    assert torch.allclose(est.grad, fx + lam * qx, atol=1e-12, rtol=0)
    assert torch.allclose(est.state["y"], y - xi * (fy + lam * qy), atol=1e-12, rtol=0)
    assert float(est.state["lambda"]) == pytest.approx(lam, rel=1e-12)
    assert calls == {**ZERO, "grad_y_g": T + 1, "grad_x_f": 1, "grad_y_f": 1, "grad_x_g": 2}
    _, calls_v = _one_call(quad, harness.estimator("bome", inner_steps=T, phi="value"), x, {"y": y})
    assert calls_v == {**calls, "g_value": 2}


def test_bome_reaches_the_stationary_point_on_logreg(logreg):
    """The paper's joint step on v = (x, y): ||grad Phi||^2 falls by 1e4 and x settles within 0.03 of x*."""
    tr = outer_loop(logreg, harness.estimator("bome", inner_steps=10, joint_lr=0.2), 1000, 0.2, eval_every=100)
    assert not tr.diverged
    assert tr.grad_norm_sq[-1] < 1e-4 * tr.grad_norm_sq[0]
    assert max(tr.dist[-3:]) < 0.03


def test_bome_neighbourhood_shrinks_with_the_step_on_a_quadratic(quad):
    lim = []
    for xi in (0.1, 0.025):
        tr = outer_loop(quad, harness.estimator("bome", inner_steps=15, joint_lr=xi), int(40 / xi), xi, eval_every=1)
        lim.append(max(tr.dist[-10:]))
    assert lim[1] < 0.03 and lim[1] < lim[0] / 2.5
