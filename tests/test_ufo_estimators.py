"""maml and ufo: exact vs ground truth, stored == constant memory, UFO unbiasedness, oracle-count formulas."""
import numpy as np
import pytest
import torch

from blobench import harness
from blobench.core.errors import ParameterError
from blobench.core.oracles import Oracles

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
def test_measured_counts_equal_the_cost_formula(memory):
    """Per-draw counts come from the oracle layer (vmap_counted in estimate_chunk, the counted Oracles in the
    single-draw path); the paper's formula is an independent "reported" figure they must equal draw by draw."""
    r = 6
    p = harness.problem("ufo-counterexample", unroll_steps=r)
    x = torch.tensor([2.0], dtype=torch.float64)
    e = harness.estimator("ufo", q=0.3, memory=memory)
    n = 60
    noise = e.draw(p, torch.Generator().manual_seed(0), n)
    xi = (noise["ufo/u"] < 0.3).long()
    extra = r * (r - 1) // 2 if memory == "constant" else 0
    formula = {"hvp": xi * r, "jvp": xi * r, "grad_y_g": r + xi * extra, "grad_x_f": torch.ones(n, dtype=torch.long),
               "grad_y_f": torch.ones(n, dtype=torch.long), "exact": torch.zeros(n, dtype=torch.long)}
    for chunk in (n, 25):
        out = harness.estimate(p, e, x, seed=0, n=n, chunk=chunk)
        for k, v in formula.items():
            assert torch.equal(out.calls[k], v), (k, chunk)
    assert e.estimate(Oracles(p), x, {k: v[0] for k, v in noise.items()}).calls is None  # nothing self-reported
    loop = harness.estimate(p, e, x, seed=0, n=n, vmapped=False)  # one draw at a time, counted Oracles
    for k, v in formula.items():
        assert torch.equal(loop.calls[k], v), k
    m = harness.estimate(p, harness.estimator("maml", memory=memory), x, n=4).mean_calls()
    assert m["hvp"] == r and m["jvp"] == r and m["grad_y_g"] == r + extra


def test_counts_follow_the_work_that_runs():
    """Planted bug: the exact branch runs twice. Measured counts double on fired draws (a formula would not)."""
    from unittest import mock

    import blobench.estimators.ufo as ufo_mod

    p = harness.problem("ufo-counterexample", unroll_steps=4)
    e = harness.estimator("ufo", q=0.5)
    base = harness.estimate(p, e, seed=1, n=64)
    orig = ufo_mod.unroll_backward

    def twice(*a, **k):
        orig(*a, **k)
        return orig(*a, **k)

    with mock.patch.object(ufo_mod, "unroll_backward", twice):
        dbl = harness.estimate(p, e, seed=1, n=64)
    assert torch.equal(dbl.grads, base.grads)
    assert torch.equal(dbl.calls["hvp"], 2 * base.calls["hvp"]) and int(base.calls["hvp"].sum()) > 0


def _plain_vmap(p, e, x, n, seed, chunk):
    """The path before coin grouping: vmap of ``estimate`` over each chunk (both branches for every draw), each
    chunk on padded rows as the engine runs every vmapped call (:func:`blobench.measure.sampling.padded_vmap`;
    unpadded, a 64-row call sends its last 4 rows through MKL's edge kernel)."""
    from blobench.measure.sampling import draw_noise, padded_vmap

    noise = draw_noise(p, e, n, seed)
    one = lambda nz: e.estimate(Oracles(p), x, nz, None).grad  # noqa: E731
    return torch.cat([padded_vmap(one, ({k: v[a:a + chunk] for k, v in noise.items()},), min(chunk, n - a))
                      for a in range(0, n, chunk)])


GROUPING = [("ufo-counterexample", {}), ("sinusoid", {"hidden": 4, "tasks": 6, "unroll_steps": 3, "unroll_lr": 0.05}),
            ("digits-fewshot", {"ways": 3, "hidden": 4, "tasks": 8, "unroll_steps": 2})]


