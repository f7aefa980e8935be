"""Claims of SOBA and SABA.

Source: Dagreou, Ablin, Vaiter, Moreau, "A framework for bilevel optimization that enables stochastic and
global variance reduction algorithms", NeurIPS 2022 (arXiv 2201.13409): Theorem 1 (SOBA), Theorem 2 (SABA).

Issue 28: SOBA's rate is measured on flat-tail (nonconvex outer problem, infimum at infinity), where the O(T^-2/5)
bound nearly binds, with a second rule on its stationary level against exact-hypergradient descent on the same steps;
on the strongly convex quadratic the running average fell like C/T for any method converging near x*.

Every claim has a negative control that breaks its mechanism (the rule must fail on it), and
``MUTATIONS`` lists in-process breakages of the estimators with the claims that must catch them:
``(name, caught_by, patch)`` where ``patch()`` returns a context manager applying the breakage.
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import numpy as np

from blobench import harness
import blobench.measure.outer as outer_mod
from blobench.claims._common import (
    FLAT_TAIL,
    OUTER_LR,
    OUTER_POWER,
    _finite_quadratic,
    _patch,
    _setattr,
    fit_power,
    reference_descent,
    running_stationarity,
    stationarity_verdict,
)
from blobench.estimators.single_loop import SOBA
from blobench.estimators.variance_reduced import SABA
from blobench.gate.claim_base import Claim, Verdict, memo
from blobench.gate.mutations import source_patch
from blobench.measure.outer import outer_loop


@harness.register_claim("soba-stationarity-rate")
class SOBARate(Claim):
    citation = "Dagreou, Ablin, Vaiter, Moreau 2022 (arXiv 2201.13409), Theorem 1 (SOBA, rho_t ~ t^-2/5, gamma_t ~ t^-3/5)"
    statement = ("On flat-tail (nonconvex outer, infimum at infinity: the bound binds), SOBA with rho_t = 0.5 t^-2/5 on y and v "
                 "and gamma_t = 3 t^-3/5 on x has (1/T) sum_t ||grad Phi(x_t)||^2 = O(T^-2/5): the fitted exponent against T is "
                 "at most -0.4, the upper end of its 95% interval below 0; and its stationary level, the second-half mean of "
                 "||grad Phi(x_t)||^2, is within 10% of exact-hypergradient descent's on the same steps (the level a "
                 "consistent method predicts; a 10% biased direction moves it by about 12%). flat-tail is deterministic, "
                 "so one run is the expectation.")
    control = "v frozen at 0 (the linear-system direction D_v dropped): SOBA degenerates to a biased first-order method"
    BOUND = -0.4

    def evaluate(self, size: str, control: bool) -> Verdict:
        p = harness.problem("flat-tail", **FLAT_TAIL)
        T = 320 if size == "ci" else 2000
        e = harness.estimator("soba", inner_lr=0.5, solver_lr=0.5, decay=0.4)
        with _soba_no_v() if control else contextlib.nullcontext():
            tr = outer_loop(p, e, T, OUTER_LR, "power", seed=0, power=OUTER_POWER)
        ref = reference_descent(p, p.x0(), T, lambda t, x: p.hypergradient(x))
        return stationarity_verdict([tr.grad_norm_sq], [ref], T, tr.diverged or len(tr.grad_norm_sq) < T + 1,
                                    "exponent <= -0.4 (Theorem 1: O(T^-2/5))", self.BOUND)


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
    # a 10% hypergradient bias (D_x scaled by 0.9): on the quadratic's transient the rate rule could not see it
    ("soba-hypergradient-x0.9", ("soba-stationarity-rate",),
     source_patch(SOBA, "estimate", ("harness.Estimate(gx + jv, state=st)", "harness.Estimate(0.9 * (gx + jv), state=st)"))),
    # the outer loop's "power" schedule ignores its exponent (gamma_t ~ t^-1/2 where t^-3/5 was asked)
    ("outer-power-ignored", ("soba-stationarity-rate", "ttsa-stationarity-rate"),
     source_patch(outer_mod, "step_size", ("return outer_lr / (t + 1) ** power", "return outer_lr / (t + 1) ** 0.5"))),
]
