"""benchmark_bilevel's simulated quadratic as a blobench problem (issue 29), and the oracles' plain autograd path
for HV / JV products (issue 29, item 4)."""
from __future__ import annotations

import pytest
import torch
from torch.func import grad, vjp

from blobench import harness
from blobench.core.oracles import Oracles
from blobench.measure.outer import outer_loop
from blobench.problems.simulated_quadratic import SimulatedQuadratic

SMALL = {"n_inner": 24, "n_outer": 20, "dim_inner": 6, "dim_outer": 3, "seed": 3}


@pytest.fixture(scope="module")
def prob():
    return SimulatedQuadratic(**SMALL)


def _per_sample(p, side, idx, x, y):
    """1/b sum over the samples of idx of the peer's per-sample quadratic (no averaging of coefficients)."""
    H, K, C, a, b = p.tables[side]
    return sum(0.5 * y @ H[i] @ y + 0.5 * x @ K[i] @ x + x @ C[i] @ y + a[i] @ y + b[i] @ x for i in idx.tolist()) / len(idx)


def test_minibatch_is_the_mean_of_its_samples_and_the_full_batch_is_the_sum(prob):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(3, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    i, j = torch.tensor([0, 5, 5, 23]), torch.tensor([1, 19, 7])
    b = prob.batch_at(i, j)
    torch.testing.assert_close(prob.inner(x, y, b), _per_sample(prob, "g", i, x, y), rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(prob.outer(x, y, b), _per_sample(prob, "f", j, x, y), rtol=1e-14, atol=1e-14)
    full = prob.batch_at(torch.arange(24), torch.arange(20))
    torch.testing.assert_close(prob.inner(x, y, full), prob.inner(x, y), rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(prob.outer(x, y, full), prob.outer(x, y), rtol=1e-14, atol=1e-14)


def test_exact_truth_against_autograd_and_finite_differences(prob):
    x = torch.linspace(-1, 1, 3, dtype=torch.float64)
    y = prob.inner_solution(x).requires_grad_(True)
    assert float(torch.autograd.grad(prob.inner(x, y), y)[0].norm()) < 1e-12
    e = 1e-6
    fd = torch.tensor([(prob.value(x + e * u) - prob.value(x - e * u)) / (2 * e) for u in torch.eye(3, dtype=torch.float64)])
    torch.testing.assert_close(prob.hypergradient(x), fd, rtol=1e-7, atol=1e-8)
    xs = prob.stationary_points()[0]
    assert float(prob.hypergradient(xs).norm()) < 1e-10
    assert float(torch.linalg.eigvalsh(prob.hessian_phi())[0]) > 0


def test_the_peer_defaults_build_the_issue_instance():
    """n = m = 1024, inner dimension 100, outer dimension 10, seed 2442 (issue 29); built once, checked cheaply."""
    p = SimulatedQuadratic()
    assert (p.dim_y, p.dim_x, p.finite_sum) == (100, 10, (1024, 1024))
    assert p.tables["g"][0].shape == (1024, 100, 100) and p.tables["f"][2].shape == (1024, 10, 100)
    c = p.constants
    assert 0 < c["mu"] < c["L"] and abs(c["kappa"] - c["L"] / c["mu"]) < 1e-12


@pytest.mark.parametrize("name", ["soba", "fsla", "mrbo"])
def test_the_batch_cache_changes_no_bit(prob, name):
    """The averaged rows kept per minibatch (CACHE_BATCH) give the same iterates bit for bit as averaging at each call."""
    kw = {"batch_size": 4} | ({"solver_steps": 3} if name == "mrbo" else {})
    out = []
    for cache in (True, False):
        SimulatedQuadratic.CACHE_BATCH = cache
        try:
            out.append(outer_loop(prob, harness.estimator(name, **kw), 6, 0.1, seed=1).x_final)
        finally:
            SimulatedQuadratic.CACHE_BATCH = True
    assert torch.equal(out[0], out[1])


def test_vmapped_minibatches_equal_one_at_a_time(prob):
    from torch.func import vmap

    x, y = torch.ones(3, dtype=torch.float64), torch.ones(6, dtype=torch.float64)
    i = torch.tensor([[0, 1, 2], [3, 3, 9]])
    got = vmap(lambda ii: prob.inner(x, y, {"i": ii, "j": ii}))(i)
    want = torch.stack([prob.inner(x, y, {"i": r, "j": r}) for r in i])
    torch.testing.assert_close(got, want, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("name,kw,stoch", [("quadratic", {"dim": 5, "kappa": 5}, False),
                                           ("quadratic", {"dim": 4, "noise": 0.3}, True),
                                           ("logreg-l2", {}, False),
                                           ("simulated-quadratic", SMALL, True)])
def test_plain_hv_jv_equal_torch_func_bit_for_bit(name, kw, stoch):
    """Outside transforms hvp / jvp / hvp_jvp now run plain torch.autograd: the same bits as the torch.func vjp
    they ran before (the formula kept for transforms, recomputed here)."""
    p = harness.problem(name, **kw)
    o = Oracles(p)
    g = torch.Generator().manual_seed(1)
    b = {k: v[0] for k, v in p.sample(g, 1, 3).items()} if stoch else None
    x = torch.randn(p.dim_x, generator=g, dtype=torch.float64)
    y = torch.randn(p.dim_y, generator=g, dtype=torch.float64)
    v = torch.randn(p.dim_y, generator=g, dtype=torch.float64)
    gy = grad(p.inner, argnums=1)
    jx, jy = vjp(lambda x_, y_: gy(x_, y_, b), x, y)[1](v)
    hy = vjp(lambda y_: gy(x, y_, b), y)[1](v)[0]
    hx = vjp(lambda x_: gy(x_, y, b), x)[1](v)[0]
    assert torch.equal(o.hvp(x, y, v, b), hy) and torch.equal(o.jvp(x, y, v, b), hx)
    h2, j2 = o.hvp_jvp(x, y, v, b)
    assert torch.equal(h2, jy) and torch.equal(j2, jx)
    assert o.snapshot()["hvp"] == 2 and o.snapshot()["jvp"] == 2


@pytest.mark.parametrize("name,kw", [("quadratic", {"dim": 4, "noise": 0.3}), ("simulated-quadratic", SMALL),
                                     ("logreg-l2", {"stochastic": True})])
def test_soba_fused_step_equals_the_separate_oracles(name, kw):
    """SOBA's grad_y g + HV + JV from one linearisation: the same bits and counts as grad_y_g + hvp_jvp, outside
    transforms and under vmap."""
    from torch.func import vmap

    from blobench.core.estimator_base import batch_of

    p = harness.problem(name, **kw)
    est = harness.estimator("soba", batch_size=3)
    noise = est.draw(p, torch.Generator().manual_seed(2), 4)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(p.dim_x, generator=g, dtype=torch.float64)
    st = {"y": torch.randn(p.dim_y, generator=g, dtype=torch.float64),
          "v": torch.randn(p.dim_y, generator=g, dtype=torch.float64), "t": torch.tensor(2.0, dtype=torch.float64)}

    def separate(o, nz):
        b = batch_of(nz, "sample")
        gx, gy = o.grad_f(x, st["y"], b)
        dy = o.grad_y_g(x, st["y"], b)
        hv, jv = o.hvp_jvp(x, st["y"], st["v"], b)
        return gx + jv, dy, hv + gy

    def fused(o, nz):
        e = est.estimate(o, x, nz, st)
        rho, rho_v = est.steps(o, st["t"])
        return e.grad, (st["y"] - e.state["y"]) / rho, (st["v"] - e.state["v"]) / rho_v

    o1, o2 = Oracles(p), Oracles(p)
    nz0 = {k: v[0] for k, v in noise.items()}
    a, b = separate(o1, nz0), fused(o2, nz0)
    assert torch.equal(a[0], b[0])
    b_y, b_v = est.estimate(o2, x, nz0, st).state["y"], est.estimate(o2, x, nz0, st).state["v"]
    rho, rho_v = est.steps(o2, st["t"])
    assert torch.equal(b_y, (st["y"] - rho * a[1])) and torch.equal(b_v, (st["v"] - rho_v * a[2]))
    assert o1.snapshot() == {k: n // 3 for k, n in o2.snapshot().items()}
    va = vmap(lambda nz: separate(Oracles(p), nz)[0])(noise)
    vb = vmap(lambda nz: est.estimate(Oracles(p), x, nz, st).grad)(noise)
    assert torch.equal(va, vb)


def test_block_sampler_walks_shuffled_contiguous_blocks_and_averages_them_exactly():
    """sampler = "blocks" (the peer's): each minibatch is a contiguous block of rows, every epoch visits each block
    once; the block's gemv mean equals the per-sample mean; the batch cache changes no bit."""
    p = SimulatedQuadratic(**SMALL, sampler="blocks")
    s = p.sample(torch.Generator().manual_seed(0), 12, 4)
    assert s["i"].shape == (12, 4) and torch.equal(s["i"], s["i0"].unsqueeze(1) + torch.arange(4))
    for e in range(2):  # 24 rows / 4 = 6 blocks per epoch
        assert sorted(s["i0"][6 * e:6 * e + 6].tolist()) == [0, 4, 8, 12, 16, 20]
    assert sorted(s["j0"][:5].tolist()) == [0, 4, 8, 12, 16]  # 20 outer rows: 5 blocks
    x, y = torch.ones(3, dtype=torch.float64), torch.linspace(0, 1, 6, dtype=torch.float64)
    b = {k: v[3] for k, v in s.items()}
    torch.testing.assert_close(p.inner(x, y, b), _per_sample(p, "g", b["i"], x, y), rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(p.outer(x, y, b), _per_sample(p, "f", b["j"], x, y), rtol=1e-14, atol=1e-14)
    out = []
    for cache in (True, False):
        SimulatedQuadratic.CACHE_BATCH = cache
        try:
            out.append(outer_loop(p, harness.estimator("fsla", batch_size=4), 6, 0.1, seed=1).x_final)
        finally:
            SimulatedQuadratic.CACHE_BATCH = True
    assert torch.equal(out[0], out[1])


def _unpacked(p: SimulatedQuadratic) -> SimulatedQuadratic:
    """p with its rows stored in full (no packed triangles): the layout before issue 29's packing."""
    for s, T in p.tables.items():
        p._flat[s] = torch.cat([a.reshape(a.shape[0], -1) for a in T], dim=1)
        p._unpack[s] = torch.arange(p._flat[s].shape[1])
        p._memo[s].clear()
    return p


@pytest.mark.parametrize("sampler", ["blocks", "uniform"])
def test_packed_symmetric_tables_change_no_bit(sampler):
    """H_i and K_i are stored as upper triangles (the peer's instance: a minibatch reads 6215 numbers per sample, not
    11210); the averaged coefficients, and FSLA's and SOBA's iterates, are the full tables' bit for bit."""
    from torch.func import vmap

    p, q = SimulatedQuadratic(sampler=sampler), _unpacked(SimulatedQuadratic(sampler=sampler))
    assert p._flat["g"].shape == (1024, 100 * 101 // 2 + 55 + 1000 + 100 + 10)
    assert torch.equal(p._flat["g"][3, :5050], p.tables["g"][0][3][tuple(torch.triu_indices(100, 100))])
    batch = p.sample(torch.Generator().manual_seed(0), 3, 64)
    for t in range(3):
        b = {k: v[t] for k, v in batch.items()}
        for side in ("g", "f"):
            assert all(torch.equal(u, v) for u, v in zip(p.coefficients(side, b), q.coefficients(side, b)))
    idx = batch["i"][:2]
    got = vmap(lambda ii: torch.cat([c.reshape(-1) for c in p.coefficients("g", {"i": ii})]))(idx)
    want = vmap(lambda ii: torch.cat([c.reshape(-1) for c in q.coefficients("g", {"i": ii})]))(idx)
    assert torch.equal(got, want)
    for name in ("fsla", "soba"):
        xs = [outer_loop(r, harness.estimator(name, batch_size=64, inner_lr=0.1, solver_lr=0.1), 12, 0.1,
                         seed=2).x_final for r in (p, q)]
        assert torch.equal(xs[0], xs[1])


# -- closed-form oracles (issue 29, item 4: the oracles without autograd's graph) -----------------------------------
def _oracles(p, closed: bool) -> Oracles:
    Oracles.CLOSED_FORMS = closed
    try:
        return Oracles(p)
    finally:
        Oracles.CLOSED_FORMS = True


@pytest.mark.parametrize("kw", [SMALL | {"sampler": "uniform"}, SMALL | {"sampler": "blocks"}, {"sampler": "blocks"}],
                         ids=["small-uniform", "small-blocks", "issue-instance"])
def test_closed_form_oracles_are_autograd_bit_for_bit(kw):
    """Every oracle from the problem's closed forms (``closed_grad``, ``closed_second``) has autograd's bits, at
    minibatches and the full batch, on the small instance and on issue 29's (other BLAS kernel sizes); the counts
    are the same."""
    from blobench.gate.verify.battery_problem import oracle_values

    p = SimulatedQuadratic(**kw)
    auto, closed = _oracles(p, False), _oracles(p, True)
    assert closed._closed and not auto._closed
    g = torch.Generator().manual_seed(5)
    noise = p.sample(g, 6, 4 if "n_inner" in kw else 64)
    for k in [*range(6), None]:
        b = None if k is None else {key: t[k] for key, t in noise.items()}
        x = torch.randn(p.dim_x, generator=g, dtype=torch.float64)
        y, v = torch.randn(2, p.dim_y, generator=g, dtype=torch.float64)
        want, got = oracle_values(auto, x, y, v, b), oracle_values(closed, x, y, v, b)
        assert want.keys() == got.keys() and len(want) == 22
        for name in want:
            assert torch.equal(want[name], got[name]), (name, k)
    assert auto.snapshot() == closed.snapshot()


def _every_estimator_on_this_problem() -> list[str]:
    from blobench.core.registry import ESTIMATORS, discover

    discover()
    return [n for n in sorted(ESTIMATORS.names()) if n not in ("maml", "ufo")]  # those two need task-based problems


@pytest.mark.parametrize("name", _every_estimator_on_this_problem())
def test_closed_form_oracles_change_no_bit_in_whole_runs(name):
    """Each estimator's run (the exact ||grad Phi||^2, distance and value gap at every step, the final x, the oracle
    counts) is the same with the closed forms as with autograd, so switching them on changed no result of any run."""
    from blobench.core.registry import ESTIMATORS

    p = SimulatedQuadratic(**SMALL, sampler="blocks")
    kw = {"batch_size": 8} if "batch_size" in ESTIMATORS.get(name).params else {}
    runs = []
    for closed in (False, True):
        Oracles.CLOSED_FORMS = closed
        try:
            runs.append(outer_loop(p, harness.estimator(name, **kw), 5, 0.02, seed=1, eval_every=1))
        finally:
            Oracles.CLOSED_FORMS = True
    a, b = runs
    assert torch.equal(a.x_final, b.x_final) and not a.diverged and len(a.iters) == 6
    assert (a.grad_norm_sq, a.dist, a.value_gap, a.calls) == (b.grad_norm_sq, b.dist, b.value_gap, b.calls)


@pytest.mark.parametrize("name", ["fsla", "f2sa", "soba"])
def test_closed_form_oracles_change_no_bit_on_the_issue_instance(name):
    """The solvers whose speed issue 29 measures, at the peer's parameters, on its instance: the same iterates."""
    import importlib.util
    import pathlib

    spec = importlib.util.spec_from_file_location(
        "peer_speed", pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "peer_speed.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    p = SimulatedQuadratic(sampler="blocks")
    xs = []
    for closed in (False, True):
        Oracles.CLOSED_FORMS = closed
        try:
            est, loop = mod.estimator(name)
            loop = dict(loop)
            tr = outer_loop(p, est, 8, loop.pop("outer_lr", 0.1), seed=0, eval_every=4, **loop)
        finally:
            Oracles.CLOSED_FORMS = True
        xs.append(tr.x_final)
    assert torch.equal(xs[0], xs[1])


def test_closed_forms_are_used_only_for_the_class_own_objectives():
    """A subclass or an instance that replaces ``inner`` or ``outer`` gets autograd again (a closed form of the
    parent's objective would be wrong for it); problems without closed forms use autograd."""
    from blobench.core.oracles import closed_forms

    class Shifted(SimulatedQuadratic):
        def inner(self, x, y, batch=None):
            return super().inner(x, y, batch) + y.sum()

    p = SimulatedQuadratic(**SMALL)
    assert closed_forms(p)
    assert not closed_forms(Shifted(**SMALL))
    q = SimulatedQuadratic(**SMALL)
    q.outer = lambda x, y, batch=None: SimulatedQuadratic.outer(q, x, y, batch) * 2  # type: ignore[method-assign]
    assert not closed_forms(q)
    assert not closed_forms(harness.problem("quadratic", dim=3))
    s = Shifted(**SMALL)
    x, y = torch.zeros(3, dtype=torch.float64), torch.zeros(6, dtype=torch.float64)
    # the subclass's gradient includes its extra term: autograd ran, not the parent's closed form
    torch.testing.assert_close(Oracles(s).grad_y_g(x, y) - Oracles(p).grad_y_g(x, y), torch.ones(6, dtype=torch.float64),
                               rtol=0, atol=1e-15)


def test_on_a_device_moves_the_tables_and_not_the_cached_averages():
    """``on(device)`` moves the tensors the problem keeps in dicts (its tables, packed rows, unpack indices,
    full-batch means): before, only direct tensor attributes moved and the oracles mixed devices. On the shape-only
    "meta" device a whole vmapped estimate runs; the CPU original and its minibatch cache are untouched."""
    from blobench.measure.sampling import draw_noise, run_draws

    p = SimulatedQuadratic(**SMALL)
    q = p.on("meta")
    moved = [*q.tables["g"], *q.tables["f"], *q._flat.values(), *q._unpack.values(), *q.fb["g"], *q.fb["f"]]
    assert all(t.device.type == "meta" for t in moved)
    assert all(t.device.type == "cpu" for t in [*p.tables["g"], *p._flat.values(), *p.fb["f"]])
    assert q._memo is not p._memo and not q._memo["g"]
    e = harness.estimator("f2sa", batch_size=4, inner_steps=3)
    G, C = run_draws(q, e, p.x0().to("meta"), draw_noise(p, e, 5, 0, "meta"), 5)
    assert G.shape == (5, 3) and G.device.type == "meta" and C["grad_x_g"].tolist() == [2] * 5


@pytest.mark.parametrize("sampler", ["uniform", "blocks"])
def test_block_views_are_the_split_views_at_the_same_addresses(sampler):
    """``_split`` takes each coefficient block with one ``as_strided``: the same numbers, shapes and strides as
    ``split`` + ``view`` of the unpacked row, at the same addresses (a BLAS kernel's last bits may depend on an
    operand's alignment, so the same offsets are what keeps the iterates' bits)."""
    p = SimulatedQuadratic(**SMALL, sampler=sampler)
    nz = p.sample(torch.Generator().manual_seed(4), 3, 4)
    for k in range(3):
        for side in ("g", "f"):
            got = p.coefficients(side, {key: t[k] for key, t in nz.items()})
            row = torch.cat([t.reshape(-1) for t in got]).contiguous()  # the unpacked row, rebuilt
            want = tuple(r.view(t.shape[1:]) for r, t in zip(row.split(p._cuts[side]), p.tables[side]))
            assert all(torch.equal(a, b) and a.shape == b.shape and a.stride() == b.stride()
                       for a, b in zip(got, want, strict=True))
            base = got[0].data_ptr()
            offsets = [t.data_ptr() - base for t in got]
            assert offsets == [w.data_ptr() - want[0].data_ptr() for w in want]