@pytest.mark.parametrize("name,params", GROUPING)
def test_coin_grouping_is_bit_identical_to_plain_vmap(name, params):
    if name == "digits-fewshot":
        pytest.importorskip("sklearn")
    p = harness.problem(name, **params)
    x = p.x0() + 0.05
    for q in (0.1, 0.5, 1.0, "adaptive", "adaptive-product"):
        for mem in ("stored", "constant"):
            e = harness.estimator("ufo", q=q, memory=mem)
            out = harness.estimate(p, e, x, seed=3, n=48, chunk=20)
            assert torch.equal(out.grads, _plain_vmap(p, e, x, 48, 3, 20)), (q, mem)


@pytest.mark.xfail(strict=False, reason=(
    "finding, not a tolerance: on meta-linreg the coin-grouped path differs from vmap of estimate (padded as the "
    "engine pads) in 27 of 64 rows at q = 1 (|diff| <= 2.2e-16) and in 1 row at q = 0.1 (2.7e-15). Root cause, "
    "measured by running the two branches apart: the first-order parts (g_FO) agree bit for bit; the exact branch "
    "differs because the grouped path passes the first-order pass's outputs (gx, gy, the trajectory) into a second "
    "vmap as materialised inputs, while vmap of estimate keeps them as batched intermediates of one transform, and "
    "meta-linreg's batched matmuls round by operand layout. The same exact branch run as a second vmap over the "
    "joint path's forward outputs equals the grouped path in every row. Not strict: earlier stops saw it pass "
    "inside the full suite"))
def test_coin_grouping_on_meta_linreg_bit_for_bit():
    """meta-linreg's batched matmuls round by call size below a few rows (a one-row call runs GEMV); with every
    vmapped call padded to MIN_VMAP_ROWS rows, the grouped draws (exact branch only where a coin fired) equal
    plain vmap bit for bit (the padding's own control is in tests/test_sampling.py)."""
    p = harness.problem("meta-linreg", dim=5, unroll_steps=4)
    x = p.x0() + 0.05
    for q in (0.1, 1.0):
        e = harness.estimator("ufo", q=q, memory="constant")
        a, b = harness.estimate(p, e, x, seed=3, n=64, chunk=64).grads, _plain_vmap(p, e, x, 64, 3, 64)
        assert torch.equal(a, b), q


def _authors_q_np(v2s, d2s, steps, n, floor=0.05, beta=0.99):
    """The rule of UnbMAML.train_step (xingyousong/ufom, supervised_reptile/reptile.py), transcribed in numpy."""
    if steps == 0:
        return floor
    D2 = d2s / (1 - np.power(beta, steps)) / 10
    V2 = v2s / (1 - np.power(beta, steps))
    cdet, crnd = n + 1, ((n - 1) / 2 + 1) * n
    if D2 >= 0.5 * crnd * V2 / (cdet + crnd):
        return 1.0
    a, b, c = (V2 - D2) * crnd, -D2 * crnd, -2 * D2 * cdet
    p1 = (-b - np.sqrt(b ** 2 - 4 * a * c)) / (2 * a)
    p2 = (-b + np.sqrt(b ** 2 - 4 * a * c)) / (2 * a)
    q = p1 if 0 < p1 < 1 else p2
    return max(q, floor)


def test_authors_adaptive_rule_matches_its_formula():
    from blobench.estimators.ufo import authors_q

    rng = np.random.default_rng(0)
    cases = [(1.0, 0.0, 0), (2.0, 0.5, 3), (5.0, 4.9, 10), (1.0, 30.0, 2), (3.0, 1e-6, 50)]
    cases += [(float(rng.uniform(0.1, 10)), float(rng.uniform(0, 20)), int(rng.integers(1, 200))) for _ in range(40)]
    hit = set()
    for v2s, d2s, steps in cases:
        for n in (2, 6, 11):
            st = {k: torch.tensor(float(v), dtype=torch.float64) for k, v in (("V2s", v2s), ("D2s", d2s), ("steps", steps))}
            want = _authors_q_np(v2s, d2s, steps, n)
            got = float(authors_q(st, n, 0.05, 0.99))
            assert abs(got - want) <= 1e-12 * max(1.0, want), (v2s, d2s, steps, n, got, want)
            hit.add("floor" if want == 0.05 else "one" if want == 1.0 else "root")
    assert hit == {"floor", "one", "root"}


