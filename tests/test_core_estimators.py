"""exact / itd / aid-cg / fo against the closed-form truth of `quadratic`, and their oracle counts."""
import numpy as np
import pytest
import torch

from blobench import harness
@pytest.fixture(scope="module")
def quad():
    return harness.problem("quadratic", dim=6, kappa=10)


def x_of(p, seed=3):
    return torch.randn(p.dim_x, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def one(p, name, x, **kw):
    return harness.estimate(p, harness.estimator(name, **kw), x, n=1)


def err(p, name, x, **kw):
    return float(torch.linalg.norm(one(p, name, x, **kw).grads[0] - p.hypergradient(x)))


def test_exact_is_ground_truth(quad):
    """The exact estimator (the problem's closed form) against an independent float64 numpy solve of the
    implicit-function formula from the problem's matrices: y* = A^-1 (B x + b), grad Phi = rho x + B^T A^-1 (y* - c)."""
    x = x_of(quad)
    out = one(quad, "exact", x)
    A, B, b, c, xn = (t.numpy() for t in (quad.A, quad.B, quad.b, quad.c, x))
    y = np.linalg.solve(A, B @ xn + b)
    ref = quad.p["rho"] * xn + B.T @ np.linalg.solve(A, y - c)
    assert np.allclose(out.grads[0].numpy(), ref, rtol=1e-12, atol=1e-13)
    assert np.allclose(quad.inner_solution(x).numpy(), y, rtol=1e-12, atol=1e-13)
    # Phi itself, so that value() and hypergradient() are checked against one truth
    phi = 0.5 * float((y - c) @ (y - c)) + 0.5 * quad.p["rho"] * float(xn @ xn)
    assert quad.value(x) == pytest.approx(phi, rel=1e-12)
    assert out.mean_calls()["exact"] == 1


@pytest.mark.parametrize("name,kw", [("itd", dict(inner_steps=400)), ("aid-cg", dict(inner_steps=400, solver_steps=30))])
def test_converges_to_exact_at_large_budget(quad, name, kw):
    assert err(quad, name, x_of(quad), **kw) < 1e-8


@pytest.mark.parametrize("name,budget", [("itd", "inner_steps"), ("aid-cg", "inner_steps"), ("aid-cg", "solver_steps")])
def test_error_decreases_with_budget(quad, name, budget):
    x = x_of(quad)
    base = dict(inner_steps=400) if budget == "solver_steps" else {}
    errs = [err(quad, name, x, **{**base, budget: b}) for b in (1, 4, 16, 64)]
    # strictly decreasing until it reaches round-off (CG is exact after dim steps)
    assert all(a > b or (a < 1e-12 and b < 1e-12) for a, b in zip(errs, errs[1:])), errs
    assert errs[-1] < 1e-2 * errs[0]  # (1 - 1/kappa)^64 ~ 1e-3 for kappa = 10


def test_itd_equals_autograd_through_the_unrolled_loop(quad):
    """Our explicit reverse mode equals torch.autograd through D GD steps (an independent implementation)."""
    x = x_of(quad).requires_grad_(True)
    D, lr = 7, 1.0 / quad.constants["L"]
    y = torch.zeros(quad.dim_y, dtype=torch.float64)
    for _ in range(D):
        y = y - lr * (quad.A @ y - quad.B @ x - quad.b)
    (g,) = torch.autograd.grad(quad.outer(x, y), x)
    ours = one(quad, "itd", x.detach(), inner_steps=D).grads[0]
    assert torch.allclose(ours, g, rtol=1e-12, atol=1e-12)


def test_fo_error_is_the_dropped_implicit_term(quad):
    x = x_of(quad)
    fo = one(quad, "fo", x, inner_steps=600).grads[0]
    dropped = quad.hypergradient(x) - fo
    assert torch.allclose(dropped, quad.implicit_term(x), atol=1e-10)
    assert torch.linalg.norm(dropped) > 0.1  # the term is not trivially zero here


def test_aid_cg_solves_the_linear_system_like_a_direct_solve(quad):
    """With y exact (many GD steps), N = dim CG steps reproduce torch.linalg.solve exactly."""
    x = x_of(quad)
    out = one(quad, "aid-cg", x, inner_steps=800, solver_steps=quad.dim_y).grads[0]
    y = quad.inner_solution(x)
    v = torch.linalg.solve(quad.A, y - quad.c)
    direct = quad.p["rho"] * x + quad.B.T @ v
    assert torch.allclose(out, direct, atol=1e-10)


@pytest.mark.parametrize("D,N", [(0, 0), (3, 2), (11, 5)])
def test_oracle_counts_match_formulas(quad, D, N):
    x = x_of(quad)
    z = dict.fromkeys(("grad_x_g", "f_value", "g_value"), 0)  # issue 15's oracles: unused by these estimators
    c = one(quad, "itd", x, inner_steps=D).mean_calls()
    assert c == {"grad_x_f": 1, "grad_y_f": 1, "grad_y_g": D, "hvp": D, "jvp": D, "exact": 0, **z}
    c = one(quad, "aid-cg", x, inner_steps=D, solver_steps=N).mean_calls()
    assert c == {"grad_x_f": 1, "grad_y_f": 1, "grad_y_g": D, "hvp": N, "jvp": 1, "exact": 0, **z}
    c = one(quad, "fo", x, inner_steps=D).mean_calls()
    assert c == {"grad_x_f": 1, "grad_y_f": 1, "grad_y_g": D, "hvp": 0, "jvp": 0, "exact": 0, **z}


def test_batched_draws_equal_per_draw_loop():
    """vmap in chunks gives the same numbers as the per-draw loop (purity of estimate)."""
    p = harness.problem("quadratic", dim=4, kappa=5, noise=0.3)
    e = harness.estimator("aid-cg", inner_steps=5, solver_steps=3, batch_size=2)
    a = harness.estimate(p, e, seed=7, n=37, chunk=10)
    b = harness.estimate(p, e, seed=7, n=37, vmapped=False)
    assert a.batched and not b.batched
    assert torch.allclose(a.grads, b.grads, rtol=1e-12, atol=1e-13)
    assert torch.equal(a.calls["hvp"], torch.full((37,), 3))
    c = harness.estimate(p, e, seed=7, n=37, chunk=1024)
    assert torch.equal(a.grads, c.grads) or torch.allclose(a.grads, c.grads, rtol=1e-14, atol=1e-15)
    d = harness.estimate(p, e, seed=8, n=37)
    assert not torch.allclose(a.grads, d.grads)


def test_stochastic_itd_is_unbiased_when_linear_in_noise():
    """With only outer noise entering linearly (inner_steps=0: y = 0), itd's estimate is unbiased."""
    p = harness.problem("quadratic", dim=3, kappa=4, noise=0.5)
    x = torch.ones(3, dtype=torch.float64)
    e = harness.estimator("itd", inner_steps=0)
    out = harness.estimate(p, e, x, n=4000)
    # E[estimate] = grad_x f(x, 0) = rho x
    mean = out.grads.mean(0)
    se = out.grads.std(0) / 4000**0.5
    assert bool(((mean - p.p["rho"] * x).abs() < 5 * se + 1e-12).all())


def test_wrong_shape_from_a_plugin_is_a_clear_error():
    @harness.register_estimator("test-wrong-shape")
    class Wrong(harness.Estimator):
        def estimate(self, oracles, x, noise, state=None):
            return harness.Estimate(torch.zeros(x.numel() + 1))

    p = harness.problem("quadratic", dim=3, kappa=2)
    with pytest.raises(harness.PluginError, match="shape"):
        harness.estimate(p, harness.estimator("test-wrong-shape"), n=2)


def test_problem_on_a_device_moves_its_tensors_and_runs_there():
    """The device path of harness.estimate without a GPU: on the shape-only "meta" device, the estimators' oracles
    must see the problem's matrices on the draws' device (a CPU problem with meta draws is a device mismatch)."""
    from blobench.measure.sampling import draw_noise, run_draws

    p = harness.problem("quadratic", dim=4, kappa=3, noise=0.3)
    assert p.on("cpu") is p
    q = p.on("meta")
    assert q.A.device.type == "meta" and q.B.device.type == "meta" and p.A.device.type == "cpu"
    e = harness.estimator("aid-cg", inner_steps=3, solver_steps=2)
    noise = draw_noise(p, e, 5, 0, "meta")
    with pytest.raises(RuntimeError, match="device"):
        run_draws(p, e, p.x0().to("meta"), noise, 5)
    G, C = run_draws(q, e, p.x0().to("meta"), noise, 5)
    assert G.shape == (5, 4) and G.device.type == "meta" and C["hvp"].tolist() == [2] * 5


def test_problem_on_a_device_moves_tensors_inside_containers_and_keeps_their_types():
    """Problem.on moves tensors held in dicts (OrderedDict included), lists, tuples and namedtuples, in new
    containers of the same types; a container without tensors is kept as it is, and the original is untouched."""
    import collections

    from blobench.core.problem_base import _to_device

    NT = collections.namedtuple("NT", "a b")
    v = {"nt": NT(torch.ones(2), 3), "list": [torch.zeros(1), "k"], "od": collections.OrderedDict(q=torch.ones(1)),
         "plain": {"n": 1}}
    m = _to_device(v, torch.device("meta"))
    assert type(m["nt"]) is NT and m["nt"].a.device.type == "meta" and m["nt"].b == 3
    assert m["list"][0].device.type == "meta" and m["list"][1] == "k"
    assert type(m["od"]) is collections.OrderedDict and m["od"]["q"].device.type == "meta"
    assert m["plain"] is v["plain"] and v["nt"].a.device.type == "cpu" and v["od"]["q"].device.type == "cpu"


@pytest.mark.gpu
@pytest.mark.parametrize("name,kw", [("aid-cg", dict(inner_steps=5, solver_steps=3, batch_size=2)),
                                     ("itd", dict(inner_steps=4)), ("bsa", dict(inner_steps=3, solver_steps=4))])
def test_estimate_on_cuda_equals_cpu(cuda, name, kw):
    """harness.estimate(device="cuda") gives the CPU's draws (same noise, float64) and the same oracle counts."""
    p = harness.problem("quadratic", dim=5, kappa=4, noise=0.3)
    e = harness.estimator(name, **kw)
    x = x_of(p)
    a = harness.estimate(p, e, x, seed=3, n=64, chunk=16)
    b = harness.estimate(p, e, x, seed=3, n=64, chunk=16, device="cuda")
    assert b.grads.device.type == "cpu" and b.grads.dtype == torch.float64
    assert torch.allclose(a.grads, b.grads, rtol=1e-10, atol=1e-12)
    assert all(torch.equal(a.calls[k], b.calls[k]) for k in a.calls)
    assert float(a.grads.std(0).max()) > 1e-3  # the draws differ: a constant result would not pass
