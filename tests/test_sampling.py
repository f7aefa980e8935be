"""harness.estimate: draws up front, vmapped chunks == per-draw loop, chunk bounds memory, fallback."""
from __future__ import annotations

import pytest
import torch

from blobench import harness
from blobench.core.errors import ParameterError
from blobench.measure.memory import peak_memory
from blobench.measure.sampling import draw_noise, run_draws
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


# -- issue 13: noise drawn per canonical block, chunk-invariant, memory independent of n -----------------

def test_block_zero_is_the_single_up_front_draw(noisy):
    """n <= B: the noise is exactly estimator.draw(problem, Generator(seed), n), the draw before issue 13."""
    from blobench.measure.sampling import NoiseBlocks, noise_block_size

    e = harness.estimator("stocbio", inner_steps=3, solver_steps=4, batch_size=2)
    B = noise_block_size(noisy, e)
    assert B >= 1024  # a few KB per draw: thousands of draws per 64 MiB block
    for n in (1, 37, B):
        old = e.draw(noisy, torch.Generator().manual_seed(5), n)
        new = NoiseBlocks(noisy, e, n, seed=5).all()
        assert old.keys() == new.keys() and all(torch.equal(old[k], new[k]) for k in old)


def test_noise_is_the_same_whatever_the_chunking(noisy):
    """Blocks are seeded by (seed, k) alone: any sequence of chunks sees the same rows, and block k is its
    own seeded draw (n > B here: B = 16 forced)."""
    from blobench.measure.sampling import NoiseBlocks, block_seed

    e = harness.estimator("itd", inner_steps=2, batch_size=3)
    n, B = 75, 16
    ref = NoiseBlocks(noisy, e, n, seed=3, block=B).all()
    for chunk in (1, 7, 16, 50, 1000):
        src = NoiseBlocks(noisy, e, n, seed=3, block=B)
        parts = [src.rows(a, min(n, a + chunk)) for a in range(0, n, chunk)]
        got = {k: torch.cat([p[k] for p in parts]) for k in ref}
        assert all(torch.equal(got[k], ref[k]) for k in ref), chunk
        assert len(src._cache) <= -(-chunk // B) + 1  # blocks before the current chunk were dropped
    k = 2
    blk = e.draw(noisy, torch.Generator().manual_seed(block_seed(3, k)), B)
    assert all(torch.equal(ref[key][k * B:(k + 1) * B], blk[key]) for key in ref)
    last = e.draw(noisy, torch.Generator().manual_seed(block_seed(3, 4)), n - 4 * B)  # the partial last block
    assert all(torch.equal(ref[key][4 * B:], last[key]) for key in ref)
    assert block_seed(3, 0) == 3 and len({block_seed(3, j) for j in range(50)} | {block_seed(4, 1)}) == 51


@pytest.mark.parametrize("name,params", [("stocbio", {"inner_steps": 3, "solver_steps": 4, "batch_size": 2}),
                                         ("aid-cg", {"inner_steps": 3, "solver_steps": 3})])
def test_results_do_not_depend_on_chunk(noisy, monkeypatch, name, params):
    """n = 75 draws in blocks of 16: the per-draw path is bit-identical whatever the chunk, and so is the
    vmapped path (every vmapped call runs on at least MIN_VMAP_ROWS rows); the two paths agree to float64
    rounding (GEMV per draw against GEMM per call)."""
    import blobench.measure.sampling as S

    e = harness.estimator(name, **params)
    monkeypatch.setattr(S, "noise_block_size", lambda problem, est: 16)
    loop = [harness.estimate(noisy, e, seed=4, n=75, chunk=c, vmapped=False).grads for c in (1, 16, 33, 1024)]
    assert all(torch.equal(loop[0], g) for g in loop[1:])
    vm = [harness.estimate(noisy, e, seed=4, n=75, chunk=c).grads for c in (1, 2, 5, 16, 33, 1024)]
    assert all(torch.equal(vm[-1], g) for g in vm[:-1])
    torch.testing.assert_close(vm[-1], loop[0], rtol=1e-12, atol=1e-13)
    # negative control: blocks of another size are other draws
    monkeypatch.setattr(S, "noise_block_size", lambda problem, est: 32)
    assert not torch.allclose(harness.estimate(noisy, e, seed=4, n=75, vmapped=False).grads, loop[0])


@pytest.mark.parametrize("problem,pparams,name,params", [
    ("meta-linreg", {}, "maml", {}), ("meta-linreg", {}, "ufo", {"q": 0.3}),
    ("quadratic", {"dim": 30, "noise": 1.0}, "stocbio", {"inner_steps": 3, "solver_steps": 4, "batch_size": 2})])
def test_vmapped_results_bit_identical_whatever_the_chunk(monkeypatch, problem, pparams, name, params):
    """The mission's determinism: the same draws give the same bits whatever ``chunk``. Without the padding
    of small vmapped calls (MIN_VMAP_ROWS = 1: the control) a call of one row (chunk = 1, or a UFO chunk in
    which one coin fired) goes through GEMV and rounds differently from the same draw in a larger call."""
    import blobench.measure.sampling as S

    p, e = harness.problem(problem, **pparams), harness.estimator(name, **params)
    ref = harness.estimate(p, e, seed=1, n=96, chunk=96).grads
    for c in (1, 3, 7, 16, 40):
        assert torch.equal(harness.estimate(p, e, seed=1, n=96, chunk=c).grads, ref), c
    monkeypatch.setattr(S, "MIN_VMAP_ROWS", 1)
    assert not torch.equal(harness.estimate(p, e, seed=1, n=96, chunk=1).grads, ref)


def test_noise_memory_does_not_grow_with_n(monkeypatch):
    """With blocks of 64 draws, 16x more draws cost only their 16x larger output (grads and counts),
    not their noise: before issue 13 all n draws' noise was allocated at once."""
    import blobench.measure.sampling as S

    p = harness.problem("quadratic", dim=8, noise=0.5)
    e = harness.estimator("stocbio", inner_steps=6, solver_steps=6, batch_size=4)
    per_draw = sum(v[0].numel() * v.element_size() for v in S.draw_noise(p, e, 1).values())
    monkeypatch.setattr(S, "NOISE_BLOCK_BYTES", 64 * per_draw)
    assert S.noise_block_size(p, e) == 64

    def peak(n):
        return peak_memory(S.estimate, p, e, n=n, chunk=32, tracker="dispatch")["peak_bytes"]

    small, big = peak(64), peak(1024)
    out_per_draw = 8 * 8 + 6 * 8  # grads row + 6 call counters
    assert big - small < 3 * (1024 - 64) * out_per_draw
    assert (1024 - 64) * per_draw > 5 * (big - small)  # what drawing everything up front would have added
