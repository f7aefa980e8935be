"""Claim of TTSA.

Source: Hong, Wai, Wang, Yang, "A Two-Timescale Framework for Bilevel Optimization: Complexity Analysis and
Application to Actor-Critic", SIAM J. Optim. 2023 (arXiv 2007.05170), Theorem 1 (nonconvex outer case).

``MUTATIONS`` lists in-process breakages of the estimator with the claims that must catch them.
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

from blobench import harness
from blobench.claims._common import (
    _patch,
    _running_rate_verdict,
    _setattr,
)
from blobench.estimators.single_loop import TTSA
from blobench.gate.claim_base import Claim, Verdict


@harness.register_claim("ttsa-stationarity-rate")
class TTSARate(Claim):
    citation = ("Hong, Wai, Wang, Yang 2020 (arXiv 2007.05170), Theorem 1, nonconvex outer case (TTSA, beta_t ~ t^-2/5 on y, "
                "alpha_t ~ t^-3/5 on x: (1/K) sum_k E||grad Phi(x_k)||^2 = O(K^-2/5))")
    statement = ("On a finite-sum quadratic, TTSA with its two timescales (one warm-started SGD step on y at inner_lr t^-0.4, "
                 "outer steps 0.2 t^-0.6) has (1/T) sum_t ||grad Phi(x_t)||^2 = O(T^-2/5): the fitted exponent against T "
                 "(seed-averaged) is at most -0.4 and the upper end of its 95% interval is below 0.")
    control = "y not carried across iterations (restarted at init_inner(x) each step): the fast timescale stops tracking y*(x_t)"
    BOUND = -0.4

    def evaluate(self, size: str, control: bool) -> Verdict:
        e = harness.estimator("ttsa", inner_lr=0.3, decay=0.4)
        with _setattr(TTSA, "track_y", False) if control else contextlib.nullcontext():
            return _running_rate_verdict(e, size, self.BOUND, "<= -0.4 (Theorem 1: O(K^-2/5), an upper bound)")


MUTATIONS: list[tuple[str, tuple[str, ...], Callable[[], ContextManager]]] = [
    ("ttsa-y-tracking-dropped", ("ttsa-stationarity-rate",), _patch(TTSA, "track_y", False)),
]
