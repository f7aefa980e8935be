"""Wall-clock timing of one call: warm-up first, device synchronisation, median and IQR.

``time_call(fn, *args, repeats=7, warmup=1, device="cpu", **kw)`` runs ``fn`` ``warmup``
times untimed (first-call costs: lazy initialisation, allocator growth, vmap/functorch
tracing caches), then ``repeats`` timed calls. On CUDA every timed call is bracketed by
``torch.cuda.synchronize`` so that asynchronous kernels are inside the interval. Only the
call itself is timed: set-up (drawing noise, building the estimator) and metric
evaluation belong outside ``fn``.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch

from blobench.core.errors import ParameterError


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[..., Any], *args: Any, repeats: int = 7, warmup: int = 1,
              device: str | torch.device = "cpu", **kw: Any) -> dict[str, Any]:
    """Median, quartiles and IQR (seconds) of ``repeats`` timed calls of ``fn(*args, **kw)`` after ``warmup`` calls."""
    if not callable(fn):
        raise ParameterError(f"time_call: fn must be callable, got {type(fn).__name__}")
    if not isinstance(repeats, int) or repeats < 1:
        raise ParameterError(f"time_call: repeats must be an integer >= 1, got {repeats!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise ParameterError(f"time_call: warmup must be an integer >= 0, got {warmup!r}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ParameterError(f"time_call: unknown device {str(device)!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError("time_call: device 'cuda' requested but torch.cuda.is_available() is False")
    for _ in range(warmup):
        fn(*args, **kw)
    times = []
    result = None
    for _ in range(repeats):
        _sync(dev)
        t0 = time.perf_counter()
        result = fn(*args, **kw)
        _sync(dev)
        times.append(time.perf_counter() - t0)
    q1, med, q3 = (float(v) for v in np.quantile(times, [0.25, 0.5, 0.75]))
    return {"median_s": med, "q1_s": q1, "q3_s": q3, "iqr_s": q3 - q1, "min_s": float(min(times)),
            "times": times, "repeats": repeats, "warmup": warmup, "device": str(dev), "result": result}


_WARMED: set[str] = set()


def warm_up_autodiff(device: str | torch.device = "cpu") -> None:
    """Pay this process's one-time first-call costs of the autodiff machinery, once per device type.

    The first ``torch.func`` transform of a fresh interpreter imports ``torch._dynamo`` lazily (seconds on a
    loaded machine), and the first CUDA call creates the context. Without this, the first timed step of the
    first run in a process records that cost (issue 29: 3.3 s against 1 ms for the next identical cell).
    :func:`blobench.measure.outer.outer_loop` calls it before its clock starts; the runner's worker and
    serial paths call it through ``_warm_up``. Later calls for a warmed device return at once."""
    dev = torch.device(device)
    if dev.type in _WARMED:
        return
    from torch.func import grad, jvp, vjp, vmap

    x = torch.ones(2, 2, dtype=torch.float64, device=dev)

    def sq(v: torch.Tensor) -> torch.Tensor:
        return (v * v).sum()

    vmap(grad(sq))(x)
    vjp(lambda v: v * v, x[0])[1](x[0])
    jvp(lambda v: v * v, (x[0],), (x[0],))
    w = x[0].clone().requires_grad_(True)
    torch.autograd.grad(sq(w), w)
    _sync(dev)
    _WARMED.add(dev.type)


__all__ = ["time_call", "warm_up_autodiff"]
