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

from .estimator_base import Estimate, Estimator
from .oracles import ORACLE_NAMES, Oracles
from .params import Param
from .problem_base import Problem

SCHEDULES = ("constant", "harmonic", "sqrt")


def step_size(outer_lr: float, schedule: str, t: int) -> float:
    """beta_t: constant; harmonic beta/(t+1); sqrt beta/sqrt(t+1)."""
    if schedule == "constant":
        return outer_lr
    if schedule == "harmonic":
        return outer_lr / (t + 1)
    if schedule == "sqrt":
        return outer_lr / math.sqrt(t + 1)
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

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for i, t in enumerate(self.iters):
            base = {"iteration": t, "seconds_elapsed": self.seconds[i],
                    **{f"calls_{k}": self.calls[k][i] for k in ORACLE_NAMES}}
            out.append({**base, "quantity": "grad_norm_sq", "value": self.grad_norm_sq[i]})
            out.append({**base, "quantity": "value_gap", "value": self.value_gap[i]})
            out.append({**base, "quantity": "dist_stationary", "value": self.dist[i]})
        return out


def outer_loop(problem: Problem, estimator: Estimator, steps: int, outer_lr: float, schedule: str = "constant",
               seed: int = 0, x0: torch.Tensor | None = None, eval_every: int = 1, diverge_at: float = 1e12,
               ) -> Trajectory:
    """Run ``steps`` outer iterations and record the ground-truth curves."""
    o = Oracles(problem)
    x = (problem.x0() if x0 is None else problem.as_x(x0)).clone()
    gen = torch.Generator().manual_seed(int(seed))
    noise = estimator.draw(problem, gen, steps) or {}
    sps = problem.stationary_points()
    phi_star = min(problem.value(s) for s in sps) if sps else float("nan")
    tr = Trajectory()
    state = None
    elapsed = 0.0
    totals = dict.fromkeys(ORACLE_NAMES, 0.0)

    def record(t: int) -> None:
        g = problem.hypergradient(x)
        tr.iters.append(t)
        tr.grad_norm_sq.append(float(g @ g))
        tr.value_gap.append(problem.value(x) - phi_star if sps else float("nan"))
        tr.dist.append(min(float(torch.linalg.norm(x - s)) for s in sps) if sps else float("nan"))
        tr.seconds.append(elapsed)
        for k in ORACLE_NAMES:
            tr.calls[k].append(totals[k])

    record(0)
    for t in range(steps):
        nz = {k: v[t] for k, v in noise.items()}
        o.reset()
        t0 = time.perf_counter()
        est = estimator.estimate(o, x, nz, state)
        if not isinstance(est, Estimate):
            est = Estimate(est)
        x = x - step_size(outer_lr, schedule, t) * est.grad.detach()
        elapsed += time.perf_counter() - t0
        state = est.state
        counted = o.snapshot()
        for k in ORACLE_NAMES:
            if est.calls is not None and k in est.calls:
                totals[k] += float(est.calls[k])
            else:
                totals[k] += counted[k]
        if not bool(torch.isfinite(x).all()) or float(torch.linalg.norm(x)) > diverge_at:
            tr.diverged = True
            record(t + 1)
            break
        if (t + 1) % eval_every == 0 or t + 1 == steps:
            record(t + 1)
    tr.x_final = x
    return tr


def convergence(ctx, outer_steps: int = 100, outer_lr: float | None = None, schedule: str = "constant",
                eval_every: int = 1) -> list[dict[str, Any]]:
    """Outer-loop convergence: ||grad Phi(x_t)||^2, Phi(x_t) - Phi*, distance to the nearest stationary point,
    against iterations, oracle calls and seconds."""
    p = ctx.problem
    lr = outer_lr
    if lr is None:
        c = p.constants
        lr = 1.0 / float(c.get("L_phi", c.get("L", 1.0)))
    tr = outer_loop(p, ctx.estimator(), outer_steps, lr, schedule, seed=ctx.seed, eval_every=eval_every)
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
}

from .registry import register_metric  # noqa: E402

register_metric("convergence")(convergence)
