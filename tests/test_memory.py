"""blobench.measure.memory.peak_memory against the known size of the tensors a function must hold."""
from __future__ import annotations

import pytest
import torch

from blobench import harness
from blobench.core.errors import ParameterError
from blobench.measure.memory import peak_memory


def hold_k(k: int, d: int) -> torch.Tensor:
    xs = [torch.full((d,), float(i), dtype=torch.float64) for i in range(k)]
    s = torch.stack([x.sum() for x in xs]).sum()
    del xs
    return s


TRACKERS = ["profiler", "dispatch"]


@pytest.mark.parametrize("tracker", TRACKERS)
@pytest.mark.parametrize("k,d", [(1, 10_000), (5, 10_000), (20, 4_096)])
def test_cpu_peak_at_least_live_tensors(k, d, tracker):
    m = peak_memory(hold_k, k, d, tracker=tracker)
    need = k * d * 8
    assert m["peak_bytes"] >= need
    # and not wildly more: only scalars besides the k vectors (plus one stack of k scalars)
    assert m["peak_bytes"] <= need + 4096
    assert m["retained_bytes"] <= 64  # only the returned scalar survives
    assert float(m["result"]) == pytest.approx(d * k * (k - 1) / 2)
    assert m["rss_peak_bytes"] > 0


@pytest.mark.parametrize("tracker", TRACKERS)
def test_cpu_peak_deterministic_and_sequential_free(tracker):
    def sequential(k: int, d: int) -> float:
        tot = 0.0
        for i in range(k):  # each vector dies before the next is made: peak ~ one vector
            tot += float(torch.full((d,), 1.0, dtype=torch.float64).sum())
        return tot

    a = peak_memory(sequential, 10, 50_000, tracker=tracker)["peak_bytes"]
    b = peak_memory(sequential, 10, 50_000, tracker=tracker)["peak_bytes"]
    assert a == b
    assert 50_000 * 8 <= a < 2 * 50_000 * 8  # negative control: not 10 vectors


@pytest.mark.parametrize("tracker", TRACKERS)
def test_preexisting_tensor_not_counted(tracker):
    big = torch.zeros(100_000, dtype=torch.float64)
    m = peak_memory(lambda t: t.sum(), big, tracker=tracker)
    assert m["peak_bytes"] < 1024
    m = peak_memory(lambda t: t[::2].reshape(-1, 10).T.sum(), big, tracker=tracker)  # views of an argument
    assert m["peak_bytes"] < 1024


def test_dispatch_tracker_agrees_with_profiler_on_differences():
    """Growth of the stored unroll with r (and flatness of the recomputing one) is the same under both trackers,
    also through torch.func transforms (the exact branch uses grad / vjp)."""
    from blobench.core.oracles import Oracles

    def peaks(memory: str, tracker: str) -> list[int]:
        out = []
        for r in (5, 25):
            p = harness.problem("meta-linreg", dim=16, shots=32, query=16, unroll_steps=r, unroll_lr=0.05)
            e = harness.estimator("maml", memory=memory)
            noise = {k: v[0] for k, v in e.draw(p, torch.Generator().manual_seed(0), 1).items()}
            o, x = Oracles(p), p.x0()
            e.estimate(o, x, noise)  # warm-up
            out.append(peak_memory(lambda: e.estimate(o, x, noise).grad, tracker=tracker)["peak_bytes"])
        return out

    prof, disp = peaks("stored", "profiler"), peaks("stored", "dispatch")
    assert prof[1] - prof[0] == disp[1] - disp[0] == 20 * 16 * 8  # one state vector per extra step
    assert peaks("constant", "dispatch")[0] == peaks("constant", "dispatch")[1]


def test_bad_input():
    with pytest.raises(ParameterError, match="callable"):
        peak_memory(3)
    with pytest.raises(ParameterError, match="device"):
        peak_memory(hold_k, 1, 1, device="tpu")
    with pytest.raises(ParameterError, match="tracker"):
        peak_memory(hold_k, 1, 1, tracker="valgrind")
    if not torch.cuda.is_available():
        with pytest.raises(ParameterError, match="cuda"):
            peak_memory(hold_k, 1, 1, device="cuda")


@pytest.mark.gpu
def test_cuda_peak(cuda):
    def f(k, d):
        xs = [torch.ones(d, dtype=torch.float64, device=cuda) for _ in range(k)]
        return torch.stack([x.sum() for x in xs]).sum()

    m = peak_memory(f, 8, 1 << 20, device="cuda")
    assert m["peak_bytes"] >= 8 * (1 << 20) * 8
    assert m["peak_bytes"] <= 8 * (1 << 20) * 8 + (1 << 20)
    assert m["retained_bytes"] <= 1024  # only the returned scalar survives
    # a tensor allocated before the call is not counted; sequential temporaries peak at one vector
    big = torch.zeros(1 << 22, dtype=torch.float64, device=cuda)
    assert peak_memory(lambda t: t.sum(), big, device="cuda")["peak_bytes"] < 1 << 16

    def sequential(k, d):
        return sum(float(torch.ones(d, dtype=torch.float64, device=cuda).sum()) for _ in range(k))

    seq = peak_memory(sequential, 8, 1 << 20, device="cuda")["peak_bytes"]
    assert (1 << 20) * 8 <= seq < 2 * (1 << 20) * 8


@pytest.mark.gpu
def test_cuda_estimator_holds_unrolled_trajectory(cuda):
    """The CPU test below on the GPU: ITD's stored trajectory grows the CUDA peak by ~dim_y * 8 bytes per step
    (the caching allocator rounds each block up to 512 bytes)."""
    p = harness.problem("quadratic", dim=400, kappa=2.0)
    o = harness.Oracles(p.on(cuda))
    x = p.x0().to(cuda)

    def run(D: int):
        return harness.estimator("itd", inner_steps=D, inner_lr=0.5).estimate(o, x, {}, None).grad

    run(10)  # warm-up: CUDA context, kernels
    m10 = peak_memory(run, 10, device="cuda")["peak_bytes"]
    m40 = peak_memory(run, 40, device="cuda")["peak_bytes"]
    assert 30 * 400 * 8 <= m40 - m10 <= 2 * 30 * 400 * 8


def test_estimator_holds_unrolled_trajectory():
    """ITD keeps, per inner step, y_k and its gradient graph for the backward pass (issue 13: the
    linearisation built in the forward pass, two dim_y vectors): peak grows ~ 2 D dim_y * 8 bytes."""
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
    assert m40 - m10 >= 2 * 30 * 400 * 8
    assert m40 - m10 <= 3 * 30 * 400 * 8
