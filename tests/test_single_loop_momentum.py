"""FSLA, SUSTAIN and MRBO (blobench/estimators/single_loop_momentum.py) against exact truth, with their oracle counts; the
batched driver of blobench/claims/yang2021.py against the shared outer loop."""
from __future__ import annotations

import pytest
import torch

from blobench import harness
from blobench.claims.yang2021 import storm_runs
from blobench.core.oracles import ORACLE_NAMES, Oracles
from blobench.measure.outer import outer_loop


@pytest.fixture(scope="module")
def quad():
    return harness.problem("quadratic", dim=5, kappa=4, rho=1.0)


@pytest.fixture(scope="module")
def fquad():
    return harness.problem("quadratic", dim=5, kappa=4, noise=0.5, n_samples=20)


@pytest.fixture(scope="module")
def logreg():
    return harness.problem("logreg-l2", n_train=30, n_val=30, features=4, classes=2, informative=2, outer_reg=0.1)


def _x(p, seed=3):
    return p.x0() + 0.3 * torch.randn(p.dim_x, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _run(p, e, x, steps, seed=0):
    """Iterate the estimator's state at a fixed x; (grads, counts of the first call, counts of the last, state)."""
    o = Oracles(p)
    noise = e.draw(p, torch.Generator().manual_seed(seed), steps) or {}
    state, grads, first = None, [], None
    for t in range(steps):
        o.reset()
        est = e.estimate(o, x, {k: v[t] for k, v in noise.items()}, state)
        counted = o.snapshot()
        if est.calls is not None:
            counted.update({k: int(v) for k, v in est.calls.items()})
        first = counted if first is None else first
        state = est.state
        grads.append(est.grad)
    return torch.stack(grads), first, counted, state


@pytest.mark.parametrize("pname,lr,T,tol", [("quad", 0.1, 400, 1e-6), ("logreg", 2.0, 600, 1e-5)])
def test_fsla_outer_loop_reaches_stationary_point(request, pname, lr, T, tol):
    p = request.getfixturevalue(pname)
    tr = outer_loop(p, harness.estimator("fsla"), T, lr, eval_every=T)
    assert not tr.diverged and tr.dist[-1] < tol, tr.dist


def test_fsla_counts_and_fixed_point(quad, fquad):
    x = _x(quad)
    g, first, last, st = _run(quad, harness.estimator("fsla"), x, 300)
    assert torch.allclose(g[-1], quad.hypergradient(x), atol=1e-8, rtol=0)
    base = dict.fromkeys(ORACLE_NAMES, 0)
    assert first == {**base, "grad_y_g": 1, "grad_y_f": 1, "hvp": 1, "grad_x_f": 1, "jvp": 1}
    assert last == {**base, "grad_y_g": 1, "grad_y_f": 1, "hvp": 1, "grad_x_f": 2, "jvp": 2}
    assert int(st["t"]) == 300
    # stochastic: the momentum direction averages to grad Phi once (y, v) have converged
    gs, _, last, _ = _run(fquad, harness.estimator("fsla", inner_lr=0.05, solver_lr=0.05, momentum=0.3), _x(fquad), 3000)
    tail = gs[1500:]
    assert last["grad_x_f"] == 2 and last["jvp"] == 2
    assert float(torch.linalg.norm(tail.mean(0) - fquad.hypergradient(_x(fquad)))) < 0.1 * float(torch.linalg.norm(fquad.hypergradient(_x(fquad))))


def test_sustain_tracks_y_star_unbiased_and_counts(quad):
    x = _x(quad)
    e = harness.estimator("sustain", solver_steps=30, momentum=1.0)
    gs, first, last, st = _run(quad, e, x, 1200)
    assert torch.allclose(st["y"], quad.inner_solution(x), atol=1e-10)
    m, se = gs[200:].mean(0), gs[200:].std(0) / 1000 ** 0.5
    assert bool(((m - quad.hypergradient(x)).abs() <= 5 * se + 1e-3).all())
    assert (first["grad_y_g"], first["grad_x_f"], first["grad_y_f"], first["jvp"]) == (1, 1, 1, 1)
    assert (last["grad_y_g"], last["grad_x_f"], last["grad_y_f"], last["jvp"]) == (2, 2, 2, 2)
    assert last["hvp"] % 2 == 0 and last["hvp"] <= 2 * 29


def _mean_sq_dist(p, r, checkpoints):
    """E||x_t - x*||^2 over the runs, averaged over the window [3c/4, c] of each checkpoint c."""
    d2 = (torch.linalg.norm(r["x"] - p.stationary_points()[0], dim=2) ** 2).mean(1)
    return [float(d2[c - c // 4:c + 1].mean()) for c in checkpoints]


@pytest.mark.parametrize("noisy", [False, True])
def test_sustain_decaying_steps_reach_stationary_point(quad, noisy):
    """Theorem 1's schedule (steps ~ t^-1/3 on x and y, momentum eta_t = 0.5 (t + 1)^-2/3 < 1): the squared distance to
    the stationary point, averaged over 16 runs, keeps falling (predicted ~ t^-2/3) where constant steps stall at
    ~0.1 (deterministic: BSA's truncation noise) or ~1 (noise 0.3)."""
    p = harness.problem("quadratic", dim=5, kappa=2, rho=1.0, noise=0.3) if noisy else quad
    e = harness.estimator("sustain", solver_steps=10, solver_lr=0.5 if noisy else 0.25, momentum=0.5,
                          decay=1 / 3, momentum_decay=2 / 3)
    T = 400
    first, last = _mean_sq_dist(p, storm_runs(p, e, T, 0.2, list(range(16))), [T // 8, T])
    assert last < 0.02 and last < 0.3 * first, (first, last)  # from 0.45 at x_0


def test_mrbo_outer_loop_reaches_stationary_point(quad, logreg):
    for p, kw, lr, tol in ((quad, {"solver_lr": 0.4}, 0.5, 1e-6), (logreg, {"solver_lr": 1.0}, 4.0, 1e-5)):
        tr = outer_loop(p, harness.estimator("mrbo", solver_steps=30, **kw), 150, lr, "power", power=1 / 3, eval_every=150)
        assert not tr.diverged and tr.dist[-1] < tol, tr.dist


def test_mrbo_counts_and_fixed_point(quad):
    """At a fixed x the y-direction's STORM recursion drives y to y*(x), and on a deterministic problem the direction is
    the Neumann hypergradient at (x, y_t): grad Phi(x) up to the series' truncation (0.6^31 here)."""
    x = _x(quad)
    Q = 30
    g, first, last, st = _run(quad, harness.estimator("mrbo", solver_steps=Q, solver_lr=0.4), x, 200)
    assert torch.allclose(st["y"], quad.inner_solution(x), atol=1e-10)
    assert torch.allclose(g[-1], quad.hypergradient(x), atol=1e-6, rtol=0)
    base = dict.fromkeys(ORACLE_NAMES, 0)
    assert first == {**base, "grad_y_g": 1, "grad_x_f": 1, "grad_y_f": 1, "jvp": 1, "hvp": Q}
    assert last == {**base, "grad_y_g": 2, "grad_x_f": 2, "grad_y_f": 2, "jvp": 2, "hvp": 2 * Q}
    assert int(st["t"]) == 200


def test_mrbo_stochastic_direction_tracks_truth():
    """Stochastic quadratic, the paper's schedule: the STORM direction's error against the exact hypergradient at the
    iterate falls along the run (the claim mrbo-storm-tracks-hypergradient fits its exponent), and the iterates approach
    the stationary point."""
    p = harness.problem("quadratic", dim=5, kappa=2, rho=1.0, noise=0.3)
    r = storm_runs(p, harness.estimator("mrbo", solver_steps=8), 240, 0.5, list(range(16)))
    err = r["err"].mean(1)
    early, late = float(err[20:30].mean()), float(err[-30:].mean())
    assert late < 0.3 * early and late < 0.05, (early, late)
    first, last = _mean_sq_dist(p, r, [30, 240])
    assert last < 0.01 and last < 0.3 * first, (first, last)


def test_storm_runs_is_the_shared_outer_loop(fquad):
    """blobench.claims.yang2021.storm_runs (all runs in one vmapped call per step) gives each seed's outer_loop trajectory."""
    e = harness.estimator("mrbo", solver_steps=4)
    r = storm_runs(fquad, e, 25, 0.3, [0, 5])
    for i, s in enumerate([0, 5]):
        tr = outer_loop(fquad, e, 25, 0.3, "power", seed=s, power=1 / 3)
        assert torch.allclose(r["x"][-1, i], tr.x_final, atol=1e-12, rtol=0)
    assert torch.allclose(r["err"][0], ((r["d"][0] - fquad.hypergradient(fquad.x0())) ** 2).sum(1))


def test_momentum_mutations_are_undone():
    import blobench.estimators.single_loop_momentum as slm
    from blobench.claims import yang2021 as momentum

    before = (slm.MRBO.estimate, slm.MRBO.previous_sample, slm.momentum_weight, slm.MRBO.storm_correction)
    assert {m[0] for m in momentum.MUTATIONS} == {"mrbo-old-point-other-sample", "mrbo-old-point-previous-batch",
                                                 "mrbo-momentum-weights-constant", "mrbo-old-point-is-current"}
    for _, _, patch in momentum.MUTATIONS:
        with patch():
            assert (slm.MRBO.estimate, slm.MRBO.previous_sample, slm.momentum_weight) != before[:3]
        assert (slm.MRBO.estimate, slm.MRBO.previous_sample, slm.momentum_weight, slm.MRBO.storm_correction) == before
    assert "previous_sample" not in vars(slm.MRBO) and "estimate" not in vars(slm.MRBO)


def test_running_mean_samples_on_hand_made_trajectory():
    """blobench.claims.yang2021.running_mean_samples: the first K with (1/K) sum_{k<K} mean_runs ||grad Phi(x_k)||^2 <= eps, over
    x_0 .. x_{T-1} only (as blobench.measure.complexity's running-mean rule), samples = calls up to x_{K-1} x batch size."""
    import numpy as np

    from blobench.claims.yang2021 import running_mean_samples

    # run means 1.0, 0.5, 0.3, 0.2 (running means 1.0, 0.75, 0.6, 0.5); x_T's 0.0 would bring it to 0.4 if counted
    grad_sq = np.array([[1.5, 0.5], [0.4, 0.6], [0.3, 0.3], [0.0, 0.4], [0.0, 0.0]])
    calls = np.array([0.0, 12.0, 36.0, 60.0, 84.0])
    out = running_mean_samples(grad_sq, calls, [1.0, 0.75, 0.5, 0.4], batch_size=3)
    assert out[1.0] == {"K": 1, "calls": 0.0, "samples": 0.0, "running_mean": 1.0}
    assert out[0.75] == {"K": 2, "calls": 12.0, "samples": 36.0, "running_mean": 0.75}
    assert out[0.5]["K"] == 4 and out[0.5]["samples"] == 180.0 and abs(out[0.5]["running_mean"] - 0.5) < 1e-15
    assert out[0.4] is None


def test_storm_runs_counts_are_outer_loops():
    """storm_runs' calls (the Oracles' counts of one run, the vmapped call counted once per draw) equal
    outer_loop's Trajectory.calls at every iterate: MRBO's Q + 4 calls on the first step, 2Q + 8 after."""
    p = harness.problem("quadratic", dim=5, kappa=2, rho=1.0, noise=0.3)
    e = harness.estimator("mrbo", solver_steps=3)
    r = storm_runs(p, e, 12, 0.2, [0, 1, 2])
    tr = outer_loop(p, e, 12, 0.2, "power", seed=1, power=1 / 3)
    for k in ORACLE_NAMES:
        assert r["calls"][k].tolist() == [float(c) for c in tr.calls[k]], k
    total = sum(r["calls"][k] for k in ORACLE_NAMES)
    assert total[1] == 3 + 4 and float(total[-1]) == 7 + 11 * (2 * 3 + 8)


def test_exponent_gap_interval():
    """blobench.claims.yang2021.exponent_gap: the slopes' difference with a t-interval on sqrt(se1^2 + se2^2), n1 + n2 - 4 dof."""
    import numpy as np
    from scipy import stats

    from blobench.claims.yang2021 import exponent_gap
    from blobench.measure.complexity import fit_exponent

    x = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    wiggle = np.exp(0.05 * np.array([1.0, -1.0, 0.5, 1.0, -0.7]))
    a, b = fit_exponent(x, x**2 * wiggle), fit_exponent(x, 3 * x**1.5 * wiggle[::-1])
    g = exponent_gap(a, b)
    assert abs(g["gap"] - (a["slope"] - b["slope"])) < 1e-15 and abs(g["gap"] - 0.5) < 0.1
    half = stats.t.ppf(0.975, 6) * np.hypot(a["stderr"], b["stderr"])
    assert abs(g["hi"] - g["gap"] - half) < 1e-12 and abs(g["gap"] - g["lo"] - half) < 1e-12
    assert g["lo"] < 0.5 < g["hi"]
    assert np.isnan(exponent_gap(a, fit_exponent(x[:2], x[:2]))["lo"])  # fewer than 3 points: no interval
