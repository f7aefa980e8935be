"""Ji 2025's NC-SC hard instance ji-ncsc (arXiv 2511.19656 v2, eq. 6-7): n, the constants we chose and their
smoothness / strong convexity, exact truth, Lemma 2's bounds on M, the zero chain's exact count."""
import math

import numpy as np
import pytest
import torch

from blobench import harness
from blobench.problems.ji_ncsc import carmon_phi, carmon_psi, laplacian_apply, path_laplacian


def rand(n, seed=0, scale=0.3):
    return scale * torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_n_and_inner_constants():
    for L_g, mu in ((1.0, 0.02), (2.0, 0.001), (1.0, 0.19)):
        p = harness.problem("ji-ncsc", L_g=L_g, mu=mu, T=2)
        assert p.n == math.floor(math.sqrt((L_g - mu) / (4 * mu))) >= 1
        H = torch.func.hessian(p.inner, argnums=1)(p.x0(), torch.zeros(p.dim_y, dtype=torch.float64)).numpy()
        ev = np.linalg.eigvalsh(H)
        assert ev.min() >= mu and ev.min() == pytest.approx(L_g / (4 * p.n**2 + 1))  # strongly convex, >= mu
        assert ev.max() < L_g and ev.max() == pytest.approx(p.constants["L"])
        assert p.constants["mu"] == pytest.approx(ev.min())
    v = rand(5, 1)
    assert torch.allclose(laplacian_apply(v), torch.from_numpy(path_laplacian(5)) @ v, atol=1e-15)
    assert np.linalg.norm(path_laplacian(9), 2) <= 4


def test_lemma2_bounds_on_M():
    """Lemma 2: (1 - pi^2/12) n <= S_1n, S_nn <= (1 + pi^2/12) n with S = (A + I/n^2)^-1; S_1n/n ~ 0.85, S_nn/n ~ 1.31."""
    for n in (5, 20, 80):
        A = path_laplacian(n)
        S = np.linalg.inv(A + np.eye(n) / n**2)
        lo, hi = (1 - math.pi**2 / 12) * n, (1 + math.pi**2 / 12) * n
        assert lo <= S[0, -1] <= hi and lo <= S[-1, -1] <= hi
        col = S[:, -1]
        assert np.all(col >= S[0, -1] - 1e-12) and np.all(col <= S[-1, -1] + 1e-12)  # Lemma 10
    assert S[0, -1] / n == pytest.approx(0.85, abs=0.01) and S[-1, -1] / n == pytest.approx(1.31, abs=0.01)


def test_truth_y_star_H_and_hypergradient():
    p = harness.problem("ji-ncsc", T=3, mu=0.02)
    x = rand(3, 2)
    y = p.inner_solution(x)
    assert float(torch.linalg.norm(torch.func.grad(p.inner, argnums=1)(x, y))) < 1e-12
    assert p.value(x) == pytest.approx(float(p.outer(x, y)), rel=1e-13)  # H is the rescaled chain
    g = p.hypergradient(x)
    h = 1e-6
    fd = torch.tensor([(p.value(x + h * e) - p.value(x - h * e)) / (2 * h) for e in torch.eye(3, dtype=torch.float64)])
    assert torch.allclose(g, fd, atol=1e-7)
    # implicit function theorem (grad_x f = 0): grad H = -grad2_xy g [grad2_yy g]^-1 grad_y f
    gy = torch.func.grad(p.outer, argnums=1)(x, y)
    Hyy = torch.func.hessian(p.inner, argnums=1)(x, y)
    Jxy = torch.func.jacrev(torch.func.grad(p.inner, argnums=1), argnums=0)(x, y)  # d(grad_y g)/dx: [dim_y, dim_x]
    assert torch.allclose(-Jxy.T @ torch.linalg.solve(Hyy, gy), g, atol=1e-10)
    # the chain starts at C~ n x_0 / lam = 1
    assert p.C_l * p.M_nn * p.x0c == pytest.approx(p.p["lam"])


def test_f_is_L_f_smooth_with_our_L():
    """L = 152 max(C_l, C_r)^2 (Carmon et al. 2020, Lemma 3's 152): ||grad^2 f|| <= L_f at random points, including
    points near the chain's kinks (|C y/lam| ~ 1/2 .. 1)."""
    p = harness.problem("ji-ncsc", T=3, mu=0.02, L_f=2.0, lam=0.7)
    worst = 0.0
    for s in range(30):
        y = rand(p.dim_y, 100 + s, scale=3.0)
        H = torch.func.hessian(p.outer, argnums=1)(p.x0(), y)
        worst = max(worst, float(torch.linalg.matrix_norm(H, 2)))
    assert 0 < worst <= 2.0
    # Carmon's components: the bounds of Lemma 1
    t = torch.linspace(-3, 3, 601, dtype=torch.float64)
    assert float(carmon_psi(t).max()) < math.e and float(carmon_phi(t).max()) < math.sqrt(2 * math.pi * math.e)
    assert torch.all(carmon_psi(t[t <= 0.5]) == 0)
    assert float(carmon_psi(torch.tensor(1.0)) * torch.func.grad(carmon_phi)(torch.tensor(0.5))) > 1


