"""Claims of Yang, Ji, Liang 2021: MRBO tracks the hypergradient and needs fewer samples than stocBiO; VRBO against stocBiO.

Source: Yang, Ji, Liang, "Provably Faster Algorithms for Bilevel Optimization", NeurIPS 2021 (arXiv 2106.04692),
Algorithm 1 (MRBO) and Theorem 1: with steps eta_k ~ (m + k)^-1/3 and momentum weights alpha_{k+1} = c1 eta_k^2,
beta_{k+1} = c2 eta_k^2, the recursive (STORM; Cutkosky & Orabona 2019) directions' errors shrink along the run, which
is what buys the O~(eps^-1.5) sample complexity over stocBiO's O~(eps^-2) at O(1) batch sizes.

The measured quantity is the direction's error against the exact truth, ||u_t - grad Phi(x_t)||^2 with
``problem.hypergradient`` (never a figure the estimator reports), over independent runs driven together by
:func:`storm_runs` (one vmapped estimator call per step for all runs; a test checks it against the shared
``outer_loop`` run by run).

Second claim, ``mrbo-sample-complexity-vs-stocbio`` (issue 15, section 3): Theorem 1's O~(eps^-1.5) samples at O(1) batches
against stocBiO's O~(eps^-2) (Ji, Yang, Liang 2021, Corollary 2; its eps-scaled schedule from
blobench/claims/ji2021.py's ``samples_to_eps``) on the same quadratic, the same beta and Q = D = 8 for both (the
theorems' common log(1/eps) factor of Q held fixed). Samples = the oracles' counted calls (:func:`storm_runs`'s
``calls``; stocBiO's through blobench.measure.complexity) x batch size, to the first K whose running mean over iterates of
E||grad Phi(x_k)||^2 is <= eps (:func:`running_mean_samples`, blobench.measure.complexity's ``stopping="running-mean"`` rule).
Measured at ci (eps 0.16 .. 0.02): MRBO 1.26 [1.19, 1.33] (below Theorem 1's 1.5: on this strongly convex instance
the running mean is dominated by the transient sum, ~ K^-0.8), stocBiO 2.03 [1.94, 2.11], gap 0.77 [0.69, 0.84];
the control (correction dropped) stalls at a running mean 0.059 and reaches 2 of the 4 eps.

Third claim, ``vrbo-sample-complexity-vs-stocbio``: Yang, Ji, Liang, "Provably Faster
Algorithms for Bilevel Optimization", NeurIPS 2021 (arXiv 2106.04692), Theorem 2: VRBO (Algorithm 2; SPIDER
estimates of grad_y g and of stocBiO's hypergradient, a large batch S_1 = Theta(eps^-1) every q = Theta(eps^-1/2)
steps, small batches S_2 = Theta(eps^-1/2), constant steps, Q = Theta(kappa log(kappa/eps)) Neumann terms) reaches
E||grad Phi(x_zeta)||^2 <= eps (x_zeta uniform over the K iterates) in O~(eps^-1.5) samples, against stocBiO's
O~(eps^-2) (Ji, Yang, Liang 2021, Corollary 2; blobench/claims/ji2021.py). Measured: samples to eps over an
eps grid for both methods on the same instance, exponents in 1/eps fitted with 95% t-intervals
(blobench.measure.complexity.fit_exponent); see :class:`VRBOSampleComplexityVsStocBiO` for the instance, the schedules and
the finite-sum caveat.

``MUTATIONS`` lists in-process breakages of the estimators with the claims that must catch them (for MRBO the dropped
correction itself is the claim's negative control, ``MRBO.storm_correction = False``, so it is not repeated).
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, ContextManager

import numpy as np
import torch
from torch.func import vmap

from blobench import harness
from blobench.claims._common import _setattr, fit_power
from blobench.claims.ji2021 import C_B, kappa_outer_lr, neumann_steps, samples_to_eps
from blobench.core.oracles import ORACLE_NAMES, Oracles
from blobench.estimators.recursive_vr import VRBO
from blobench.estimators.single_loop_momentum import MRBO
from blobench.gate.claim_base import Claim, Verdict, memo
from blobench.measure.complexity import calls_to_target, first_hits, fit_exponent
from blobench.measure.outer import step_size


def storm_runs(p, e, steps: int, outer_lr: float, seeds: list[int], schedule: str = "power",
               power: float = 1 / 3) -> dict[str, torch.Tensor]:
    """Independent runs of the shared outer iteration x_{t+1} = x_t - beta_t d_t (blobench.measure.outer.outer_loop's update,
    its noise drawn as outer_loop draws it for each seed) with a stateful estimator, all runs in one vmapped call per
    step. Returns x [steps + 1, runs, dim_x] (x_0 .. x_T), d [steps, runs, dim_x] (the direction at x_t),
    err [steps, runs] = ||d_t - grad Phi(x_t)||^2 against the problem's exact hypergradient, grad_sq [steps + 1, runs]
    = ||grad Phi(x_t)||^2 at x_0 .. x_T (the same exact evaluations), and calls
    {oracle: [steps + 1]}: the oracle calls of one run counted by the harness's :class:`Oracles` up to x_t (a vmapped
    call is counted once, i.e. once per draw; calls[.][0] = 0), as outer_loop's ``Trajectory.calls`` counts them."""
    o = Oracles(p)
    draws = [e.draw(p, torch.Generator().manual_seed(int(s)), steps) or {} for s in seeds]
    noise = {k: torch.stack([d[k] for d in draws], 1) for k in draws[0]}  # [steps, runs, ...]
    x = p.x0().expand(len(seeds), -1).clone()
    truth = vmap(p.hypergradient)
    xs, ds, errs, gsq = [x], [], [], []
    calls = {k: [0.0] for k in ORACLE_NAMES}
    first = vmap(lambda x_, n_: _grad_state(e.estimate(o, x_, n_, None)))
    step = vmap(lambda x_, n_, s_: _grad_state(e.estimate(o, x_, n_, s_)))
    state = None
    for t in range(steps):
        nz = {k: v[t] for k, v in noise.items()}
        o.reset()
        d, state = first(x, nz) if state is None else step(x, nz, state)
        counted = o.snapshot()
        for k in ORACLE_NAMES:
            calls[k].append(calls[k][-1] + float(counted[k]))
        g = truth(x)
        ds.append(d)
        errs.append(((d - g) ** 2).sum(1))
        gsq.append((g ** 2).sum(1))
        x = x - step_size(outer_lr, schedule, t, power) * d
        xs.append(x)
    gsq.append((truth(x) ** 2).sum(1))
    return {"x": torch.stack(xs), "d": torch.stack(ds), "err": torch.stack(errs), "grad_sq": torch.stack(gsq),
            "calls": {k: torch.tensor(v, dtype=torch.float64) for k, v in calls.items()}}


