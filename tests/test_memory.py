"""harness.memory.peak_memory against the known size of the tensors a function must hold."""
from __future__ import annotations

import pytest
import torch

import harness
from harness.errors import ParameterError
from harness.memory import peak_memory


def hold_k(k: int, d: int) -> torch.Tensor:
    xs = [torch.full((d,), float(i), dtype=torch.float64) for i in range(k)]
    s = torch.stack([x.sum() for x in xs]).sum()
    del xs
    return s


@pytest.mark.parametrize("k,d", [(1, 10_000), (5, 10_000), (20, 4_096)])
def test_cpu_peak_at_least_live_tensors(k, d):
    m = peak_memory(hold_k, k, d)
    need = k * d * 8
    assert m["peak_bytes"] >= need
    # and not wildly more: only scalars besides the k vectors (plus one stack of k scalars)
    assert m["peak_bytes"] <= need + 4096
    assert m["retained_bytes"] <= 64  # only the returned scalar survives
    assert float(m["result"]) == pytest.approx(d * k * (k - 1) / 2)
    assert m["rss_peak_bytes"] > 0


def test_cpu_peak_deterministic_and_sequential_free():
    def sequential(k: int, d: int) -> float:
        tot = 0.0
        for i in range(k):  # each vector dies before the next is made: peak ~ one vector
            tot += float(torch.full((d,), 1.0, dtype=torch.float64).sum())
        return tot

    a = peak_memory(sequential, 10, 50_000)["peak_bytes"]
    b = peak_memory(sequential, 10, 50_000)["peak_bytes"]
    assert a == b
    assert 50_000 * 8 <= a < 2 * 50_000 * 8  # negative control: not 10 vectors


def test_preexisting_tensor_not_counted():
    big = torch.zeros(100_000, dtype=torch.float64)
    m = peak_memory(lambda t: t.sum(), big)
    assert m["peak_bytes"] < 1024


def test_bad_input():
    with pytest.raises(ParameterError, match="callable"):
        peak_memory(3)
    with pytest.raises(ParameterError, match="device"):
        peak_memory(hold_k, 1, 1, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ParameterError, match="cuda"):
            peak_memory(hold_k, 1, 1, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_peak():
    def f(k, d):
        xs = [torch.ones(d, dtype=torch.float64, device="cuda") for _ in range(k)]
        return torch.stack([x.sum() for x in xs]).sum()

    m = peak_memory(f, 8, 1 << 20, device="cuda")
    assert m["peak_bytes"] >= 8 * (1 << 20) * 8
    assert m["peak_bytes"] <= 8 * (1 << 20) * 8 + (1 << 20)


def test_estimator_holds_unrolled_trajectory():
    """ITD stores its D inner iterates for the backward pass: peak grows ~ D * dim_y * 8 bytes."""
    p = harness.problem("quadratic", dim=400, kappa=2.0)
    o = harness.Oracles(p)
    x = p.x0()

    def run(D: int):
        # inner_lr given: the default 1/L reads problem.constants, whose spectral norm (an SVD)
        # allocates a dim^2 workspace that would mask the trajectory.
        e = harness.estimator("itd", inner_steps=D, inner_lr=0.5)
        return e.estimate(o, x, {}, None).grad

    m10 = peak_memory(run, 10)["peak_bytes"]
    m40 = peak_memory(run, 40)["peak_bytes"]
    assert m40 - m10 >= 30 * 400 * 8
    assert m40 - m10 <= 2 * 30 * 400 * 8
