"""Ground truth of Ji's problems: logreg-l2, hyper-cleaning, meta-quadratic, anil-fewshot.

Exact hypergradients vs central finite differences of value(); Newton inner solutions vs the
optimality condition; closed-form Hessians vs autograd; stationary points; the exact unrolled
meta-gradients vs the itd estimator (reverse-mode MAML) and fo (first order, which must differ);
task sampling unbiased; bad parameters rejected with a one-line ParameterError.
"""
import math

import numpy as np
import pytest
import torch

from blobench import harness
def central_fd(fn, x, h=1e-5):
    out = torch.zeros_like(x)
    for i in range(x.numel()):
        e = torch.zeros_like(x)
        e[i] = h
        out[i] = (fn(x + e) - fn(x - e)) / (2 * h)
    return out


def rand_x(p, scale=0.3, seed=0):
    return p.x0() + scale * torch.randn(p.dim_x, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


ARGMIN = [("logreg-l2", {}), ("logreg-l2", dict(features=4, classes=4, informative=2)),
          ("hyper-cleaning", {}), ("hyper-cleaning", dict(n_train=12, corruption=0.5, reg=0.05))]
UNROLLED = [("meta-quadratic", dict(unroll_steps=7, unroll_lr=0.3)),
            ("meta-quadratic", dict(curvature="convex", unroll_steps=3, unroll_lr=0.5, dim=3)),
            ("anil-fewshot", dict(unroll_steps=3)),
            ("anil-fewshot", dict(head_loss="nonconvex", unroll_steps=3, tasks=3))]


@pytest.mark.parametrize("name,kw", ARGMIN + UNROLLED)
def test_hypergradient_matches_finite_differences(name, kw):
    p = harness.problem(name, **kw)
    x = rand_x(p)
    g = p.hypergradient(x)
    fd = central_fd(p.value, x)
    assert float(torch.linalg.norm(g - fd) / torch.linalg.norm(g)) < 1e-6


@pytest.mark.parametrize("name,kw", ARGMIN)
def test_newton_inner_solution_and_hessian(name, kw):
    p = harness.problem(name, **kw)
    x = rand_x(p, seed=1)
    y = p.inner_solution(x)
    gy = torch.func.grad(p.inner, argnums=1)(x, y, None)
    assert float(torch.linalg.norm(gy)) < 1e-12
    H = torch.func.hessian(lambda y_: p.inner(x, y_))(y)
    assert float((H - p.inner_hessian(x, y)).abs().max()) < 1e-12
    ev = torch.linalg.eigvalsh(H)
    assert float(ev.min()) > 0  # strongly convex inner level


def test_newton_converges_from_a_warm_start_already_at_rounding_level():
    """A warm start 3e-9 from y* (the next x of an outer run): the Armijo test on g's value is then below g's rounding
    and used to halve t to 1e-10 and raise "did not converge (||grad|| = 2e-9)" (1 of these 20 starts did)."""
    p = harness.problem("logreg-l2", n_train=30, n_val=30, features=4, classes=2, informative=2, outer_reg=0.1)
    gfun = torch.func.grad(p.inner, argnums=1)
    for s in range(20):
        x = rand_x(p, scale=0.5, seed=s)
        ys = p.inner_solution(x)
        y0 = ys + 3e-9 * torch.randn(p.dim_y, generator=torch.Generator().manual_seed(100 + s), dtype=torch.float64)
        assert float(torch.linalg.norm(gfun(x, p.inner_solution(x, y0=y0), None))) < 1e-12


@pytest.mark.parametrize("name,kw", ARGMIN)
def test_itd_with_many_steps_converges_to_exact(name, kw):
    p = harness.problem(name, **kw)
    x = rand_x(p, seed=2)
    g = p.hypergradient(x)
    est = harness.estimate(p, harness.estimator("itd", inner_steps=400), x, n=1).grads[0]
    assert float(torch.linalg.norm(est - g) / torch.linalg.norm(g)) < 1e-6
    fo = harness.estimate(p, harness.estimator("fo", inner_steps=400), x, n=1).grads[0]
    assert float(torch.linalg.norm(fo - g) / torch.linalg.norm(g)) > 1e-2  # negative control: FO misses the implicit term


def test_stationary_points_are_stationary_and_cached(monkeypatch):
    """The BFGS solve runs once per parameter set: count the solver calls (an empty cache to start from)."""
    import scipy.optimize

    import blobench.problems.logreg_l2 as mod

    monkeypatch.setattr(mod, "_STATIONARY_CACHE", {})
    calls = []
    real = scipy.optimize.minimize
    monkeypatch.setattr(scipy.optimize, "minimize", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    p = harness.problem("logreg-l2")
    (xs,) = p.stationary_points()
    assert len(calls) == 1
    assert float(torch.linalg.norm(p.hypergradient(xs))) < 1e-8
    assert p.value(xs) < p.value(p.x0())
    xs[0] += 1.0  # the caller's copy: mutating it must not corrupt the cache
    (again,) = harness.problem("logreg-l2").stationary_points()
    assert len(calls) == 1 and float(torch.linalg.norm(p.hypergradient(again))) < 1e-8
    harness.problem("logreg-l2", outer_reg=2e-3).stationary_points()  # another parameter set: solved anew
    assert len(calls) == 2


def test_hyper_cleaning_downweights_corrupted_samples():
    p = harness.problem("hyper-cleaning")
    (xs,) = p.stationary_points()
    w = torch.sigmoid(xs)
    bad = torch.tensor(p.corrupted)
    assert bad.any() and (~bad).any()
    assert float(w[bad].mean()) < float(w[~bad].mean()) - 0.2


@pytest.mark.skipif(not __import__("importlib").util.find_spec("sklearn"), reason="scikit-learn not installed")
def test_hyper_cleaning_on_shipped_digits():
    p = harness.problem("hyper-cleaning", data="digits", n_train=20, n_val=40, classes=3)
    assert p.p_feat == 64 and p.dim_x == 20
    x = rand_x(p)
    g = p.hypergradient(x)
    # directional finite difference (64*3 inner dims, 20 outer dims: one direction keeps it fast)
    d = torch.randn(p.dim_x, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    h = 1e-5
    fd = (p.value(x + h * d) - p.value(x - h * d)) / (2 * h)
    assert abs(float(g @ d) - fd) < 1e-6 * abs(fd) + 1e-10


@pytest.mark.parametrize("name,kw", UNROLLED)
def test_unrolled_ground_truth_equals_itd_maml_gradient(name, kw):
    p = harness.problem(name, **kw)
    x = rand_x(p, seed=4)
    g = p.hypergradient(x)
    itd = harness.estimate(p, harness.estimator("itd"), x, n=1).grads[0]
    assert float(torch.linalg.norm(itd - g) / torch.linalg.norm(g)) < 1e-12
    fo = harness.estimate(p, harness.estimator("fo"), x, n=1).grads[0]
    assert float(torch.linalg.norm(fo - g) / torch.linalg.norm(g)) > 1e-3  # FOMAML differs


@pytest.mark.parametrize("name,kw", [("meta-quadratic", dict(unroll_steps=4, unroll_lr=0.2, meta_batch=2)),
                                     ("anil-fewshot", dict(unroll_steps=2, meta_batch=3, tasks=4))])
def test_task_sampling_is_unbiased(name, kw):
    p = harness.problem(name, **kw)
    x = rand_x(p, seed=5)
    g = p.hypergradient(x)
    n = 1500
    est = harness.estimate(p, harness.estimator("itd"), x, n=n, seed=0).grads
    se = est.std(0) / math.sqrt(n)
    z = (est.mean(0) - g) / se.clamp_min(1e-12)
    assert float(z.abs().max()) < 4.5
    assert float(est.std(0).norm()) > 0  # really stochastic


def test_meta_quadratic_closed_form_structure():
    p = harness.problem("meta-quadratic", unroll_steps=6, unroll_lr=0.25)
    c = p.constants
    assert c["neg_curv"] == pytest.approx(0.5) and c["spec_abs"] == pytest.approx(1.0)
    assert c["jacobian_growth"] == pytest.approx(1.125 ** 6)
    (xs,) = p.stationary_points()
    assert float(torch.linalg.norm(p.hypergradient(xs))) < 1e-10
    # convex tasks: every task Hessian is PSD
    q = harness.problem("meta-quadratic", curvature="convex")
    assert float(torch.linalg.eigvalsh(q.Hs).min()) >= -1e-12
    assert float(torch.linalg.eigvalsh(p.Hs).min()) < 0


def test_anil_head_losses_convexity():
    """Strongly convex head: Hessian in y >= reg > 0; nonconvex head: a negative eigenvalue somewhere."""
    sc = harness.problem("anil-fewshot", tasks=2)
    nc = harness.problem("anil-fewshot", head_loss="nonconvex", tasks=2)
    x = sc.x0()
    gen = torch.Generator().manual_seed(0)
    min_sc, min_nc = math.inf, math.inf
    for _ in range(20):
        y = 3 * torch.randn(sc.dim_y, generator=gen, dtype=torch.float64)
        min_sc = min(min_sc, float(torch.linalg.eigvalsh(torch.func.hessian(lambda y_: sc.inner(x, y_))(y)).min()))
        min_nc = min(min_nc, float(torch.linalg.eigvalsh(torch.func.hessian(lambda y_: nc.inner(x, y_))(y)).min()))
    assert min_sc >= 0.5 - 1e-9
    assert min_nc < 0


@pytest.mark.parametrize("name,kw,msg", [
    ("logreg-l2", dict(informative=20, features=5), "informative"),
    ("logreg-l2", dict(n_train=0), "n_train"),
    ("hyper-cleaning", dict(corruption=1.0), "corruption"),
    ("hyper-cleaning", dict(data="mnist"), "data"),
    ("hyper-cleaning", dict(data="digits", n_train=500, n_val=500, classes=2), "exceeds"),
    ("meta-quadratic", dict(curvature="concave"), "curvature"),
    ("meta-quadratic", dict(unroll_lr=0), "unroll_lr"),
    ("anil-fewshot", dict(head_loss="hinge"), "head_loss"),
    ("anil-fewshot", dict(tasks=0), "tasks"),
])
def test_bad_parameters_are_one_line_errors(name, kw, msg):
    with pytest.raises(harness.ParameterError, match=msg) as e:
        harness.problem(name, **kw)
    assert "\n" not in str(e.value)


def test_data_is_reproducible_from_seed():
    a, b = harness.problem("hyper-cleaning", seed=3), harness.problem("hyper-cleaning", seed=3)
    assert torch.equal(a.Xtr, b.Xtr) and np.array_equal(a.corrupted, b.corrupted)
    c = harness.problem("hyper-cleaning", seed=4)
    assert not torch.equal(a.Xtr, c.Xtr)
