"""SRBA and VRBO (blobench/estimators/recursive_vr.py): exact truth on deterministic and finite-sum problems, the
SARAH recursion and the full-batch refresh checked term by term, and their oracle counts."""
from __future__ import annotations

import pytest
import torch

import blobench.core.errors
from blobench import harness
from blobench.estimators.recursive_vr import SRBA
from blobench.core.oracles import ORACLE_NAMES, Oracles
from blobench.measure.outer import outer_loop
from blobench.measure.sampling import estimate

ZERO = dict.fromkeys(ORACLE_NAMES, 0)


@pytest.fixture(scope="module")
def quad():
    return harness.problem("quadratic", dim=5, kappa=4, rho=1.0)


@pytest.fixture(scope="module")
def fquad():
    """Finite-sum quadratic (n = m = 20) whose population problem is ``quad``."""
    return harness.problem("quadratic", dim=5, kappa=4, rho=1.0, noise=0.5, n_samples=20)


@pytest.fixture(scope="module")
def fquad2():
    """kappa = 2: VRBO's (Q+1)-term Neumann series has a small truncation bias at Q = 25 (0.5^25)."""
    return harness.problem("quadratic", dim=5, kappa=2, rho=1.0, noise=0.5, n_samples=20)


@pytest.fixture(scope="module")
def logreg():
    return harness.problem("logreg-l2", n_train=30, n_val=30, features=4, classes=2, informative=2, outer_reg=0.1)


