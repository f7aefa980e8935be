"""Outer loops: x_{t+1} = x_t - beta_t * estimate_t, with warm-start state carried across steps.

This is the outer iteration shared by AID-BiO / ITD-BiO (Ji, Yang, Liang 2021, Alg. 1),
stocBiO's outer SGD (Alg. 2) and meta-SGD with MAML / FO / UFO estimates (Likhosherstov
et al. 2021, Alg. 1). All randomness for T steps is drawn up front from one seeded
generator; ground truth (||grad Phi||^2, Phi - Phi*, distance to the nearest known
stationary point) is evaluated every ``eval_every`` steps and its time is excluded from
the ``seconds`` column. Oracle calls are accumulated per step.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from blobench.core.estimator_base import Estimate, Estimator
from blobench.core.oracles import ORACLE_NAMES, Oracles
from blobench.core.params import Param
from blobench.core.problem_base import Problem
from blobench.core.registry import register_metric
from blobench.measure.timing import warm_up_autodiff

SCHEDULES = ("constant", "harmonic", "sqrt", "power")
MOMENTA = ("none", "nesterov", "auto")


def outer_momentum(problem: Problem, estimator: Estimator, momentum: str, outer_lr: float,
                   momentum_coef: float | None = None) -> tuple[bool, float | None]:
    """(use Nesterov momentum on x?, its constant coefficient or None for the convex schedule t/(t+3)).

    "auto" takes the estimator's ``outer_momentum`` attribute (AccBiO declares "nesterov"). The constant
    coefficient is ``momentum_coef`` if given, else (1 - sqrt(beta mu_x)) / (1 + sqrt(beta mu_x)) from the
    problem's ``mu_x`` constant (strong convexity of Phi; Nesterov 2004, Scheme 2.2.19) when positive, else
    None: the convex schedule (Ji & Liang 2023, AccBiO's outer loop in its two geometries)."""
    if momentum == "auto":
        momentum = getattr(estimator, "outer_momentum", "none")
    if momentum not in ("none", "nesterov"):
        from blobench.core.errors import ParameterError

        raise ParameterError(f"outer momentum must be one of {MOMENTA}, got {momentum!r}")
    if momentum == "none":
        return False, None
    if momentum_coef is not None:
        return True, float(momentum_coef)
    mu = float(problem.constants.get("mu_x", 0.0))
    if mu > 0:
        q = math.sqrt(outer_lr * mu)
        return True, (1.0 - q) / (1.0 + q)
    return True, None


def step_size(outer_lr: float, schedule: str, t: int, power: float = 0.5) -> float:
    """beta_t: constant; harmonic beta/(t+1); sqrt beta/sqrt(t+1); power beta/(t+1)^power (e.g. SOBA's
    gamma_t ~ t^-3/5, Dagreou et al. 2022, Theorem 1)."""
    if schedule == "constant":
        return outer_lr
    if schedule == "harmonic":
        return outer_lr / (t + 1)
    if schedule == "sqrt":
        return outer_lr / math.sqrt(t + 1)
    if schedule == "power":
        return outer_lr / (t + 1) ** power
    raise ValueError(schedule)


@dataclass
class Trajectory:
    iters: list[int] = field(default_factory=list)
    grad_norm_sq: list[float] = field(default_factory=list)
    value_gap: list[float] = field(default_factory=list)
    dist: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    calls: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in ORACLE_NAMES})
    x_final: torch.Tensor | None = None
    diverged: bool = False
    heldout: list[dict[str, float]] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for i, t in enumerate(self.iters):
            base = {"iteration": t, "seconds_elapsed": self.seconds[i],
                    **{f"calls_{k}": self.calls[k][i] for k in ORACLE_NAMES}}
            out.append({**base, "quantity": "grad_norm_sq", "value": self.grad_norm_sq[i]})
            out.append({**base, "quantity": "value_gap", "value": self.value_gap[i]})
            out.append({**base, "quantity": "dist_stationary", "value": self.dist[i]})
            for q, v in (self.heldout[i] if i < len(self.heldout) else {}).items():
                out.append({**base, "quantity": q, "value": v})
        return out


