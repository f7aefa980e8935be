"""Claims of SOBA and SABA.

Source: Dagreou, Ablin, Vaiter, Moreau, "A framework for bilevel optimization that enables stochastic and
global variance reduction algorithms", NeurIPS 2022 (arXiv 2201.13409): Theorem 1 (SOBA), Theorem 2 (SABA).

Every claim has a negative control that breaks its mechanism (the rule must fail on it), and
``MUTATIONS`` lists in-process breakages of the estimators with the claims that must catch them:
``(name, caught_by, patch)`` where ``patch()`` returns a context manager applying the breakage.
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import numpy as np

from blobench import harness
from blobench.claims._common import (
    _finite_quadratic,
    _patch,
    _running_rate_verdict,
    _setattr,
    fit_power,
    running_stationarity,
)
from blobench.estimators.single_loop import SOBA
from blobench.estimators.variance_reduced import SABA
from blobench.gate.claim_base import Claim, Verdict, memo
from blobench.measure.outer import outer_loop


@harness.register_claim("soba-stationarity-rate")
class SOBARate(Claim):
    citation = "Dagreou, Ablin, Vaiter, Moreau 2022 (arXiv 2201.13409), Theorem 1 (SOBA, rho_t ~ t^-2/5, gamma_t ~ t^-3/5)"
    statement = ("On a finite-sum quadratic, SOBA with decreasing steps rho_t = rho_0 t^-2/5, gamma_t = gamma_0 t^-3/5 has "
                 "(1/T) sum_t ||grad Phi(x_t)||^2 = O(T^-2/5): the fitted exponent against T (seed-averaged) is at most -0.4 "
                 "and the upper end of its 95% interval is below 0.")
    control = "v frozen at 0 (the linear-system direction D_v dropped): SOBA degenerates to a biased first-order method"
    BOUND = -0.4

    def evaluate(self, size: str, control: bool) -> Verdict:
        e = harness.estimator("soba", inner_lr=0.1, solver_lr=0.1, decay=0.4)
        with _soba_no_v() if control else contextlib.nullcontext():
            return _running_rate_verdict(e, size, self.BOUND, "<= -0.4 (Theorem 1: O(T^-2/5))")


@harness.register_claim("saba-variance-reduction")
class SABAvsSOBA(Claim):
    citation = "Dagreou, Ablin, Vaiter, Moreau 2022 (arXiv 2201.13409), Theorem 2 (SABA, constant steps: O(1/T))"
    statement = ("On a finite-sum quadratic (n = m = 20) with the same constant steps, SABA's (1/T) sum_t ||grad Phi(x_t)||^2 "
                 "decays like 1/T (fitted exponent <= -0.8, predicted -1), and over the second half of the run SABA's mean "
                 "||grad Phi(x_t)||^2 is at least 10x below SOBA's, which stalls at its variance floor.")
    control = "SABA's memory table never updated after the first pass (SAGA directions keep their variance)"
    _soba_cache: dict = memo()

    def evaluate(self, size: str, control: bool) -> Verdict:
        p = _finite_quadratic()
        T = 240 if size == "ci" else 2000
        checks = [T // 8, T // 4, T // 2, T]
        seeds = [0, 1] if size == "ci" else list(range(5))
        kw = {"inner_lr": 0.05, "solver_lr": 0.05}
        lr = 0.05

        def run(name: str) -> tuple[np.ndarray, float]:
            e = harness.estimator(name, **kw)
            ctx = _setattr(SABA, "update_memory", False) if control and name == "saba" else contextlib.nullcontext()
            avg, tail = [], []
            with ctx:
                for s in seeds:
                    tr = outer_loop(p, e, T, lr, seed=s)
                    avg.append(running_stationarity(tr, checks))
                    tail.append(float(np.mean(tr.grad_norm_sq[T // 2:T])) if not tr.diverged else float("inf"))
            return np.mean(avg, axis=0), float(np.mean(tail))

        saba, saba_tail = run("saba")
        if size not in self._soba_cache:  # SOBA is the same run for the claim and its control
            self._soba_cache[size] = run("soba")
        soba, soba_tail = self._soba_cache[size]
        a, lo, hi = fit_power(checks, saba)
        ratio = soba_tail / saba_tail
        ok = bool(np.all(np.isfinite(saba))) and a <= -0.8 and ratio >= 10
        return Verdict(ok, f"SABA exponent {a:.2f} [{lo:.2f}, {hi:.2f}]; second-half mean SOBA/SABA: {ratio:.3g}",
                       "exponent -1 (<= -0.8); ratio >= 10",
                       {"T": checks, "saba": saba.tolist(), "soba": soba.tolist(), "exponent": a, "interval": [lo, hi],
                        "soba_exponent": fit_power(checks, soba)[0], "saba_tail": saba_tail, "soba_tail": soba_tail,
                        "ratio": ratio, "seeds": seeds})


def _soba_no_v() -> ContextManager:
    """SOBA's v never moves (the linear-system step dropped)."""
    orig = SOBA.steps

    def steps(self, oracles, t):
        rho, _ = orig(self, oracles, t)
        return rho, 0.0 * rho

    return _setattr(SOBA, "steps", steps)


MUTATIONS: list[tuple[str, tuple[str, ...], Callable[[], ContextManager]]] = [
    ("saba-memory-not-updated", ("saba-variance-reduction",), _patch(SABA, "update_memory", False)),
    ("soba-v-step-dropped", ("soba-stationarity-rate",), _soba_no_v),
]
