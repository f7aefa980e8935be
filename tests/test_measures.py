"""Statistics of blobench.measure.metrics against independent truths.

* variance: a closed form on the stochastic quadratic (derivation below);
* the unbiasedness tests: empirical false-alarm rate with the exact estimator plus
  artificial zero-mean noise, and a negative control (a bias of the reported
  99%-power size must be detected);
* memory / time metrics: the stored ITD trajectory grows by dim_y * 8 bytes per step.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from blobench import harness
from blobench.core.errors import ParameterError
from blobench.measure.metrics import CellContext, hotelling_test, mean_test, summarize_draws


def itd1_covariance(p, lr: float, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact mean and covariance of ``itd`` with inner_steps=1 at x = 0 on stochastic ``quadratic``.

    With y_0 = 0 and x = 0 (blobench/problems/quadratic.py noise model, s^2 = noise^2 / batch):
      y_1 = -lr grad_y g(0, 0; xi) = lr (b + e_b)              (w drops out since y_0 = 0)
      v_1 = grad_y f(0, y_1; xi') = y_1 - c - e_c
      estimate = rho*0 - lr grad2_xy g(0, y_0; xi) v_1 = lr (1 + t) * (B^T v_1)
    with t, e_b ~ N(0, s^2 I) of the inner sample and e_c ~ N(0, s^2 I) of the outer one, all
    independent. u = B^T v_1 ~ N(m, S), m = B^T (lr b - c), S = s^2 (lr^2 + 1) B^T B, and t is
    independent of u, so
      E[est] = lr m,   Cov[est]_ij = lr^2 (S_ij + s^2 delta_ij (S_ii + m_i^2)).
    """
    s2 = p.p["noise"] ** 2 / batch_size
    m = p.B.T @ (lr * p.b - p.c)
    S = s2 * (lr**2 + 1.0) * (p.B.T @ p.B)
    cov = lr**2 * (S + torch.diag(s2 * (torch.diag(S) + m * m)))
    return lr * m, cov


def test_variance_matches_closed_form():
    p = harness.problem("quadratic", dim=4, noise=0.7, kappa=3.0, seed=1)
    lr, bs, n = 0.3, 2, 40_000
    e = harness.estimator("itd", inner_steps=1, inner_lr=lr, batch_size=bs)
    out = harness.estimate(p, e, torch.zeros(4, dtype=torch.float64), seed=3, n=n)
    mean, cov = itd1_covariance(p, lr, bs)
    G = out.grads.double()
    emp_cov = torch.cov(G.T)
    # the empirical trace has relative s.e. ~ sqrt(2/n) * O(1): 2% is > 4 s.e. at n = 40000
    assert float(emp_cov.trace()) == pytest.approx(float(cov.trace()), rel=0.03)
    assert torch.allclose(emp_cov, cov, atol=0.05 * float(cov.diagonal().max()))
    rows = {r["quantity"]: r for r in summarize_draws(G, mean, seed=0) if "coord" not in r}
    assert rows["variance_trace"]["value"] == pytest.approx(float(cov.trace()), rel=0.03)
    assert rows["mse"]["value"] == pytest.approx(float(cov.trace()), rel=0.03)  # truth = the exact mean
    assert rows["unbiased_reject_hotelling"]["value"] == 0.0
    # negative control: the same closed form with the wrong batch size is rejected
    _, wrong = itd1_covariance(p, lr, 1)
    assert float(emp_cov.trace()) != pytest.approx(float(wrong.trace()), rel=0.1)


def _false_alarms(bias: np.ndarray, reps: int, n: int, alpha: float, seed: int) -> tuple[float, float]:
    p = harness.problem("quadratic", dim=3, seed=2)
    truth = p.hypergradient(p.x0()).numpy()
    exact = harness.estimate(p, harness.estimator("exact"), n=n).grads.double().numpy()  # n copies of truth
    rng = np.random.default_rng(seed)
    L = np.array([[1.0, 0, 0], [0.5, 0.4, 0], [-0.3, 0.2, 2.0]])  # correlated, unequal scales
    rh = rt = 0
    for _ in range(reps):
        # heavy-ish tails (t with 6 d.o.f., zero mean): the tests are only asymptotically exact
        z = rng.standard_t(6, size=(n, 3)) / np.sqrt(6 / 4)
        G = exact + z @ L.T + bias
        rh += hotelling_test(G, truth, alpha)["reject_hotelling"]
        rt += mean_test(G, truth, alpha)["reject"]
    return rh / reps, rt / reps