def inner_iterate(problem: Problem, state: Any) -> torch.Tensor | None:
    """The estimator's current inner iterate y_t: ``state["y"]`` when its state keeps one of size dim_y (the
    single-loop, warm-started and penalty methods), else None."""
    y = state.get("y") if isinstance(state, dict) else None
    return y if isinstance(y, torch.Tensor) and y.numel() == problem.dim_y else None


def heldout_rows(problem: Problem, x: torch.Tensor, state: Any, t: int) -> dict[str, float]:
    """Held-out metrics at an outer iterate (issue 25), from the problem's ``heldout_errors(y)``:
    ``test_error`` / ``val_error`` / ``train_error`` of the current inner iterate (benchmark_bilevel's
    metrics(inner_var, outer_var)): y_0 = init_inner(x_0) at t = 0, then the estimator's ``state["y"]``, or
    y*(x_t) for an estimator that keeps none; and ``test_error_star``, the test error of y*(x_t) itself."""
    y_star = problem.inner_solution(x)
    y = problem.init_inner(x) if t == 0 else inner_iterate(problem, state)
    out = dict(problem.heldout_errors(y_star if y is None else y.detach()))
    star = problem.heldout_errors(y_star)
    if "test_error" in star:
        out["test_error_star"] = star["test_error"]
    return out


def outer_loop(problem: Problem, estimator: Estimator, steps: int, outer_lr: float, schedule: str = "constant",
               seed: int = 0, x0: torch.Tensor | None = None, eval_every: int = 1, diverge_at: float = 1e12,
               momentum: str = "none", momentum_coef: float | None = None, stop=None,
               oracles: Oracles | None = None, power: float = 0.5) -> Trajectory:
    """Run ``steps`` outer iterations and record the ground-truth curves.

    ``momentum="nesterov"`` (or "auto" with an estimator declaring it, e.g. AccBiO) is Nesterov's accelerated
    gradient on x: the estimate is taken at the extrapolated point w_t, x_{t+1} = w_t - beta_t * estimate(w_t),
    w_{t+1} = x_{t+1} + m_t (x_{t+1} - x_t) (:func:`outer_momentum` gives m_t); ground truth is recorded at x_t.
    ``stop(trajectory) -> bool``, called after each recorded point, ends the run early (the complexity metric
    stops once the target accuracy is reached). ``oracles``: an instrumented :class:`Oracles` of ``problem``
    to use instead of a fresh one (the zero-respecting span claim records every call's vectors).
    ``power``: the exponent of the "power" schedule."""
    nesterov, mcoef = outer_momentum(problem, estimator, momentum, outer_lr, momentum_coef)
    o = Oracles(problem) if oracles is None else oracles
    x = (problem.x0() if x0 is None else problem.as_x(x0)).clone()
    gen = torch.Generator().manual_seed(int(seed))
    noise = estimator.draw(problem, gen, steps) or {}
    sps = problem.stationary_points()
    phi_star = min(problem.value(s) for s in sps) if sps else float("nan")
    tr = Trajectory()
    state = None
    elapsed = 0.0
    totals = dict.fromkeys(ORACLE_NAMES, 0.0)

    heldout = getattr(problem, "heldout_errors", None) if getattr(problem, "heldout", False) else None
    warm_up_autodiff(x.device)  # once per process: the first step's seconds must not hold torch's lazy imports

    def record(t: int) -> None:
        if callable(heldout):  # before the truth, whose inner solve may replace the cached y*(x)
            tr.heldout.append(heldout_rows(problem, x, state, t))
        g = problem.hypergradient(x)
        tr.iters.append(t)
        tr.grad_norm_sq.append(float(g @ g))
        tr.value_gap.append(problem.value(x) - phi_star if sps else float("nan"))
        tr.dist.append(min(float(torch.linalg.norm(x - s)) for s in sps) if sps else float("nan"))
        tr.seconds.append(elapsed)
        for k in ORACLE_NAMES:
            tr.calls[k].append(totals[k])

    record(0)
    w = x
    for t in range(steps):
        if stop is not None and stop(tr):
            break
        nz = {k: v[t] for k, v in noise.items()}
        o.reset()
        t0 = time.perf_counter()
        est = estimator.estimate(o, w, nz, state)
        if not isinstance(est, Estimate):
            est = Estimate(est)
        x_new = w - step_size(outer_lr, schedule, t, power) * est.grad.detach()
        w = x_new + (mcoef if mcoef is not None else t / (t + 3.0)) * (x_new - x) if nesterov else x_new
        x = x_new
        elapsed += time.perf_counter() - t0
        state = est.state
        counted = o.snapshot()
        for k in ORACLE_NAMES:
            if est.calls is not None and k in est.calls:
                totals[k] += float(est.calls[k])
            else:
                totals[k] += counted[k]
        nx = float(torch.linalg.norm(x))  # one reduction and one sync: non-finite iff some entry is (or overflows)
        if not math.isfinite(nx) or nx > diverge_at:
            tr.diverged = True
            record(t + 1)
            break
        if (t + 1) % eval_every == 0 or t + 1 == steps:
            record(t + 1)
    tr.x_final = x
    return tr


