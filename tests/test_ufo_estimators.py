"""maml and ufo: exact vs ground truth, stored == constant memory, UFO unbiasedness, oracle-count formulas."""
import numpy as np
import pytest
import torch

import harness
from harness.errors import ParameterError
from harness.oracles import Oracles

FAMILIES = [
    ("ufo-counterexample", {}),
    ("meta-linreg", {"dim": 3, "unroll_steps": 4}),
    ("sinusoid", {"hidden": 4, "tasks": 6, "unroll_steps": 2, "unroll_lr": 0.05}),
]


def _pool_exact(p, e, x):
    """Average of the maml estimate over the finite task family (exact expectation)."""
    if p.name == "ufo-counterexample":
        tasks = [{"task/a": torch.tensor(a), "task/b": torch.tensor(b)} for a, b in zip(p.a, p.b)]
    else:
        tasks = [{f"task/{k}": v[i] for k, v in p.pool.items()} for i in range(p.p["tasks"])]
    return torch.stack([e.estimate(Oracles(p), x, t).grad for t in tasks]).mean(0)


@pytest.mark.parametrize("name,params", [f for f in FAMILIES if f[0] != "meta-linreg"])
def test_maml_equals_problem_hypergradient_on_finite_families(name, params):
    p = harness.problem(name, **params)
    for x in (p.x0(), p.x0() + 0.3):
        for mem in ("stored", "constant"):
            g = _pool_exact(p, harness.estimator("maml", memory=mem), x)
            assert torch.allclose(g, p.hypergradient(x), atol=1e-12, rtol=1e-10)


def test_maml_mean_matches_meta_linreg_closed_form():
    p = harness.problem("meta-linreg", dim=3, unroll_steps=4)
    x = p.x0()
    out = harness.estimate(p, harness.estimator("maml"), x, seed=1, n=20000)
    se = out.grads.std(0) / np.sqrt(20000)
    assert bool(((out.grads.mean(0) - p.hypergradient(x)).abs() < 4.5 * se).all())
    fo = harness.estimate(p, harness.estimator("fo"), x, seed=1, n=20000)
    assert bool(((fo.grads.mean(0) - p.fo_mean(x)).abs() < 4.5 * se.max() * 3).all())
    assert float((fo.grads.mean(0) - p.hypergradient(x)).abs().max()) > 10 * float(se.max())  # FO is biased


@pytest.mark.parametrize("name,params", FAMILIES)
def test_stored_equals_constant_memory(name, params):
    p = harness.problem(name, **params)
    x = p.x0() + 0.1
    for est, kw in (("maml", {}), ("ufo", {"q": 0.5})):
        a = harness.estimate(p, harness.estimator(est, memory="stored", **kw), x, seed=3, n=16)
        b = harness.estimate(p, harness.estimator(est, memory="constant", **kw), x, seed=3, n=16)
        assert float((a.grads - b.grads).abs().max()) <= 1e-12


def test_ufo_unbiased_and_misscaled_control_detected():
    p = harness.problem("ufo-counterexample")
    x = torch.tensor([3.0], dtype=torch.float64)
    truth = float(p.hypergradient(x)[0])
    n = 40000
    good = harness.estimate(p, harness.estimator("ufo", q=0.2), x, seed=0, n=n).grads[:, 0]
    bad = harness.estimate(p, harness.estimator("ufo", q=0.2, correction_scale=0.5), x, seed=0, n=n).grads[:, 0]
    se = float(good.std()) / np.sqrt(n)
    assert abs(float(good.mean()) - truth) < 4 * se
    assert abs(float(bad.mean()) - truth) > 10 * float(bad.std()) / np.sqrt(n)


def test_ufo_matches_per_task_formula_and_single_draw_path():
    p = harness.problem("ufo-counterexample")
    x = torch.tensor([5.0], dtype=torch.float64)
    e = harness.estimator("ufo", q=0.25)
    noise = e.draw(p, torch.Generator().manual_seed(0), 64)
    out = harness.estimate(p, e, x, seed=0, n=64)
    _, g, gfo = p.task_gradients(5.0)
    ti = (noise["task/b"] > 0).long().numpy()
    xi = (noise["ufo/u"] < 0.25).double().numpy()
    want = gfo[ti] + xi / 0.25 * (g[ti] - gfo[ti])
    assert np.allclose(out.grads[:, 0].numpy(), want, atol=1e-12)
    # the non-vmapped path (skips the exact branch when the coin says so) gives the same numbers
    loop = harness.estimate(p, e, x, seed=0, n=64, vmapped=False)
    assert torch.allclose(loop.grads, out.grads, atol=1e-12)


