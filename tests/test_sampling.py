"""harness.estimate: draws up front, vmapped chunks == per-draw loop, chunk bounds memory, fallback."""
from __future__ import annotations

import pytest
import torch

import harness
from harness.errors import ParameterError
from harness.memory import peak_memory
from harness.sampling import draw_noise, run_draws
from tests.benchmarks.baselines import stocbio_autograd


@pytest.fixture(scope="module")
def noisy():
    return harness.problem("quadratic", dim=6, noise=0.5, kappa=4.0, seed=3)


@pytest.mark.parametrize("name,params", [("itd", {"inner_steps": 4}), ("aid-cg", {"inner_steps": 3, "solver_steps": 3}),
                                         ("stocbio", {"inner_steps": 3, "solver_steps": 4, "batch_size": 2})])
def test_vmapped_equals_loop_and_chunk_invariant(noisy, name, params):
    e = harness.estimator(name, **params)
    a = harness.estimate(noisy, e, seed=7, n=23, chunk=1024)
    b = harness.estimate(noisy, e, seed=7, n=23, chunk=5)
    c = harness.estimate(noisy, e, seed=7, n=23, vmapped=False)
    assert a.batched and not c.batched
    torch.testing.assert_close(a.grads, b.grads, rtol=1e-12, atol=1e-13)  # batched BLAS may round differently
    torch.testing.assert_close(a.grads, c.grads, rtol=1e-12, atol=1e-12)
    for k in a.calls:
        assert torch.equal(a.calls[k], c.calls[k])
    assert a.grads.std(0).max() > 0  # the draws differ (noise is on)
    d = harness.estimate(noisy, e, seed=8, n=23)
    assert not torch.equal(a.grads, d.grads)  # negative control: another seed, other draws


def test_stocbio_autograd_reference_matches(noisy):
    """The benchmark's plain-autograd per-draw loop computes the same estimator."""
    D, Q, lr, eta = 3, 4, 0.05, 0.04
    e = harness.estimator("stocbio", inner_steps=D, solver_steps=Q, inner_lr=lr, solver_lr=eta, batch_size=2)
    x = torch.linspace(-1, 1, 6, dtype=torch.float64)
    out = harness.estimate(noisy, e, x, seed=1, n=5)
    noise = draw_noise(noisy, e, 5, seed=1)
    ref = torch.stack([stocbio_autograd(noisy, x, noise, i, D, lr, Q, eta) for i in range(5)])
    torch.testing.assert_close(out.grads, ref, rtol=1e-10, atol=1e-12)
    assert out.calls["hvp"].tolist() == [Q] * 5 and out.calls["grad_y_g"].tolist() == [D] * 5


def test_chunk_bounds_memory():
    p = harness.problem("quadratic", dim=64, noise=0.3)
    e = harness.estimator("itd", inner_steps=8, inner_lr=0.1)
    x = p.x0()
    noise = draw_noise(p, e, 256, seed=0)
    small = peak_memory(run_draws, p, e, x, noise, 256, chunk=16)["peak_bytes"]
    big = peak_memory(run_draws, p, e, x, noise, 256, chunk=256)["peak_bytes"]
    # a chunk of m draws stores m trajectories of 8 x 64 float64: 16x more draws, several x more memory
    assert big > 4 * small
    assert big >= 256 * 8 * 64 * 8


class _NoVmap(harness.Estimator):
    """Per-draw-only test estimator: calls .item() (data-dependent Python control flow cannot be vmapped)."""

    name = "novmap-test"
    vmappable = False

    def draw(self, problem, generator, n):
        return {"z": torch.randn(n, problem.dim_x, generator=generator, dtype=torch.float64)}

    def estimate(self, oracles, x, noise, state=None):
        g = oracles.exact(x)
        return harness.Estimate(g + noise["z"] if float(noise["z"].sum().item()) > -1e9 else g)


def test_per_draw_fallback_for_non_vmappable():
    p = harness.problem("quadratic", dim=3)
    out = harness.estimate(p, _NoVmap(), n=4, seed=0)
    assert not out.batched and out.calls["exact"].tolist() == [1] * 4
    torch.testing.assert_close(out.grads - p.hypergradient(p.x0()), draw_noise(p, _NoVmap(), 4, 0)["z"])


def test_bad_sizes():
    p = harness.problem("quadratic", dim=3, noise=0.1)
    e = harness.estimator("itd", inner_steps=1)
    with pytest.raises(ParameterError, match="n \\(number of draws\\)"):
        harness.estimate(p, e, n=0)
    with pytest.raises(ParameterError, match="chunk"):
        harness.estimate(p, e, n=3, chunk=0)
