"""The outer loop and the convergence metric (blobench/measure/outer.py) against an independent numpy outer loop.

On the deterministic quadratic every quantity the convergence metric records has a closed form:
x_{t+1} = x_t - beta_t grad Phi(x_t) with grad Phi(x) = rho x + B^T A^-1 (A^-1 (B x + b) - c), Phi* at the
unique stationary point, so the schedules, ||grad Phi||^2, Phi - Phi*, the distance to the stationary point,
the cumulative oracle calls, the divergence stop and the evaluation grid are all compared with numbers
computed here in numpy from the problem's matrices. Also: the low-dimensional end points the landscape figure
draws, and blobench.claims.anil.iterations_to_eps (the first k, not merely some k).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from blobench import harness
from blobench.measure.metrics import CellContext
from blobench.measure.outer import convergence, outer_loop, step_size


@pytest.fixture(scope="module")
def quad():
    return harness.problem("quadratic", dim=4, kappa=5, rho=0.2, seed=3)


class NpQuad:
    """The quadratic's ground truth, recomputed in numpy."""

    def __init__(self, p):
        self.A, self.B, self.b, self.c = (t.numpy() for t in (p.A, p.B, p.b, p.c))
        self.rho = p.p["rho"]
        Ai = np.linalg.inv(self.A)
        H = self.B.T @ Ai @ Ai @ self.B + self.rho * np.eye(self.B.shape[1])
        self.xs = np.linalg.solve(H, -self.B.T @ Ai @ (Ai @ self.b - self.c))
        self.L_phi = float(np.linalg.eigvalsh(H).max())

    def y(self, x):
        return np.linalg.solve(self.A, self.B @ x + self.b)

    def value(self, x):
        r = self.y(x) - self.c
        return 0.5 * r @ r + 0.5 * self.rho * x @ x

    def grad(self, x):
        return self.rho * x + self.B.T @ np.linalg.solve(self.A, self.y(x) - self.c)


def np_schedule(beta, schedule, t):
    return {"constant": beta, "harmonic": beta / (t + 1), "sqrt": beta / math.sqrt(t + 1)}[schedule]


def np_loop(q: NpQuad, x0, steps, beta, schedule):
    xs = [np.asarray(x0, dtype=float)]
    for t in range(steps):
        xs.append(xs[-1] - np_schedule(beta, schedule, t) * q.grad(xs[-1]))
    return xs


def test_step_size_schedules():
    for t in range(6):
        assert step_size(0.3, "constant", t) == 0.3
        assert step_size(0.3, "harmonic", t) == pytest.approx(0.3 / (t + 1), rel=1e-15)
        assert step_size(0.3, "sqrt", t) == pytest.approx(0.3 / math.sqrt(t + 1), rel=1e-15)
    with pytest.raises(ValueError):
        step_size(0.3, "cosine", 0)


@pytest.mark.parametrize("schedule", ["constant", "harmonic", "sqrt"])
def test_trajectory_and_ground_truth_curves_match_numpy(quad, schedule):
    """Every recorded ||grad Phi||^2, Phi - Phi* and distance to x*, and x_final, against the numpy outer loop."""
    q = NpQuad(quad)
    beta, T = 1.5 / q.L_phi, 12
    x0 = np.linspace(-1.0, 1.0, quad.dim_x)
    tr = outer_loop(quad, harness.estimator("exact"), T, beta, schedule, x0=torch.tensor(x0))
    ref = np_loop(q, x0, T, beta, schedule)
    assert tr.iters == list(range(T + 1)) and not tr.diverged
    for t, x in enumerate(ref):
        g = q.grad(x)
        assert tr.grad_norm_sq[t] == pytest.approx(float(g @ g), rel=1e-10, abs=1e-300)
        assert tr.value_gap[t] == pytest.approx(q.value(x) - q.value(q.xs), rel=1e-9, abs=1e-14)
        assert tr.dist[t] == pytest.approx(float(np.linalg.norm(x - q.xs)), rel=1e-10)
    assert np.allclose(tr.x_final.numpy(), ref[-1], rtol=1e-12, atol=1e-13)
    # the curves are not trivially zero: x0 is away from x* and the loop makes progress
    assert tr.dist[0] > 0.5 and tr.dist[-1] < tr.dist[0]


def test_cumulative_oracle_calls(quad):
    """Counted calls accumulate per step (aid-cg: D grad_y g, N HV, 1 JV, 1+1 grad f); an estimator's own reported
    calls (bsa's truncation index p, random per step) override the counted ones and are summed as drawn."""
    D, N, T = 3, 2, 7
    tr = outer_loop(quad, harness.estimator("aid-cg", inner_steps=D, solver_steps=N), T, 0.1, eval_every=3)
    assert tr.iters == [0, 3, 6, 7]
    for t, it in enumerate(tr.iters):
        assert tr.calls["grad_y_g"][t] == D * it and tr.calls["hvp"][t] == N * it
        assert tr.calls["jvp"][t] == it and tr.calls["grad_x_f"][t] == it and tr.calls["exact"][t] == 0
    sq = harness.problem("quadratic", dim=3, kappa=3, noise=0.3)
    e = harness.estimator("bsa", inner_steps=2, solver_steps=5)
    tr = outer_loop(sq, e, 9, 0.05, seed=4)
    ps = e.draw(sq, torch.Generator().manual_seed(4), 9)["trunc/p"].tolist()
    assert len(set(ps)) > 1  # the reported counts vary, so a constant count would not pass
    assert tr.calls["hvp"] == [float(sum(ps[:t])) for t in range(10)]
    assert tr.calls["grad_y_g"] == [2.0 * t for t in range(10)]


