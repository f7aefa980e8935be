"""pytest-benchmark suite (issue #6): estimators x sizes, the batched sampler vs a plain-autograd
per-draw loop, and the raw-oracle floor. Run with ``make bench`` (saves JSON under .benchmarks/
and compares with the previous saved run)."""
from __future__ import annotations

import pytest
import torch

import harness
from harness.oracles import Oracles
from harness.sampling import draw_noise, run_draws
from tests.benchmarks.baselines import oracle_floor_aid_cg, oracle_floor_itd, stocbio_autograd

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
