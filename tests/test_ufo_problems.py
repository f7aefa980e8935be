"""UFO-BLO problems: closed forms against finite differences (float64), C^2 joins, ground truth vs autograd."""
import math

import numpy as np
import pytest
import torch

from blobench import harness
from blobench.core.errors import ParameterError
from blobench.problems.ufo_counterexample import _loss, d2loss_np, dloss_np, loss_np


def test_counterexample_loss_is_c2_at_both_joins():
    p = harness.problem("ufo-counterexample")
    A = p.A
    for a in p.a:
        for z0 in (A, A + 1):
            for s in (1.0, -1.0):
                lo, hi = s * (z0 - 1e-9), s * (z0 + 1e-9)
                for f in (loss_np, dloss_np, d2loss_np):
                    assert abs(f(hi, a, A) - f(lo, a, A)) < 1e-7 * max(1.0, abs(f(hi, a, A)))
    # and a discontinuity would be seen: the third derivative jumps at z = A (negative control)
    a = p.a[0]
    assert abs((d2loss_np(A + 1e-3, a, A) - d2loss_np(A, a, A)) / 1e-3 + a) < 1e-9


def test_counterexample_derivatives_match_finite_differences_and_autograd():
    p = harness.problem("ufo-counterexample")
    us = np.linspace(-2 * p.A - 3, 2 * p.A + 3, 57)
    h = 1e-6
    for a in p.a:
        fd1 = (loss_np(us + h, a, p.A) - loss_np(us - h, a, p.A)) / (2 * h)
        fd2 = (dloss_np(us + h, a, p.A) - dloss_np(us - h, a, p.A)) / (2 * h)
        assert np.allclose(fd1, dloss_np(us, a, p.A), atol=1e-6)
        assert np.allclose(fd2, d2loss_np(us, a, p.A), atol=1e-5)
        for u in us[::7]:
            ut = torch.tensor(u, dtype=torch.float64, requires_grad=True)
            (g,) = torch.autograd.grad(_loss(ut, torch.tensor(a), p.A), ut)
            assert abs(float(g) - dloss_np(u, a, p.A)) < 1e-10


def test_counterexample_value_gradient_vs_central_differences():
    p = harness.problem("ufo-counterexample")
    h = 1e-6
    for x in (-10.0, -3.0, 0.5, 2.84, 7.0, 15.0, 30.0):
        fd = (p.value([x + h]) - p.value([x - h])) / (2 * h)
        assert abs(fd - float(p.hypergradient([x])[0])) < 1e-6 * max(1, abs(fd))


def test_counterexample_stationary_and_fo_fixed_point():
    p = harness.problem("ufo-counterexample")
    xs, xfo = p.stationary_points()[0], p.fo_fixed_point()
    assert abs(float(p.hypergradient(xs)[0])) < 1e-12
    assert abs(float(p.fo_mean(xfo)[0])) < 1e-12
    assert float(p.hypergradient(xfo)[0]) == pytest.approx(math.sqrt(2 * 0.06), rel=1e-9)
    assert float(p.fo_mean(xs)[0]) != pytest.approx(0.0, abs=1e-3)  # FO is biased at theta*
    q = harness.problem("ufo-counterexample", D=0.5, unroll_steps=5)
    assert abs(float(q.hypergradient(q.fo_fixed_point())[0])) == pytest.approx(1.0, rel=1e-9)


def test_counterexample_bad_params():
    with pytest.raises(ParameterError, match="unroll_lr"):
        harness.problem("ufo-counterexample", unroll_lr=1.0)
    with pytest.raises(ParameterError, match="a1 != a2"):
        harness.problem("ufo-counterexample", a1=1.0, a2=1.0)
    with pytest.raises(ParameterError, match="D"):
        harness.problem("ufo-counterexample", D=-1)


def test_meta_linreg_closed_form_vs_finite_differences_and_stationary():
    p = harness.problem("meta-linreg", dim=4, unroll_steps=3)
    x = torch.tensor([0.3, -1.0, 2.0, 0.5], dtype=torch.float64)
    h = 1e-6
    g = p.hypergradient(x)
    for j in range(4):
        e = torch.zeros(4, dtype=torch.float64)
        e[j] = h
        fd = (p.value(x + e) - p.value(x - e)) / (2 * h)
        assert abs(fd - float(g[j])) < 1e-6
    s = p.stationary_points()[0]
    assert float(p.hypergradient(s).abs().max()) < 1e-12
    # Monte-Carlo value of M^(r) agrees with the closed form (checks the noise terms)
    batch = p.sample(torch.Generator().manual_seed(0), 20000)
    vals = torch.func.vmap(lambda b: _unrolled_value(p, x, b))(batch)
    assert abs(float(vals.mean()) - p.value(x)) < 4 * float(vals.std()) / math.sqrt(20000)
    with pytest.raises(ParameterError, match="diverges"):
        harness.problem("meta-linreg", unroll_lr=100.0)


def _unrolled_value(p, x, batch):
    y = x
    for _ in range(p.target.steps):
        y = y - p.target.lr * torch.func.grad(p.inner, argnums=1)(x, y, batch)
    return p.outer(x, y, batch)


def test_sinusoid_truth_is_pool_average_and_matches_finite_differences():
    p = harness.problem("sinusoid", hidden=4, tasks=8, unroll_steps=2, unroll_lr=0.05)
    x = p.x0()
    g = p.hypergradient(x)
    h = 1e-6
    for j in (0, 5, p.dim_x - 1):
        e = torch.zeros(p.dim_x, dtype=torch.float64)
        e[j] = h
        fd = (p.value(x + e) - p.value(x - e)) / (2 * h)
        assert abs(fd - float(g[j])) < 1e-6 * max(1.0, abs(fd))
    b = p.sample(torch.Generator().manual_seed(0), 5)
    assert b["ts"].shape == (5, p.p["shots"])


def test_digits_fewshot_truth_and_tasks():
    pytest.importorskip("sklearn")
    p = harness.problem("digits-fewshot", ways=3, tasks=4, unroll_steps=2)
    b = p.sample(torch.Generator().manual_seed(0), 2)
    assert b["xs"].shape == (2, 3, 64) and b["yq"].shape == (2, 15, 3)
    assert torch.equal(b["ys"].sum(1), torch.ones(2, 3, dtype=torch.float64))  # K = 1 image per class
    x = p.x0()
    e = harness.estimator("maml")
    tasks = [{f"task/{k}": v[i] for k, v in p.pool.items()} for i in range(4)]
    g = torch.stack([e.estimate(harness.Oracles(p), x, t).grad for t in tasks]).mean(0)
    assert torch.allclose(g, p.hypergradient(x), atol=1e-12)
    h = 1e-6
    d = torch.zeros(p.dim_x, dtype=torch.float64)
    d[7] = h
    assert abs((p.value(x + d) - p.value(x - d)) / (2 * h) - float(g[7])) < 1e-6
    acc = p.accuracy(x, p.make_tasks("test", 5, torch.Generator().manual_seed(1)))
    assert acc.shape == (5,) and bool(((acc >= 0) & (acc <= 1)).all())
    with pytest.raises(ParameterError, match="ways"):
        harness.problem("digits-fewshot", ways=11)
