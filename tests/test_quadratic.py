"""Ground truth of the `quadratic` problem against independent computations."""
import numpy as np
import pytest
import torch

from blobench import harness
def central_fd(fn, x, h=1e-5):
    g = torch.zeros_like(x)
    for i in range(x.numel()):
        e = torch.zeros_like(x)
        e[i] = h
        g[i] = (fn(x + e) - fn(x - e)) / (2 * h)
    return g


@pytest.mark.parametrize("kw", [dict(dim=6, kappa=10), dict(dim_x=3, dim_y=7, kappa=100, rho=0.0), dict(dim=4, kappa=1.0)])
def test_hypergradient_matches_finite_differences(kw):
    p = harness.problem("quadratic", **kw)
    x = torch.randn(p.dim_x, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    fd = central_fd(p.value, x)
    g = p.hypergradient(x)
    assert torch.linalg.norm(g - fd) / torch.linalg.norm(g) < 1e-7


def test_spectrum_spans_exactly_mu_L():
    p = harness.problem("quadratic", dim=8, kappa=37.0, mu=0.5)
    ev = np.linalg.eigvalsh(p.A.numpy())
    assert ev.min() == pytest.approx(0.5, rel=1e-12)
    assert ev.max() == pytest.approx(0.5 * 37.0, rel=1e-12)
    c = p.constants
    assert c["kappa"] == pytest.approx(37.0) and c["mu"] == 0.5 and c["L"] == pytest.approx(18.5)


def test_inner_solution_is_argmin():
    p = harness.problem("quadratic", dim=5, kappa=10)
    x = torch.ones(5, dtype=torch.float64)
    y = p.inner_solution(x)
    gy = torch.func.grad(p.inner, argnums=1)(x, y, None)
    assert torch.linalg.norm(gy) < 1e-12


def test_gradient_vanishes_at_stationary_point():
    p = harness.problem("quadratic", dim=6, kappa=50)
    (xs,) = p.stationary_points()
    assert torch.linalg.norm(p.hypergradient(xs)) < 1e-10
    # and it is a minimum: Phi grows in every random direction
    for s in range(5):
        d = torch.randn(6, generator=torch.Generator().manual_seed(s), dtype=torch.float64)
        assert p.value(xs + 1e-3 * d) > p.value(xs)


def test_stochastic_batches_average_to_population():
    """E over minibatches of g(x, y; batch) equals g(x, y); Var[grad_y f] = noise^2 / b exactly."""
    p = harness.problem("quadratic", dim=4, kappa=5, noise=0.4)
    gen = torch.Generator().manual_seed(0)
    n, b = 20000, 4
    batch = p.sample(gen, n, batch_size=b)
    x = torch.linspace(-1, 1, 4, dtype=torch.float64)
    y = torch.linspace(0.5, -0.5, 4, dtype=torch.float64)
    vals = torch.func.vmap(lambda bt: p.inner(x, y, bt))(batch)
    se = vals.std() / n**0.5
    assert abs(vals.mean() - p.inner(x, y, None)) < 4 * se
    gyf = torch.func.vmap(lambda bt: torch.func.grad(p.outer, argnums=1)(x, y, bt))(batch)
    var = gyf.var(0)
    # sample variance of a Gaussian: relative sd sqrt(2/n) ~ 1%
    assert torch.allclose(var, torch.full_like(var, 0.4**2 / b), rtol=0.05)
    assert bool((batch["w"] > 0).all())  # every sample stays strongly convex


def test_bad_parameters_are_named():
    with pytest.raises(harness.ParameterError, match="kappa"):
        harness.problem("quadratic", kappa=0.5)
    with pytest.raises(harness.ParameterError, match="'dimm'.*did you mean 'dim'"):
        harness.problem("quadratic", dimm=3)
    with pytest.raises(harness.ParameterError, match="dim"):
        harness.problem("quadratic", dim="ten")
    with pytest.raises(harness.ParameterError, match="kappa must be 1"):
        harness.problem("quadratic", dim=1, kappa=3)


def _old_construction(dim, kappa=10.0, mu=1.0, seed=0):
    """The pre-issue-13 set-up, verbatim: dense q diag(lam) q^T, Q diag(1/lam) Q^T and a full SVD."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    lam = np.linspace(mu, mu * kappa, dim) if dim > 1 else np.array([mu])
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    Q, L = t(q), t(lam)
    A = t(q @ np.diag(lam) @ q.T)
    A = 0.5 * (A + A.T)
    B = t(rng.standard_normal((dim, dim)) / np.sqrt(dim))
    return {"A": A, "Ainv": Q @ torch.diag(1.0 / L) @ Q.T, "B": B, "b": t(rng.standard_normal(dim)),
            "c": t(rng.standard_normal(dim)), "cross_norm": float(torch.linalg.matrix_norm(B, 2))}


@pytest.mark.parametrize("dim,kappa,seed", [(1, 1.0, 0), (2, 3.0, 1), (20, 10.0, 0), (100, 50.0, 4), (600, 10.0, 2)])
def test_setup_is_the_same_instance_as_the_dense_construction(dim, kappa, seed):
    """Issue 13: the O(dim^2)-after-QR set-up builds the same problem: A, A^-1, B, b, c bit for bit;
    ||B||_2 bit for bit up to EXACT_NORM_MAX, to 1e-12 (Lanczos) above it (dim 600)."""
    p = harness.problem("quadratic", dim=dim, kappa=kappa, seed=seed)
    old = _old_construction(dim, kappa, seed=seed)
    for k in ("A", "Ainv", "B", "b", "c"):
        assert torch.equal(getattr(p, k), old[k]), k
    cn = p.constants["cross_norm"]
    if dim <= 512:
        assert cn == old["cross_norm"]
    else:
        assert abs(cn - old["cross_norm"]) <= 1e-12 * old["cross_norm"]


# -- basis = "householder": O(dim^2) set-up, the same spectrum (issue 13 item 4) --------------------------
@pytest.mark.parametrize("dim,k", [(1, 8), (6, 2), (40, 8), (120, 120)])
def test_householder_basis_is_orthogonal_with_the_exact_spectrum(dim, k):
    p = harness.problem("quadratic", dim=dim, kappa=1.0 if dim == 1 else 25.0, mu=0.5, basis="householder", reflections=k)
    Q, I = p.Q, torch.eye(dim, dtype=torch.float64)
    assert torch.allclose(Q.T @ Q, I, atol=1e-13)
    # A and A^-1 (built by congruences, without Q or a GEMM) are Q diag(lam) Q^T and its inverse
    assert torch.allclose(p.A, (Q * p.lam) @ Q.T, atol=1e-12)
    assert torch.allclose(p.Ainv @ p.A, I, atol=1e-12)
    ev = np.linalg.eigvalsh(p.A.numpy())
    assert ev.min() == pytest.approx(0.5, rel=1e-12) and ev.max() == pytest.approx(0.5 * (1 if dim == 1 else 25), rel=1e-12)
    if dim > 1 and k < dim:  # another instance than the Haar one: Q - I has rank <= k
        assert torch.linalg.matrix_rank(Q - I) <= k
        assert not torch.allclose(p.A, harness.problem("quadratic", dim=dim, kappa=25.0, mu=0.5).A)


def test_householder_basis_ground_truth():
    p = harness.problem("quadratic", dim=7, kappa=30, basis="householder", reflections=3, noise=0.2)
    x = torch.randn(7, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    g = p.hypergradient(x)
    assert torch.linalg.norm(g - central_fd(p.value, x)) / torch.linalg.norm(g) < 1e-7
    (xs,) = p.stationary_points()
    assert torch.linalg.norm(p.hypergradient(xs)) < 1e-10
    # the stochastic inner objective (through Q and lam) averages to the population one
    batch = p.sample(torch.Generator().manual_seed(0), 20000, batch_size=2)
    y = torch.linspace(-1, 1, 7, dtype=torch.float64)
    vals = torch.func.vmap(p.inner, in_dims=(None, None, 0))(x, y, batch)
    assert float(vals.mean()) == pytest.approx(float(p.inner(x, y)), rel=2e-2)


def test_householder_congruence_is_the_product():
    """The congruence helper against Q diag(lam) Q^T with Q from the product helper (both independent of torch)."""
    from blobench.problems.quadratic import householder_congruence, householder_product

    rng = np.random.default_rng(0)
    V = rng.standard_normal((5, 30))
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    lam = rng.uniform(1, 3, 30)
    Q = householder_product(V)
    H = [np.eye(30) - 2 * np.outer(v, v) for v in V]
    assert np.allclose(Q, H[0] @ H[1] @ H[2] @ H[3] @ H[4], atol=1e-14)
    assert np.allclose(householder_congruence(V, lam), Q @ np.diag(lam) @ Q.T, atol=1e-13)


def test_basis_is_validated():
    with pytest.raises(harness.ParameterError, match="basis"):
        harness.problem("quadratic", basis="sobol")