def test_zero_chain_count_on_oracle_outputs():
    """eq. (8): from y = 0, x = 0, each grad_y g reaches one more Laplacian coordinate; y^(i)_1 needs f; x_i needs
    y^(i)_n. A GD on g alone never leaves block 0; with f, block i's first coordinate wakes only once y^(i-1)_n does."""
    p = harness.problem("ji-ncsc", T=2, mu=0.005)
    n = p.n
    y = torch.zeros(p.dim_y, dtype=torch.float64)
    x = p.x0()
    for k in range(1, 3 * n):
        y = y - 0.5 * torch.func.grad(p.inner, argnums=1)(x, y)
        Y = y.reshape(p.T + 1, n)
        assert torch.count_nonzero(Y[0]) == min(k, n) and torch.count_nonzero(Y[1:]) == 0
    assert float(torch.func.grad(p.inner, argnums=0)(x, y).abs().sum()) == 0.0  # x's gradient is -L_g y^(i)_n: still 0


@pytest.mark.slow
def test_zero_chain_claim_ci():
    from blobench.claims.ji2025 import NCSCZeroChain

    c = NCSCZeroChain()
    assert c.evaluate("ci", False).holds and not c.evaluate("ci", True).holds


def test_bad_parameters_are_named():
    with pytest.raises(harness.ParameterError, match="mu < L_g/5"):
        harness.problem("ji-ncsc", mu=0.3)
    with pytest.raises(harness.ParameterError, match="T"):
        harness.problem("ji-ncsc", T=0)


def test_theorem1_instance_lambda_T_and_lemmas_3_4():
    """The proof of Theorem 1 (eq. 11-12): lam = eps L/(L_f C~ n) makes Lemma 3's floor lam L_f C~ n/L equal eps; T =
    floor(Delta L/(12 lam^2 L_f)) keeps Lemma 4's 12 lam^2 L_f T/L <= Delta; T n ~ n^3/eps^2; mu_for_n gives n."""
    from blobench.problems.ji_ncsc import chain_constants, mu_for_n, theorem1_instance

    for n in (1, 2, 3, 4, 6, 9):
        assert harness.problem("ji-ncsc", T=1, mu=mu_for_n(n)).n == n
    for eps, n in ((0.1, 2), (0.1, 4), (0.05, 3)):
        d = theorem1_instance(eps, n, Delta=3.0)
        L = chain_constants(n)["L_scale"]
        assert d["lam"] * d["L_f"] * d["c_tilde"] * n / L == pytest.approx(eps)
        assert 12 * d["lam"] ** 2 * d["L_f"] * d["T"] / L <= 3.0 < 12 * d["lam"] ** 2 * d["L_f"] * (d["T"] + 1) / L
        assert d["bound"] == d["T"] * n
        p = harness.problem("ji-ncsc", **{k: d[k] for k in ("T", "mu", "lam", "L_g", "L_f", "c_tilde")})
        assert p.L_scale == pytest.approx(L) and p.n == n
        # Lemma 4: H(0) - inf H <= Delta (inf H is above the chain's -12 lam^2 L_f T / L)
        assert p.value(torch.zeros(p.T, dtype=torch.float64)) - (-12 * d["lam"] ** 2 * d["L_f"] * d["T"] / L) <= 3.0 + 1e-9
        # Lemma 3: some |x_i| < lam/(C~ n) -> ||grad H|| >= eps (random points, one coordinate pushed below)
        thr = d["lam"] / (d["c_tilde"] * n)
        for s in range(20):
            x = thr * (0.5 + 2 * torch.rand(p.T, generator=torch.Generator().manual_seed(s), dtype=torch.float64))
            x[s % p.T] = thr * (2 * float(torch.rand(1, generator=torch.Generator().manual_seed(100 + s))) - 1) * 0.99
            assert float(torch.linalg.norm(p.hypergradient(x))) >= eps
    # H's Hessian is H_scale times the chain's: grad^2 H(x) = (L_f C~^2 n^2/L) grad^2 h(C~ n x/lam)
    p = harness.problem("ji-ncsc", T=3, mu=mu_for_n(3), lam=0.3)
    x = rand(3, 4, 0.1)
    u = p.p["c_tilde"] * p.n * x / p.p["lam"]
    scale = p.p["lam"] ** 2 * p.p["L_f"] / p.L_scale

    def h(u_):
        return p._H(u_ * p.p["lam"] / (p.p["c_tilde"] * p.n)) / scale

    Hx = torch.func.hessian(p._H)(x)
    Hu = torch.func.hessian(h)(u)
    assert torch.allclose(Hx, p.constants["H_scale"] * Hu, rtol=1e-9, atol=1e-12)
    with pytest.raises(Exception, match="T = floor"):
        theorem1_instance(10.0, 2)


