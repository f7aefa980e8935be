"""Value-function and fully first-order penalty bilevel methods: BOME and F2BA (issue 15). No HV or JV anywhere.

- ``bome`` (Liu, Ye, Wright, Stone, Liu, "BOME! Bilevel Optimization Made Easy: A Simple First-Order
  Approach", NeurIPS 2022, arXiv 2209.08709, Algorithm 1). The value-function reformulation
  min_{x, y} f(x, y) s.t. q(x, y) = g(x, y) - g(x, y*(x)) <= 0, with y*(x) replaced by y_T(x), T = inner_steps
  steps of gradient descent on g(x, .) started from the current y (Algorithm 1, step 1). With v = (x, y),

      grad q_hat(v) = (grad_x g(x, y) - grad_x g(x, y_T), grad_y g(x, y))      (y_T held fixed)
      lambda = max((phi - <grad f(v), grad q_hat(v)>) / ||grad q_hat(v)||^2, 0)   (the dynamic barrier)
      phi = eta ||grad q_hat(v)||^2  (``phi="grad_norm"``, the paper's default)  or  eta q_hat(v) (``phi="value"``)
      v <- v - xi (grad f(v) + lambda grad q_hat(v))                              (Algorithm 1, step 2)

  Here the x-block of that direction is the estimate (the shared outer loop takes the x-step with its
  outer_lr) and the y-block step is taken inside, with step xi = joint_lr (default inner_lr, as benchopt's
  benchmark_bilevel BOME does; joint_lr = outer_lr is the paper's single step on v); y is carried in
  ``Estimate.state``. With a constant step the iterates settle in an O(xi) neighbourhood of the stationary point
  (a period-2 cycle on the quadratic; claim ``bome-step-neighbourhood``). lambda = 0 when
  grad q_hat = 0. The paper's stationarity measure is K(v) = min_{lambda >= 0} ||grad f + lambda grad q||^2 + q
  (Theorem 1; claim ``bome-reaches-stationary-point``).

- ``f2ba`` (Chen, Ma, Zhang, "Near-Optimal Nonconvex-Strongly-Convex Bilevel Optimization with Fully
  First-Order Oracles", arXiv 2306.14853, Algorithm 1 "F2BA"; ``inner_solver="agd"`` runs both inner loops with
  Nesterov's AGD as their accelerated variant does). With a fixed penalty lambda and the penalty function
  L_lambda(x, y) = f(x, y) + lambda (g(x, y) - min_z g(x, z)), each outer iteration runs K = inner_steps steps

      y <- y - alpha grad_y g(x, y)                                         (tracks y*(x) = argmin g)
      z <- z - alpha (grad_y f(x, z) / lambda + grad_y g(x, z))             (tracks z*_lambda = argmin f + lambda g,
                                                                             step tau = alpha / lambda on f + lambda g)

  both warm-started from the previous outer iteration, and returns

      grad_x f(x, z) + lambda (grad_x g(x, z) - grad_x g(x, y)),

  which at exact z, y is grad L*_lambda(x), O(kappa^3 / lambda) from grad Phi(x) (their Lemma 4.1; claim
  ``f2ba-penalty-bias`` fits the exponent against lambda). With ``inner_solver="gd"`` and a deterministic
  problem this is F2SA (blobench/estimators/first_order.py) with penalty_growth = 0, computed through the shared inner
  solvers of blobench/core/numerics.py (tested equal).

Oracle accounting (tested): ``bome`` per call T + 1 grad_y g, 1 grad_x f, 1 grad_y f, 2 grad_x g (+ 2 g values with
``phi="value"``); ``f2ba`` per call 2K grad_y g, K grad_y f, 1 grad_x f, 2 grad_x g.
"""
from __future__ import annotations

from typing import ClassVar

import torch

from blobench import harness
from blobench.core.theory import BiasFloor
from blobench.core.estimator_base import BATCH_SIZE, INNER_LR, INNER_SOLVER, INNER_STEPS, batch_of, draw_batches
from blobench.core.numerics import inner_gd, inner_solve, strongly_convex_momentum
from blobench.core.params import Param

from blobench.estimators.first_order import F2SA, _steps_fn

PENALTY = F2SA.params["penalty"]


