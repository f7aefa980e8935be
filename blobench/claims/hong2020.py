"""Claim of TTSA.

Source: Hong, Wai, Wang, Yang, "A Two-Timescale Framework for Bilevel Optimization: Complexity Analysis and
Application to Actor-Critic", SIAM J. Optim. 2023 (arXiv 2007.05170), Theorem 1 (nonconvex outer case).

Issue 28: TTSA's rate is measured on flat-tail (nonconvex outer problem, infimum at infinity), where the O(K^-2/5)
bound nearly binds, with a second rule on its stationary level against the level predicted with the same random
truncations at the exact y*(x_t); on the strongly convex quadratic the running average fell like C/K for any method.

``MUTATIONS`` lists in-process breakages of the estimator with the claims that must catch them.
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

from blobench import harness
import numpy as np
import torch

from blobench.claims._common import (
    FLAT_TAIL,
    OUTER_LR,
    OUTER_POWER,
    _patch,
    _setattr,
    reference_descent,
    stationarity_verdict,
)
from blobench.core.oracles import Oracles
from blobench.estimators.single_loop import TTSA
from blobench.estimators.stocbio import BSA
from blobench.gate.claim_base import Claim, Verdict
from blobench.gate.mutations import source_patch
from blobench.measure.outer import outer_loop


def _ttsa_reference(p, e, T: int, seed: int) -> np.ndarray:
    """TTSA's predicted trajectory: the same outer steps and the same truncation draws p_t (Estimator.draw with the
    seed, as the outer loop draws them), with TTSA's direction grad_x f - grad2_xy g v, v = Q eta (I - eta H)^p_t
    grad_y f, taken at the exact y*(x_t): what TTSA gives once its fast timescale tracks y*. Written here from the
    paper's eq. (9), not with BSA's code, so that a broken BSA does not break its own reference."""
    o = Oracles(p)
    Q, eta = int(e.p["solver_steps"]), float(e.p["solver_lr"])
    draws = e.draw(p, torch.Generator().manual_seed(int(seed)), T)["trunc/p"]

    def direction(t: int, x: torch.Tensor) -> torch.Tensor:
        y = p.inner_solution(x)
        gx, v = o.grad_f(x, y, None)
        for _ in range(int(draws[t])):
            v = v - eta * o.hvp(x, y, v, None)
        return gx - o.jvp(x, y, Q * eta * v, None)

    return reference_descent(p, p.x0(), T, direction)


@harness.register_claim("ttsa-stationarity-rate")
class TTSARate(Claim):
    citation = ("Hong, Wai, Wang, Yang 2020 (arXiv 2007.05170), Theorem 1, nonconvex outer case (TTSA, beta_t ~ t^-2/5 on y, "
                "alpha_t ~ t^-3/5 on x: (1/K) sum_k E||grad Phi(x_k)||^2 = O(K^-2/5))")
    statement = ("On flat-tail (nonconvex outer, infimum at infinity: the bound binds), TTSA with its two timescales (one "
                 "warm-started step on y at 0.5 t^-0.4, outer steps 3 t^-0.6) and BSA's random truncation (Q = 5, eta = 0.5: "
                 "noise proportional to grad_y f, so state-dependent) has (1/T) sum_t ||grad Phi(x_t)||^2 = O(T^-2/5): the "
                 "fitted exponent against T is at most -0.4, the upper end of its 95% interval below 0; and its stationary "
                 "level, the second-half mean of ||grad Phi(x_t)||^2, is within 10% of the level predicted with the same "
                 "truncation draws at the exact y*(x_t) (common random numbers: the ratio measures the tracking, not the noise).")
    control = "y not carried across iterations (restarted at init_inner(x) each step): the fast timescale stops tracking y*(x_t)"
    BOUND = -0.4

    def evaluate(self, size: str, control: bool) -> Verdict:
        p = harness.problem("flat-tail", **FLAT_TAIL)
        T = 320 if size == "ci" else 2000
        seeds = [0] if size == "ci" else list(range(4))
        e = harness.estimator("ttsa", inner_lr=0.5, decay=0.4, solver_steps=5, solver_lr=0.5)
        curves, refs, diverged = [], [], False
        with _setattr(TTSA, "track_y", False) if control else contextlib.nullcontext():
            for s in seeds:
                tr = outer_loop(p, e, T, OUTER_LR, "power", seed=s, power=OUTER_POWER)
                diverged = diverged or tr.diverged or len(tr.grad_norm_sq) < T + 1
                curves.append(tr.grad_norm_sq)
        refs = [_ttsa_reference(p, e, T, s) for s in seeds]
        return stationarity_verdict(curves, refs, T, diverged, "exponent <= -0.4 (Theorem 1: O(K^-2/5), an upper bound)",
                                    self.BOUND)


MUTATIONS: list[tuple[str, tuple[str, ...], Callable[[], ContextManager]]] = [
    ("ttsa-y-tracking-dropped", ("ttsa-stationarity-rate",), _patch(TTSA, "track_y", False)),
    # a 10% hypergradient bias (the direction scaled by 1.1)
    ("ttsa-hypergradient-x1.1", ("ttsa-stationarity-rate",),
     source_patch(TTSA, "estimate", ("harness.Estimate(g, calls=calls", "harness.Estimate(1.1 * g, calls=calls"))),
    # BSA's random-truncation estimate scaled by (Q - 1) eta instead of Q eta: an off-by-one, a 20% bias at Q = 5
    ("bsa-truncation-scale-off-by-one", ("ttsa-stationarity-rate",),
     source_patch(BSA, "solve", ("return Q * eta * p, ", "return (Q - 1) * eta * p, "))),
]
