"""Claim of AmIGO (Arbel & Mairal, "Amortized implicit differentiation for stochastic bilevel optimization",
ICLR 2022, arXiv 2111.14580): warm starts (amortisation) make a constant, small inner budget enough.

Their Theorem 1 (strongly convex outer objective) bounds the error of AmIGO's iterates by a geometric term plus
variance terms; with exact oracles the variance terms vanish and the iterates converge linearly to the minimiser,
although each outer step runs only T inner and M linear-system steps. Without warm starts the same T, M leave a
fixed bias in every hypergradient, and the iterates stop at a biased point: the amortisation is the mechanism.

``MUTATIONS`` lists in-process breakages with the claims that must catch them, ``(name, caught_by, patch)``.
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import numpy as np
import torch

from blobench import harness
from blobench.gate.claim_base import Claim, Verdict
from blobench.measure.metrics import fit_loglinear
from blobench.measure.outer import outer_loop

from blobench.estimators.single_loop import AmIGO

#: ||grad Phi(x_k)||^2 must shrink at least by this factor per outer step (the fitted factor's interval upper end)
MAX_FACTOR = 0.9
#: and reach this level at the end of the run
FINAL = 1e-14


@contextlib.contextmanager
def _cold_starts():
    """AmIGO's state silently dropped: every outer step starts y and v afresh (the amortisation removed)."""
    orig = AmIGO.estimate

    def estimate(self, oracles, x, noise, state=None):
        return orig(self, oracles, x, noise, None)

    AmIGO.estimate = estimate
    try:
        yield
    finally:
        AmIGO.estimate = orig


@harness.register_claim("amigo-warm-start-linear")
class AmIGOWarmStartLinear(Claim):
    citation = "Arbel & Mairal 2022 (ICLR, arXiv 2111.14580), Theorem 1 (strongly convex outer, exact oracles: linear rate)"
    statement = ("On a deterministic quadratic with strongly convex Phi (rho = 1), AmIGO with warm starts and only T = 2 inner "
                 f"and M = 3 linear-system steps per outer step converges linearly: the fitted per-step factor of "
                 f"||grad Phi(x_k)||^2 has its 95% interval below {MAX_FACTOR}, and ||grad Phi(x_K)||^2 <= {FINAL:g}.")
    control = "warm starts off (warm_start = false: y and v restart from init at every outer step)"

    def evaluate(self, size: str, control: bool) -> Verdict:
        dim, K = (5, 80) if size == "ci" else (20, 200)
        p = harness.problem("quadratic", dim=dim, kappa=4, rho=1.0)
        lr = 0.2
        e = harness.estimator("amigo", inner_steps=2, solver_steps=3, warm_start=not control)
        tr = outer_loop(p, e, K, lr, eval_every=1)
        g = np.asarray(tr.grad_norm_sq, float)
        ks = np.arange(len(g))
        slope, lo, hi, n = fit_loglinear(ks[5:], g[5:], floor=1e-28)
        factor, f_hi = float(np.exp(slope)), float(np.exp(hi))
        # the same outer loop with the exact hypergradient contracts ||grad Phi||^2 by max|1 - lr lambda|^2 per step
        lam = torch.linalg.eigvalsh(p.hessian_phi())
        gd = float(torch.max(torch.abs(1 - lr * lam)) ** 2)
        final = float(g[-1]) if len(g) and not tr.diverged else float("inf")
        ok = bool(np.isfinite(f_hi)) and f_hi < MAX_FACTOR and final <= FINAL
        return Verdict(ok, f"factor {factor:.3f} [{np.exp(lo):.3f}, {f_hi:.3f}] per step, final {final:.2e}; exact-gradient GD {gd:.3f}",
                       f"factor < {MAX_FACTOR} (linear), final <= {FINAL:g}",
                       {"factor": factor, "interval": [float(np.exp(lo)), f_hi], "final_grad_norm_sq": final,
                        "exact_gd_factor": gd, "points": n, "grad_norm_sq": g.tolist(), "warm_start": not control})


MUTATIONS: list[tuple[str, tuple[str, ...], Callable[[], ContextManager]]] = [
    ("amigo-state-dropped", ("amigo-warm-start-linear",), _cold_starts),
]