def convergence(ctx, outer_steps: int = 100, outer_lr: float | None = None, schedule: str = "constant",
                eval_every: int = 1, momentum: str = "none", power: float = 0.5) -> list[dict[str, Any]]:
    """Outer-loop convergence: ||grad Phi(x_t)||^2, Phi(x_t) - Phi*, distance to the nearest stationary point,
    against iterations, oracle calls and seconds; on a data problem (``problem.heldout`` true: datacleaning,
    mnist-cleaning, the libsvm problems, hyper-cleaning on digits) also test_error / val_error / train_error of
    the current inner iterate and test_error_star of y*(x_t) (:func:`heldout_rows`, issue 25)."""
    p = ctx.problem
    lr = outer_lr
    if lr is None:
        c = p.constants
        lr = 1.0 / float(c.get("L_phi", c.get("L", 1.0)))
    tr = outer_loop(p, ctx.estimator(), outer_steps, lr, schedule, seed=ctx.seed, eval_every=eval_every,
                    momentum=momentum, power=power)
    rows = tr.rows()
    rows.append({"quantity": "diverged", "value": float(tr.diverged)})
    if p.dim_x <= 10 and tr.x_final is not None:  # end points of low-dimensional problems, for landscape figures
        x0 = p.x0()
        for j in range(p.dim_x):
            rows.append({"quantity": "x_start", "coord": j, "value": float(x0[j])})
            rows.append({"quantity": "x_final", "coord": j, "value": float(tr.x_final[j])})
    return rows


convergence.params = {
    "outer_steps": Param("int", default=100, low=1, doc="T: outer iterations"),
    "outer_lr": Param("float", optional=True, low=0, low_open=True, doc="beta (default 1/L_phi or 1/L from the problem's constants)"),
    "schedule": Param("str", default="constant", choices=SCHEDULES, doc="beta_t schedule"),
    "eval_every": Param("int", default=1, low=1, doc="ground-truth evaluation period"),
    "momentum": Param("str", default="none", choices=MOMENTA,
                      doc="Nesterov momentum on x (AccBiO's outer loop); auto: as the estimator declares"),
    "power": Param("float", default=0.5, low=0.0, doc="exponent of the 'power' schedule beta/(t+1)^power"),
}

register_metric("convergence")(convergence)


@dataclass
class MetaTrainRun:
    """Result of :func:`meta_train`: final meta-parameters, iterations run, cumulative oracle calls per
    iteration, the adaptive-UFO q per task when the estimator reports one, and the meta-parameters at the
    requested snapshot iterations."""

    x: torch.Tensor
    iterations: int
    calls: list[float]
    q: list[float] = field(default_factory=list)
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)