def test_diverge_at_stops_at_the_first_iterate_beyond_the_bound(quad):
    q = NpQuad(quad)
    beta, bound = 5.0 / q.L_phi, 1e3  # beta > 2 / L_phi: the iteration blows up geometrically
    ref = np_loop(q, np.zeros(quad.dim_x), 200, beta, "constant")
    first = next(t for t, x in enumerate(ref) if np.linalg.norm(x) > bound)
    tr = outer_loop(quad, harness.estimator("exact"), 200, beta, diverge_at=bound, eval_every=50)
    assert tr.diverged and tr.iters[-1] == first and first < 50  # recorded at once, off the eval grid
    assert np.allclose(tr.x_final.numpy(), ref[first], rtol=1e-10)
    assert tr.calls["exact"][-1] == first
    ok = outer_loop(quad, harness.estimator("exact"), 20, 1.0 / q.L_phi, diverge_at=bound)
    assert not ok.diverged and ok.iters[-1] == 20


def test_eval_every_grid_and_seconds(quad):
    tr = outer_loop(quad, harness.estimator("exact"), 10, 0.1, eval_every=4)
    assert tr.iters == [0, 4, 8, 10]
    assert tr.seconds[0] == 0.0 and all(a <= b for a, b in zip(tr.seconds, tr.seconds[1:]))
    full = outer_loop(quad, harness.estimator("exact"), 10, 0.1)
    assert full.iters == list(range(11))
    for i, t in enumerate(tr.iters):  # the grid subsamples the same curve
        assert tr.grad_norm_sq[i] == full.grad_norm_sq[t] and tr.dist[i] == full.dist[t]


def test_convergence_metric_rows_and_default_step(quad):
    """The metric's tidy rows carry the trajectory; the default beta is 1/L from the problem's constants."""
    q = NpQuad(quad)
    ctx = CellContext(quad, "exact", {}, seed=0)
    rows = convergence(ctx, outer_steps=6, eval_every=2)
    L = quad.constants["L"]
    ref = np_loop(q, np.zeros(quad.dim_x), 6, 1.0 / L, "constant")
    by = {(r["quantity"], r.get("iteration"), r.get("coord")): r for r in rows}
    for t in (0, 2, 4, 6):
        assert by[("dist_stationary", t, None)]["value"] == pytest.approx(np.linalg.norm(ref[t] - q.xs), rel=1e-10)
        g = q.grad(ref[t])
        assert by[("grad_norm_sq", t, None)]["value"] == pytest.approx(float(g @ g), rel=1e-10)
        assert by[("value_gap", t, None)]["calls_exact"] == t
    assert by[("diverged", None, None)]["value"] == 0.0
    for j in range(quad.dim_x):
        assert by[("x_start", None, j)]["value"] == 0.0
        assert by[("x_final", None, j)]["value"] == pytest.approx(ref[-1][j], rel=1e-12, abs=1e-14)


def test_landscape_end_points_are_the_outer_loops_x_final(in_tmp):
    """The end points stored for the landscape figure (x_final rows of a run) are the outer loop's x_final,
    recomputed here with the same problem, estimator, schedule and seed; and they differ between fo and maml."""
    mp = {"outer_steps": 20, "outer_lr": 10.0, "schedule": "harmonic", "eval_every": 10}
    m = {"name": "land", "experiment": [{"problem": "ufo-counterexample", "estimators": ["fo", "maml"],
                                         "metric": "convergence", "metric_params": mp}]}
    df = harness.load(harness.run(m, progress=False))
    p = harness.problem("ufo-counterexample")
    ends = {}
    for est in ("fo", "maml"):
        row = df[(df["quantity"] == "x_final") & (df["estimator"] == est)]
        assert len(row) == 1
        seed = int(row["seed"].iloc[0])
        tr = outer_loop(p, harness.estimator(est), 20, 10.0, "harmonic", seed=seed, eval_every=10)
        ends[est] = float(row["value"].iloc[0])
        assert ends[est] == pytest.approx(float(tr.x_final[0]), rel=1e-12, abs=1e-12)
        start = df[(df["quantity"] == "x_start") & (df["estimator"] == est)]["value"].iloc[0]
        assert start == float(p.x0()[0]) and ends[est] != start
    assert abs(ends["fo"] - ends["maml"]) > 1e-3


def test_iterations_to_eps_is_the_first_k():
    """blobench.claims.anil.iterations_to_eps returns the FIRST k with ||grad_k||^2 <= eps ||grad_0||^2: recomputed here."""
    from blobench.claims.anil import iterations_to_eps

    p = harness.problem("anil-fewshot", unroll_steps=1, tasks=2)
    beta, eps = 2.0, 0.5
    x = p.x0()
    g = p.hypergradient(x)
    g0 = float(g @ g)
    sq = [g0]
    for _ in range(200):
        x = x - beta * g
        g = p.hypergradient(x)
        sq.append(float(g @ g))
        if sq[-1] <= eps * g0:
            break
    first = next(k for k, v in enumerate(sq) if v <= eps * g0)
    assert first >= 2  # non-trivial: it takes more than one step
    assert iterations_to_eps(p, beta, eps, 200) == first
    assert iterations_to_eps(p, beta, eps, first - 1) == first  # not reached within k_max: k_max + 1
    assert iterations_to_eps(p, beta, 1.0, 200) == 0