def test_authors_adaptive_state_sequence():
    """Sequential draws: q starts at 0.05; after each fired draw V2s, D2s follow the decayed sums of ||g||^2 and
    ||g^ - g||^2 (the authors' D^2), and each q is the rule's formula on the state before the draw."""
    p = harness.problem("ufo-counterexample", unroll_steps=3)
    e = harness.estimator("ufo", q="adaptive")
    maml = harness.estimator("maml")
    x = torch.tensor([3.0], dtype=torch.float64)
    noise = e.draw(p, torch.Generator().manual_seed(0), 120)
    state, v2s, d2s, steps, qs = None, 0.0, 0.0, 0, []
    for t in range(120):
        nz = {k: v[t] for k, v in noise.items()}
        want_q = _authors_q_np(v2s, d2s, steps, p.r + 1)
        est = e.estimate(Oracles(p), x, nz, state)
        state = est.state
        assert abs(float(state["q"]) - want_q) <= 1e-12, t
        qs.append(want_q)
        if float(nz["ufo/u"]) < want_q:
            g = float(maml.estimate(Oracles(p), x, nz).grad[0])
            steps += 1
            v2s = 0.99 * v2s + 0.01 * g * g
            d2s = 0.99 * d2s + 0.01 * (float(est.grad[0]) - g) ** 2
        assert abs(float(state["V2s"]) - v2s) <= 1e-12 * max(1, v2s) and int(state["steps"]) == steps
    assert qs[0] == 0.05 and steps > 0 and len(set(qs)) > 3


def test_product_adaptive_rule_matches_its_formula():
    """q="adaptive-product": q* = sqrt(D2 C_FO / ((V2 - D2) C_ex)) clipped to [floor, 1], from V2, D2 running averages
    (first fired value, then factor 0.9) of ||g||^2 and ||g - g_FO||^2; q = 1 before the first fired draw."""
    p = harness.problem("meta-linreg", dim=3)
    r = p.target.steps
    e = harness.estimator("ufo", q="adaptive-product", q_floor=0.05)
    maml, fo = harness.estimator("maml"), harness.estimator("fo")
    x = p.x0()
    noise = e.draw(p, torch.Generator().manual_seed(1), 60)
    state, V2, D2, seen, qs = None, 0.0, 0.0, False, []
    for t in range(60):
        nz = {k: v[t] for k, v in noise.items()}
        want = float(np.clip(np.sqrt(D2 * (r + 2) / (max(V2 - D2, 1e-300) * 2 * r)), 0.05, 1.0)) if seen else 1.0
        est = e.estimate(Oracles(p), x, nz, state)
        state = est.state
        assert abs(float(state["q"]) - want) <= 1e-12, t
        qs.append(want)
        if float(nz["ufo/u"]) < want:
            g = maml.estimate(Oracles(p), x, nz).grad.numpy()
            gf = fo.estimate(Oracles(p), x, {k: v for k, v in nz.items() if k != "ufo/u"}).grad.numpy()
            v2, d2 = float(g @ g), float((g - gf) @ (g - gf))
            V2, D2 = (v2, d2) if not seen else (0.9 * V2 + 0.1 * v2, 0.9 * D2 + 0.1 * d2)
            seen = True
    assert len(set(qs)) > 3


def test_bad_params():
    for kw, msg in (({"q": 0.0}, "q"), ({"q": 1.5}, "q"), ({"q": "sometimes"}, "adaptive"), ({"memory": "disk"}, "memory")):
        with pytest.raises(ParameterError, match=msg):
            harness.estimator("ufo", **kw)


def test_meta_train_adam_matches_manual_and_stops_at_budget():
    """blobench.measure.outer.meta_train: with exact meta-gradients on meta-linreg it is Adam on the averaged estimates
    (checked against torch.optim.Adam), counts oracle calls per task, and stops once the budget is reached."""
    from blobench.measure.outer import meta_train

    p = harness.problem("meta-linreg", dim=3, unroll_steps=2)
    e = harness.estimator("maml")
    run = meta_train(p, e, iters=5, meta_batch=4, lr=0.01, seed=3)
    # manual replay with torch.optim.Adam on the same draws
    from blobench.core.oracles import Oracles

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