@harness.register_estimator("bome")
class BOME(harness.Estimator):
    """BOME: value-function constraint g(x, y) - g(x, y_T(x)), dynamic-barrier combination of grad f and grad q (Liu et al. 2022, Alg. 1)."""

    theory = (
        BiasFloor("inner_steps", "Liu et al. 2022 (BOME), Th. 1: with a constant step the iterates settle in an O(xi) neighbourhood",
                  reason="the estimate is the x-block of the barrier direction, not grad Phi"),
    )

    params = {"inner_steps": INNER_STEPS, "inner_lr": INNER_LR, "batch_size": BATCH_SIZE,
              "eta": Param("float", default=0.5, low=0.0, low_open=True, doc="eta: the barrier's phi = eta ||grad q||^2 (or eta q)"),
              "phi": Param("str", default="grad_norm", choices=("grad_norm", "value"),
                           doc="phi = eta ||grad q_hat||^2 (grad_norm) or eta q_hat (value: 2 g values)"),
              "joint_lr": Param("float", optional=True, low=0.0, low_open=True,
                                doc="xi: BOME's step on y along grad_y f + lambda grad_y q (default inner_lr; equal to outer_lr "
                                    "for the paper's joint step on v = (x, y))")}
    #: the dynamic barrier's lambda (False only in the negative control: lambda = 0, plain descent on f in (x, y))
    use_barrier: ClassVar[bool] = True
    #: grad_x q keeps -grad_x g(x, y_T) (False only in the negative control: the value function's envelope term dropped)
    use_value_term: ClassVar[bool] = True

    def draw(self, problem, generator, n):
        return draw_batches(problem, generator, n, {"inner": self.inner_steps(problem), "outer": 0}, self.p["batch_size"])

    def estimate(self, oracles, x, noise, state=None):
        T, alpha = self.inner_steps(oracles), self.inner_lr(oracles)
        y = oracles.init_inner(x) if state is None else state["y"].detach()
        yT = inner_gd(oracles, x, y, T, alpha, _steps_fn(oracles, noise, "inner"))[0]
        b = batch_of(noise, "outer")
        fx, fy = oracles.grad_f(x, y, b)
        gx, qy = oracles.grad_g(x, y, b)
        qx = gx - oracles.grad_x_g(x, yT, b) if self.use_value_term else gx
        sq = qx @ qx + qy @ qy
        if self.p["phi"] == "value":
            phi = self.p["eta"] * (oracles.g_value(x, y, b) - oracles.g_value(x, yT, b))
        else:
            phi = self.p["eta"] * sq
        lam = torch.where(sq > 0, torch.clamp(phi - (fx @ qx + fy @ qy), min=0.0) / torch.where(sq > 0, sq, 1.0), 0.0)
        if not self.use_barrier:
            lam = torch.zeros_like(lam)
        xi = alpha if self.p.get("joint_lr") is None else float(self.p["joint_lr"])
        y_next = y - xi * (fy + lam * qy)
        return harness.Estimate(fx + lam * qx, state={"y": y_next.detach(), "lambda": lam.detach()})


class _Penalized:
    """The counted oracles seen by the shared inner solvers when they minimise g + f / lambda in y:
    grad_y_g(x, z) = grad_y f(x, z) / lambda + grad_y g(x, z) (one grad_y f and one grad_y g per step)."""

    def __init__(self, oracles, lam: float):
        self.o, self.lam = oracles, lam

    def grad_y_g(self, x, z, batch=None):
        return self.o.grad_y_f(x, z, batch) / self.lam + self.o.grad_y_g(x, z, batch)


@harness.register_estimator("f2ba")
class F2BA(harness.Estimator):
    """F2BA: fixed penalty lambda, warm-started first-order loops on g and on f + lambda g, grad_x f(x, z) + lambda (grad_x g(x, z) - grad_x g(x, y)) (Chen, Ma, Zhang 2023, Alg. 1)."""

    theory = (
        BiasFloor("inner_steps", "Chen, Ma & Zhang 2023 (F2BA), Lemma 3.1: the penalty gradient is O(1/lambda) from grad Phi",
                  reason="a fixed penalty lambda leaves an O(1/lambda) bias"),
    )

    params = {"inner_steps": INNER_STEPS, "inner_lr": INNER_LR, "batch_size": BATCH_SIZE, "penalty": PENALTY,
              "inner_solver": INNER_SOLVER}
    #: keep lambda (grad_x g(x, z) - grad_x g(x, y)) (False only in the negative control: the penalty's x-term dropped)
    use_penalty_term: ClassVar[bool] = True

    def draw(self, problem, generator, n):
        K = self.inner_steps(problem)
        return draw_batches(problem, generator, n, {"inner": K, "pen": K, "outer": 0}, self.p["batch_size"])

    def _momentum(self, oracles, alpha: float) -> float | None:
        if self.p["inner_solver"] != "agd":
            return None
        mu = oracles.constants.get("mu")
        return strongly_convex_momentum(alpha, float(mu)) if mu else None

    def estimate(self, oracles, x, noise, state=None):
        K, alpha, lam = self.inner_steps(oracles), self.inner_lr(oracles), float(self.p["penalty"])
        if state is None:
            y = z = oracles.init_inner(x)
        else:
            y, z = state["y"].detach(), state["z"].detach()
        solver, m = self.p["inner_solver"], self._momentum(oracles, alpha)
        y = inner_solve(oracles, x, y, K, alpha, solver, m, _steps_fn(oracles, noise, "inner"))[0]
        z = inner_solve(_Penalized(oracles, lam), x, z, K, alpha, solver, m, _steps_fn(oracles, noise, "pen"))[0]
        b = batch_of(noise, "outer")
        d = oracles.grad_x_f(x, z, b)
        diff = oracles.grad_x_g(x, z, b) - oracles.grad_x_g(x, y, b)
        if self.use_penalty_term:
            d = d + lam * diff
        return harness.Estimate(d, state={"y": y.detach(), "z": z.detach()})