def test_calls_lower_bound_and_report_rows():
    """ji-ncsc's exact bound on calls to ||grad H||^2 <= e: T n below Lemma 3's floor squared, 0 above it; the complexity
    metric writes it beside the measured calls (grad_norm_sq), and the report draws it as the instance's bound."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from blobench.measure.complexity import complexity
    from blobench.measure.metrics import CellContext
    from blobench.problems.ji_ncsc import theorem1_instance
    from blobench.report.complexity import draw_instance_bounds

    rows = []
    for n in (2, 3):
        d = theorem1_instance(0.1, n, Delta=3.0)
        p = harness.problem("ji-ncsc", **{k: d[k] for k in ("T", "mu", "lam", "L_g", "L_f", "c_tilde")})
        assert p.gradient_floor() == pytest.approx(0.1)
        assert p.calls_lower_bound(0.1**2 * (1 - 1e-9)) == d["bound"] and p.calls_lower_bound(0.011) == 0
        out = complexity(CellContext(p, "aid-cg", {"inner_solver": "agd", "warm_start": True}, seed=0), eps=[0.01],
                         criterion="grad_norm_sq", outer_lr=0.3 / p.constants["H_scale"], max_steps=200)
        rows += [{**r, "estimator": "aid-cg", "problem": "ji-ncsc", "kappa": 4 * n * n + 1} for r in out]
        lb = next(r["value"] for r in out if r["quantity"] == "lower_bound_calls")
        calls = next(r["value"] for r in out if r["quantity"] == "calls_to_eps")
        assert lb == d["bound"] and calls >= lb
    fig, ax = plt.subplots()
    draw_instance_bounds(ax, pd.DataFrame(rows), "kappa")
    assert any("exact per-instance bound" in ln.get_label() for ln in ax.get_lines())
    plt.close(fig)


def test_ji2025_mutations_break_their_mechanism():
    """claims/ji2025.MUTATIONS: each patch breaks what it names, and is undone."""
    from blobench.claims import ji2025
    from blobench.core.oracles import Oracles
    from blobench.core.registry import CLAIMS
    from blobench.problems import ji_ncsc

    harness.discover()
    p = harness.problem("ji-ncsc", T=2, mu=0.05)
    x, y = p.x0(), torch.zeros(p.dim_y, dtype=torch.float64)
    effects = {
        "ncsc-chain-shortcut": lambda: float(torch.func.grad(p.inner, argnums=0)(x, y + 1.0)[-1]) != -p.p["L_g"],
        "ncsc-theorem1-lam-without-n": lambda: ji_ncsc.theorem1_instance(0.1, 3)["lam"]
        > 2 * 0.1 * ji_ncsc.chain_constants(3)["L_scale"] / 3,
        "ncsc-oracle-counting-bypassed": lambda: (lambda o: (o.grad_y_g(x, y), sum(o.counts.values()) == 0)[1])(Oracles(p)),
    }
    assert {m[0] for m in ji2025.MUTATIONS} == set(effects)
    for name, caught_by, patch in ji2025.MUTATIONS:
        assert all(c in CLAIMS for c in caught_by)
        assert not effects[name](), name
        with patch():
            assert effects[name](), name
        assert not effects[name](), name


def test_bernoulli_oracle_gates_the_frontier_only():
    """BernoulliOracles (Theorem 2's oracle, our reading): only the next chain coordinate's entry of grad g is scaled by
    xi/p (0 or 1/p, mean 1); every other entry and f's gradients are exact."""
    from blobench.claims.ji2025 import BernoulliOracles
    from blobench.core.oracles import Oracles

    p = harness.problem("ji-ncsc", T=2, mu=0.05)
    n = p.n
    x = p.x0()
    y = rand(p.dim_y, 5) + 0.5  # block 0 and y^(1)_1 .. y^(1)_{n-1} nonzero: the frontier is y^(1)_n
    y[2 * n - 1:] = 0.0
    k = 2 * n - 1
    exact = Oracles(p).grad_y_g(x, y)
    assert exact[k] != 0 and int(torch.count_nonzero(exact)) > 1
    o = BernoulliOracles(p, 0.25, torch.Generator().manual_seed(0))
    assert o._frontier(x, y) == ("y", k)
    vals = []
    for _ in range(400):
        g = o.grad_y_g(x, y)
        assert torch.equal(torch.cat([g[:k], g[k + 1:]]), torch.cat([exact[:k], exact[k + 1:]]))
        vals.append(float(g[k] / exact[k]))
    assert set(vals) == {0.0, 4.0} and abs(sum(vals) / len(vals) - 1) < 0.25
    assert torch.equal(o.grad_y_f(x, y), Oracles(p).grad_y_f(x, y))