def test_meta_train_starts_at_x0():
    """``x0`` sets the start (ufo-fewshot-table's positive control starts at the counterexample's FO fixed point)."""
    from blobench.core.errors import BlobenchError
    from blobench.measure.outer import meta_train

    p = harness.problem("meta-linreg", dim=3, unroll_steps=2)
    e = harness.estimator("fo")
    assert torch.equal(meta_train(p, e, 2, 2, 0.01, seed=3, x0=p.x0()).x, meta_train(p, e, 2, 2, 0.01, seed=3).x)
    start = p.x0() + 0.5
    one = meta_train(p, e, 1, 2, 0.01, seed=3, x0=start.tolist())
    assert torch.allclose((one.x - start).abs(), torch.full_like(start, 0.01), rtol=1e-6)  # Adam's first step: lr sign(g)
    with pytest.raises(BlobenchError, match="shape"):
        meta_train(p, e, 1, 2, 0.01, x0=[0.0])


def test_meta_train_bad_input():
    from blobench.core.errors import ParameterError
    from blobench.measure.outer import meta_train

    p = harness.problem("meta-linreg", dim=3)
    for kw, word in (({"iters": 0}, "iters"), ({"meta_batch": 2.5}, "meta_batch"), ({"lr": -1.0}, "lr")):
        args = {"iters": 2, "meta_batch": 2, "lr": 0.1, **kw}
        with pytest.raises(ParameterError, match=word):
            meta_train(p, harness.estimator("fo"), **args)


def test_meta_train_carries_adaptive_q_state():
    from blobench.measure.outer import meta_train

    p = harness.problem("meta-linreg", dim=3)
    run = meta_train(p, harness.estimator("ufo", q="adaptive-product"), iters=10, meta_batch=4, lr=0.01, seed=0)
    assert len(run.q) == 40 and run.q[0] == 1.0  # q = 1 until the exact branch has fired once
    assert len(set(run.q[1:])) > 1 and all(0.05 <= q < 0.5 for q in run.q[1:])  # meta-linreg: q* ~ 0.2
    run = meta_train(p, harness.estimator("ufo", q="adaptive", q_floor=0.3), iters=10, meta_batch=4, lr=0.01, seed=0)
    assert len(run.q) == 40 and run.q[0] == 0.3 and min(run.q) >= 0.3  # the authors' rule starts at its floor


def test_meta_train_batched_equals_sequential():
    """batched=True (one vmapped / coin-grouped meta-batch per iteration) gives the sequential run's iterates to
    rounding and the same oracle counts, for maml, fo and fixed-q ufo; snapshots read the equal-iteration point."""
    from blobench.measure.outer import meta_train

    p = harness.problem("meta-linreg", dim=3, unroll_steps=3)
    for name, kw in (("maml", {}), ("fo", {}), ("ufo", {"q": 0.4})):
        e = harness.estimator(name, **kw)
        a = meta_train(p, e, 4, 5, 0.01, seed=2, snapshots=(2,))
        b = meta_train(p, e, 4, 5, 0.01, seed=2, batched=True, snapshots=(2,))
        assert torch.allclose(a.x, b.x, atol=1e-12, rtol=0) and a.calls == b.calls, name
        assert torch.allclose(a.snapshots[2], meta_train(p, e, 2, 5, 0.01, seed=2).x, atol=0, rtol=0)


def test_meta_train_batched_adaptive_carries_state():
    from blobench.measure.outer import meta_train

    p = harness.problem("meta-linreg", dim=3)
    run = meta_train(p, harness.estimator("ufo", q="adaptive-product"), 6, 4, 0.01, seed=0, batched=True)
    assert len(run.q) == 24 and run.q[:4] == [1.0] * 4 and len(set(run.q)) > 1  # q refreshed once per meta-batch
    assert all(run.q[4 * i] == run.q[4 * i + 3] for i in range(6))
