"""Shared linear solvers and unrolling against scipy / numpy and closed forms."""
import numpy as np
import pytest
import scipy.linalg
import torch

from blobench import harness
from blobench.core.numerics import cg, fixed_point, inner_gd, neumann, unroll_backward
from blobench.core.oracles import Oracles


def spd(n=8, kappa=20.0, seed=0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    lam = np.linspace(1.0, kappa, n)
    H = q @ np.diag(lam) @ q.T
    return 0.5 * (H + H.T), rng.standard_normal(n)


def mv(H):
    Ht = torch.tensor(H)
    return lambda v: Ht @ v


def test_cg_matches_scipy_solve_in_n_steps():
    H, b = spd()
    v = cg(mv(H), torch.tensor(b), steps=8).numpy()
    ref = scipy.linalg.solve(H, b, assume_a="pos")
    assert np.allclose(v, ref, rtol=1e-9, atol=1e-10)


def test_cg_warm_start_from_solution_stays_and_costs_one_extra_matvec():
    H, b = spd()
    ref = scipy.linalg.solve(H, b)
    calls = []
    f = mv(H)
    v = cg(lambda p: (calls.append(1), f(p))[1], torch.tensor(b), steps=3, v0=torch.tensor(ref))
    assert np.allclose(v.numpy(), ref, atol=1e-10) and len(calls) == 4


def test_cg_respects_its_a_norm_bound():
    """||v_N - v*||_A <= 2 ((sqrt k - 1)/(sqrt k + 1))^N ||v*||_A (from v_0 = 0)."""
    H, b = spd(n=30, kappa=100.0)
    ref = scipy.linalg.solve(H, b)
    r = (10 - 1) / (10 + 1)
    anorm = lambda e: float(np.sqrt(e @ H @ e))  # noqa: E731
    for N in (1, 3, 6, 10, 15):
        e = cg(mv(H), torch.tensor(b), steps=N).numpy() - ref
        assert anorm(e) <= 2 * r**N * anorm(ref) * (1 + 1e-12)


@pytest.mark.parametrize("Q", [0, 1, 5, 40])
def test_neumann_equals_its_closed_form(Q):
    H, b = spd(n=6, kappa=5.0)
    eta = 1.0 / 5.0
    M = np.eye(6) - eta * H
    closed = eta * sum(np.linalg.matrix_power(M, i) @ b for i in range(Q + 1))
    assert np.allclose(neumann(mv(H), torch.tensor(b), Q, eta).numpy(), closed, atol=1e-12)
    # error identity: H^-1 b - v_Q = H^-1 (I - eta H)^{Q+1} b
    err = scipy.linalg.solve(H, b) - closed
    assert np.allclose(err, scipy.linalg.solve(H, np.linalg.matrix_power(M, Q + 1) @ b), atol=1e-10)


def test_neumann_with_per_term_matrices_is_the_nested_product():
    H1, b = spd(n=5, kappa=4.0, seed=1)
    H2, _ = spd(n=5, kappa=4.0, seed=2)
    eta = 0.2
    Hs = [H1, H2, H1]
    v = neumann(None, torch.tensor(b), 3, eta, matvec_at=lambda i, p: torch.tensor(Hs[i]) @ p).numpy()
    p, acc = b.copy(), b.copy()
    for Hj in Hs:
        p = p - eta * Hj @ p
        acc = acc + p
    assert np.allclose(v, eta * acc, atol=1e-12)


def test_fixed_point_converges_to_solve_and_equals_shifted_neumann():
    H, b = spd(n=6, kappa=5.0)
    eta = 1.0 / 5.0
    v = fixed_point(mv(H), torch.tensor(b), 400, eta).numpy()
    assert np.allclose(v, scipy.linalg.solve(H, b), atol=1e-10)
    for N in (1, 2, 7):
        assert np.allclose(fixed_point(mv(H), torch.tensor(b), N, eta).numpy(),
                           neumann(mv(H), torch.tensor(b), N - 1, eta).numpy(), atol=1e-12)


def test_broken_solver_is_detected():
    """Negative control for the solver tests: CG on a wrong (shifted) matrix solves the shifted system, as scipy
    does, and that solution is far from the unshifted one the solver tests compare with."""
    H, b = spd()
    Hs = H + 0.5 * np.eye(len(b))
    v = cg(mv(Hs), torch.tensor(b), steps=8).numpy()
    assert np.allclose(v, scipy.linalg.solve(Hs, b, assume_a="pos"), rtol=1e-9, atol=1e-10)
    assert not np.allclose(v, scipy.linalg.solve(H, b), rtol=1e-6, atol=1e-8)


def test_unroll_recompute_mode_equals_stored_trajectory():
    p = harness.problem("quadratic", dim=4, kappa=5)
    o = Oracles(p)
    x = torch.randn(4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y0 = torch.zeros(4, dtype=torch.float64)
    yD, traj = inner_gd(o, x, y0, 9, 0.2, keep=True)
    v = p.outer(x, yD) * 0 + (yD - p.c)
    a = unroll_backward(o, x, traj, y0, v, 0.2, 9)
    b = unroll_backward(o, x, None, y0, v, 0.2, 9)
    assert all(torch.allclose(s, t, atol=1e-13) for s, t in zip(a, b))
    # truncated backprop over all steps is the full backprop
    c = unroll_backward(o, x, traj, y0, v, 0.2, 9, truncate=50)
    assert all(torch.allclose(s, t) for s, t in zip(a, c))


# -- issue 13: one linearisation per (x, y), reused by every HV / JV product ----------------------------

@pytest.mark.parametrize("name,kw", [("quadratic", {"dim": 5, "kappa": 5}), ("logreg-l2", {})])
def test_linearization_equals_the_per_call_oracles_and_counts_each_product(name, kw):
    """hv / jv / hv_jv of one Oracles.linearize equal hvp / jvp / hvp_jvp bit for bit, outside any transform
    (plain autograd) and under vmap (torch.func), and each product counts one HV / JV (building counts none)."""
    from torch.func import vmap

    p = harness.problem(name, **kw)
    o = Oracles(p)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(p.dim_x, generator=g, dtype=torch.float64)
    y = torch.randn(p.dim_y, generator=g, dtype=torch.float64)
    V = torch.randn(3, p.dim_y, generator=g, dtype=torch.float64)
    o.reset()
    lin = o.linearize(x, y, value=True)
    assert o.snapshot()["grad_y_g"] == 1 and o.snapshot()["hvp"] == 0
    assert torch.equal(lin.value, o.grad_y_g(x, y))
    for v in V:
        hv, jv = lin.hv_jv(v)
        assert torch.equal(lin.hv(v), o.hvp(x, y, v)) and torch.equal(hv, lin.hv(v))
        assert torch.equal(lin.jv(v), o.jvp(x, y, v)) and torch.equal(jv, lin.jv(v))
    c = o.snapshot()
    assert c["hvp"] == 3 * 4 and c["jvp"] == 3 * 4  # per v: hv_jv, hv, hvp, hv (+ jv, jvp, jv)

    def per(v, joint):
        lz = o.linearize(x, y, joint=joint)
        return (*lz.hv_jv(v), lz.hv(v), lz.jv(v)) if joint else (lz.hv(v), lz.jv(v))

    ref = torch.stack([o.hvp(x, y, v) for v in V]), torch.stack([o.jvp(x, y, v) for v in V])
    for joint in (False, True):
        out = vmap(lambda v: per(v, joint))(V)
        for got, want in zip(out, (ref[0], ref[1], ref[0], ref[1]) if joint else ref):
            torch.testing.assert_close(got, want, rtol=1e-14, atol=1e-15)


def test_linearized_unrolling_equals_the_stored_trajectory():
    """inner_gd(linearize_from=s) makes the same iterates; unroll_backward(lins=...) the same adjoints."""
    p = harness.problem("logreg-l2")
    o = Oracles(p)
    x = p.x0() + 0.1
    y0 = p.init_inner(x)
    yD, traj = inner_gd(o, x, y0, 7, 0.3, keep=True)
    yL, lins = inner_gd(o, x, y0, 7, 0.3, linearize_from=2)
    assert torch.equal(yD, yL) and len(lins) == 5
    v = torch.ones_like(yD)
    a = unroll_backward(o, x, traj, y0, v, 0.3, 7, truncate=5)
    b = unroll_backward(o, x, None, y0, v, 0.3, 7, truncate=5, lins=lins)
    assert all(torch.equal(s, t) for s, t in zip(a, b))
    o.reset()
    unroll_backward(o, x, None, y0, v, 0.3, 7, truncate=5, lins=lins)
    assert o.snapshot()["hvp"] == 5 and o.snapshot()["jvp"] == 5 and o.snapshot()["grad_y_g"] == 0


def test_linearized_estimators_stay_differentiable_in_x():
    """Inside torch.func.grad (x carries a gradient) the operator takes the torch.func path, so an estimate
    can itself be differentiated: d/dx <aid-cg(x), u> matches central finite differences."""
    p = harness.problem("quadratic", dim=4, kappa=3)
    e = harness.estimator("aid-cg", inner_steps=5, solver_steps=4)
    u = torch.linspace(1, 2, 4, dtype=torch.float64)
    f = lambda x: e.estimate(Oracles(p), x, {}, None).grad @ u  # noqa: E731
    x = torch.linspace(-1, 1, 4, dtype=torch.float64)
    g = torch.func.grad(f)(x)
    h = 1e-6
    fd = torch.stack([(f(x + h * d) - f(x - h * d)) / (2 * h) for d in torch.eye(4, dtype=torch.float64)])
    torch.testing.assert_close(g, fd, rtol=1e-6, atol=1e-8)
