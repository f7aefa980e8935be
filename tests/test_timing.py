"""harness.timing.time_call: warm-up excluded, median/IQR over repeats, bad input."""
from __future__ import annotations

import time

import pytest
import torch

from harness.errors import ParameterError
from harness.timing import time_call


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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_synchronized():
    a = torch.randn(4096, 4096, device="cuda")
    t = time_call(lambda: a @ a, repeats=3, device="cuda")
    assert t["median_s"] > 1e-4  # the asynchronous matmul is inside the interval