def _x(p, seed=3):
    return p.x0() + 0.3 * torch.randn(p.dim_x, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def neumann_stationary_point(p, Q: int, eta: float) -> torch.Tensor:
    """The zero of VRBO's full-batch direction on a quadratic: rho x + B^T N (y*(x) - c) = 0 with the truncated
    Neumann series N = eta sum_{i=0}^{Q} (I - eta A)^i (exact A^-1 as Q -> infinity)."""
    A, B, b, c, rho = p.A, p.B, p.b, p.c, p.p["rho"]
    M = torch.eye(p.dim_y, dtype=torch.float64) - eta * A
    N = eta * sum(torch.linalg.matrix_power(M, i) for i in range(Q + 1))
    Ai = torch.linalg.inv(A)
    H = rho * torch.eye(p.dim_x, dtype=torch.float64) + B.T @ N @ Ai @ B
    return torch.linalg.solve(H, -B.T @ N @ (Ai @ b - c))


def _steps(p, e, x, T, seed=0, states=False):
    """T calls of ``e`` at a fixed x, state carried; (estimates, counts per call, states after each call, noise)."""
    o = Oracles(p)
    noise = e.draw(p, torch.Generator().manual_seed(seed), T) or {}
    st, out = None, []
    for t in range(T):
        o.reset()
        nz = {k: v[t] for k, v in noise.items()}
        est = e.estimate(o, x, nz, st)
        out.append((est.grad, o.snapshot(), st, est.state, nz))
        st = est.state
    return out


def _population_directions(twin, x, y, v):
    """SOBA's exact (population) directions at (x, y, v), on the finite sum's deterministic twin."""
    o = Oracles(twin)
    gx, gy = o.grad_f(x, y)
    hv, jv = o.hvp_jvp(x, y, v)
    return o.grad_y_g(x, y), hv + gy, gx + jv


# -- (a) deterministic problems: the outer loop reaches the known stationary point --------------------------------
@pytest.mark.parametrize("pname,lr,T", [("quad", 0.3, 300), ("logreg", 2.0, 300)])
def test_srba_deterministic_outer_loop_reaches_stationary_point(request, pname, lr, T):
    p = request.getfixturevalue(pname)
    tr = outer_loop(p, harness.estimator("srba"), T, lr, eval_every=T)
    assert not tr.diverged and tr.grad_norm_sq[-1] < 1e-20 and tr.dist[-1] < 1e-9, (tr.grad_norm_sq, tr.dist)


def test_vrbo_deterministic_quadratic_reaches_neumann_point_and_stationary_point(quad):
    Q = 60
    tr = outer_loop(quad, harness.estimator("vrbo", solver_steps=Q, inner_steps=2), 150, 0.3, eval_every=150)
    xq = neumann_stationary_point(quad, Q, 1.0 / quad.constants["L"])
    assert float(torch.linalg.norm(tr.x_final - xq)) < 1e-11
    assert tr.grad_norm_sq[-1] < 1e-14 and tr.dist[-1] < 1e-7, (tr.grad_norm_sq, tr.dist)


def test_vrbo_deterministic_logreg_reaches_stationary_point(logreg):
    tr = outer_loop(logreg, harness.estimator("vrbo", solver_steps=150, inner_steps=3), 150, 2.0, eval_every=150)
    assert not tr.diverged and tr.grad_norm_sq[-1] < 1e-13 and tr.dist[-1] < 1e-5, (tr.grad_norm_sq, tr.dist)


# -- (b) finite sums: variance reduction (constant steps; SOBA / stocBiO stall at a noise floor) ------------------
def test_srba_finite_sum_converges_where_soba_stalls(fquad):
    kw, lr, T = {"inner_lr": 0.1, "solver_lr": 0.1}, 0.1, 500
    tr = outer_loop(fquad, harness.estimator("srba", **kw), T, lr, eval_every=10)
    assert not tr.diverged and tr.grad_norm_sq[-1] < 1e-14 and tr.dist[-1] < 1e-7, tr.grad_norm_sq[-5:]
    soba = outer_loop(fquad, harness.estimator("soba", **kw), T, lr, eval_every=10)
    floor = sum(soba.grad_norm_sq[len(soba.grad_norm_sq) // 2:]) / (len(soba.grad_norm_sq) - len(soba.grad_norm_sq) // 2)
    assert floor > 1e-3


def test_srba_finite_sum_logreg_converges():
    p = harness.problem("logreg-l2", n_train=30, n_val=30, features=4, classes=2, informative=2, outer_reg=0.1,
                        stochastic=True)
    tr = outer_loop(p, harness.estimator("srba", inner_lr=0.3, solver_lr=0.3), 900, 0.5, eval_every=900)
    assert not tr.diverged and tr.grad_norm_sq[-1] < 1e-14 and tr.dist[-1] < 1e-6, (tr.grad_norm_sq, tr.dist)


def test_vrbo_finite_sum_converges_where_stocbio_stalls(fquad2):
    Q, lr, T = 25, 0.2, 150
    tr = outer_loop(fquad2, harness.estimator("vrbo", solver_steps=Q, inner_steps=2, inner_lr=lr), T, lr, eval_every=T)
    xq = neumann_stationary_point(fquad2, Q, 1.0 / fquad2.constants["L"])
    assert float(torch.linalg.norm(tr.x_final - xq)) < 1e-8
    assert tr.grad_norm_sq[-1] < 1e-14 and tr.dist[-1] < 1e-7, (tr.grad_norm_sq, tr.dist)
    sb = outer_loop(fquad2, harness.estimator("stocbio", solver_steps=Q, inner_steps=2, inner_lr=lr), 80, lr, eval_every=4)
    assert min(sb.grad_norm_sq[len(sb.grad_norm_sq) // 2:]) > 1e-4


# -- the mechanism, term by term -------------------------------------------------------------------------------------
def test_srba_step_is_the_sarah_recursion_and_refresh_is_the_full_batch(fquad, quad):
    """Between refreshes d_t - d_{t-1} = h_i(z_t) - h_i(z_{t-1}) on the drawn sample, z = (x, y, v) with a moving x;
    at t = 0 mod q, d_t is the exact (population) direction; and y, v move by -rho d."""
    q, rho = 4, 0.1
    e = harness.estimator("srba", inner_lr=rho, solver_lr=rho, period=q)
    o = Oracles(fquad)
    xs = [_x(fquad, s) for s in range(9)]
    noise = e.draw(fquad, torch.Generator().manual_seed(2), len(xs))
    y, v = fquad.init_inner(xs[0]), torch.zeros(fquad.dim_y, dtype=torch.float64)
    st = None
    for t, x in enumerate(xs):
        nz = {k: val[t] for k, val in noise.items()}
        prev, est = st, e.estimate(o, x, nz, st)
        st = est.state
        if t % q == 0:
            want = _population_directions(quad, x, y, v)
        else:  # the previous point is the test's own record (x_old, y_old, v_old), not the estimator's
            b = {k[len("sample/"):]: val for k, val in nz.items()}
            new = SRBA.directions(o, x, y, v, b)
            old = SRBA.directions(o, x_old, y_old, v_old, b)  # noqa: F821 (set at the end of the previous step)
            want = tuple(prev[k] + a - c for k, a, c in zip(("d_y", "d_v", "d_x"), new, old))
        for k, w in zip(("d_y", "d_v", "d_x"), want):
            assert torch.allclose(st[k], w, atol=1e-12, rtol=0), (t, k)
        assert torch.equal(est.grad, st["d_x"])
        assert torch.allclose(st["y"], y - rho * st["d_y"], atol=1e-15) and torch.allclose(st["v"], v - rho * st["d_v"], atol=1e-15)
        x_old, y_old, v_old, y, v = x, y, v, st["y"], st["v"]  # noqa: F841 (read in the next step)


def test_vrbo_inner_loop_is_the_spider_recursion_and_refresh_is_the_full_batch(fquad2):
    """Call k > 0 runs D recursive steps from the last evaluated point (the first carries the change of x), then
    refreshes u, w to the full-batch values at (x_k, y_k) when k = 0 mod q."""
    Q, D, q, beta = 6, 2, 3, 0.2
    e = harness.estimator("vrbo", solver_steps=Q, inner_steps=D, inner_lr=beta, period=q)
    o = Oracles(fquad2)
    gen = torch.Generator().manual_seed(4)
    xs = [_x(fquad2, s) for s in range(7)]  # a moving x, so the recursion's first step sees x change
    noise = e.draw(fquad2, gen, len(xs))
    st = None
    for k, x in enumerate(xs):
        nz = {key: val[k] for key, val in noise.items()}
        est = e.estimate(o, x, nz, st)
        if st is None:
            want_y, (want_u, want_w) = fquad2.init_inner(x), e.full(o, x, fquad2.init_inner(x))
            ze = (x, want_y)
        else:
            y, u, w, ze = st["y"], st["u"], st["w"], (st["x_eval"], st["y_eval"])
            for t in range(D):
                nu, nw = e.small(o, x, y, nz, t)
                ou, ow = e.small(o, *ze, nz, t)
                u, w, ze = u + nu - ou, w + nw - ow, (x, y)
                y = y - beta * u
            want_y, want_u, want_w = y, u, w
            if k % q == 0:
                want_u, want_w = e.full(o, x, y)
                ze = (x, y)
                exact = Oracles(harness.problem("quadratic", dim=5, kappa=2, rho=1.0))
                assert torch.allclose(want_u, exact.grad_y_g(x, y), atol=1e-12)
        st = est.state
        assert torch.allclose(st["y"], want_y, atol=1e-12) and torch.allclose(st["u"], want_u, atol=1e-12)
        assert torch.allclose(st["w"], want_w, atol=1e-12) and torch.equal(est.grad, st["w"])
        assert torch.equal(st["x_eval"], ze[0]) and torch.allclose(st["y_eval"], ze[1], atol=1e-12)


def _full_batch_noise(p, D: int, Q: int) -> dict:
    """One VRBO call's sample sets, every minibatch the whole finite sum (the exact-batch recursion)."""
    n, m = p.finite_sum
    b = p.batch_at(torch.arange(n), torch.arange(m))
    return {f"{role}/{key}": v.unsqueeze(0).expand(k, *v.shape).clone()
            for role, k in (("inner", D), ("outer", D), ("hess", D * Q)) for key, v in b.items()}


def _vrbo_xs(p, e, x0, T: int, lr: float, noise=None) -> torch.Tensor:
    o, x, st, xs = Oracles(p), x0.clone(), None, []
    for _ in range(T):
        est = e.estimate(o, x, noise or {}, st)
        x, st = x - lr * est.grad, est.state
        xs.append(x)
    return torch.stack(xs)


@pytest.mark.parametrize("q", [1, 3])
def test_vrbo_deterministic_path_is_the_exact_batch_recursion(fquad2, q):
    """Issue 29: the deterministic fast path returns grad-hat f at y~_{D-1} between refreshes and at y~_D at a
    refresh (k = 0 mod q), as the finite-sum recursion does when every minibatch is the whole sum."""
    D, Q, T, lr = 2, 6, 12, 0.3
    twin = harness.problem("quadratic", dim=5, kappa=2, rho=1.0)  # fquad2's population problem
    x0 = twin.x0() + 0.3
    kw = {"solver_steps": Q, "inner_steps": D, "period": q}
    det = _vrbo_xs(twin, harness.estimator("vrbo", **kw), x0, T, lr)
    rec = _vrbo_xs(fquad2, harness.estimator("vrbo", **kw), x0, T, lr, _full_batch_noise(fquad2, D, Q))
    scale = float(torch.linalg.norm(rec, dim=1).max())
    assert float(torch.linalg.norm(det - rec, dim=1).max()) <= 1e-12 * scale
    if q > 1:  # negative control: the old path (y~_D at every call, i.e. q = 1) is far from the q = 3 recursion
        old = _vrbo_xs(twin, harness.estimator("vrbo", **{**kw, "period": 1}), x0, T, lr)
        assert float(torch.linalg.norm(old - rec, dim=1).max()) > 1e-3 * scale


def test_vrbo_deterministic_default_period_is_one(quad):
    """A deterministic problem counts as n = m = 1: the default q is 1 (every call refreshes at y~_D)."""
    assert harness.estimator("vrbo", inner_steps=3).period(Oracles(quad)) == 1
    assert harness.estimator("vrbo", inner_steps=1, batch_size=4).period(Oracles(quad)) == 1


def test_vrbo_full_batch_direction_is_the_truncated_neumann_hypergradient(fquad2):
    """grad-hat f on the whole finite sum at y*(x): rho x + B^T N (y* - c), N = eta sum_{i<=Q} (I - eta A)^i."""
    Q = 7
    e = harness.estimator("vrbo", solver_steps=Q)
    x = _x(fquad2)
    y = fquad2.inner_solution(x)
    u, w = e.full(Oracles(fquad2), x, y)
    eta = 1.0 / fquad2.constants["L"]
    M = torch.eye(5, dtype=torch.float64) - eta * fquad2.A
    N = eta * sum(torch.linalg.matrix_power(M, i) for i in range(Q + 1))
    assert torch.allclose(w, x + fquad2.B.T @ N @ (y - fquad2.c), atol=1e-12)
    assert float(torch.linalg.norm(u)) < 1e-12


# -- (c) oracle counts --------------------------------------------------------------------------------------------
def test_srba_counts_per_step_and_at_refresh(fquad):
    n, m = fquad.finite_sum
    q = 5
    runs = _steps(fquad, harness.estimator("srba", period=q), _x(fquad), 11)
    full = {**ZERO, "grad_x_f": m, "grad_y_f": m, "grad_y_g": n, "hvp": n, "jvp": n}
    step = {**ZERO, "grad_x_f": 2, "grad_y_f": 2, "grad_y_g": 2, "hvp": 2, "jvp": 2}
    for t, (_, calls, *_rest) in enumerate(runs):
        assert calls == (full if t % q == 0 else step), t


def test_srba_refresh_counts_chunks_of_batch_size(fquad):
    n, m = fquad.finite_sum
    runs = _steps(fquad, harness.estimator("srba", batch_size=3, period=2), _x(fquad), 3)
    c = -(-n // 3)
    assert runs[0][1] == {**ZERO, "grad_x_f": -(-m // 3), "grad_y_f": -(-m // 3), "grad_y_g": c, "hvp": c, "jvp": c}
    assert runs[1][1] == {**ZERO, "grad_x_f": 2, "grad_y_f": 2, "grad_y_g": 2, "hvp": 2, "jvp": 2}
    assert runs[2][1] == runs[0][1]
    assert harness.estimator("srba").period(Oracles(fquad)) == n + m
    assert harness.estimator("srba", batch_size=4).period(Oracles(fquad)) == (n + m) // 4


def test_srba_first_call_counts_through_harness_estimate(fquad, quad):
    n, m = fquad.finite_sum
    c = estimate(fquad, harness.estimator("srba"), _x(fquad), n=3).mean_calls()
    assert c == {**ZERO, "grad_x_f": m, "grad_y_f": m, "grad_y_g": n, "hvp": n, "jvp": n}
    c = estimate(quad, harness.estimator("srba"), _x(quad), n=2).mean_calls()
    assert c == {**ZERO, "grad_x_f": 1, "grad_y_f": 1, "grad_y_g": 1, "hvp": 1, "jvp": 1}
    one = _steps(quad, harness.estimator("srba"), _x(quad), 3)
    assert all(r[1] == {**ZERO, "grad_x_f": 1, "grad_y_f": 1, "grad_y_g": 1, "hvp": 1, "jvp": 1} for r in one)


def test_vrbo_counts_per_call_and_at_refresh(fquad):
    n, m = fquad.finite_sum
    Q, D, q = 4, 3, 3
    runs = _steps(fquad, harness.estimator("vrbo", solver_steps=Q, inner_steps=D, period=q), _x(fquad), 7)
    full = {**ZERO, "grad_x_f": m, "grad_y_f": m, "grad_y_g": n, "hvp": Q * n, "jvp": n}
    inner = {**ZERO, "grad_x_f": 2 * D, "grad_y_f": 2 * D, "grad_y_g": 2 * D, "hvp": 2 * D * Q, "jvp": 2 * D}
    assert runs[0][1] == full  # the first call: the large batch at (x_0, y_0), no inner loop
    for k in range(1, 7):
        want = {key: inner[key] + (full[key] if k % q == 0 else 0) for key in ORACLE_NAMES}
        assert runs[k][1] == want, k
    assert harness.estimator("vrbo", inner_steps=D).period(Oracles(fquad)) == round((n + m) / (2 * D))


def test_vrbo_counts_deterministic_and_through_harness_estimate(quad, fquad):
    Q, D = 5, 3
    e = harness.estimator("vrbo", solver_steps=Q, inner_steps=D)
    runs = _steps(quad, e, _x(quad), 3)
    hyper = {"grad_x_f": 1, "grad_y_f": 1, "hvp": Q, "jvp": 1}
    assert runs[0][1] == {**ZERO, **hyper}
    assert runs[1][1] == runs[2][1] == {**ZERO, **hyper, "grad_y_g": D}
    n, m = fquad.finite_sum
    c = estimate(fquad, e, _x(fquad), n=2).mean_calls()
    assert c == {**ZERO, "grad_x_f": m, "grad_y_f": m, "grad_y_g": n, "hvp": Q * n, "jvp": n}


@pytest.mark.parametrize("name", ["srba", "vrbo"])
def test_rejects_stochastic_problem_without_finite_sum(name):
    p = harness.problem("quadratic", dim=3, noise=0.3)
    with pytest.raises(blobench.core.errors.ParameterError, match="finite-sum"):
        harness.estimator(name).draw(p, torch.Generator(), 2)



# -- blobench/claims/yang2021.py: vrbo-sample-complexity-vs-stocbio's helpers ---------------------------------------
def test_vr_schedule_full_pass_is_the_large_batch_and_stocbio_batch_fits_the_sum():
    import math

    from blobench.claims.ji2021 import neumann_steps
    from blobench.claims.yang2021 import VR_KAPPA, vr_grid, vr_schedule

    s = vr_schedule(0.01)
    assert (s["vrbo_batch"], s["n"], s["stocbio_batch"], s["stocbio_capped"]) == (10, 400, 200, False)
    assert vr_schedule(0.16)["vrbo_batch"] == 3 and vr_schedule(0.16)["n"] == 36
    for e in vr_grid("full")[0]:
        s = vr_schedule(e)
        assert s["n"] % s["vrbo_batch"] == 0 and s["n"] >= 4 / e
        assert s["stocbio_batch"] == math.ceil(2 / e) <= s["n"] and not s["stocbio_capped"]
        assert s["Q"] == neumann_steps(VR_KAPPA, e)
    big = vr_schedule(0.0004)  # S_2 = 50, n = 10000 >= ceil(2 / eps) = 5000
    assert big["vrbo_batch"] == 50 and big["n"] == 10000 and big["stocbio_batch"] == 5000


def test_vr_problem_finite_sum_exact_grad_phi_is_problem_hypergradient():
    """The finite sum's own y*(x) and grad Phi (full-pass averages, the Hessian solved exactly) are the population's."""
    from blobench.estimators.recursive_vr import Lin, full_grad_f
    from blobench.claims.yang2021 import vr_problem

    p = vr_problem(36)
    o = Oracles(p)
    x = _x(p)
    y = p.inner_solution(x)
    lin = Lin.full(o, x, y, 6)
    assert torch.linalg.norm(lin.value) < 1e-12  # grad_y of the finite sum's g vanishes at the population's y*(x)
    H = torch.stack([lin.hv(e) for e in torch.eye(p.dim_y, dtype=torch.float64)], 1)
    gx, gy = full_grad_f(o, x, y, 6)
    g = gx - lin.jv(torch.linalg.solve(H, gy))
    assert torch.allclose(g, p.hypergradient(x), atol=1e-12, rtol=0)


def test_vrbo_samples_to_eps_counts_and_running_mean_stop():
    """K is the first running average of ||grad Phi||^2 <= eps (recomputed from the outer loop), and the samples are
    the docstring's VRBO counts over the K - 1 calls that produced x_0 .. x_{K-1}, times the batch size."""
    import numpy as np
    from blobench.claims.ji2021 import kappa_outer_lr
    from blobench.claims.yang2021 import vr_problem, vrbo_samples_to_eps

    b, n, Q, D, eps = 3, 36, 2, 3, 0.16
    p = vr_problem(n)
    lr = kappa_outer_lr(p)
    r = vrbo_samples_to_eps(p, eps, b, 1, lr, Q, inner_steps=D)
    assert r["reached"] and r["outer_cap"] == 32
    est = harness.estimator("vrbo", inner_steps=D, solver_steps=Q, batch_size=b)
    tr = outer_loop(p, est, r["outer_cap"], lr, seed=0)
    run = np.cumsum(tr.grad_norm_sq) / np.arange(1, len(tr.grad_norm_sq) + 1)
    K = int(np.nonzero(run <= eps)[0][0]) + 1
    assert r["K"] == K > 2
    q = est.period(Oracles(p))
    chunks = n // b
    full = {"Gc_f": 2 * chunks, "Gc_g": chunks, "JV": chunks, "HV": Q * chunks}
    inner = {"Gc_f": 4 * D, "Gc_g": 2 * D, "JV": 2 * D, "HV": 2 * D * Q}
    for kind in full:
        calls = full[kind] + sum(inner[kind] + (full[kind] if k % q == 0 else 0) for k in range(1, K - 1))
        assert r[f"samples_{kind}"] == calls * b, kind
    assert r["samples_total"] == sum(r[f"samples_{k}"] for k in full)
    miss = vrbo_samples_to_eps(p, 1e-9, b, 1, lr, Q, inner_steps=D, steps_over_eps=1e-8)
    assert not miss["reached"] and "samples_total" not in miss and miss["final_running_avg"] > 1e-9


def test_vr_verdict_rule():
    """The rule on synthetic rows: eps^-1.5 log against eps^-2 log holds; equal exponents, an exponent above
    Theorem 2's order, or one unreached eps fail."""
    import math
    from blobench.claims.yang2021 import vr_verdict

    grid = [0.16, 0.08, 0.04, 0.02, 0.01]
    rows = lambda f, miss=None: [{"eps": e, "reached": e != miss, "final_running_avg": 0.0, "K": 1,  # noqa: E731
                                  **({} if e == miss else {"samples_total": f(e)})} for e in grid]
    vr = rows(lambda e: 3 * e**-1.5 * math.log(1 / e) * (1 + 0.01 * (e > 0.05)))
    sb = rows(lambda e: 5 * e**-2 * math.log(1 / e) * (1 - 0.01 * (e > 0.05)))
    v = vr_verdict(vr, sb, {})
    assert v.holds and v.evidence["below"] and v.evidence["within_order"]
    assert not vr_verdict(sb, sb, {}).holds
    w = dict(zip(grid, [1.3, 0.7, 1.3, 0.7, 1.3]))  # the orders' exponents, noisy: intervals [1.30, 2.36], [1.80, 2.86]
    noisy = vr_verdict(rows(lambda e: 3 * e**-1.5 * math.log(1 / e) * w[e]),
                       rows(lambda e: 5 * e**-2 * math.log(1 / e) * w[grid[4 - grid.index(e)]]), {})
    assert noisy.evidence["within_order"] and not noisy.evidence["below"] and not noisy.holds  # overlap: not shown
    assert not vr_verdict(rows(lambda e: e**-1.9), rows(lambda e: e**-2.6), {}).holds  # separated, above the order
    assert not vr_verdict(rows(lambda e: e**-1.5, miss=0.01), sb, {}).holds
    assert not vr_verdict(vr, rows(lambda e: e**-2, miss=0.16), {}).holds
