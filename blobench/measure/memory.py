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
* **CPU, long calls (``tracker="dispatch"``).** The profiler keeps every operator event, so a
  call with millions of operators (UFO's O(1)-memory exact branch at r = 1000 runs about
  5e5 gradient calls) needs tens of GiB just for the event log. ``tracker="dispatch"`` instead
  runs the call under a ``TorchDispatchMode`` that, at the bottom of the dispatcher (below
  autograd and torch.func), adds the bytes of every storage an operator creates and removes them
  when that storage is freed (a ``weakref.finalize`` on the storage: PyTorch keeps a storage's
  Python object alive as long as the C++ storage lives). Outputs that alias an input (views)
  are not counted. Its memory is O(live tensors), not O(events), and it is deterministic; it
  sees operator outputs only (not scratch space inside a kernel), so its figure can differ from
  the profiler's by a constant, while differences between calls agree (tested).
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
import weakref
from typing import Any, Callable

import torch

from blobench.core.errors import ParameterError


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


class _QuietStderr:
    """Send file descriptor 2 to /dev/null for the duration of a ``with`` block.

    Kineto (torch's profiler back end) prints "USDT: ... profiler_start" / "profiler_stop" lines from C++
    straight to fd 2 on every profiler start and stop, whatever ``KINETO_LOG_LEVEL`` says, which flooded
    ``make run`` output. Only the profiler's own start and stop are wrapped, never the measured call, so
    the call's warnings and errors still reach the terminal.
    """

    def __enter__(self) -> None:
        sys.stderr.flush()
        self._saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)

    def __exit__(self, *exc: object) -> None:
        os.dup2(self._saved, 2)
        os.close(self._saved)


def _cpu_peak(fn: Callable[..., Any], args: tuple, kw: dict) -> tuple[Any, int, int, int]:
    from torch.profiler import ProfilerActivity, profile

    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=False)
    with _QuietStderr():
        prof.__enter__()
    try:
        result = fn(*args, **kw)
    finally:
        with _QuietStderr():
            prof.__exit__(None, None, None)
    running = peak = 0
    events = _alloc_events(prof)
    for _, nbytes in events:
        running += nbytes
        peak = max(peak, running)
    return result, peak, running, len(events)


class _LiveStorageBytes:
    """TorchDispatchMode bookkeeping of live storage bytes created by operators (see module docstring)."""

    def __init__(self) -> None:
        self.live = 0
        self.peak = 0
        self.ops = 0
        self._seen: dict[int, int] = {}

    def _free(self, key: int, n: int) -> None:
        self.live -= n
        self._seen.pop(key, None)

    def mode(self) -> Any:
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_flatten

        tracker = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
                out = func(*args, **(kwargs or {}))
                tracker.ops += 1
                ins = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                       if isinstance(t, torch.Tensor) and t.device.type == "cpu"}
                for t in tree_flatten(out)[0]:
                    if not isinstance(t, torch.Tensor) or t.device.type != "cpu":
                        continue
                    s = t.untyped_storage()
                    key, n = s.data_ptr(), s.nbytes()
                    if n == 0 or key in ins or key in tracker._seen:
                        continue
                    tracker._seen[key] = n
                    tracker.live += n
                    weakref.finalize(s, tracker._free, key, n)
                    tracker.peak = max(tracker.peak, tracker.live)
                return out

        return Mode()


def _dispatch_peak(fn: Callable[..., Any], args: tuple, kw: dict) -> tuple[Any, int, int, int]:
    tr = _LiveStorageBytes()
    with tr.mode():
        result = fn(*args, **kw)
    return result, tr.peak, tr.live, tr.ops


TRACKERS = ("profiler", "dispatch")


def peak_memory(fn: Callable[..., Any], *args: Any, device: str | torch.device = "cpu",
                tracker: str = "profiler", **kw: Any) -> dict[str, Any]:
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
    if tracker not in TRACKERS:
        raise ParameterError(f"peak_memory: tracker must be one of {TRACKERS}, got {tracker!r}")
    reset = _rss_reset()
    if dev.type == "cpu" and tracker == "dispatch":
        result, peak, retained, nops = _dispatch_peak(fn, args, kw)
        method = f"TorchDispatchMode live storage bytes ({nops} operators)"
    elif dev.type == "cpu":
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
