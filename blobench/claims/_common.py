"""Helpers shared by several claim modules (one module per source paper): power-law fits, the running
stationarity measure, the SOBA/TTSA stationarity rule on flat-tail (issue 28), and in-process patches for controls and
mutations. The leading underscore keeps this module out of claim discovery.
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import numpy as np
import torch

from blobench import harness
from blobench.gate.claim_base import Verdict


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


def _patch(obj, name: str, value) -> Callable[[], ContextManager]:
    return lambda: _setattr(obj, name, value)


# -- issue 28: SOBA's and TTSA's stationarity on an instance where O(T^-2/5) binds ---------------------------------
#: flat-tail (nonconvex, bounded below, infimum at infinity): descent never ends, so (1/T) sum_t ||grad Phi(x_t)||^2
#: falls like T^(-0.4 (2a + 2) / (a + 2)) (-0.48 at a = 0.5) under gamma_t ~ t^-3/5, near the theorems' T^-2/5,
#: where on a strongly convex quadratic every method converging near x* gives the transient's C / T
FLAT_TAIL = {"dim": 2, "kappa": 2.0, "tail": 0.5}
#: the outer steps gamma_t = OUTER_LR (t + 1)^-OUTER_POWER (Dagreou et al. 2022, Th. 1; Hong et al. 2020, Th. 1)
OUTER_LR, OUTER_POWER = 3.0, 0.6


def reference_descent(p, x0: torch.Tensor, T: int, direction: Callable[[int, torch.Tensor], torch.Tensor]) -> np.ndarray:
    """||grad Phi(x_t)||^2 for t <= T of x_{t+1} = x_t - gamma_t direction(t, x_t), gamma_t = OUTER_LR (t + 1)^-OUTER_POWER
    computed here (not by the shared outer loop, whose schedule is what a mutation may break)."""
    x = x0.clone()
    out = []
    for t in range(T):
        g = p.hypergradient(x)
        out.append(float(g @ g))
        x = x - OUTER_LR / (t + 1) ** OUTER_POWER * direction(t, x)
    g = p.hypergradient(x)
    out.append(float(g @ g))
    return np.asarray(out)


def stationarity_verdict(curves: list[list[float]], refs: list[np.ndarray], T: int, diverged: bool, predicted: str,
                         bound: float = -0.4, band: tuple[float, float] = (0.9, 1.1)) -> Verdict:
    """SOBA's and TTSA's rule on flat-tail. (1) the theorem: the seed-averaged (1/T) sum_t ||grad Phi(x_t)||^2 at T/8, T/4,
    T/2, T has fitted exponent at most ``bound`` with the upper end of its 95% interval below 0; (2) the stationary level:
    the second-half mean of ||grad Phi(x_t)||^2, averaged over seeds, over the same for the method's predicted
    trajectory (``refs``: the same steps with the method's direction at the exact y*(x_t)) lies within ``band``."""
    checks = [T // 8, T // 4, T // 2, T]
    if diverged:
        return Verdict(False, "diverged", predicted, {"T": checks})
    g = np.asarray(curves, float)
    avg = np.mean([[row[:c].mean() for c in checks] for row in g], axis=0)
    a, lo, hi = fit_power(checks, avg)
    level = float(np.mean([row[T // 2:T].mean() for row in g]))
    ref_level = float(np.mean([r[T // 2:T].mean() for r in refs]))
    ratio = level / ref_level
    ref_avg = np.mean([[r[:c].mean() for c in checks] for r in refs], axis=0)
    ok = bool(np.all(np.isfinite(avg))) and a <= bound and hi < 0 and band[0] <= ratio <= band[1]
    return Verdict(ok, f"exponent {a:.2f} [{lo:.2f}, {hi:.2f}]; second-half level / predicted {ratio:.3f}",
                   f"{predicted}; level ratio within [{band[0]}, {band[1]}]",
                   {"T": checks, "avg_grad_norm_sq": avg.tolist(), "exponent": a, "interval": [lo, hi],
                    "level": level, "predicted_level": ref_level, "level_ratio": ratio,
                    "predicted_exponent": fit_power(checks, ref_avg)[0]})
