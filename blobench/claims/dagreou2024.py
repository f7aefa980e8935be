"""Claim of SRBA (blobench/estimators/recursive_vr.py).

Source: Dagreou, Moreau, Vaiter, Ablin, "A Lower Bound and a Near-Optimal Algorithm for Bilevel Empirical
Risk Minimization", AISTATS 2024 (arXiv 2302.08766): SRBA, SOBA's directions with SARAH recursive estimates
reset by a full pass every q steps, reaches eps-stationarity in O((n + m)^1/2 eps^-1) oracle calls with
constant steps, where SOBA (Dagreou et al. 2022, arXiv 2201.13409, Theorem 1) needs decreasing steps and,
with constant ones, stalls at a variance floor. On a strongly convex Phi (the quadratic here) the
recursive estimate's error shrinks with the iterates' steps, so the convergence is linear.

What is measured: the shared outer loop (blobench.measure.outer.outer_loop) on the finite-sum stochastic quadratic
(n = m = 20, the SABA claim's instance), SRBA and SOBA with the same constant steps (rho = rho' = gamma = 0.1)
and unit batches, each run until its counted oracle calls (all kinds, blobench.core.oracles' counts) x batch size
reach a fixed sample budget S; exact ||grad Phi(x_t)||^2 from the problem.

``MUTATIONS`` lists in-process breakages for the mutation suite: (name, claims that must catch it, patch()).
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import numpy as np

from blobench import harness
from blobench.claims._common import _patch, _setattr
from blobench.core.oracles import ORACLE_NAMES
from blobench.estimators.recursive_vr import SRBA
from blobench.gate.claim_base import Claim, Verdict, memo
from blobench.measure.metrics import fit_loglinear
from blobench.measure.outer import outer_loop

STEP = 0.1           # rho = rho' (inner_lr, solver_lr) and gamma (outer step), SRBA and SOBA alike


FACTOR = 1e3         # SOBA's floor / SRBA's ||grad Phi||^2 at the budget must be at least this


NEAR_ZERO = 1e-8     # SRBA's seed-mean ||grad Phi||^2 at the budget must be at most this


def _problem():
    return harness.problem("quadratic", dim=5, kappa=4, rho=1.0, noise=0.5, n_samples=20)


def run_to_budget(name: str, budget: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(samples, ||grad Phi(x_t)||^2) at every iterate of one run of ``name`` with unit batches, up to ``budget``
    samples = counted oracle calls (all kinds) x batch size."""
    p = _problem()
    e = harness.estimator(name, inner_lr=STEP, solver_lr=STEP, batch_size=1)

    def spent(tr) -> float:
        return sum(tr.calls[k][-1] for k in ORACLE_NAMES) * e.p["batch_size"]

    tr = outer_loop(p, e, budget, STEP, seed=seed, stop=lambda tr: spent(tr) >= budget)
    samples = np.sum([np.asarray(tr.calls[k], float) for k in ORACLE_NAMES], 0) * e.p["batch_size"]
    g = np.asarray(tr.grad_norm_sq, float)
    if tr.diverged:
        g[-1] = np.inf
    keep = samples <= budget
    return samples[keep], g[keep]


@harness.register_claim("srba-variance-reduction")
class SRBAVarianceReduction(Claim):
    citation = ("Dagreou, Moreau, Vaiter, Ablin, AISTATS 2024 (arXiv 2302.08766), Algorithm SRBA and its main theorem "
                "(O((n+m)^1/2 eps^-1) oracle calls with constant steps); against SOBA (arXiv 2201.13409, Alg. 1)")
    statement = ("On the finite-sum quadratic (n = m = 20) with the same constant steps (0.1) and unit batches, SRBA's "
                 "seed-mean ||grad Phi||^2 at a fixed sample budget S (counted oracle calls x batch size) is at least 1e3 "
                 "below SOBA's noise floor (its seed-mean over samples in [S/2, S]) and at most 1e-8, and it converges "
                 "linearly: the slope of log ||grad Phi||^2 against samples over [S/5, S] (seed-mean of logs, 95% "
                 "t-interval) lies below 0.")
    control = ("SRBA's recursive correction replaced by the fresh minibatch term (d_t = h_i(z_t) between refreshes: "
               "no variance reduction, the full pass every q steps kept)")
    _soba: dict = memo()

    def evaluate(self, size: str, control: bool) -> Verdict:
        S = 5000 if size == "ci" else 12000
        seeds = [0, 1, 2] if size == "ci" else list(range(8))
        if size not in self._soba:  # SOBA is the same run for the claim and its control
            runs = [run_to_budget("soba", S, s) for s in seeds]
            self._soba[size] = float(np.mean([g[s >= S / 2].mean() for s, g in runs]))
        floor = self._soba[size]
        with _setattr(SRBA, "recursive_correction", False) if control else contextlib.nullcontext():
            runs = [run_to_budget("srba", S, s) for s in seeds]
        n = min(len(g) for _, g in runs)  # the schedule is deterministic: every seed spends the same samples
        samples = runs[0][0][:n]
        with np.errstate(divide="ignore"):
            logs = np.mean([np.log(g[:n]) for _, g in runs], 0)
        at_budget = float(np.mean([g[-1] for _, g in runs]))
        window = samples >= S / 5
        # log ||grad Phi||^2 against thousands of samples (blobench.measure.metrics.fit_loglinear: linregress t-interval)
        slope, lo, hi, _ = fit_loglinear(samples[window] / 1000.0, np.exp(logs[window]), floor=0.0)
        factor = floor / at_budget if at_budget > 0 else float("inf")
        ok = bool(np.isfinite(at_budget)) and factor >= FACTOR and at_budget <= NEAR_ZERO and hi < 0
        per_k = float(np.exp(slope)) if np.isfinite(slope) else float("nan")
        return Verdict(ok, f"SRBA ||grad Phi||^2 at S={S}: {at_budget:.2e}; SOBA floor {floor:.2e} (factor {factor:.3g}); "
                           f"log-slope {slope:.2f} [{lo:.2f}, {hi:.2f}] per 1000 samples (x{per_k:.3g} per 1000)",
                       f"factor >= {FACTOR:g}, at budget <= {NEAR_ZERO:g}, slope interval below 0",
                       {"budget": S, "seeds": seeds, "srba_at_budget": at_budget, "soba_floor": floor, "factor": factor,
                        "slope_per_1000": slope, "slope_interval": [lo, hi], "contraction_per_1000": per_k,
                        "samples": samples[::max(1, n // 50)].tolist(),
                        "mean_log_grad_norm_sq": logs[::max(1, n // 50)].tolist()},
                       rates=[{"name": "log ||grad Phi||^2 per 1000 samples", "rate": slope, "rate_lo": lo, "rate_hi": hi,
                               "rate_bound": 0.0, "rate_violation": bool(np.isfinite(lo) and lo > 0.0)}])


MUTATIONS: list[tuple[str, tuple[str, ...], Callable[[], ContextManager]]] = [
    ("srba-recursion-dropped", ("srba-variance-reduction",), _patch(SRBA, "recursive_correction", False)),
    ("srba-never-refreshed", ("srba-variance-reduction",), _patch(SRBA, "refresh_every_period", False)),
]
