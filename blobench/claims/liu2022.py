"""Claim of BOME.

Source: Liu, Ye, Wright, Stone, Liu, "BOME! Bilevel Optimization Made Easy", NeurIPS 2022 (arXiv 2209.08709):
Algorithm 1 and its convergence analysis (Theorem 3: the stationarity measure is bounded by terms that
vanish as the step xi -> 0, the iterations K -> infinity and the inner steps T -> infinity).

``MUTATIONS`` lists in-process breakages of the estimator with the claims that must catch them.
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import numpy as np

from blobench import harness
from blobench.claims._common import _patch, _setattr, fit_power
from blobench.estimators.value_function import BOME
from blobench.gate.claim_base import Claim, Verdict
from blobench.measure.outer import outer_loop


def _logreg():
    return harness.problem("logreg-l2", n_train=30, n_val=30, features=4, classes=2, informative=2, outer_reg=0.1)


def _limit_distance(tr, tail: int) -> float:
    """The largest distance to the stationary point over the last ``tail`` recorded iterates (the constant-step limit cycle)."""
    if tr.diverged:
        return float("inf")
    return float(max(tr.dist[-tail:]))


@harness.register_claim("bome-step-neighbourhood")
class BOMEStepNeighbourhood(Claim):
    citation = "Liu, Ye, Wright, Stone, Liu 2022 (arXiv 2209.08709), Algorithm 1 and Theorem 3 (BOME)"
    statement = ("With a constant step xi on v = (x, y) (outer_lr = joint_lr = xi) and T inner steps, BOME's iterates settle in "
                 "a neighbourhood of the stationary point that shrinks with xi: on a quadratic, the limit distance "
                 "max_{last 10} ||x_t - x*|| against xi in [0.025, 0.1] has fitted exponent with 95% interval above 0.5 "
                 "(measured about 1: an O(xi) neighbourhood), and at xi = 0.025 it is below 0.03.")
    control = "the dynamic barrier off (lambda = 0: plain descent on f in (x, y), which ignores the constraint)"

    def evaluate(self, size: str, control: bool) -> Verdict:
        p = harness.problem("quadratic", dim=5 if size == "ci" else 20, kappa=4, rho=1.0)
        xis = [0.1, 0.05, 0.025]
        T = 15 if size == "ci" else 40
        dists = []
        with _setattr(BOME, "use_barrier", False) if control else contextlib.nullcontext():
            for xi in xis:
                steps = int(round((40 if size == "ci" else 120) / xi))
                e = harness.estimator("bome", inner_steps=T, joint_lr=xi)
                tr = outer_loop(p, e, steps, xi, eval_every=1 if size == "ci" else 1)
                dists.append(_limit_distance(tr, 10))
        a, lo, hi = fit_power(xis, dists)
        ok = bool(np.isfinite(a)) and lo > 0.5 and dists[-1] < 0.03
        return Verdict(ok, f"exponent {a:.2f} [{lo:.2f}, {hi:.2f}]; limit distance at xi = {xis[-1]}: {dists[-1]:.3g}",
                       "> 0 (interval above 0.5); distance < 0.03 at xi = 0.025",
                       {"xi": xis, "limit_distance": dists, "exponent": a, "interval": [lo, hi], "inner_steps": T})


MUTATIONS: list[tuple[str, tuple[str, ...], Callable[[], ContextManager]]] = [
    ("bome-barrier-off", ("bome-step-neighbourhood",), _patch(BOME, "use_barrier", False)),
    ("bome-value-term-dropped", ("bome-step-neighbourhood",), _patch(BOME, "use_value_term", False)),
]
