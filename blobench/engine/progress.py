"""Run progress: a tqdm bar on a terminal, plain periodic lines otherwise (CI logs).

Both show cells done / to run, how many failed (any status other than ok/unavailable),
how many are running, and an ETA from the mean wall time per finished cell.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

BAD = ("failed", "diverged", "timeout")


class Progress:
    """Progress of one run. ``update(result)`` after each finished cell; ``close()`` at the end.

    ``interval`` (seconds, default from BLOBENCH_PROGRESS_INTERVAL or 10) spaces the plain
    lines; every failure is printed at once in both modes.
    """

    def __init__(self, total: int, jobs: int = 1, enabled: bool = True, stream: TextIO | None = None,
                 interval: float | None = None, tty: bool | None = None):
        self.total, self.jobs, self.enabled = total, max(1, jobs), enabled
        self.stream = stream or sys.stderr
        self.interval = float(interval if interval is not None else os.environ.get("BLOBENCH_PROGRESS_INTERVAL", 10))
        self.done = self.failed = 0
        self.t0 = self._last = time.monotonic()
        self.tty = (self.stream.isatty() if hasattr(self.stream, "isatty") else False) if tty is None else tty
        self._bar = None
        if enabled and self.tty and total:
            from tqdm import tqdm

            self._bar = tqdm(total=total, file=self.stream, unit="cell", dynamic_ncols=True)

    @property
    def running(self) -> int:
        return min(self.jobs, self.total - self.done)

    def eta(self) -> float:
        if not self.done:
            return float("nan")
        return (time.monotonic() - self.t0) / self.done * (self.total - self.done)

    def line(self) -> str:
        eta = self.eta()
        eta_s = "?" if eta != eta else f"{eta:.0f}s"
        return (f"blobench: {self.done}/{self.total} cells done, {self.failed} failed, {self.running} running, "
                f"elapsed {time.monotonic() - self.t0:.0f}s, eta {eta_s}")

    def update(self, result: dict[str, Any]) -> None:
        self.done += 1
        bad = result.get("status") in BAD
        self.failed += bad
        if not self.enabled:
            return
        if bad:
            msg = f"  {result['status']}: {result.get('label', result.get('key'))}: {result.get('message', '')}"
            (self._bar.write(msg, file=self.stream) if self._bar is not None else print(msg, file=self.stream))
        if self._bar is not None:
            self._bar.set_postfix(failed=self.failed, running=self.running, refresh=False)
            self._bar.update(1)
            return
        now = time.monotonic()
        if now - self._last >= self.interval or self.done == self.total:
            self._last = now
            print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
