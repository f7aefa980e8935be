"""FSLA and SUSTAIN (estimators/single_loop_momentum.py) against exact truth, with their oracle counts."""
from __future__ import annotations

import pytest
import torch

import harness
from harness.oracles import ORACLE_NAMES, Oracles
from harness.outer import outer_loop


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