def _grad_state(est) -> tuple[torch.Tensor, dict]:
    return est.grad, est.state


def _window_means(err: torch.Tensor, checkpoints: list[int]) -> np.ndarray:
    """Mean over runs and over the window (3c/4, c] of each checkpoint c: err [steps, runs] -> [len(checkpoints)]."""
    return np.array([float(err[c - c // 4:c].mean()) for c in checkpoints])


def _quadratic():
    # kappa = 2: the Neumann series with eta = 1/L contracts by 1/2 per term, so Q = 8 terms leave a truncation bias
    # (||.||^2 ~ 1e-5) far below the errors measured; noise 0.3 keeps every sampled Hessian's step contractive
    return harness.problem("quadratic", dim=5, kappa=2, rho=1.0, noise=0.3)


@harness.register_claim("mrbo-storm-tracks-hypergradient")
class MRBOStormTracks(Claim):
    citation = ("Yang, Ji, Liang 2021 (arXiv 2106.04692), Algorithm 1 (MRBO) and Theorem 1 (eta_k ~ k^-1/3, "
                "alpha_{k+1} = c1 eta_k^2): the recursive-momentum hypergradient error")
    statement = ("On the stochastic quadratic (noise 0.3, batch size 1), MRBO's direction u_t tracks the true hypergradient "
                 "ever closer: E||u_t - grad Phi(x_t)||^2 (exact grad Phi, mean over independent runs and over the window "
                 "(3t/4, t]) decays along the run like alpha_t ~ t^-2/3 (STORM: error ~ alpha_t sigma^2). The rule: the "
                 "fitted exponent against t (bootstrap 95% interval over runs) lies below -1/3 and meets [-1, -1/2].")
    control = ("the STORM correction (1 - alpha_t)(u_{t-1} - w(z_{t-1}; xi_t)) dropped: u_t is the fresh one-sample estimate "
               "(momentum 1), whose error stays at the sampling-noise level")

    def evaluate(self, size: str, control: bool) -> Verdict:
        p = _quadratic()
        T, runs = (480, 32) if size == "ci" else (3840, 128)
        checkpoints = [T // 8, T // 4, T // 2, T]
        e = harness.estimator("mrbo", solver_steps=8)
        with _setattr(MRBO, "storm_correction", False) if control else contextlib.nullcontext():
            r = storm_runs(p, e, T, 0.5, list(range(runs)))
        err = r["err"]
        means = _window_means(err, checkpoints)
        a = fit_power(checkpoints, means)[0]
        rng = np.random.default_rng(0)
        boots = [fit_power(checkpoints, _window_means(err[:, torch.from_numpy(rng.integers(0, runs, runs))], checkpoints))[0]
                 for _ in range(400)]
        lo, hi = (float(q) for q in np.percentile(boots, [2.5, 97.5]))
        ok = bool(np.all(np.isfinite(means))) and hi < -1 / 3 and lo <= -0.5 and hi >= -1.0
        return Verdict(ok, f"error exponent {a:.2f} [{lo:.2f}, {hi:.2f}]; window means {', '.join(f'{m:.3g}' for m in means)}",
                       "-2/3 (interval below -1/3, meets [-1, -1/2])",
                       {"t": checkpoints, "mean_error": means.tolist(), "exponent": a, "interval": [lo, hi], "runs": runs,
                        "steps": T, "final_dist": float(torch.linalg.norm(r["x"][-1] - p.stationary_points()[0], dim=1).mean())},
                       rates=[{"name": "error exponent", "rate": a, "rate_lo": lo, "rate_hi": hi, "rate_bound": -1 / 3,
                               "rate_violation": bool(lo > -1 / 3)}])


def running_mean_samples(grad_sq: np.ndarray, calls_total: np.ndarray, eps: list[float],
                         batch_size: int) -> dict[float, dict | None]:
    """blobench.measure.complexity's ``stopping="running-mean"`` rule on a batched trajectory: grad_sq [T + 1, runs] holds
    ||grad Phi(x_k)||^2 (exact) for x_0 .. x_T, calls_total [T + 1] one run's counted calls up to x_k. Per eps the
    first K <= T with (1/K) sum_{k<K} mean_runs grad_sq[k] <= eps, as {"K", "calls" (= calls_total[K - 1], the calls
    that produced x_0 .. x_{K-1}), "samples" (calls x batch_size), "running_mean"}; None where never reached."""
    m = np.asarray(grad_sq, float).mean(1)[:-1]  # x_0 .. x_{T-1}: K <= T iterates, as calls_to_target
    curve = np.cumsum(m) / np.arange(1, m.size + 1)
    out: dict[float, dict | None] = {}
    for e, i in first_hits(curve, eps).items():
        if i is None:
            out[e] = None
            continue
        c = float(calls_total[i])
        out[e] = {"K": i + 1, "calls": c, "samples": c * batch_size, "running_mean": float(curve[i])}
    return out


def exponent_gap(fit_hi: dict, fit_lo: dict, level: float = 0.95) -> dict[str, float]:
    """fit_hi["slope"] - fit_lo["slope"] of two independent blobench.measure.complexity.fit_exponent fits with its t-interval
    at ``level`` (standard error sqrt(se_1^2 + se_2^2), n_1 + n_2 - 4 degrees of freedom); NaN if either fit is."""
    from scipy import stats

    d = fit_hi["slope"] - fit_lo["slope"]
    se = math.hypot(fit_hi["stderr"], fit_lo["stderr"])
    dof = fit_hi["n"] + fit_lo["n"] - 4
    if not (math.isfinite(d) and math.isfinite(se)) or dof < 1:
        return {"gap": float("nan"), "lo": float("nan"), "hi": float("nan"), "stderr": float("nan")}
    t = float(stats.t.ppf(0.5 + level / 2, df=dof))
    return {"gap": float(d), "lo": float(d - t * se), "hi": float(d + t * se), "stderr": float(se)}


Q_BOTH = 8           # Q = D = 8 Neumann / inner steps for both methods (the theorems' O~ log(1/eps) factor held fixed)


MRBO_STEPS = 4.0     # MRBO's horizon: ceil(4 eps_min^-1.5) iterations (Theorem 1's K = O(eps^-1.5))


_STOCBIO_MEMO: dict = memo()


def _complexity_grid(size: str) -> tuple[list[float], int, int]:
    """(eps grid, stocBiO seeds, MRBO runs)."""
    if size == "ci":
        return [0.16, 0.08, 0.04, 0.02], 2, 16
    return [0.16, 0.08, 0.04, 0.02, 0.01, 0.005], 4, 32


def _stocbio_rows(p, size: str) -> list[dict]:
    """stocBiO's samples to each eps of the grid (blobench.claims.ji2021.samples_to_eps: batches ceil(C_B/eps),
    constant beta, K <= 5/eps), memoised per size: the control changes MRBO only."""
    if size not in _STOCBIO_MEMO:
        grid, R, _ = _complexity_grid(size)
        _STOCBIO_MEMO[size] = [samples_to_eps(p, e, max(1, math.ceil(C_B / e)), R, kappa_outer_lr(p), Q=Q_BOTH,
                                              steps_over_eps=5.0) for e in grid]
    return _STOCBIO_MEMO[size]


@harness.register_claim("mrbo-sample-complexity-vs-stocbio")
class MRBOSampleComplexity(Claim):
    citation = ("Yang, Ji, Liang 2021 (arXiv 2106.04692), Theorem 1 and its corollary (MRBO: (1/K) sum_k "
                "E||grad Phi(x_k)||^2 <= eps with O~(eps^-1.5) samples at O(1) batches) against stocBiO's O~(eps^-2) "
                "(Ji, Yang, Liang 2021, arXiv 2010.07962, Corollary 2: batches Theta(1/eps))")
    statement = ("On the stochastic quadratic (dim 5, kappa 2, noise 0.3), the counted samples (oracle calls x batch "
                 "size) to reach (1/K) sum_{k<K} E||grad Phi(x_k)||^2 <= eps (exact grad Phi, mean over independent "
                 "runs; blobench.measure.complexity's running-mean rule) for eps in {0.16, 0.08, 0.04, 0.02}: MRBO with Theorem "
                 "1's schedule at batch size 1 (steps beta (k+1)^-1/3 on x and y, weights (k+1)^-2/3) against stocBiO "
                 "with Corollary 2's batches ceil(2/eps) and constant step; the same beta = 1/(rho + ||B||^2/mu^2) and "
                 "Q = D = 8 for both. Exponents in 1/eps by log-log least squares with 95% t-intervals. The rule "
                 "(fixed from the theorems before measuring): both reach every eps; MRBO's exponent is not above "
                 "Theorem 1's 1.5 (interval's lower end <= 1.5); and stocBiO's exponent minus MRBO's has its 95% "
                 "interval above 0.")
    control = ("MRBO with the STORM correction (1 - alpha_t)(u_{t-1} - w(z_{t-1}; xi_t)) dropped (MRBO.storm_correction "
               "= False): one-sample SGD with steps ~ k^-1/3, whose noise keeps the running mean from reaching the "
               "eps grid at the rate (eps not reached, or exponent ~ 3)")

    def evaluate(self, size: str, control: bool) -> Verdict:
        p = _quadratic()
        grid, R, runs = _complexity_grid(size)
        beta = kappa_outer_lr(p)
        sb = _stocbio_rows(p, size)
        T = math.ceil(MRBO_STEPS * min(grid) ** -1.5)
        e = harness.estimator("mrbo", solver_steps=Q_BOTH)
        with _setattr(MRBO, "storm_correction", False) if control else contextlib.nullcontext():
            r = storm_runs(p, e, T, beta, list(range(runs)))
        grad_sq = r["grad_sq"].numpy()
        total = sum(r["calls"][k] for k in ORACLE_NAMES).numpy()
        hits = running_mean_samples(grad_sq, total, grid, int(e.p["batch_size"]))
        inv = [1 / x for x in grid]
        mrbo_s = [h["samples"] if h else float("nan") for h in hits.values()]
        sb_s = [row.get("samples_total", float("nan")) for row in sb]
        fit_m, fit_s = fit_exponent(inv, mrbo_s), fit_exponent(inv, sb_s)
        gap = exponent_gap(fit_s, fit_m)
        reached = all(h is not None for h in hits.values()) and all(row["reached"] for row in sb)
        ok = reached and fit_m["lo"] <= 1.5 and gap["lo"] > 0
        fmt = lambda f: f"{f['slope']:.2f} [{f['lo']:.2f}, {f['hi']:.2f}]"  # noqa: E731
        rnd = lambda v: [round(x) if x == x else None for x in v]  # noqa: E731
        curve = np.cumsum(grad_sq.mean(1)[:-1]) / np.arange(1, T + 1)
        measured = (f"MRBO {sum(h is not None for h in hits.values())}/{len(grid)} eps reached (running mean "
                    f"{curve[-1]:.3g} at K = {T}), samples {rnd(mrbo_s)}, K {[h['K'] if h else None for h in hits.values()]}, "
                    f"exponent {fmt(fit_m)}; stocBiO {sum(row['reached'] for row in sb)}/{len(grid)}, samples "
                    f"{rnd(sb_s)}, K {[row.get('K') for row in sb]}, exponent {fmt(fit_s)}; gap "
                    f"{gap['gap']:.2f} [{gap['lo']:.2f}, {gap['hi']:.2f}]")
        rates = [{"name": "MRBO samples exponent in 1/eps", "rate": fit_m["slope"], "rate_lo": fit_m["lo"],
                  "rate_hi": fit_m["hi"], "rate_bound": 1.5, "rate_violation": bool(fit_m["lo"] > 1.5)},
                 {"name": "stocBiO samples exponent in 1/eps", "rate": fit_s["slope"], "rate_lo": fit_s["lo"],
                  "rate_hi": fit_s["hi"], "rate_bound": 2.0, "rate_violation": bool(fit_s["lo"] > 2.0)}]
        return Verdict(ok, measured, "all eps reached; MRBO exponent <= 1.5 (lower end); stocBiO - MRBO gap > 0 "
                       "(interval; the theorems' orders give 2 - 1.5 = 0.5)",
                       {"eps": grid, "mrbo": {str(k): v for k, v in hits.items()}, "mrbo_samples": mrbo_s,
                        "mrbo_runs": runs, "mrbo_steps": T, "mrbo_final_running_mean": float(curve[-1]),
                        "stocbio": sb, "stocbio_samples": sb_s, "fit_mrbo": fit_m, "fit_stocbio": fit_s, "gap": gap,
                        "constants": {"beta": beta, "Q": Q_BOTH, "stocbio_seeds": R, "mrbo_batch": int(e.p["batch_size"])}},
                       rates=rates)


def _other_sample() -> ContextManager:
    """The previous point evaluated at another sample than the new one (each batch's coordinates rolled: the same law on
    the quadratic, whose coefficients are i.i.d. per coordinate), so the correction no longer cancels the new noise."""
    return _setattr(MRBO, "previous_sample", lambda self, noise: {k: v.roll(1, -1) for k, v in noise.items()})


@contextlib.contextmanager
def _previous_batch():
    """The previous point evaluated at the previous iteration's batch xi_{t-1} (a reused batch) instead of xi_t; the state
    carries that batch. The recursion then collapses to u_t = w(z_t; xi_t): the plain one-sample estimate."""
    orig = MRBO.estimate

    def estimate(self, oracles, x, noise, state=None):
        self._reused = {k[4:]: v for k, v in (state or {}).items() if k.startswith("mut/")} or None
        out = orig(self, oracles, x, noise, state)
        return out._replace(state={**out.state, **{"mut/" + k: v for k, v in noise.items()}})

    with contextlib.ExitStack() as stack:
        stack.enter_context(_setattr(MRBO, "estimate", estimate))
        stack.enter_context(_setattr(MRBO, "previous_sample", lambda self, noise: self._reused or noise))
        yield


@contextlib.contextmanager
def _old_point_is_current():
    """The correction's "previous" point taken at the current one, z_{t-1} := z_t: both recursions collapse to the plain
    moving averages h_t = eta_t w(z_t; xi_t) + (1 - eta_t) h_{t-1} (momentum SGD without the STORM correction), whose
    lag is never corrected."""
    orig = MRBO.estimate

    def estimate(self, oracles, x, noise, state=None):
        if state is not None:
            state = {**state, "x_prev": x, "y_prev": state["y"]}
        return orig(self, oracles, x, noise, state)

    with _setattr(MRBO, "estimate", estimate):
        yield


def _constant_weights() -> ContextManager:
    """alpha_t = beta_t = their initial value at every step (the (t + 1)^-2/3 decay of the weights lost)."""
    import blobench.estimators.single_loop_momentum as slm

    return _setattr(slm, "momentum_weight", lambda p, t, key="momentum": float(p[key]) + 0.0 * t)


_BOTH = ("mrbo-storm-tracks-hypergradient", "mrbo-sample-complexity-vs-stocbio")  # each checked to catch all four


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
    "running-mean" rule, as :func:`blobench.claims.ji2021.samples_to_eps`), with the samples = counted calls up
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
    Corollary 2's schedule (claims/ji2021.samples_to_eps): its minibatches are i.i.d. uniform draws
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


MUTATIONS: list[tuple[str, tuple[str, ...], Callable[[], ContextManager]]] = [
    ("mrbo-old-point-other-sample", _BOTH, _other_sample),
    ("mrbo-old-point-previous-batch", _BOTH, _previous_batch),
    ("mrbo-momentum-weights-constant", _BOTH, _constant_weights),
    ("mrbo-old-point-is-current", _BOTH, _old_point_is_current),
]
