"""Ji et al. 2021 estimators (itd-truncated, aid-neumann, aid-fp, warm starts, stocbio, stocbio-code, bsa)
against the exact float64 hypergradient of `quadratic`, closed forms, autograd, and oracle-count formulas."""
import numpy as np
import pytest
import torch

from blobench import harness
from blobench.core.errors import ParameterError
from blobench.measure.metrics import mean_test
from blobench.core.oracles import Oracles
from blobench.measure.outer import outer_loop


@pytest.fixture(scope="module")
def quad():
    return harness.problem("quadratic", dim=5, kappa=4)


@pytest.fixture(scope="module")
def squad():
    return harness.problem("quadratic", dim=4, kappa=4, noise=0.3)


def x_of(p, seed=3):
    return torch.randn(p.dim_x, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def one(p, name, x, n=1, seed=0, **kw):
    return harness.estimate(p, harness.estimator(name, **kw), x, n=n, seed=seed)


@pytest.mark.parametrize("name,kw", [
    ("itd-truncated", dict(inner_steps=200, truncate=200)),
    ("aid-neumann", dict(inner_steps=200, solver_steps=150)),
    ("aid-fp", dict(inner_steps=200, solver_steps=150)),
    ("stocbio", dict(inner_steps=200, solver_steps=150)),
])
def test_converges_to_exact(quad, name, kw):
    x = x_of(quad)
    assert float(torch.linalg.norm(one(quad, name, x, **kw).grads[0] - quad.hypergradient(x))) < 1e-9


def test_itd_truncated_equals_autograd_through_last_k_steps(quad):
    """Independent implementation: torch.autograd with y_{D-K} detached."""
    D, K, lr = 12, 4, 1.0 / quad.constants["L"]
    x = x_of(quad).requires_grad_(True)
    y = torch.zeros(quad.dim_y, dtype=torch.float64)
    for k in range(D):
        if k == D - K:
            y = y.detach()
        y = y - lr * (quad.A @ y - quad.B @ x - quad.b)
    (g,) = torch.autograd.grad(quad.outer(x, y), x)
    ours = one(quad, "itd-truncated", x.detach(), inner_steps=D, truncate=K).grads[0]
    assert torch.allclose(ours, g, atol=1e-12)
    full = one(quad, "itd", x.detach(), inner_steps=D).grads[0]
    assert float(torch.linalg.norm(ours - full)) > 1e-3  # truncation is not a no-op


def test_aid_neumann_is_the_neumann_closed_form(quad):
    x, Q, eta = x_of(quad), 7, 0.5 / quad.constants["L"]
    out = one(quad, "aid-neumann", x, inner_steps=400, solver_steps=Q, solver_lr=eta).grads[0]
    b = (quad.inner_solution(x) - quad.c).numpy()
    M = np.eye(quad.dim_y) - eta * quad.A.numpy()
    v = eta * sum(np.linalg.matrix_power(M, i) @ b for i in range(Q + 1))
    ref = quad.p["rho"] * x + quad.B.T @ torch.tensor(v)
    assert torch.allclose(out, ref, atol=1e-10)


def np_quad(p):
    """The quadratic's matrices as numpy arrays (A = Q diag(lam) Q^T)."""
    return {k: getattr(p, k).numpy() for k in ("A", "B", "b", "c", "Q", "lam")}


def np_gd(m, x, D, lr):
    """D deterministic GD steps on g = 1/2 y'Ay - y'Bx - b'y from y_0 = 0, in numpy."""
    y = np.zeros(m["A"].shape[0])
    for _ in range(D):
        y = y - lr * (m["A"] @ y - m["B"] @ x - m["b"])
    return y


def test_stocbio_on_deterministic_problem_is_the_neumann_closed_form(quad):
    """Deterministic problem: stocBiO = rho x + B^T eta sum_{i<=Q} (I - eta A)^i (y_D - c), y_D from D GD steps,
    all computed in numpy from the problem's matrices (no blobench.core.numerics on the reference side)."""
    x, D, Q = x_of(quad), 9, 6
    lr = eta = 1.0 / quad.constants["L"]
    a = one(quad, "stocbio", x, inner_steps=D, solver_steps=Q).grads[0].numpy()
    m, xn = np_quad(quad), x.numpy()
    yD = np_gd(m, xn, D, lr)
    M = np.eye(quad.dim_y) - eta * m["A"]
    v = eta * sum(np.linalg.matrix_power(M, i) @ (yD - m["c"]) for i in range(Q + 1))
    assert np.allclose(a, quad.p["rho"] * xn + m["B"].T @ v, rtol=1e-12, atol=1e-13)


def np_stochastic_estimate(p, nz, x, D, lr, eta, hess_factors):
    """One stocBiO / BSA draw on the stochastic quadratic, in numpy from the drawn batches (blobench/problems/quadratic.py):
    grad_y g(x, y; xi) = Q diag(lam w) Q^T y - B (x (1 + t)) - (b + e_b), grad_y f = y - c - e_c, grad_x f = rho x,
    grad2_xy g v = -(1 + t) * B^T v. Returns (estimate, v_0, y_D, hessians H_j) with v = apply(H_j's, v_0)."""
    m, g = np_quad(p), {k: v.numpy() for k, v in nz.items()}
    H = lambda w: m["Q"] @ np.diag(m["lam"] * w) @ m["Q"].T  # noqa: E731
    y = np.zeros(p.dim_y)
    for k in range(D):
        y = y - lr * (H(g["inner/w"][k]) @ y - m["B"] @ (x * (1 + g["inner/t"][k])) - (m["b"] + g["inner/eb"][k]))
    v0 = y - m["c"] - g["outer/ec"]
    Hs = [H(w) for w in g["hess/w"]] if "hess/w" in g else []
    v = hess_factors(Hs, v0)
    return p.p["rho"] * x + (1 + g["jac/t"]) * (m["B"].T @ v)


def test_stocbio_each_draw_is_the_nested_product_of_its_hessian_batches(squad):
    """Per draw: v = eta sum_{i=0}^{Q} prod_{j<i} (I - eta H_j) v_0 with the draw's own Q Hessian batches."""
    x, D, Q = x_of(squad), 4, 5
    lr = eta = 1.0 / squad.constants["L"]
    e = harness.estimator("stocbio", inner_steps=D, solver_steps=Q, batch_size=2)
    out = harness.estimate(squad, e, x, n=6, seed=4)
    noise = e.draw(squad, torch.Generator().manual_seed(4), 6)

    def series(Hs, v0):
        assert len(Hs) == Q
        p, acc = v0, v0
        for Hj in Hs:
            p = p - eta * Hj @ p
            acc = acc + p
        return eta * acc

    for i in range(6):
        ref = np_stochastic_estimate(squad, {k: v[i] for k, v in noise.items()}, x.numpy(), D, lr, eta, series)
        assert np.allclose(out.grads[i].numpy(), ref, rtol=1e-11, atol=1e-12), i


def np_aid(quad, x, y0, D, N, eta, solver, v0=None):
    """AID on the deterministic quadratic in numpy: y_D by D GD steps (alpha = 1/L) from y0, b = y_D - c, then
    fixed point v_{k+1} = v_k - eta (A v_k - b) from v0 (= M^N v0 + eta sum_{i<N} M^i b, M = I - eta A) or the
    Neumann series eta sum_{i<=N} M^i b. Returns (estimate rho x + B^T v, y_D, v)."""
    m = {k: getattr(quad, k).numpy() for k in ("A", "B", "b", "c")}
    xn, lr = x.numpy(), 1.0 / quad.constants["L"]
    y = np.array(y0, dtype=float)
    for _ in range(D):
        y = y - lr * (m["A"] @ y - m["B"] @ xn - m["b"])
    b = y - m["c"]
    M = np.eye(len(b)) - eta * m["A"]
    if solver == "fp":
        v = np.linalg.matrix_power(M, N) @ (np.zeros_like(b) if v0 is None else v0)
        v = v + eta * sum((np.linalg.matrix_power(M, i) @ b for i in range(N)), np.zeros_like(b))
    else:
        v = eta * sum(np.linalg.matrix_power(M, i) @ b for i in range(N + 1))
    return quad.p["rho"] * xn + m["B"].T @ v, y, v


@pytest.mark.parametrize("D,N", [(0, 1), (3, 4), (8, 2)])
def test_aid_fp_at_finite_steps_is_its_closed_form(quad, D, N):
    """aid-fp with D inner steps and N fixed-point steps from v = 0: eta sum_{i<N} (I - eta A)^i (y_D - c)."""
    x, eta = x_of(quad), 0.7 / quad.constants["L"]
    out = one(quad, "aid-fp", x, inner_steps=D, solver_steps=N, solver_lr=eta).grads[0].numpy()
    ref, _, _ = np_aid(quad, x, np.zeros(quad.dim_y), D, N, eta, "fp")
    assert np.allclose(out, ref, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("name", ["aid-fp", "aid-neumann"])
def test_warm_started_aid_fp_and_neumann_closed_form(quad, name):
    """Warm start (Ji et al. 2021, Alg. 1): y_0 = the previous y_D, and for FP v starts at the previous v (the
    Neumann series has no start point: v0 is ignored). The returned state is (y_D, v_N)."""
    x, D, N, eta = x_of(quad), 2, 3, 0.8 / quad.constants["L"]
    rng = np.random.default_rng(5)
    y_prev, v_prev = rng.standard_normal(quad.dim_y), rng.standard_normal(quad.dim_y)
    e = harness.estimator(name, inner_steps=D, solver_steps=N, solver_lr=eta, warm_start=True)
    out = e.estimate(Oracles(quad), x, {}, {"y": torch.tensor(y_prev), "v": torch.tensor(v_prev)})
    ref, yD, v = np_aid(quad, x, y_prev, D, N, eta, "fp" if name == "aid-fp" else "ns", v0=v_prev)
    assert np.allclose(out.grad.numpy(), ref, rtol=1e-12, atol=1e-13)
    assert np.allclose(out.state["y"].numpy(), yD, atol=1e-13) and np.allclose(out.state["v"].numpy(), v, atol=1e-13)
    cold, _, _ = np_aid(quad, x, np.zeros(quad.dim_y), D, N, eta, "fp" if name == "aid-fp" else "ns")
    assert np.linalg.norm(ref - cold) > 1e-3  # the warm start matters at these budgets


def test_warm_started_stocbio_carries_y_through_the_outer_loop(quad):
    """stocbio (warm_start default true) in outer_loop: y_0 of step t is y_D of step t-1; the whole trajectory
    recomputed in numpy on the deterministic quadratic, where stocbio's v is the Neumann series at y_D."""
    x0, D, Q, T = x_of(quad), 1, 3, 6
    eta = 1.0 / quad.constants["L"]
    beta = 0.5
    e = harness.estimator("stocbio", inner_steps=D, solver_steps=Q)
    tr = outer_loop(quad, e, T, beta, x0=x0)
    x, y = x0.clone(), np.zeros(quad.dim_y)
    for _ in range(T):
        g, y, _ = np_aid(quad, x, y, D, Q, eta, "ns")
        x = x - beta * torch.tensor(g)
    assert torch.allclose(tr.x_final, x, rtol=1e-12, atol=1e-13)
    cold = outer_loop(quad, harness.estimator("stocbio", inner_steps=D, solver_steps=Q, warm_start=False), T, beta,
                      x0=x0)
    assert float(torch.linalg.norm(cold.x_final - x)) > 1e-3
    st = e.estimate(Oracles(quad), x0, {}, {"y": torch.ones(quad.dim_y, dtype=torch.float64)})
    ref, yD, _ = np_aid(quad, x0, np.ones(quad.dim_y), D, Q, eta, "ns")
    assert np.allclose(st.grad.numpy(), ref, atol=1e-13) and set(st.state) == {"y"}
    assert np.allclose(st.state["y"].numpy(), yD, atol=1e-13)


def test_stocbio_code_closed_form(quad):
    """v = eta p_Q + sum_{i=1}^Q p_i, p_i = (I - eta H)^i v_0 (the authors' code)."""
    x, Q, eta = x_of(quad), 5, 1.0 / quad.constants["L"]
    out = one(quad, "stocbio-code", x, inner_steps=400, solver_steps=Q).grads[0]
    b = (quad.inner_solution(x) - quad.c).numpy()
    M = np.eye(quad.dim_y) - eta * quad.A.numpy()
    P = [np.linalg.matrix_power(M, i) @ b for i in range(Q + 1)]
    v = eta * P[Q] + sum(P[1:])
    assert torch.allclose(out, quad.p["rho"] * x + quad.B.T @ torch.tensor(v), atol=1e-10)


@pytest.mark.parametrize("name,ref_kw,unbiased", [
    ("stocbio", dict(solver_steps=6), True),
    ("bsa", dict(solver_steps=5), True),  # E[bsa(Q)] = Neumann series with Q terms = aid-neumann(Q - 1)
    ("stocbio-code", dict(solver_steps=6), False),
])
def test_mean_is_the_population_neumann_series(quad, squad, name, ref_kw, unbiased):
    """On the stochastic quadratic E[estimate] equals aid-neumann on the population problem (same D, Q)."""
    x = x_of(squad)
    pop = harness.problem("quadratic", dim=4, kappa=4)
    ref = one(pop, "aid-neumann", x, inner_steps=15, **ref_kw).grads[0]
    G = one(squad, name, x, n=3000, seed=1, inner_steps=15, solver_steps=6, batch_size=4).grads
    t = mean_test(G.numpy(), ref.numpy(), alpha=0.01)
    assert bool(t["reject"]) is (not unbiased), t


def test_oracle_counts(squad):
    x = x_of(squad)
    D, Q = 7, 5
    for name in ("stocbio", "stocbio-code"):
        c = one(squad, name, x, n=4, inner_steps=D, solver_steps=Q).mean_calls()
        assert c == {"grad_x_f": 1, "grad_y_f": 1, "grad_y_g": D, "hvp": Q, "jvp": 1, "exact": 0,
                     "grad_x_g": 0, "f_value": 0, "g_value": 0}, (name, c)  # issue 15's oracles: unused here
    out = one(squad, "bsa", x, n=2000, inner_steps=D, solver_steps=Q)
    h = out.calls["hvp"]
    assert int(h.min()) == 0 and int(h.max()) == Q - 1
    assert abs(float(h.double().mean()) - (Q - 1) / 2) < 0.1
    c = one(squad, "itd-truncated", x, n=2, inner_steps=D, truncate=3).mean_calls()
    assert (c["grad_y_g"], c["hvp"], c["jvp"]) == (D, 3, 3)
    c = one(squad, "aid-fp", x, n=2, inner_steps=D, solver_steps=Q).mean_calls()
    assert (c["grad_y_g"], c["hvp"], c["jvp"]) == (D, Q, 1)


def test_bsa_reported_hvp_count_is_its_truncation_index(squad):
    """Per draw, bsa's reported HV count is its truncation p, and the estimate is Q eta prod_{j<p} (I - eta H_j) v_0
    (the product of its first p Hessian batches, H_0 applied first), computed in numpy from the drawn batches."""
    x, D, Q = x_of(squad), 3, 4
    lr = eta = 1.0 / squad.constants["L"]
    e = harness.estimator("bsa", inner_steps=D, solver_steps=Q)
    out = harness.estimate(squad, e, x, n=50, seed=2)
    noise = e.draw(squad, torch.Generator().manual_seed(2), 50)
    ps = noise["trunc/p"].long()
    assert torch.equal(out.calls["hvp"], ps)
    assert set(ps.tolist()) == set(range(Q))  # every truncation occurs among the 50 draws
    for i in range(50):
        p_i = int(ps[i])

        def product(Hs, v0, p_i=p_i):
            assert len(Hs) == Q - 1
            v = v0
            for Hj in Hs[:p_i]:
                v = v - eta * Hj @ v
            return Q * eta * v

        ref = np_stochastic_estimate(squad, {k: v[i] for k, v in noise.items() if k != "trunc/p"}, x.numpy(), D, lr,
                                     eta, product)
        assert np.allclose(out.grads[i].numpy(), ref, rtol=1e-11, atol=1e-12), (i, p_i)


def test_warm_start_carries_state_and_makes_cheap_aid_bio_converge(quad):
    x = x_of(quad)
    o = Oracles(quad)
    e = harness.estimator("aid-cg", inner_steps=1, solver_steps=1, warm_start=True)
    y, v = quad.inner_solution(x), torch.linalg.solve(quad.A, quad.inner_solution(x) - quad.c)
    warm = e.estimate(o, x, {}, {"y": y, "v": v})
    assert torch.allclose(warm.grad, quad.hypergradient(x), atol=1e-10)
    assert set(warm.state) == {"y", "v"}
    cold = e.estimate(o, x, {}, None)
    assert float(torch.linalg.norm(cold.grad - quad.hypergradient(x))) > 1e-2
    # AID-BiO (Algorithm 1) with D = N = 2: warm starts of y and v reach the stationary point, cold starts stall
    L_phi = float(torch.linalg.eigvalsh(quad.hessian_phi()).max())
    w = outer_loop(quad, harness.estimator("aid-cg", inner_steps=2, solver_steps=2, warm_start=True), 300, 1.0 / L_phi)
    c = outer_loop(quad, harness.estimator("aid-cg", inner_steps=2, solver_steps=2), 300, 1.0 / L_phi)
    assert w.grad_norm_sq[-1] < 1e-12 < c.grad_norm_sq[-1], (w.grad_norm_sq[-1], c.grad_norm_sq[-1])


def test_itd_warm_start_only_moves_y0(quad):
    """ITD-BiO warm start: y_0 = previous y_D, treated as a constant; from y* with D steps the estimate is
    grad_x f - sum_{k<D} alpha J (I - alpha H)^k grad_y f, i.e. D terms of the alpha-Neumann series."""
    x, D = x_of(quad), 6
    lr = 1.0 / quad.constants["L"]
    e = harness.estimator("itd", inner_steps=D, warm_start=True)
    out = e.estimate(Oracles(quad), x, {}, {"y": quad.inner_solution(x)})
    b = quad.inner_solution(x) - quad.c
    M = torch.eye(quad.dim_y, dtype=torch.float64) - lr * quad.A
    v = lr * sum(torch.linalg.matrix_power(M, k) @ b for k in range(D))
    assert torch.allclose(out.grad, quad.p["rho"] * x + quad.B.T @ v, atol=1e-12)
    assert torch.allclose(out.state["y"], quad.inner_solution(x), atol=1e-12)


@pytest.mark.parametrize("name,kw", [("bsa", dict(solver_steps=0)), ("itd-truncated", dict(truncate=-1)),
                                     ("aid-neumann", dict(solver_lr=0.0)), ("stocbio", dict(warm_start="maybe")),
                                     ("aid-fp", dict(solverlr=0.1))])
def test_bad_parameters_raise_clear_errors(name, kw):
    with pytest.raises(ParameterError):
        harness.estimator(name, **kw)
