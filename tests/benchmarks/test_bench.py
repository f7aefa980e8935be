"""pytest-benchmark suite (issue #6): estimators x sizes, the batched sampler vs a plain-autograd
per-draw loop, and the raw-oracle floor. Run with ``make bench`` (saves JSON under .benchmarks/
and compares with the previous saved run)."""
from __future__ import annotations

import pytest
import torch

from blobench import harness
from blobench.core.oracles import Oracles
from blobench.measure.sampling import draw_noise, run_draws
from tests.benchmarks.baselines import (aid_cg_autograd, aid_cg_torchopt, itd_autograd, oracle_floor_aid_cg,
                                        oracle_floor_itd, stocbio_autograd)

torch.set_num_threads(1)
ROUNDS = {"rounds": 5, "warmup_rounds": 1, "iterations": 1}


@pytest.fixture(scope="module", params=[100, 1000], ids=lambda d: f"dim{d}")
def quad(request):
    p = harness.problem("quadratic", dim=request.param)
    return p, torch.linspace(-1, 1, p.dim_x, dtype=torch.float64), 1.0 / p.constants["L"]


@pytest.mark.parametrize("name,params", [
    ("itd", {"inner_steps": 20}), ("aid-cg", {"inner_steps": 20, "solver_steps": 10}),
    ("aid-neumann", {"inner_steps": 20, "solver_steps": 10}), ("fo", {"inner_steps": 20}),
    ("stocbio", {"inner_steps": 20, "solver_steps": 10, "warm_start": False}),
])
def test_estimator(benchmark, quad, name, params):
    p, x, lr = quad
    e = harness.estimator(name, inner_lr=lr, **params)
    o = Oracles(p)
    g = benchmark.pedantic(lambda: e.estimate(o, x, {}, None).grad, **ROUNDS)
    assert torch.isfinite(g).all()


def test_floor_itd(benchmark, quad):
    p, x, lr = quad
    g = benchmark.pedantic(lambda: oracle_floor_itd(p, x, 20, lr), **ROUNDS)
    assert torch.isfinite(g).all()


def test_floor_aid_cg(benchmark, quad):
    p, x, lr = quad
    g = benchmark.pedantic(lambda: oracle_floor_aid_cg(p, x, 20, lr, 10), **ROUNDS)
    assert torch.isfinite(g).all()


N_DRAWS = 512


@pytest.fixture(scope="module")
def stoc():
    p = harness.problem("quadratic", dim=100, noise=1.0)
    eta = 1.0 / p.constants["L"]
    e = harness.estimator("stocbio", inner_steps=20, solver_steps=10, batch_size=16, inner_lr=eta, solver_lr=eta)
    return p, e, p.x0(), draw_noise(p, e, N_DRAWS, seed=0), eta


def test_sampler_batched(benchmark, stoc):
    p, e, x, noise, _ = stoc
    G, _ = benchmark.pedantic(lambda: run_draws(p, e, x, noise, N_DRAWS, chunk=1024), rounds=3, warmup_rounds=1)
    assert G.shape == (N_DRAWS, 100)


def test_sampler_autograd_loop(benchmark, stoc):
    p, e, x, noise, eta = stoc
    out = benchmark.pedantic(lambda: [stocbio_autograd(p, x, noise, i, 20, eta, 10, eta) for i in range(N_DRAWS)],
                             rounds=1, warmup_rounds=0)
    assert len(out) == N_DRAWS


# -- issue 13: the hand-written baselines of the targets' table, each checked against the harness -----------

@pytest.fixture(scope="module")
def quad1000():
    p = harness.problem("quadratic", dim=1000)
    return p, torch.linspace(-1, 1, 1000, dtype=torch.float64), 1.0 / p.constants["L"]


@pytest.mark.parametrize("side", ["harness", "autograd"])
def test_itd_vs_hand_written_autograd(benchmark, quad1000, side):
    p, x, lr = quad1000
    e = harness.estimator("itd", inner_steps=20, inner_lr=lr)
    ref = e.estimate(Oracles(p), x, {}, None).grad
    fn = (lambda: e.estimate(Oracles(p), x, {}, None).grad) if side == "harness" else (lambda: itd_autograd(p, x, 20, lr))
    g = benchmark.pedantic(fn, **ROUNDS)
    torch.testing.assert_close(g, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("side", ["harness", "autograd", "torchopt"])
@pytest.mark.parametrize("prob", ["quadratic1000", "logreg-l2"])
def test_aid_cg_vs_hand_written_and_torchopt(benchmark, side, prob):
    """aid-cg, the same algorithm with hand-written autograd HVPs, and TorchOpt's implicit CG (bench extra):
    equal to float64 rounding, hence at identical relative error."""
    if side == "torchopt":
        pytest.importorskip("torchopt")
    p = harness.problem("quadratic", dim=1000) if prob == "quadratic1000" else harness.problem("logreg-l2")
    x = torch.linspace(-1, 1, p.dim_x, dtype=torch.float64) if prob == "quadratic1000" else p.x0()
    lr = 1.0 / p.constants["L"]
    e = harness.estimator("aid-cg", inner_steps=20, solver_steps=10, inner_lr=lr)
    ref = e.estimate(Oracles(p), x, {}, None).grad
    fn = {"harness": lambda: e.estimate(Oracles(p), x, {}, None).grad,
          "autograd": lambda: aid_cg_autograd(p, x, 20, lr, 10),
          "torchopt": lambda: aid_cg_torchopt(p, x, 20, lr, 10)}[side]
    g = benchmark.pedantic(fn, **ROUNDS)
    torch.testing.assert_close(g, ref, rtol=1e-10, atol=1e-12)
    truth = p.hypergradient(x)
    rel = float(torch.linalg.norm(g - truth) / torch.linalg.norm(truth))
    assert rel == pytest.approx(float(torch.linalg.norm(ref - truth) / torch.linalg.norm(truth)), rel=1e-8)


def test_sampler_end_to_end_equals_autograd_loop(benchmark):
    """harness.estimate end to end (noise drawn per block) on the first draws equals the hand-written loop."""
    p = harness.problem("quadratic", dim=100, noise=1.0)
    eta = 1.0 / p.constants["L"]
    e = harness.estimator("stocbio", inner_steps=20, solver_steps=10, batch_size=16, inner_lr=eta, solver_lr=eta,
                          warm_start=False)
    out = benchmark.pedantic(lambda: harness.estimate(p, e, seed=0, n=N_DRAWS), rounds=3, warmup_rounds=1)
    noise = draw_noise(p, e, N_DRAWS, seed=0)
    ref = torch.stack([stocbio_autograd(p, p.x0(), noise, i, 20, eta, 10, eta) for i in range(8)])
    torch.testing.assert_close(out.grads[:8], ref, rtol=1e-10, atol=1e-12)
