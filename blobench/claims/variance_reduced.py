"""Claims of the recursive variance-reduced family (blobench/estimators/recursive_vr.py; issue 15).

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

Second claim, ``vrbo-sample-complexity-vs-stocbio`` (issue 15, section 3): Yang, Ji, Liang, "Provably Faster
Algorithms for Bilevel Optimization", NeurIPS 2021 (arXiv 2106.04692), Theorem 2: VRBO (Algorithm 2; SPIDER
estimates of grad_y g and of stocBiO's hypergradient, a large batch S_1 = Theta(eps^-1) every q = Theta(eps^-1/2)
steps, small batches S_2 = Theta(eps^-1/2), constant steps, Q = Theta(kappa log(kappa/eps)) Neumann terms) reaches
E||grad Phi(x_zeta)||^2 <= eps (x_zeta uniform over the K iterates) in O~(eps^-1.5) samples, against stocBiO's
O~(eps^-2) (Ji, Yang, Liang 2021, Corollary 2; blobench/claims/stocbio_complexity.py). Measured: samples to eps over an
eps grid for both methods on the same instance, exponents in 1/eps fitted with 95% t-intervals
(blobench.measure.complexity.fit_exponent); see :class:`VRBOSampleComplexityVsStocBiO` for the instance, the schedules and
the finite-sum caveat.

``MUTATIONS`` lists in-process breakages for the mutation suite: (name, claims that must catch it, patch()).
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, ContextManager

import numpy as np

from blobench import harness
from blobench.gate.claim_base import Claim, Verdict, memo
from blobench.measure.complexity import calls_to_target, fit_exponent
from blobench.measure.metrics import fit_loglinear
from blobench.core.oracles import ORACLE_NAMES, Oracles
from blobench.measure.outer import outer_loop

from blobench.claims.solvers import _setattr
from blobench.claims.stocbio_complexity import C_B, kappa_outer_lr, neumann_steps, samples_to_eps
from blobench.estimators.recursive_vr import SRBA, VRBO

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


# -- VRBO against stocBiO: samples to eps ------------------------------------------------------------------------
VR_KAPPA = 2.0          # the stocBiO claims' instance: quadratic dim 4, mu = 1, L = kappa = 2, rho = 1, noise 1, seed 0
VR_C2 = 1.0             # VRBO's small batch S_2 = ceil(VR_C2 / sqrt(eps)) (Theorem 2's Theta(eps^-1/2))
VR_N_OVER_S2SQ = 4      # n = VR_N_OVER_S2SQ * S_2^2 (~ 4 / eps): the full pass is Theorem 2's S_1 = Theta(eps^-1)
VR_INNER_STEPS = 3      # VRBO's D recursive inner steps per outer iteration (constant in eps)
VR_STEPS_OVER_EPS = 5.0  # both methods' outer-iteration cap ceil(5 / eps) (the theorems' K = Theta(1/eps))


def vr_grid(size: str) -> tuple[list[float], int]:
    """(eps grid, seeds R) of vrbo-sample-complexity-vs-stocbio."""
    if size == "ci":
        return [0.16, 0.08, 0.04, 0.02, 0.01], 2
    return [0.16, 0.08, 0.04, 0.02, 0.01, 0.005], 4


def vr_schedule(eps: float) -> dict[str, Any]:
    """Theorem 2's batches at ``eps`` on a finite sum whose full pass is its large batch, and stocBiO's on the same
    sum: S_2 = ceil(VR_C2 / sqrt(eps)), n = VR_N_OVER_S2SQ S_2^2 (a multiple of S_2, so a full pass is exactly n / S_2
    counted chunks of S_2 samples), Q = neumann_steps(kappa, eps) for both methods (stocBiO's D = Q too), and
    stocBiO's Corollary 2 batch min(ceil(C_B / eps), n) with ``stocbio_capped`` saying whether the cap bound."""
    b = max(1, math.ceil(VR_C2 / math.sqrt(eps)))
    n = VR_N_OVER_S2SQ * b * b
    B = math.ceil(C_B / eps)
    return {"eps": eps, "vrbo_batch": b, "n": n, "Q": neumann_steps(VR_KAPPA, eps), "stocbio_batch": min(B, n),
            "stocbio_capped": B > n}


def vr_problem(n: int):
    """The stocBiO claims' quadratic as a finite sum of n samples (A, B, b, c, hence grad Phi, unchanged)."""
    return harness.problem("quadratic", dim=4, kappa=VR_KAPPA, mu=1.0, rho=1.0, noise=1.0, seed=0, n_samples=n)


def vrbo_samples_to_eps(problem, eps: float, batch_size: int, seeds: int, outer_lr: float, Q: int,
                        inner_steps: int = VR_INNER_STEPS, steps_over_eps: float = VR_STEPS_OVER_EPS) -> dict[str, Any]:
    """VRBO (small batch ``batch_size``, Q Neumann terms, D = ``inner_steps``, the estimator's default period q, constant
    steps: outer ``outer_lr``, inner and Neumann 1/L) for ``seeds`` seeds on the finite sum ``problem``: the first K <=
    ceil(steps_over_eps / eps) at which (1/K) sum_{k<K} mean_seeds ||grad Phi(x_k)||^2 <= eps (blobench.measure.complexity's
    "running-mean" rule, as :func:`blobench.claims.stocbio_complexity.samples_to_eps`), with the samples = counted calls up
    to x_{K-1} x batch size (a full pass's chunks are batch_size samples each), or reached=False and the final running
    average."""
    steps = math.ceil(steps_over_eps / eps)
    est = harness.estimator("vrbo", inner_steps=int(inner_steps), solver_steps=int(Q), batch_size=int(batch_size))
    res = calls_to_target(problem, est, [eps], "grad_norm_sq", max_steps=steps, outer_lr=outer_lr, momentum="none",
                          seed=0, stopping="running-mean", seeds=seeds)
    hit = res["by_eps"][eps]
    out: dict[str, Any] = {"eps": eps, "batch_size": int(batch_size), "Q": int(Q), "D": int(inner_steps),
                           "outer_cap": steps, "final_running_avg": res["final"]}
    if hit is None:
        return {**out, "reached": False}
    return {**out, "reached": True, "K": int(hit["averaged_iterates"]),
            **{f"samples_{k}": hit[k] * batch_size for k in ("Gc_f", "Gc_g", "JV", "HV", "total")}}


@harness.register_claim("vrbo-sample-complexity-vs-stocbio")
class VRBOSampleComplexityVsStocBiO(Claim):
    """VRBO's O~(eps^-1.5) samples against stocBiO's O~(eps^-2), measured on the same finite sums.

    Instance and schedules (fixed from the theorems, the constants chosen so that every run reaches eps within the
    cap): at each eps of the grid the finite sum :func:`vr_problem` with n = 4 S_2^2 ~ 4/eps samples (:func:`
    vr_schedule`), so that VRBO's full refresh is exactly Theorem 2's large batch S_1 = Theta(eps^-1); VRBO's small
    batch S_2 = ceil(eps^-1/2), its default period q = round(2n / (2 D S_2)) = round(4 S_2 / 3) = Theta(eps^-1/2)
    (one full pass costs about one period of small-batch steps), D = 3, Q = ceil(kappa log(1/eps) / 2), constant
    steps (outer beta = 1 / (rho + ||B||^2/mu^2) for both, inner and Neumann 1/L). The sums share A, B, b, c and
    their per-sample perturbations average exactly to the population's (blobench/problems/quadratic.py), so the finite sum's
    exact grad Phi is problem.hypergradient (tested) and the same for every n. stocBiO runs on the same sum with
    Corollary 2's schedule (claims/stocbio_complexity.samples_to_eps): its minibatches are i.i.d. uniform draws
    with replacement from the n samples, i.e. the corollary's setting for the uniform distribution over the sum,
    with its eps-scaled batch ceil(2/eps) capped by n. Here n >= 4/eps >= ceil(2/eps) + 2/eps - 1, so the cap
    never binds (recorded per eps as ``stocbio_capped``); a capped batch of n would still be n draws with replacement, not the
    full sum. Both: the theorems' quantity (1/K) sum_{k<K} E||grad Phi(x_k)||^2 over R seeds (running-mean rule),
    samples = counted calls (all kinds) up to x_{K-1} x batch size.

    Finite-sum caveat: on a fixed sum of n samples a method that takes full batches reaches a last-iterate
    ||grad Phi||^2 <= eps in O(n log(1/eps)) samples (Phi is strongly convex here), and with n held fixed as eps
    shrinks the comparison would leave the theorems' regime. Here n grows as 1/eps, so that every method's cost is
    measured where the theorems put it: the sum is the stand-in for the population, VRBO's refresh its S_1, and
    stocBiO never sees the whole sum in one batch (its batch is at most half of n). On this strongly convex Phi the
    running average's K(eps) ~ (sum_k E||grad Phi(x_k)||^2) / eps = Theta(1/eps) for both methods once their noise
    floor lies below eps, so the exponents measure the per-iteration sample costs the two theorems prescribe
    (eps^-1/2 for VRBO against eps^-1 for stocBiO, times the log(1/eps) of Q) together with whether the floor
    lies below eps: the control shows that VRBO's small batches reach eps only through the recursion.

    Outcome recorded: NOT REPRODUCED (the rule fixed before the fits; ``evidence_note``). The point exponents agree
    with the theorems' orders, the separation of the 95% intervals does not appear on the grid a ci (or full) budget
    allows. No mutation is listed: the mutation suite counts a breakage as caught when the outcome differs from the
    expected one, and a breakage of VRBO (recursion dropped, refresh removed) can only push this claim further from
    holding.
    """

    citation = ("Yang, Ji, Liang, NeurIPS 2021 (arXiv 2106.04692), Theorem 2 (VRBO, Algorithm 2): O~(eps^-1.5) samples; "
                "against stocBiO, Ji, Yang, Liang, ICML 2021 (arXiv 2010.07962), Theorem 3 / Corollary 2: O~(eps^-2)")
    statement = ("On the quadratic (dim 4, kappa 2, rho 1, noise 1) as a finite sum of n = 4 ceil(eps^-1/2)^2 samples "
                 "(VRBO's full refresh = Theorem 2's large batch ~ 1/eps), VRBO (small batches ceil(eps^-1/2), period "
                 "~ eps^-1/2, D = 3, Q = ceil(kappa log(1/eps)/2), constant steps) and stocBiO (Corollary 2's schedule: "
                 "batches ceil(2/eps) <= n, Q = D = ceil(kappa log(1/eps)/2)) both reach (1/K) sum_k E||grad "
                 "Phi(x_k)||^2 <= eps within K <= 5/eps at every eps of the grid, and the fitted exponent in 1/eps of "
                 "VRBO's total samples (counted calls x batch) lies below stocBiO's (VRBO's 95% interval's upper end "
                 "below stocBiO's lower end: the theorems' 1.5 against 2) and is not above Theorem 2's order (VRBO's "
                 "interval's lower end <= the exponent of eps^-1.5 log(1/eps) fitted on the same grid).")
    expected = "not reproduced"
    evidence_note = ("the rule was fixed from the theorems before any exponent was fitted; both methods reach every eps "
                     "and the point exponents sit at the theorems' orders (recorded at ci: VRBO 1.80 [1.62, 1.99] against "
                     "eps^-1.5 log's 1.83, stocBiO 2.29 [1.91, 2.66] against eps^-2 log's 2.33; full, 6 eps x 4 seeds: "
                     "VRBO 1.79 [1.51, 2.07], stocBiO 2.13 [1.98, 2.28]), but on 5-6 eps the 95% t-intervals overlap, so "
                     "the separation the rule asks for is not shown. Figures regenerated on every run (measured).")
    control = ("VRBO's SPIDER recursion dropped (recursive_correction = False: u, w are the fresh small-batch estimates "
               "of size ceil(eps^-1/2) between refreshes, the full refresh every q steps kept): their variance "
               "~ eps^1/2 puts a floor above eps under E||grad Phi||^2, so the small eps are not reached")
    _stocbio: dict = memo()

    def evaluate(self, size: str, control: bool) -> Verdict:
        grid, R = vr_grid(size)
        scheds = [vr_schedule(e) for e in grid]
        if size not in self._stocbio:  # stocBiO is the same run for the claim and its control
            rows = []
            for s in scheds:
                p = vr_problem(s["n"])
                rows.append({**samples_to_eps(p, s["eps"], s["stocbio_batch"], R, kappa_outer_lr(p),
                                              steps_over_eps=VR_STEPS_OVER_EPS),
                             "n": s["n"], "capped": s["stocbio_capped"]})
            self._stocbio[size] = rows
        sb = self._stocbio[size]
        with _setattr(VRBO, "recursive_correction", False) if control else contextlib.nullcontext():
            vr = []
            for s in scheds:
                p = vr_problem(s["n"])
                vr.append({**vrbo_samples_to_eps(p, s["eps"], s["vrbo_batch"], R, kappa_outer_lr(p), s["Q"]),
                           "n": s["n"], "period": harness.estimator("vrbo", inner_steps=VR_INNER_STEPS,
                                                                    batch_size=s["vrbo_batch"]).period(Oracles(p))})
        return vr_verdict(vr, sb, {"grid": grid, "seeds": R, "C2": VR_C2, "n_over_S2sq": VR_N_OVER_S2SQ,
                                   "D": VR_INNER_STEPS, "steps_over_eps": VR_STEPS_OVER_EPS, "C_B": C_B})


def vr_verdict(vr: list[dict[str, Any]], sb: list[dict[str, Any]], constants: dict[str, Any]) -> Verdict:
    """The decision rule of vrbo-sample-complexity-vs-stocbio on its runs (one row per eps for each method): every
    eps reached by both; VRBO's total-samples exponent's 95% interval entirely below stocBiO's (hi < lo); VRBO's
    interval's lower end <= the exponent of eps^-1.5 log(1/eps) fitted on the grid (NaN, i.e. an unreached eps or
    fewer than 3 points, fails every comparison)."""
    inv = [1 / r["eps"] for r in vr]
    get = lambda rows, k: [r.get(k, float("nan")) for r in rows]  # noqa: E731
    f_vr, f_sb = fit_exponent(inv, get(vr, "samples_total")), fit_exponent(inv, get(sb, "samples_total"))
    pred_vr = fit_exponent(inv, [e**-1.5 * math.log(1 / e) for e in get(vr, "eps")])
    pred_sb = fit_exponent(inv, [e**-2 * math.log(1 / e) for e in get(vr, "eps")])
    reached = all(r["reached"] for r in vr) and all(r["reached"] for r in sb)
    below = bool(f_vr["hi"] < f_sb["lo"])
    within = bool(f_vr["lo"] <= pred_vr["slope"])
    ok = reached and below and within
    fmt = lambda f: f"{f['slope']:.3f} [{f['lo']:.3f}, {f['hi']:.3f}]"  # noqa: E731
    sam = lambda rows: [round(v) if v == v else None for v in get(rows, "samples_total")]  # noqa: E731
    unreached = [f"eps {r['eps']:g}: running avg {r['final_running_avg']:.3g}" for r in vr if not r["reached"]]
    measured = (f"VRBO {sum(r['reached'] for r in vr)}/{len(vr)} eps reached"
                + (f" ({'; '.join(unreached)})" if unreached else "")
                + f", stocBiO {sum(r['reached'] for r in sb)}/{len(sb)}; exponents in 1/eps: VRBO {fmt(f_vr)}, "
                f"stocBiO {fmt(f_sb)}; samples per eps {get(vr, 'eps')}: VRBO {sam(vr)} (K {get(vr, 'K')}), "
                f"stocBiO {sam(sb)} (K {get(sb, 'K')})")
    rates = [{"name": "VRBO total samples exponent in 1/eps", "rate": f_vr["slope"], "rate_lo": f_vr["lo"],
              "rate_hi": f_vr["hi"], "rate_bound": pred_vr["slope"], "rate_violation": bool(f_vr["lo"] > pred_vr["slope"])},
             {"name": "stocBiO total samples exponent in 1/eps", "rate": f_sb["slope"], "rate_lo": f_sb["lo"],
              "rate_hi": f_sb["hi"], "rate_bound": pred_sb["slope"], "rate_violation": bool(f_sb["lo"] > pred_sb["slope"])}]
    return Verdict(ok, measured,
                   f"all eps reached by both; VRBO's interval below stocBiO's; VRBO's lower end <= "
                   f"{pred_vr['slope']:.3f} (eps^-1.5 log(1/eps) on this grid; stocBiO's order eps^-2 log(1/eps): "
                   f"{pred_sb['slope']:.3f})",
                   {"vrbo": vr, "stocbio": sb, "fit_vrbo": f_vr, "fit_stocbio": f_sb, "predicted_vrbo": pred_vr,
                    "predicted_stocbio": pred_sb, "below": below, "within_order": within, "constants": constants},
                   rates=rates)


# -- mutation suite ---------------------------------------------------------------------------------------------
def _patch(obj, name: str, value) -> Callable[[], ContextManager]:
    return lambda: _setattr(obj, name, value)


MUTATIONS: list[tuple[str, tuple[str, ...], Callable[[], ContextManager]]] = [
    ("srba-recursion-dropped", ("srba-variance-reduction",), _patch(SRBA, "recursive_correction", False)),
    ("srba-never-refreshed", ("srba-variance-reduction",), _patch(SRBA, "refresh_every_period", False)),
]