def test_false_alarm_rate_and_power():
    alpha, reps, n = 0.05, 600, 200
    fh, ft = _false_alarms(np.zeros(3), reps, n, alpha, seed=0)
    se = np.sqrt(alpha * (1 - alpha) / reps)
    assert abs(fh - alpha) < 4 * se, fh  # Hotelling: exact level alpha
    assert ft <= alpha + 4 * se, ft  # Holm: family-wise error <= alpha
    # negative control: a bias of the reported 99%-power size, in the worst direction, is detected
    rng = np.random.default_rng(1)
    L = np.array([[1.0, 0, 0], [0.5, 0.4, 0], [-0.3, 0.2, 2.0]])
    G0 = rng.standard_normal((n, 3)) @ L.T
    mdb = hotelling_test(G0, np.zeros(3), alpha)["min_detectable_bias_99_hotelling"]
    w, V = np.linalg.eigh(L @ L.T)
    bias = mdb * V[:, -1]
    ph, _ = _false_alarms(bias, 200, n, alpha, seed=5)
    assert ph >= 0.95, ph
    # the Holm test on unbiased draws (not rejected), then with a bias of its own reported 99%-power size on the
    # noisiest coordinate (rejected); its power over repetitions is tested below
    G1 = np.random.default_rng(12).standard_normal((n, 3)) @ L.T
    t1 = mean_test(G1, np.zeros(3), alpha)
    assert t1["reject"] == 0.0, t1
    shift = np.zeros(3)
    shift[int(np.argmax(G1.std(0)))] = t1["min_detectable_bias_99"]
    assert mean_test(G1 + shift, np.zeros(3), alpha)["reject"] == 1.0


def test_holm_power_at_its_reported_detectable_bias():
    """Power of mean_test: a bias of its reported min_detectable_bias_99 on the noisiest coordinate is rejected in
    >= 95% of repetitions (nominal 99%, Gaussian approximation), and a tenth of it is rejected rarely."""
    alpha, reps, n = 0.05, 300, 200
    rng = np.random.default_rng(11)
    L = np.array([[1.0, 0, 0], [0.5, 0.4, 0], [-0.3, 0.2, 2.0]])
    # its reported size at n draws (sd / sqrt(n) scaling of the figure from a large, precise sample)
    big = mean_test(rng.standard_normal((20_000, 3)) @ L.T, np.zeros(3), alpha)
    mdb = big["min_detectable_bias_99"] * np.sqrt(20_000 / n)
    bias = np.array([0.0, 0.0, mdb])  # coordinate 2 has the largest sd (~2.08)
    hits = small = 0
    for _ in range(reps):
        Z = rng.standard_normal((n, 3)) @ L.T
        hits += mean_test(Z + bias, np.zeros(3), alpha)["reject"]
        small += mean_test(Z + 0.1 * bias, np.zeros(3), alpha)["reject"]
    assert hits / reps >= 0.95, hits / reps
    assert small / reps <= 0.2, small / reps


