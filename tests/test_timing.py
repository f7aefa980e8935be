"""blobench.measure.timing.time_call: warm-up excluded, median/IQR over repeats, bad input."""
from __future__ import annotations

import time

import pytest
import torch

from blobench.core.errors import ParameterError
from blobench.measure.timing import time_call


def test_warmup_excluded_and_median():
    calls = []

    def f(dt):
        calls.append(1)
        time.sleep(0.2 if len(calls) == 1 else dt)  # a slow first call (compilation-like)
        return len(calls)

    t = time_call(f, 0.01, repeats=5, warmup=1)
    assert len(calls) == 6 and t["result"] == 6
    assert 0.009 <= t["median_s"] < 0.1  # the 0.2 s first call is not in the figures
    assert t["q1_s"] <= t["median_s"] <= t["q3_s"] and t["iqr_s"] == pytest.approx(t["q3_s"] - t["q1_s"])
    # negative control: without warm-up the slow call is timed (it is the max)
    calls.clear()
    t0 = time_call(f, 0.01, repeats=3, warmup=0)
    assert max(t0["times"]) >= 0.2


def test_bad_input():
    with pytest.raises(ParameterError, match="repeats"):
        time_call(lambda: 0, repeats=0)
    with pytest.raises(ParameterError, match="warmup"):
        time_call(lambda: 0, warmup=-1)
    with pytest.raises(ParameterError, match="callable"):
        time_call(None)
    if not torch.cuda.is_available():
        with pytest.raises(ParameterError, match="cuda"):
            time_call(lambda: 0, device="cuda")


@pytest.mark.gpu
def test_cuda_synchronized(cuda):
    """With device="cuda" the asynchronous kernel is inside the interval: a float64 8192^3 matmul (~1.1 TFLOP,
    milliseconds on any GPU) times far longer than the same call timed without synchronisation (its launch)."""
    a = torch.randn(8192, 8192, device=cuda, dtype=torch.float64)
    t = time_call(lambda: a @ a, repeats=3, device="cuda")
    assert t["median_s"] > 1e-3 and t["device"] == "cuda"
    torch.cuda.synchronize()
    unsynced = time_call(lambda: a @ a, repeats=3, warmup=1, device="cpu")  # negative control: launch only
    torch.cuda.synchronize()
    assert unsynced["median_s"] < 0.2 * t["median_s"], (unsynced["median_s"], t["median_s"])
