"""Helpers shared by several claim modules (one module per source paper): power-law fits, the running
stationarity measure, the SOBA/TTSA rate rule on the finite-sum quadratic, and in-process patches for controls and
mutations. The leading underscore keeps this module out of claim discovery.
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import numpy as np

from blobench import harness
from blobench.gate.claim_base import Verdict
from blobench.measure.outer import outer_loop


def fit_power(xs: list[float], ys: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """Least-squares exponent of ys ~ C xs^a on log-log axes, with its t-interval from the fit's residuals
    (:func:`blobench.measure.complexity.fit_exponent`, the one log-log fit; NaN with fewer than 3 positive points)."""
    from blobench.measure.complexity import fit_exponent

    f = fit_exponent(xs, ys, level)
    return f["slope"], f["lo"], f["hi"]


def running_stationarity(tr, checkpoints: list[int]) -> list[float]:
    """(1/T) sum_{t<T} ||grad Phi(x_t)||^2 at each checkpoint T: the quantity of Dagreou et al.'s Theorems 1-2."""
    g = np.asarray(tr.grad_norm_sq, float)
    if tr.diverged or len(g) < max(checkpoints) + 1:
        return [float("inf")] * len(checkpoints)
    return [float(g[:T].mean()) for T in checkpoints]


def _finite_quadratic():
    return harness.problem("quadratic", dim=5, kappa=4, rho=1.0, noise=0.5, n_samples=20)


@contextlib.contextmanager
def _setattr(obj, name: str, value):
    """Set ``obj.name`` for the duration; an attribute the class only inherited is removed again afterwards."""
    own = name in vars(obj)
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        if own:
            setattr(obj, name, old)
        else:
            delattr(obj, name)


def _running_rate_verdict(e, size: str, bound: float, predicted: str) -> Verdict:
    """SOBA's and TTSA's rule: on the finite-sum quadratic, outer steps 0.2 t^-0.6 (the shared outer loop's power
    schedule), the seed-averaged (1/T) sum_t ||grad Phi(x_t)||^2 at T/8, T/4, T/2, T has a fitted exponent in T at
    most ``bound`` with the upper end of its 95% interval below 0."""
    p = _finite_quadratic()
    T = 320 if size == "ci" else 3200
    checks = [T // 8, T // 4, T // 2, T]
    seeds = [0, 1] if size == "ci" else list(range(5))
    curves = [running_stationarity(outer_loop(p, e, T, 0.2, "power", seed=s, power=0.6), checks) for s in seeds]
    avg = np.mean(curves, axis=0)
    a, lo, hi = fit_power(checks, avg)
    ok = bool(np.all(np.isfinite(avg))) and a <= bound and hi < 0
    return Verdict(ok, f"exponent {a:.2f} [{lo:.2f}, {hi:.2f}]", predicted,
                   {"T": checks, "avg_grad_norm_sq": avg.tolist(), "seeds": seeds, "exponent": a, "interval": [lo, hi]})


def _patch(obj, name: str, value) -> Callable[[], ContextManager]:
    return lambda: _setattr(obj, name, value)
