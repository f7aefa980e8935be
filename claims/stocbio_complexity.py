"""stocBiO's outer convergence as an executable claim: samples to eps against eps.

Source: K. Ji, J. Yang, Y. Liang, "Bilevel Optimization: Convergence Analysis and Enhanced Design", ICML 2021,
arXiv 2010.07962, Theorem 3 and Corollary 2 (stocBiO, Algorithm 2 with the Hessian-inverse-vector step of
Algorithm 3): with a constant outer step, minibatches D_f, D_g, B of size Theta(eps^-1) (times powers of kappa),
Q, D = Theta(kappa log(kappa/eps)) Neumann and inner steps and K = Theta(eps^-1) outer iterations, the average
(1/K) sum_k E||grad Phi(x_k)||^2 <= eps after O(kappa^5 eps^-2) samples of grad f (Gc(f)); the Hessian- and
grad_y g-sample counts carry the extra log(1/eps) factor of Q and D (O~(eps^-2)).

What is measured (never the estimator's own figure): the shared outer loop (harness.outer.outer_loop) runs
estimators/stocbio.py on the stochastic quadratic (``harness.problem("quadratic", noise=1)``) with the
corollary's schedule scaled with eps: batch_size = ceil(C_B / eps) for every oracle role, Q = D =
ceil(C_Q kappa log(1/eps)), constant step. The theorem's quantity, the running average over iterates of
E||grad Phi(x_k)||^2 (expectation estimated over R independent seeds, exact grad Phi from the problem), is
tracked, K(eps) is the first K at which it is <= eps, and samples = counted oracle calls up to x_{K-1}
(harness.oracles' counts) x batch size. Exponents: linregress slopes of log samples on log(1/eps) with 95%
t-intervals (harness.complexity.fit_exponent). kappa is held fixed (kappa = 2) at ci size to fit 10 s; full
size adds kappa = 4 and reports its samples (no kappa rule).

``MUTATIONS`` lists in-process breakages for the mutation suite: (name, claims that must catch it, patch()).
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Callable
from unittest import mock

import numpy as np

import harness
from harness.claim_base import Claim, Verdict
from harness.complexity import calls_by_kind, fit_exponent
from harness.oracles import ORACLE_NAMES
from harness.outer import outer_loop

CITE = "Ji, Yang, Liang, ICML 2021, arXiv 2010.07962, Theorem 3 / Corollary 2 (stocBiO, Algorithms 2-3)"

C_B = 2.0          # batch size = ceil(C_B / eps) (the corollary's Theta(eps^-1) minibatches)
C_Q = 0.5          # Q = D = ceil(C_Q kappa log(1/eps)) (the corollary's Theta(kappa log(kappa/eps)))
FIXED_BATCH = 12   # the control's batch size: that of the largest eps, not growing with 1/eps
STEPS_OVER_EPS = 2.5  # outer-iteration cap = ceil(2.5 / eps) (the corollary's K = Theta(eps^-1))


def _grid(size: str) -> tuple[list[float], int, list[float]]:
    """(eps grid, seeds R, kappa values)."""
    if size == "ci":
        return [0.16, 0.08, 0.04, 0.02], 2, [2.0]
    return [0.16, 0.08, 0.04, 0.02, 0.01], 4, [2.0, 4.0]


def samples_to_eps(problem, eps: float, batch_size: int, seeds: int, outer_lr: float) -> dict[str, Any]:
    """Run stocBiO (Corollary 2's schedule at ``eps``, batch ``batch_size``) for ``seeds`` seeds and return the
    first K at which (1/K) sum_{k<K} mean_seeds ||grad Phi(x_k)||^2 <= eps with the samples used up to x_{K-1}
    (counted calls x batch size, by kind and total), or reached=False with the final running average."""
    k = float(problem.constants["kappa"])
    Q = max(1, math.ceil(C_Q * k * math.log(1 / eps)))
    steps = math.ceil(STEPS_OVER_EPS / eps)
    est = harness.estimator("stocbio", inner_steps=Q, solver_steps=Q, batch_size=int(batch_size))
    curves, calls = [], None
    for s in range(seeds):
        tr = outer_loop(problem, est, steps, outer_lr, seed=s)
        curves.append(tr.grad_norm_sq[:steps])
        calls = tr.calls  # counted by the oracle layer; identical across seeds (fixed schedule)
    m = np.mean(np.asarray(curves, float), 0)
    avg = np.cumsum(m) / np.arange(1, m.size + 1)
    hit = np.nonzero(avg <= eps)[0]
    out: dict[str, Any] = {"eps": eps, "batch_size": int(batch_size), "Q": Q, "D": Q, "outer_cap": steps,
                           "final_running_avg": float(avg[-1])}
    if hit.size == 0:
        return {**out, "reached": False}
    K = int(hit[0]) + 1
    kinds = calls_by_kind({name: calls[name][K - 1] for name in ORACLE_NAMES})
    return {**out, "reached": True, "K": K, **{f"samples_{n}": v * batch_size for n, v in kinds.items()}}


@harness.register_claim("stocbio-sample-complexity")
class StocBiOSampleComplexity(Claim):
    citation = CITE
    statement = ("stocBiO with Corollary 2's schedule scaled with eps (batches ceil(2/eps), Q = D = ceil(kappa "
                 "log(1/eps)/2), constant step) reaches (1/K) sum_k E||grad Phi(x_k)||^2 <= eps at every eps of the "
                 "grid on the stochastic quadratic (dim 4, kappa 2, noise 1), and the fitted exponent of its grad f "
                 "samples (Gc(f) x batch) in 1/eps is not above the corollary's 2 (95% interval's lower end <= 2); "
                 "total samples' exponent not above that of eps^-2 log(1/eps) fitted on the same grid.")
    control = ("the batch size held at 12 (the largest eps's) instead of growing with 1/eps: the estimate's variance "
               "puts a floor under E||grad Phi||^2, so the small eps are never reached within the corollary's "
               "K = Theta(1/eps) iterations")

    def evaluate(self, size: str, control: bool) -> Verdict:
        grid, R, kappas = _grid(size)
        runs, by_kappa = [], {}
        for kappa in kappas:
            p = harness.problem("quadratic", dim=4, kappa=kappa, mu=1.0, rho=1.0, noise=1.0, seed=0)
            lr = 1.0 / (1.0 + 1.2)  # ~1/L_Phi: rho + ||B||^2 / mu^2 with ||B||_2 ~ 1.02 at this seed
            rows = [samples_to_eps(p, e, FIXED_BATCH if control else max(1, math.ceil(C_B / e)), R, lr)
                    for e in grid]
            by_kappa[kappa] = rows
            runs += [{"kappa": kappa, **r} for r in rows]
        rows = by_kappa[kappas[0]]
        inv = [1 / r["eps"] for r in rows]
        reached = all(r["reached"] for r in rows)
        get = lambda key: [r.get(key, float("nan")) for r in rows]  # noqa: E731
        fit_f, fit_tot = fit_exponent(inv, get("samples_Gc_f")), fit_exponent(inv, get("samples_total"))
        pred_tot = fit_exponent(inv, [e**-2 * math.log(1 / e) for e in get("eps")])
        ok = reached and fit_f["lo"] <= 2.0 and fit_tot["lo"] <= pred_tot["slope"]
        rates = [{"name": "Gc(f) samples exponent in 1/eps", "rate": fit_f["slope"], "rate_lo": fit_f["lo"],
                  "rate_hi": fit_f["hi"], "rate_bound": 2.0, "rate_violation": bool(fit_f["lo"] > 2.0)},
                 {"name": "total samples exponent in 1/eps", "rate": fit_tot["slope"], "rate_lo": fit_tot["lo"],
                  "rate_hi": fit_tot["hi"], "rate_bound": pred_tot["slope"],
                  "rate_violation": bool(fit_tot["lo"] > pred_tot["slope"])}]
        n_hit = sum(r["reached"] for r in rows)
        return Verdict(ok, f"{n_hit}/{len(rows)} eps reached; Gc(f) samples exponent {fit_f['slope']:.3f} "
                       f"[{fit_f['lo']:.3f}, {fit_f['hi']:.3f}], total {fit_tot['slope']:.3f} [{fit_tot['lo']:.3f}, "
                       f"{fit_tot['hi']:.3f}]; samples {[round(s) if s == s else None for s in get('samples_total')]}",
                       f"all reached; Gc(f) exponent <= 2 (interval's lower end); total <= {pred_tot['slope']:.3f} "
                       "(eps^-2 log(1/eps) on this grid)",
                       {"runs": runs, "fit_Gc_f": fit_f, "fit_total": fit_tot, "predicted_total": pred_tot,
                        "constants": {"C_B": C_B, "C_Q": C_Q, "seeds": R}}, rates=rates)


# ----------------------------------------------------------------------------- mutations

def _patch_batch_ignored() -> contextlib.AbstractContextManager:
    """stocBiO's minibatches drawn at size 1 whatever batch_size says (the variance reduction of the corollary's
    Theta(1/eps) batches lost)."""
    import estimators.stocbio as sb

    orig = sb.draw_batches
    return mock.patch.object(sb, "draw_batches", lambda problem, gen, n, spec, batch_size=1: orig(problem, gen, n, spec, 1))


MUTATIONS: list[tuple[str, tuple[str, ...], Callable[[], contextlib.AbstractContextManager]]] = [
    ("stocbio-batch-size-ignored", ("stocbio-sample-complexity",), _patch_batch_ignored),
]
