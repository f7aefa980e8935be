"""Peak tensor memory of one call: ``peak_memory(fn, *args, device="cpu", **kw)``.

How the figure is obtained
--------------------------
* **CPU (deterministic).** The call runs under ``torch.profiler.profile(profile_memory=True)``.
  The profiler records one event per allocator call, with a signed size (``+n`` on
  allocation, ``-n`` on free). Sorting these events by time and summing them gives the
  live tensor bytes allocated by the call above what was live when it started; the
  maximum of that running sum is ``peak_bytes``. It depends only on the sizes and
  lifetimes of the tensors the code creates, not on the allocator, the OS or timing, so
  it is reproducible run to run (tested). Memory freed by the call that was allocated
  before it (e.g. an argument it drops) counts negatively, so the figure is the rise
  above the starting level, clipped at 0.
* **CUDA.** ``torch.cuda.synchronize``, ``reset_peak_memory_stats`` and the current
  ``memory_allocated`` as baseline, then the call, ``synchronize`` again and
  ``max_memory_allocated() - baseline``: isolated per measurement.
* **Process RSS (secondary).** On Linux the kernel's high-water mark (VmHWM) is reset
  before the call by writing ``5`` to ``/proc/self/clear_refs`` and read back after it;
  ``rss_peak_bytes`` is that process-wide peak (it includes the interpreter and every
  library, so it is a coarse, noisy figure), ``rss_reset`` says whether the reset worked
  (else the figure is the process lifetime peak from ``getrusage``).
"""
from __future__ import annotations

import os
import resource
import sys
from typing import Any, Callable

import torch

from .errors import ParameterError


def _rss_reset() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _rss_peak() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r if sys.platform == "darwin" else r * 1024)


def _alloc_events(prof: Any) -> list[tuple[int, int]]:
    """(time_ns, signed bytes) of every CPU allocator event the profiler recorded."""
    out: list[tuple[int, int]] = []
    for e in prof.profiler.kineto_results.events():
        if e.name() == "[memory]" and "CPU" in str(e.device_type()):
            out.append((int(e.start_ns()), int(e.nbytes())))
    out.sort(key=lambda t: t[0])
    return out


def _cpu_peak(fn: Callable[..., Any], args: tuple, kw: dict) -> tuple[Any, int, int, int]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=False) as prof:
        result = fn(*args, **kw)
    running = peak = 0
    events = _alloc_events(prof)
    for _, nbytes in events:
        running += nbytes
        peak = max(peak, running)
    return result, peak, running, len(events)


def peak_memory(fn: Callable[..., Any], *args: Any, device: str | torch.device = "cpu", **kw: Any) -> dict[str, Any]:
    """Peak tensor memory of ``fn(*args, **kw)`` on ``device``.

    Returns ``{"peak_bytes": int, "retained_bytes": int, "rss_peak_bytes": int,
    "rss_reset": bool, "device": str, "method": str, "result": fn's return value}``:
    ``peak_bytes`` is the maximum rise of live tensor memory during the call (see the
    module docstring for how it is measured), ``retained_bytes`` what is still allocated
    at its end (e.g. the returned tensors).
    """
    if not callable(fn):
        raise ParameterError(f"peak_memory: fn must be callable, got {type(fn).__name__}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ParameterError(f"peak_memory: device must be 'cpu' or 'cuda[:k]', got {str(device)!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ParameterError(f"peak_memory: device must be 'cpu' or 'cuda[:k]', got {str(device)!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError("peak_memory: device 'cuda' requested but torch.cuda.is_available() is False")
    reset = _rss_reset()
    if dev.type == "cpu":
        result, peak, retained, nev = _cpu_peak(fn, args, kw)
        method = f"torch.profiler allocation events ({nev}), running sum"
    else:
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
        result = fn(*args, **kw)
        torch.cuda.synchronize(dev)
        peak = max(0, torch.cuda.max_memory_allocated(dev) - base)
        retained = torch.cuda.memory_allocated(dev) - base
        method = "torch.cuda.max_memory_allocated after reset_peak_memory_stats"
    return {
        "peak_bytes": int(max(0, peak)),
        "retained_bytes": int(retained),
        "rss_peak_bytes": _rss_peak(),
        "rss_reset": reset,
        "device": str(dev),
        "method": method,
        "result": result,
    }


__all__ = ["peak_memory"]