def meta_train(problem: Problem, estimator: Estimator, iters: int, meta_batch: int, lr: float, seed: int = 0,
               budget: float | None = None, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
               batched: bool = False, snapshots: tuple[int, ...] = (), x0: torch.Tensor | None = None,
               ) -> MetaTrainRun:
    """Meta-training as in MAML / UFO-BLO's few-shot experiments (Finn et al. 2017, Alg. 2; Likhosherstov
    et al. 2021, Sec. 5): each iteration averages ``meta_batch`` single-task estimates and takes an Adam step
    (Kingma & Ba 2015) of size ``lr``.

    Sequential (default): the tasks run one after the other, so an estimator's state (e.g. adaptive UFO's
    running V^2 and D^2) is carried from task to task. ``batched=True``: the meta-batch runs as one batch,
    through the estimator's ``estimate_batch(oracles, x, noise, state)`` when it has one (UFO: coin-grouped,
    state carried across iterations), else through blobench.measure.sampling.run_draws (vmap; no state). Oracle calls
    are always those counted at the oracle layer.

    Stops after ``iters`` iterations, or earlier once the cumulative oracle calls (all kinds, summed) reach
    ``budget``: the "equal compute" comparison. Iteration t's tasks and coins come from a generator seeded by
    (seed, t), so a run is a prefix of any longer run with the same seed; ``snapshots`` keeps x after those
    iterations (an equal-iteration column read off an equal-compute run). ``x0``: the start (default problem.x0()).
    """
    from blobench.core.errors import ParameterError
    from blobench.measure.sampling import run_draws

    for name, val in (("iters", iters), ("meta_batch", meta_batch)):
        if not isinstance(val, int) or isinstance(val, bool) or val < 1:
            raise ParameterError(f"meta_train: {name} must be an integer >= 1, got {val!r}")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ParameterError(f"meta_train: lr must be a positive number, got {lr!r}")
    o = Oracles(problem)
    x = (problem.x0() if x0 is None else problem.as_x(x0)).clone()
    m, v = torch.zeros_like(x), torch.zeros_like(x)
    b1, b2 = betas
    state = None
    total = 0.0
    run = MetaTrainRun(x, 0, [])
    batch_fn = getattr(estimator, "estimate_batch", None) if batched else None
    for t in range(iters):
        it_seed = int(np.random.SeedSequence([int(seed), t]).generate_state(1)[0])
        noise = estimator.draw(problem, torch.Generator().manual_seed(it_seed), meta_batch) or {}
        if batched:
            o.reset()
            if callable(batch_fn):
                G, C, state, qs = batch_fn(o, x, noise, state)
                if isinstance(state, dict):
                    run.q.extend(qs)
            else:
                G, C = run_draws(problem, estimator, x, noise, meta_batch, chunk=meta_batch)
            g = G.detach().mean(0)
            total += float(sum(float(c.sum()) for c in C.values()))
        else:
            g = torch.zeros_like(x)
            for j in range(meta_batch):
                nz = {k: val[j] for k, val in noise.items()}
                o.reset()
                est = estimator.estimate(o, x, nz, state)
                if not isinstance(est, Estimate):
                    est = Estimate(est)
                g += est.grad.detach() / meta_batch
                state = est.state
                total += float(sum(o.snapshot().values()))
                if isinstance(state, dict) and "q" in state:
                    run.q.append(float(state["q"]))
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        x = x - lr * (m / (1 - b1 ** (t + 1))) / ((v / (1 - b2 ** (t + 1))).sqrt() + eps)
        run.calls.append(total)
        run.iterations = t + 1
        if t + 1 in snapshots:
            run.snapshots[t + 1] = x
        if budget is not None and total >= budget:
            break
    run.x = x
    return run