def test_bias_variance_intervals_cover_at_their_stated_level():
    """Coverage over repeated seeds on the stochastic quadratic, where E[itd with one inner step] is known in closed
    form (itd1_covariance): the per-coordinate mean intervals cover E[estimate] at the stated level (two-sided,
    within 4 s.e. of it), and the bias-norm interval, conservative by construction, covers ||E[estimate] - grad Phi||
    at least at that level without being vacuous (its half-width is at most 4x the per-coordinate one)."""
    p = harness.problem("quadratic", dim=3, noise=0.8, kappa=3.0, seed=4)
    lr, bs, n, reps, level = 0.3, 1, 150, 300, 0.9
    e = harness.estimator("itd", inner_steps=1, inner_lr=lr, batch_size=bs)
    x = torch.zeros(3, dtype=torch.float64)
    mean, _ = itd1_covariance(p, lr, bs)
    truth = p.hypergradient(x)
    true_bias = float(torch.linalg.norm(mean - truth))
    assert true_bias > 0.1  # a biased estimator, so the bias-norm interval is not trivially anchored at 0
    cov_coord = cov_norm = 0
    ratios, mses, vts = [], [], []
    for s in range(reps):
        G = harness.estimate(p, e, x, seed=1000 + s, n=n).grads
        rows = summarize_draws(G, truth, level=level, seed=s)
        for r in rows:
            if r["quantity"] == "mean":
                cov_coord += r["lo"] <= float(mean[r["coord"]]) <= r["hi"]
        b = next(r for r in rows if r["quantity"] == "bias_norm")
        cov_norm += b["lo"] <= true_bias <= b["hi"]
        half = max(r["hi"] - r["value"] for r in rows if r["quantity"] == "mean")
        ratios.append((b["hi"] - b["value"]) / half)
        mses.append(next(r["value"] for r in rows if r["quantity"] == "mse"))
        vts.append(next(r["value"] for r in rows if r["quantity"] == "variance_trace"))
    k = reps * 3
    se = np.sqrt(level * (1 - level) / reps)  # conservative: the 3 coordinates of one repetition are correlated
    assert abs(cov_coord / k - level) < 4 * se, cov_coord / k
    assert cov_norm / reps >= level - 4 * se, cov_norm / reps
    assert max(ratios) < 4.0, max(ratios)
    # and the point estimates, averaged over the repetitions: E[variance_trace] = tr Cov, E[mse] = tr Cov + ||bias||^2
    _, cov = itd1_covariance(p, lr, bs)
    assert np.mean(vts) == pytest.approx(float(cov.trace()), rel=0.03)
    assert np.mean(mses) == pytest.approx(float(cov.trace()) + true_bias**2, rel=0.03)


def test_hotelling_needs_more_draws_than_dims():
    G = np.random.default_rng(0).standard_normal((3, 5))
    assert np.isnan(hotelling_test(G, np.zeros(5))["p_hotelling"])


def test_memory_and_time_vs_budget_metrics():
    assert {"memory_vs_budget", "time_vs_budget"} <= set(harness.metrics())
    p = harness.problem("quadratic", dim=300, kappa=2.0)
    ctx = CellContext(p, "itd", {"inner_lr": 0.5})
    from blobench.measure.metrics import memory_vs_budget, time_vs_budget

    rows = memory_vs_budget(ctx, values=[5, 25, 45])
    slope = next(r["value"] for r in rows if r["quantity"] == "bytes_per_budget")
    # per step: y_k and its gradient graph kept for the backward pass (issue 13: A y_k), 2 dim_y float64
    assert slope == pytest.approx(2 * 300 * 8, rel=0.1)
    peaks = [r for r in rows if r["quantity"] == "peak_bytes"]
    assert [r["calls_hvp"] for r in peaks] == [5.0, 25.0, 45.0]
    # recompute-free control: fo stores nothing per step
    rows = memory_vs_budget(CellContext(p, "fo", {"inner_lr": 0.5}), values=[5, 45])
    assert abs(next(r["value"] for r in rows if r["quantity"] == "bytes_per_budget")) < 100
    t = time_vs_budget(ctx, values=[1, 40], repeats=3)
    med = [r for r in t if r["quantity"] == "seconds_median"]
    assert all(0 < r["lo"] <= r["value"] <= r["hi"] for r in med)
    assert med[1]["value"] > med[0]["value"]
    with pytest.raises(ParameterError, match="budget 'nope'"):
        memory_vs_budget(ctx, budget="nope", values=[1])
    with pytest.raises(ParameterError, match="values"):
        time_vs_budget(ctx, values=[-1])