@pytest.mark.parametrize("memory", ["stored", "constant"])
def test_oracle_counts_formula(memory):
    r = 6
    p = harness.problem("ufo-counterexample", unroll_steps=r)
    x = torch.tensor([2.0], dtype=torch.float64)
    e = harness.estimator("ufo", q=0.3, memory=memory)
    noise = e.draw(p, torch.Generator().manual_seed(0), 200)
    out = harness.estimate(p, e, x, seed=0, n=200)
    xi = (noise["ufo/u"] < 0.3).long()
    extra = r * (r - 1) // 2 if memory == "constant" else 0
    assert torch.equal(out.calls["hvp"], xi * r) and torch.equal(out.calls["jvp"], xi * r)
    assert torch.equal(out.calls["grad_y_g"], r + xi * extra)
    assert int(out.calls["grad_x_f"].sum()) == 200 and int(out.calls["grad_y_f"].sum()) == 200
    m = harness.estimate(p, harness.estimator("maml", memory=memory), x, n=4).mean_calls()
    assert m["hvp"] == r and m["jvp"] == r and m["grad_y_g"] == r + extra
    # the per-call counters agree with the overrides on an exact-branch draw (q = 1)
    o = Oracles(p)
    e1 = harness.estimator("ufo", q=1.0, memory=memory)
    nz = {k: v[0] for k, v in e1.draw(p, torch.Generator().manual_seed(0), 1).items()}
    est = e1.estimate(o, x, nz)
    for k in ("hvp", "jvp", "grad_y_g", "grad_x_f", "grad_y_f"):
        assert o.counts[k] == int(est.calls[k]), k


def test_adaptive_q_state_and_floor():
    p = harness.problem("ufo-counterexample")
    e = harness.estimator("ufo", q="adaptive", q_floor=0.2)
    o = Oracles(p)
    x = torch.tensor([3.0], dtype=torch.float64)
    noise = e.draw(p, torch.Generator().manual_seed(0), 50)
    state, qs = None, []
    for t in range(50):
        est = e.estimate(o, x, {k: v[t] for k, v in noise.items()}, state)
        state = est.state
        qs.append(float(state["q"]))
    assert qs[0] == 1.0 and all(0.2 <= q <= 1.0 for q in qs)
    assert min(qs) < 1.0
    # vmapped (fresh state per draw): q = 1, so UFO equals the exact estimator
    out = harness.estimate(p, e, x, seed=0, n=50)
    ref = harness.estimate(p, harness.estimator("maml"), x, seed=0, n=50)
    assert torch.allclose(out.grads, ref.grads, atol=1e-12)


def test_bad_params():
    for kw, msg in (({"q": 0.0}, "q"), ({"q": 1.5}, "q"), ({"q": "sometimes"}, "adaptive"), ({"memory": "disk"}, "memory")):
        with pytest.raises(ParameterError, match=msg):
            harness.estimator("ufo", **kw)


def test_meta_train_adam_matches_manual_and_stops_at_budget():
    """harness.outer.meta_train: with exact meta-gradients on meta-linreg it is Adam on the averaged estimates
    (checked against torch.optim.Adam), counts oracle calls per task, and stops once the budget is reached."""
    from harness.outer import meta_train

    p = harness.problem("meta-linreg", dim=3, unroll_steps=2)
    e = harness.estimator("maml")
    run = meta_train(p, e, iters=5, meta_batch=4, lr=0.01, seed=3)
    # manual replay with torch.optim.Adam on the same draws
    from harness.oracles import Oracles

    o = Oracles(p)
    x = p.x0().clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.01, eps=1e-8)
    for t in range(5):
        seed_t = int(np.random.SeedSequence([3, t]).generate_state(1)[0])
        noise = e.draw(p, torch.Generator().manual_seed(seed_t), 4)
        g = sum(e.estimate(o, x.detach(), {k: v[j] for k, v in noise.items()}).grad for j in range(4)) / 4
        x.grad = g
        opt.step()
    assert torch.allclose(run.x, x.detach(), atol=1e-12, rtol=0)
    per_task = 2 + 2 + 2 * 2  # r grad_y_g + grad_x_f + grad_y_f + r HV + r JV, r = 2
    assert run.calls == [per_task * 4 * (t + 1) for t in range(5)]
    short = meta_train(p, e, iters=5, meta_batch=4, lr=0.01, seed=3, budget=2.5 * 4 * per_task)
    assert short.iterations == 3 and torch.equal(short.x, meta_train(p, e, 3, 4, 0.01, seed=3).x)


def test_meta_train_bad_input():
    from harness.errors import ParameterError
    from harness.outer import meta_train

    p = harness.problem("meta-linreg", dim=3)
    for kw, word in (({"iters": 0}, "iters"), ({"meta_batch": 2.5}, "meta_batch"), ({"lr": -1.0}, "lr")):
        args = {"iters": 2, "meta_batch": 2, "lr": 0.1, **kw}
        with pytest.raises(ParameterError, match=word):
            meta_train(p, harness.estimator("fo"), **args)


def test_meta_train_carries_adaptive_q_state():
    from harness.outer import meta_train

    p = harness.problem("meta-linreg", dim=3)
    run = meta_train(p, harness.estimator("ufo", q="adaptive"), iters=10, meta_batch=4, lr=0.01, seed=0)
    assert len(run.q) == 40 and run.q[0] == 1.0  # q = 1 until the exact branch has fired once
    assert len(set(run.q[1:])) > 1 and all(0.05 <= q < 0.5 for q in run.q[1:])  # meta-linreg: q* ~ 0.2
