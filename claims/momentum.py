"""Claims of the STORM-momentum family (issue 15): MRBO's recursive correction tracks the hypergradient.

Source: Yang, Ji, Liang, "Provably Faster Algorithms for Bilevel Optimization", NeurIPS 2021 (arXiv 2106.04692),
Algorithm 1 (MRBO) and Theorem 1: with steps eta_k ~ (m + k)^-1/3 and momentum weights alpha_{k+1} = c1 eta_k^2,
beta_{k+1} = c2 eta_k^2, the recursive (STORM; Cutkosky & Orabona 2019) directions' errors shrink along the run, which
is what buys the O~(eps^-1.5) sample complexity over stocBiO's O~(eps^-2) at O(1) batch sizes.

The measured quantity is the direction's error against the exact truth, ||u_t - grad Phi(x_t)||^2 with
``problem.hypergradient`` (never a figure the estimator reports), over independent runs driven together by
:func:`storm_runs` (one vmapped estimator call per step for all runs; a test checks it against the shared
``outer_loop`` run by run).

``MUTATIONS`` lists in-process breakages of the estimator with the claim that must catch them, as claims/solvers.py does
(the dropped correction itself is the claim's negative control, ``MRBO.storm_correction = False``, so it is not repeated).
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import numpy as np
import torch
from torch.func import vmap

import harness
from claims.solvers import _setattr, fit_power
from estimators.single_loop_momentum import MRBO
from harness.claim_base import Claim, Verdict
from harness.oracles import Oracles
from harness.outer import step_size


def storm_runs(p, e, steps: int, outer_lr: float, seeds: list[int], schedule: str = "power",
               power: float = 1 / 3) -> dict[str, torch.Tensor]:
    """Independent runs of the shared outer iteration x_{t+1} = x_t - beta_t d_t (harness.outer.outer_loop's update,
    its noise drawn as outer_loop draws it for each seed) with a stateful estimator, all runs in one vmapped call per
    step. Returns x [steps + 1, runs, dim_x] (x_0 .. x_T), d [steps, runs, dim_x] (the direction at x_t) and
    err [steps, runs] = ||d_t - grad Phi(x_t)||^2 against the problem's exact hypergradient."""
    o = Oracles(p)
    draws = [e.draw(p, torch.Generator().manual_seed(int(s)), steps) or {} for s in seeds]
    noise = {k: torch.stack([d[k] for d in draws], 1) for k in draws[0]}  # [steps, runs, ...]
    x = p.x0().expand(len(seeds), -1).clone()
    truth = vmap(p.hypergradient)
    xs, ds, errs = [x], [], []
    first = vmap(lambda x_, n_: _grad_state(e.estimate(o, x_, n_, None)))
    step = vmap(lambda x_, n_, s_: _grad_state(e.estimate(o, x_, n_, s_)))
    state = None
    for t in range(steps):
        nz = {k: v[t] for k, v in noise.items()}
        d, state = first(x, nz) if state is None else step(x, nz, state)
        ds.append(d)
        errs.append(((d - truth(x)) ** 2).sum(1))
        x = x - step_size(outer_lr, schedule, t, power) * d
        xs.append(x)
    return {"x": torch.stack(xs), "d": torch.stack(ds), "err": torch.stack(errs)}


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


# -- mutation suite ---------------------------------------------------------------------------------------------
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


def _constant_weights() -> ContextManager:
    """alpha_t = beta_t = their initial value at every step (the (t + 1)^-2/3 decay of the weights lost)."""
    import estimators.single_loop_momentum as slm

    return _setattr(slm, "momentum_weight", lambda p, t, key="momentum": float(p[key]) + 0.0 * t)


MUTATIONS: list[tuple[str, tuple[str, ...], Callable[[], ContextManager]]] = [
    ("mrbo-old-point-other-sample", ("mrbo-storm-tracks-hypergradient",), _other_sample),
    ("mrbo-old-point-previous-batch", ("mrbo-storm-tracks-hypergradient",), _previous_batch),
    ("mrbo-momentum-weights-constant", ("mrbo-storm-tracks-hypergradient",), _constant_weights),
]
