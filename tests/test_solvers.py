"""Issue 15: new oracles, finite sums, and the single-loop / variance-reduced / first-order / zeroth-order / HOAG
estimators against exact truth, with their oracle counts."""
from __future__ import annotations

import pytest
import torch

import blobench.core.errors
from blobench import harness
from blobench.core.oracles import ORACLE_NAMES, Oracles
from blobench.measure.outer import outer_loop
from blobench.measure.sampling import estimate

NEW = ("grad_x_g", "f_value", "g_value")


@pytest.fixture(scope="module")
def quad():
    """rho = 1 makes Phi well conditioned (Hessian spectrum in [1, 2.7]) so outer loops converge in a few hundred steps."""
    return harness.problem("quadratic", dim=5, kappa=4, rho=1.0)


@pytest.fixture(scope="module")
def fquad():
    """Finite-sum stochastic quadratic: 20 samples."""
    return harness.problem("quadratic", dim=5, kappa=4, noise=0.5, n_samples=20)


@pytest.fixture(scope="module")
def logreg():
    return harness.problem("logreg-l2", n_train=30, n_val=30, features=4, classes=2, informative=2, outer_reg=0.1)


def _x(p, seed=3):
    return p.x0() + 0.3 * torch.randn(p.dim_x, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _iterate(p, e, x, steps, seed=0):
    """Run an estimator's state forward ``steps`` times at a fixed x; the last estimate and the counts of the last call."""
    o = Oracles(p)
    noise = e.draw(p, torch.Generator().manual_seed(seed), steps) or {}
    state = None
    for t in range(steps):
        o.reset()
        est = e.estimate(o, x, {k: v[t] for k, v in noise.items()}, state)
        state = est.state
    return est.grad, o.snapshot(), state


# -- oracles and finite sums ----------------------------------------------------------------------------------
def test_new_oracles_exact_and_counted(quad):
    x, y = _x(quad), torch.randn(quad.dim_y, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    o = Oracles(quad)
    assert torch.allclose(o.grad_x_g(x, y), -quad.B.T @ y)  # g = 1/2 y'Ay - y'Bx - b'y
    gx, gy = o.grad_g(x, y)
    assert torch.allclose(gx, -quad.B.T @ y) and torch.allclose(gy, quad.A @ y - quad.B @ x - quad.b)
    assert float(o.f_value(x, y)) == pytest.approx(float(quad.outer(x, y)))
    assert float(o.g_value(x, y)) == pytest.approx(float(quad.inner(x, y)))
    xs, ys = torch.stack([x, 2 * x, 3 * x]), torch.stack([y, y, -y])
    assert torch.allclose(o.f_values(xs, ys), torch.stack([quad.outer(a, b) for a, b in zip(xs, ys)]))
    assert torch.allclose(o.grad_y_g_points(xs, ys), torch.stack([quad.A @ b - quad.B @ a - quad.b for a, b in zip(xs, ys)]))
    assert o.snapshot() == {**dict.fromkeys(ORACLE_NAMES, 0), "grad_x_g": 2, "grad_y_g": 4, "f_value": 4, "g_value": 1}


@pytest.mark.parametrize("name,kw", [("exact", {}), ("fo", {}), ("itd", {"inner_steps": 4}), ("aid-cg", {"inner_steps": 4}),
                                     ("aid-neumann", {"inner_steps": 4}), ("stocbio", {"inner_steps": 4}), ("bsa", {})])
def test_existing_estimators_use_no_new_oracles(fquad, name, kw):
    """The new oracle names appear as zero columns for the existing estimators; the old counts are the documented ones."""
    c = estimate(fquad, harness.estimator(name, **kw), _x(fquad), n=3).mean_calls()
    assert set(c) == set(ORACLE_NAMES)
    assert all(c[k] == 0 for k in NEW)
    if name == "aid-cg":
        assert (c["grad_y_g"], c["hvp"], c["jvp"], c["grad_x_f"], c["grad_y_f"]) == (4, 10, 1, 1, 1)


@pytest.mark.parametrize("pname", ["fquad", "logreg_stoch"])
def test_finite_sum_averages_to_the_population(request, pname, logreg):
    if pname == "fquad":
        p, full = request.getfixturevalue("fquad"), harness.problem("quadratic", dim=5, kappa=4)
    else:
        p = harness.problem("logreg-l2", n_train=30, n_val=30, features=4, classes=2, informative=2, outer_reg=0.1,
                            stochastic=True)
        full = logreg
    n, m = p.finite_sum
    x, y = _x(p), torch.randn(p.dim_y, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    o = Oracles(p)
    j0 = torch.zeros(1, dtype=torch.long)
    gi = sum(o.grad_y_g(x, y, p.batch_at(torch.tensor([i]), j0)) for i in range(n)) / n
    hi = sum(o.hvp(x, y, y, p.batch_at(torch.tensor([i]), j0)) for i in range(n)) / n
    fj = sum(o.grad_y_f(x, y, p.batch_at(j0, torch.tensor([j]))) for j in range(m)) / m
    assert torch.allclose(gi, o.grad_y_g(x, y), atol=1e-12)
    assert torch.allclose(hi, o.hvp(x, y, y), atol=1e-12)
    assert torch.allclose(fj, Oracles(full).grad_y_f(x, y), atol=1e-12)
    b = p.sample(torch.Generator().manual_seed(0), 6, 3)
    assert b["i"].shape == (6, 3) and int(b["i"].max()) < n and int(b["j"].max()) < m


def test_saba_rejects_infinite_stochastic_problem():
    p = harness.problem("quadratic", dim=3, noise=0.3)
    with pytest.raises(blobench.core.errors.ParameterError, match="finite-sum"):
        harness.estimator("saba").draw(p, torch.Generator(), 2)


# -- SOBA / SABA -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pname", ["quad", "logreg"])
def test_soba_fixed_point_is_the_hypergradient(request, pname):
    """At a fixed x, SOBA's (y, v) iteration converges to (y*, -H^-1 grad_y f): D_x -> grad Phi(x)."""
    p = request.getfixturevalue(pname)
    x = _x(p)
    g, calls, st = _iterate(p, harness.estimator("soba"), x, 400 if pname == "quad" else 600)
    assert torch.allclose(g, p.hypergradient(x), atol=1e-8, rtol=0)
    assert calls == {**dict.fromkeys(ORACLE_NAMES, 0), "grad_x_f": 1, "grad_y_f": 1, "grad_y_g": 1, "hvp": 1, "jvp": 1}
    assert int(st["t"]) == (400 if pname == "quad" else 600)


def test_saba_fixed_point_on_a_finite_sum_and_soba_floor(fquad):
    """With constant steps on a finite sum SABA's SAGA directions converge to the exact ones; SOBA's stay noisy."""
    x = _x(fquad)
    truth = fquad.hypergradient(x)
    steps = {"inner_lr": 0.05, "solver_lr": 0.05}  # SAGA needs 1/(3 max_i L_i)-type steps (L_i up to 2.5 L here)
    g, calls, _ = _iterate(fquad, harness.estimator("saba", **steps), x, 600)
    assert float(torch.linalg.norm(g - truth)) < 1e-6
    assert calls == {**dict.fromkeys(ORACLE_NAMES, 0), "grad_x_f": 1, "grad_y_f": 1, "grad_y_g": 1, "hvp": 1, "jvp": 1}
    gs, _, _ = _iterate(fquad, harness.estimator("soba", **steps), x, 300)
    assert float(torch.linalg.norm(gs - truth)) > 1e-3


def test_saba_first_call_counts_full_pass(fquad):
    c = estimate(fquad, harness.estimator("saba"), _x(fquad), n=2).mean_calls()
    n, m = fquad.finite_sum
    assert c == {**dict.fromkeys(ORACLE_NAMES, 0.0), "grad_x_f": m + 1, "grad_y_f": m + 1, "grad_y_g": n + 1,
                 "hvp": n + 1, "jvp": n + 1}


# -- SABA with minibatches (issue 29: benchmark_bilevel's minibatch SABA) ----------------------------------------
def _per_sample_saga_reference(p, e, x, T, noise):
    """Minibatch SAGA written out with one memory row per SAMPLE: the step's batch is the drawn block of rows,
    its correction averaged over the batch, (1/|B|) sum_{i in B} (h_i - M[i]) + (1/n) sum_i M[i], then
    M[i] <- h_i for i in B. The per-row terms come from one-row oracle calls."""
    o = Oracles(p)
    n, m = p.finite_sum
    b = e.p["batch_size"]
    L = float(p.constants["L"])
    rho, rho_v = e.p.get("inner_lr") or 1 / L, e.p.get("solver_lr") or 1 / L
    y, v = p.init_inner(x), torch.zeros(p.dim_y, dtype=torch.float64)
    one = [torch.tensor([k]) for k in range(max(n, m))]
    zero = torch.zeros(1, dtype=torch.long)

    def g_terms(k):
        bt = p.batch_at(one[k], zero)
        hv, jv = o.hvp_jvp(x, y, v, bt)
        return {"gy_g": o.grad_y_g(x, y, bt), "hv": hv, "jv": jv}

    def f_terms(k):
        gx, gy = o.grad_f(x, y, p.batch_at(zero, one[k]))
        return {"gx_f": gx, "gy_f": gy}

    G = {k: torch.stack([g_terms(i)[k] for i in range(n)]) for k in ("gy_g", "hv", "jv")}
    F = {k: torch.stack([f_terms(j)[k] for j in range(m)]) for k in ("gx_f", "gy_f")}
    out = []
    for t in range(T):
        rows_i = range(int(noise["sample/block_i"][t]) * b, min((int(noise["sample/block_i"][t]) + 1) * b, n))
        rows_j = range(int(noise["sample/block_j"][t]) * b, min((int(noise["sample/block_j"][t]) + 1) * b, m))
        S = {}
        for M, rows, terms in ((G, rows_i, g_terms), (F, rows_j, f_terms)):
            new = {i: terms(i) for i in rows}
            for k in M:
                S[k] = sum(new[i][k] - M[k][i] for i in rows) / len(rows) + M[k].mean(0)
            for i in rows:
                for k in M:
                    M[k][i] = new[i][k]
        out.append(S["gx_f"] + S["jv"])
        y, v = y - rho * S["gy_g"], v - rho_v * (S["hv"] + S["gy_f"])
    return torch.stack(out)


@pytest.mark.parametrize("b", [4, 6])
def test_saba_minibatch_is_per_sample_saga_on_block_batches(fquad, b):
    """One memory row per block of b rows is the per-sample SAGA memory with the minibatch a block: the
    estimates agree to rounding (b = 6 leaves a short last block of 2 rows out of n = m = 20)."""
    e = harness.estimator("saba", batch_size=b, inner_lr=0.05, solver_lr=0.05)
    x, T = _x(fquad), 12
    noise = e.draw(fquad, torch.Generator().manual_seed(5), T)
    assert set(noise) == {"sample/block_i", "sample/block_j"} and int(noise["sample/block_i"].max()) < -(-20 // b)
    o, st, got = Oracles(fquad), None, []
    for t in range(T):
        est = e.estimate(o, x, {k: v[t] for k, v in noise.items()}, st)
        got.append(est.grad)
        st = est.state
    assert st["mem/gy_g"].shape == (-(-20 // b), fquad.dim_y)
    want = _per_sample_saga_reference(fquad, e, x, T, noise)
    assert torch.allclose(torch.stack(got), want, rtol=0, atol=1e-12 * float(want.abs().max()))


def test_saba_minibatch_negative_control_the_unweighted_mean_of_unequal_blocks(fquad, monkeypatch):
    """The control for the weights: with a short last block, the plain mean of the block memories is not the
    sum's mean, and the estimates leave the per-sample reference."""
    import blobench.estimators.variance_reduced as vr

    e = harness.estimator("saba", batch_size=6, inner_lr=0.05, solver_lr=0.05)
    monkeypatch.setattr(vr.SABA, "_weights", lambda self, n: None)
    x, T = _x(fquad), 6
    noise = e.draw(fquad, torch.Generator().manual_seed(5), T)
    o, st, got = Oracles(fquad), None, []
    for t in range(T):
        est = e.estimate(o, x, {k: v[t] for k, v in noise.items()}, st)
        got.append(est.grad)
        st = est.state
    want = _per_sample_saga_reference(fquad, e, x, T, noise)
    assert not torch.allclose(torch.stack(got), want, rtol=0, atol=1e-6)


def test_saba_minibatch_counts_and_convergence(fquad):
    """Per step 1 call of each oracle on one block; the first call's full pass costs ceil(n/b) / ceil(m/b)
    calls; at a fixed x the directions converge to the exact ones (variance reduction, no noise floor)."""
    n, m = fquad.finite_sum
    c = estimate(fquad, harness.estimator("saba", batch_size=6), _x(fquad), n=2).mean_calls()
    assert c == {**dict.fromkeys(ORACLE_NAMES, 0.0), "grad_x_f": 4 + 1, "grad_y_f": 4 + 1, "grad_y_g": 4 + 1,
                 "hvp": 4 + 1, "jvp": 4 + 1}
    x = _x(fquad)
    g, calls, _ = _iterate(fquad, harness.estimator("saba", batch_size=4, inner_lr=0.2, solver_lr=0.2), x, 400)
    assert float(torch.linalg.norm(g - fquad.hypergradient(x))) < 1e-6
    assert calls == {**dict.fromkeys(ORACLE_NAMES, 0), "grad_x_f": 1, "grad_y_f": 1, "grad_y_g": 1, "hvp": 1, "jvp": 1}


def test_saba_batch_size_one_is_the_per_row_method(fquad):
    """batch_size = 1 (the default) draws (i, j) rows as before and keeps n memory rows."""
    e = harness.estimator("saba")
    assert e.p["batch_size"] == 1 and e.vmappable and not harness.estimator("saba", batch_size=2).vmappable
    noise = e.draw(fquad, torch.Generator().manual_seed(0), 3)
    assert "sample/i" in noise and "sample/block_i" not in noise
    _, _, st = _iterate(fquad, e, _x(fquad), 2)
    assert st["mem/gy_g"].shape == (20, fquad.dim_y)


@pytest.mark.parametrize("bad", [0, -3, 2.5, "four", True, None])
def test_saba_batch_size_validated(bad):
    with pytest.raises(blobench.core.errors.ParameterError, match="batch_size"):
        harness.estimator("saba", batch_size=bad)


# -- F2SA -------------------------------------------------------------------------------------------------------
def _penalty_gradient(q, x, lam):
    """grad of L*_lambda(x) = min_y f + lambda g - lambda min_z g on the quadratic, in closed form."""
    I = torch.eye(q.dim_y, dtype=torch.float64)
    y_lam = torch.linalg.solve(I + lam * q.A, q.c + lam * (q.B @ x + q.b))
    return q.p["rho"] * x - lam * q.B.T @ (y_lam - q.inner_solution(x))


@pytest.mark.parametrize("lam", [3.0, 30.0, 300.0])
def test_f2sa_converged_direction_is_penalty_gradient(quad, lam):
    x, T = _x(quad), 300
    out = estimate(quad, harness.estimator("f2sa", penalty=lam, inner_steps=T), x, n=1)
    want = _penalty_gradient(quad, x, lam)
    assert torch.allclose(out.grads[0], want, atol=1e-9 * max(lam, 1), rtol=0)
    bias = float(torch.linalg.norm(want - quad.hypergradient(x)))
    assert bias * lam == pytest.approx(float(torch.linalg.norm(_penalty_gradient(quad, x, 1e6) - quad.hypergradient(x))) * 1e6, rel=0.5)
    assert out.mean_calls() == {**dict.fromkeys(ORACLE_NAMES, 0.0), "grad_y_g": 2 * T, "grad_y_f": T, "grad_x_f": 1, "grad_x_g": 2}


def test_f2sa_growing_penalty_removes_the_bias(quad):
    """A fixed lambda stops at the stationary point of L*_lambda (O(1/lambda) away); a growing one goes on."""
    run = lambda g: outer_loop(quad, harness.estimator("f2sa", penalty=5.0, penalty_growth=g, inner_steps=5), 200, 0.4,
                               eval_every=200).dist[-1]  # noqa: E731
    fixed, grow = run(0.0), run(2.0)
    assert fixed > 1e-2 and grow < fixed / 20


# -- F2SA schedules (issue 29: Kwon et al. 2023's and benchmark_bilevel's decaying steps, growing penalty) -------
PEER_F2SA = {"penalized_lr": 0.05, "inner_lr": 0.05, "penalized_decay": 5 / 7, "inner_decay": 4 / 7, "penalty": 1.0,
             "penalty_growth": 0.1, "penalty_growth_decay": 1 / 7, "inner_steps": 5}


def _f2sa_reference(p, x0, K, step, outer_lr, power, lmbda0, delta, T):
    """F2SA written the way benchmark_bilevel's solver runs it, on exact gradients: per iteration k, lr_c =
    c / (k+1)^e for (y, z, x, lambda-increment) with exponents (5/7, 4/7, power, 1/7), T steps
    y -= lr_y (lambda grad_y g + grad_y f), z -= lr_z grad_y g, then x -= lr_x (grad_x f + lambda
    (grad_x g(y) - grad_x g(z))) and lambda += lr_lambda."""
    from torch.func import grad

    x, y, z, lam, xs = x0.clone(), p.init_inner(x0), p.init_inner(x0), lmbda0, []
    gy_g, gx_g = grad(p.inner, argnums=1), grad(p.inner, argnums=0)
    gy_f, gx_f = grad(p.outer, argnums=1), grad(p.outer, argnums=0)
    for k in range(K):
        lr_y, lr_z, lr_x, d_lam = (c / (k + 1) ** e for c, e in ((step, 5 / 7), (step, 4 / 7), (outer_lr, power),
                                                                 (delta, 1 / 7)))
        for _ in range(T):
            y, z = y - lr_y * (lam * gy_g(x, y, None) + gy_f(x, y, None)), z - lr_z * gy_g(x, z, None)
        x = x - lr_x * (gx_f(x, y, None) + lam * (gx_g(x, y, None) - gx_g(x, z, None)))
        lam = lam + d_lam
        xs.append(x)
    return torch.stack(xs)


def test_f2sa_schedules_run_as_benchmark_bilevel_runs_them(quad):
    """penalized_lr/_decay, inner_decay, penalty_growth(_decay) and the outer 'power' schedule give the peer's
    iterates (to rounding); the negative control (constant steps and penalty, today's defaults) does not."""
    K, outer_lr, power = 40, 0.3, 4 / 7
    x0 = _x(quad)
    tr = outer_loop(quad, harness.estimator("f2sa", **PEER_F2SA), K, outer_lr, schedule="power", power=power,
                    x0=x0, eval_every=1)
    want = _f2sa_reference(quad, x0, K, 0.05, outer_lr, power, 1.0, 0.1, 5)
    assert torch.allclose(tr.x_final, want[-1], rtol=0, atol=1e-12 * float(want.abs().max()))
    const = {k: v for k, v in PEER_F2SA.items() if not k.endswith("decay")}
    tr0 = outer_loop(quad, harness.estimator("f2sa", **const), K, outer_lr, x0=x0, eval_every=K)
    assert float(torch.linalg.norm(tr0.x_final - want[-1])) > 1e-3


def test_f2sa_schedule_values():
    """gamma_k, alpha_k, lambda_k at k = 0..5: the formulas of the docstring; lambda's carried increment sum
    equals the peer's accumulation lambda_{k+1} = lambda_k + delta (k+1)^-e."""
    q = harness.problem("quadratic", dim=3)
    o = Oracles(q)
    e = harness.estimator("f2sa", inner_lr=0.2, inner_decay=0.5, penalized_lr=0.1, penalized_decay=0.75,
                          penalty=2.0, penalty_power=1 / 7, penalty_growth=0.3, penalty_growth_decay=1 / 7,
                          inner_steps=1)
    x, st, lam_peer = q.x0(), None, 2.0
    for k in range(6):
        gsum = None if st is None else st["growth_sum"]
        gamma, alpha, lam = e.schedule(o, torch.tensor(float(k), dtype=torch.float64),
                                       torch.zeros((), dtype=torch.float64) if gsum is None else gsum)
        assert float(gamma) == pytest.approx(0.2 / (k + 1) ** 0.5, rel=1e-14)
        assert float(alpha) == pytest.approx(0.1 / (k + 1) ** 0.75, rel=1e-14)
        assert float(lam) == pytest.approx(2.0 * (k + 1) ** (1 / 7) + (lam_peer - 2.0), rel=1e-14)
        lam_peer += 0.3 / (k + 1) ** (1 / 7)
        st = e.estimate(o, x, {}, st).state
    assert float(harness.estimator("f2sa", penalty=3.0, penalty_growth=0.5).schedule(
        o, torch.tensor(4.0, dtype=torch.float64), None)[2]) == 3.0 + 0.5 * 4  # the default: linear


def test_f2sa_paper_schedule_reaches_the_stationary_point(quad):
    """Kwon et al. 2023's exponents (alpha ~ k^-5/7, gamma ~ k^-4/7, lambda ~ k^1/7, x-step ~ k^-5/7) drive
    the penalty bias down as lambda grows (300 steps: 0.059 from the stationary point); the negative control,
    the same decaying steps with a fixed lambda, stalls at L*_lambda's stationary point (0.118)."""
    kw = {"penalized_lr": 0.1, "inner_lr": 0.3, "inner_steps": 5, "penalty": 2.0, "penalized_decay": 5 / 7,
          "inner_decay": 4 / 7}
    run = lambda **extra: outer_loop(quad, harness.estimator("f2sa", **kw, **extra), 300, 0.5, schedule="power",  # noqa: E731
                                     power=5 / 7, eval_every=300).dist[-1]
    fixed, paper = run(), run(penalty_power=1 / 7)
    assert fixed > 0.1 and paper < 0.6 * fixed


@pytest.mark.parametrize("bad,match", [({"penalized_decay": 0.5}, "needs penalized_lr"),
                                       ({"inner_decay": -0.1}, "inner_decay"),
                                       ({"penalty_power": "x"}, "penalty_power"),
                                       ({"penalized_lr": 0.0}, "penalized_lr"),
                                       ({"penalty_growth_decay": -1}, "penalty_growth_decay")])
def test_f2sa_schedule_parameters_validated(bad, match):
    with pytest.raises(blobench.core.errors.ParameterError, match=match):
        harness.estimator("f2sa", **bad)


# -- zeroth order ----------------------------------------------------------------------------------------------
def test_es_is_exact_directional_average_on_a_quadratic(quad):
    """Phi is quadratic, so each central difference is <grad Phi, u> u exactly: g = 1/Q U^T U grad Phi."""
    x, Q = _x(quad), 6
    e = harness.estimator("es", directions=Q, radius=0.1, inner_steps=200)
    noise = e.draw(quad, torch.Generator().manual_seed(5), 1)
    o = Oracles(quad)
    g = e.estimate(o, x, {k: v[0] for k, v in noise.items()}).grad
    U = noise["dir/u"][0]
    assert torch.allclose(g, U.T @ (U @ quad.hypergradient(x)) / Q, atol=1e-10)
    assert o.snapshot() == {**dict.fromkeys(ORACLE_NAMES, 0), "grad_y_g": 2 * Q * 200, "f_value": 2 * Q}


def test_es_unbiased_within_ci_on_logreg(logreg):
    """Small radius, exact inner solves: the mean of many ES draws matches grad Phi within 4 standard errors."""
    x = logreg.x0()
    out = estimate(logreg, harness.estimator("es", directions=4, radius=1e-3, inner_steps=150), x, n=400)
    m, se = out.grads.mean(0), out.grads.std(0) / 400 ** 0.5
    assert bool(((m - logreg.hypergradient(x)).abs() <= 4 * se + 1e-9).all())


def test_pzobo_is_exact_jacobian_average_on_a_quadratic(quad):
    """y_K is affine in x on a quadratic, so delta_q = J_K u_q and g = grad_x f + 1/Q U^T U J_K^T grad_y f."""
    x, Q, K = _x(quad), 5, 200
    e = harness.estimator("pzobo", directions=Q, radius=0.05, inner_steps=K)
    noise = e.draw(quad, torch.Generator().manual_seed(5), 1)
    o = Oracles(quad)
    g = e.estimate(o, x, {k: v[0] for k, v in noise.items()}).grad
    U = noise["dir/u"][0]
    gxf = quad.p["rho"] * x
    assert torch.allclose(g - gxf, U.T @ (U @ (quad.hypergradient(x) - gxf)) / Q, atol=1e-10)
    assert o.snapshot() == {**dict.fromkeys(ORACLE_NAMES, 0), "grad_y_g": (Q + 1) * K, "grad_x_f": 1, "grad_y_f": 1}


def test_pzobo_unbiased_within_ci_on_logreg(logreg):
    x = logreg.x0()
    out = estimate(logreg, harness.estimator("pzobo", directions=4, radius=1e-3, inner_steps=150), x, n=400)
    m, se = out.grads.mean(0), out.grads.std(0) / 400 ** 0.5
    assert bool(((m - logreg.hypergradient(x)).abs() <= 4 * se + 1e-9).all())


# -- HOAG ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pname", ["quad", "logreg"])
def test_hoag_tolerances_drive_estimate_to_truth(request, pname):
    p = request.getfixturevalue(pname)
    x = _x(p)
    e = harness.estimator("hoag", tol=1e-2, tol_decay=0.5)
    g, calls, st = _iterate(p, e, x, 25)
    assert torch.allclose(g, p.hypergradient(x), atol=1e-7, rtol=0)
    assert (calls["grad_x_f"], calls["grad_y_f"], calls["jvp"]) == (1, 1, 1) and calls["hvp"] >= 1 and int(st["k"]) == 25


def test_hoag_counts_the_executed_calls(quad):
    """From y_0 = 0 with a tolerance y_0 already meets, one check call; CG residual checks + steps counted."""
    o = Oracles(quad)
    x = _x(quad)
    est = harness.estimator("hoag", tol=1e6, solver_steps=3).estimate(o, x, {}, None)
    assert o.snapshot()["grad_y_g"] == 1 and o.snapshot()["hvp"] == 1  # both tolerances met at once
    assert torch.allclose(est.grad, quad.p["rho"] * x)  # y = 0, q = 0: p = grad_x f
    o.reset()
    harness.estimator("hoag", tol=1e-8, solver_steps=3, max_solver=7).estimate(o, x, {}, None)
    assert o.snapshot()["hvp"] == 7  # check (1) + 3 CG + check (1) + 2 CG: capped at max_solver


# -- every method's outer loop reaches the known stationary point ---------------------------------------------------
# name: (params, outer_lr on quad, steps on quad, outer_lr on logreg, steps on logreg). PZOBO's direction noise is additive
# (it does not vanish at the stationary point, where the implicit term is not 0): harmonic steps, more directions.
CONVERGE = {
    "soba": ({}, 0.1, 400, 2.0, 600),
    "saba": ({}, 0.1, 400, 2.0, 600),
    "f2sa": ({"penalty": 10.0, "penalty_growth": 5.0, "inner_steps": 5}, 0.3, 300, 2.0, 300),
    "es": ({"directions": 5, "radius": 1e-3, "inner_steps": 30}, 0.2, 150, 1.0, 300),
    "pzobo": ({"directions": 50, "radius": 1e-3, "inner_steps": 30}, 1.0, 100, 1.0, 300),
    "hoag": ({"tol": 1e-2, "tol_decay": 0.7}, 0.4, 40, 5.0, 40),
}


@pytest.mark.parametrize("name", list(CONVERGE))
def test_outer_loop_reaches_stationary_point_quadratic(quad, name):
    kw, lr, T, _, _ = CONVERGE[name]
    tr = outer_loop(quad, harness.estimator(name, **kw), T, lr, "harmonic" if name == "pzobo" else "constant", eval_every=T)
    tol = 1e-2 if name == "es" else 5e-2 if name == "pzobo" else 1e-3 if name == "f2sa" else 1e-6  # random directions: SGD noise; F2SA: 1/lambda_T
    assert not tr.diverged and tr.dist[-1] < tol, tr.dist


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CONVERGE))
def test_outer_loop_reaches_stationary_point_logreg(logreg, name):
    kw, _, _, lr, T = CONVERGE[name]
    tr = outer_loop(logreg, harness.estimator(name, **kw), T, lr, eval_every=T)  # constant steps (harmonic ones crawl here)
    tol = 1e-1 if name in ("es", "pzobo") else 1e-2 if name == "f2sa" else 1e-5
    assert not tr.diverged and tr.dist[-1] < tol, tr.dist


def test_hoag_outer_loop_logreg(logreg):
    tr = outer_loop(logreg, harness.estimator("hoag", tol=1e-2, tol_decay=0.7), 30, 5.0, eval_every=30)
    assert tr.dist[-1] < 1e-6


# -- TTSA ------------------------------------------------------------------------------------------------------
def test_ttsa_tracks_y_star_and_is_unbiased_for_the_truncated_series(quad):
    """After its y-steps converge at a fixed x, TTSA's estimates average to grad Phi (up to (1 - eta mu)^Q, ~1e-5)."""
    x, Q = _x(quad), 40
    e = harness.estimator("ttsa", solver_steps=Q, inner_steps=3)
    _, calls, st = _iterate(quad, e, x, 20)
    assert (calls["grad_y_g"], calls["grad_x_f"], calls["grad_y_f"], calls["jvp"]) == (3, 1, 1, 1) and int(st["t"]) == 20
    assert torch.allclose(st["y"], quad.inner_solution(x), atol=1e-6)
    noise = e.draw(quad, torch.Generator().manual_seed(9), 600)
    gs = torch.func.vmap(lambda nz: e.estimate(Oracles(quad), x, nz, st).grad, randomness="error")(noise)
    m, se = gs.mean(0), gs.std(0) / 600 ** 0.5
    assert bool(((m - quad.hypergradient(x)).abs() <= 4 * se + 1e-4).all())
    assert float(se.max()) > 0  # random truncation: the draws differ


# -- AmIGO -----------------------------------------------------------------------------------------------------
def test_amigo_warm_started_iterates_reach_the_hypergradient_and_counts(quad, fquad):
    x = _x(quad)
    g, calls, st = _iterate(quad, harness.estimator("amigo", inner_steps=2, solver_steps=3), x, 60)
    assert torch.allclose(g, quad.hypergradient(x), atol=1e-9, rtol=0)
    assert calls == {**dict.fromkeys(ORACLE_NAMES, 0), "grad_y_g": 2, "hvp": 3, "jvp": 1, "grad_x_f": 1, "grad_y_f": 1}
    # stochastic: one fresh Hessian minibatch per linear-system step, vmapped draws run
    c = estimate(fquad, harness.estimator("amigo", inner_steps=2, solver_steps=3), _x(fquad), n=3).mean_calls()
    assert (c["hvp"], c["grad_y_g"]) == (3, 2)
