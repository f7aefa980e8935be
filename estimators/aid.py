"""AID: approximate implicit differentiation, composed as inner solver + linear solver + assembly.

    y_D  = D steps of gradient descent on g(x, .) from y_0
    v_N ~ [grad2_yy g(x, y_D)]^{-1} grad_y f(x, y_D)     (linear solver, N iterations)
    estimate = grad_x f(x, y_D) - grad2_xy g(x, y_D) v_N
(Ji, Yang, Liang 2021, Algorithm 1 "AID-BiO", eq. (3); Pedregosa 2016; Grazzi et al. 2020.)

``aid-cg`` solves with conjugate gradient (N HV products from v_0 = 0).
Oracle accounting (tested): D grad_y g, N HV, 1 JV, 1 grad_x f, 1 grad_y f.
"""
from __future__ import annotations

import harness
from harness.estimator_base import BATCH_SIZE, INNER_LR, INNER_STEPS, SOLVER_STEPS, batch_of, draw_batches, step_batches
from harness.numerics import cg, inner_gd


class AIDBase(harness.Estimator):
    """Shared assembly of the AID family; subclasses implement :meth:`solve`."""

    params = {"inner_steps": INNER_STEPS, "inner_lr": INNER_LR, "solver_steps": SOLVER_STEPS, "batch_size": BATCH_SIZE}

    def draw(self, problem, generator, n):
        return draw_batches(problem, generator, n,
                            {"inner": self.inner_steps(problem), "outer": 0, "hess": 0}, self.p["batch_size"])

    def solve(self, oracles, x, y, b, hess_batch):
        raise NotImplementedError

    def estimate(self, oracles, x, noise, state=None):
        D, lr = self.inner_steps(oracles), self.inner_lr(oracles)
        y0 = oracles.init_inner(x)
        yD, _ = inner_gd(oracles, x, y0, D, lr, step_batches(oracles, noise))
        gx, gy = oracles.grad_f(x, yD, batch_of(noise, "outer"))
        hb = batch_of(noise, "hess")
        v = self.solve(oracles, x, yD, gy, hb)
        return harness.Estimate(gx - oracles.jvp(x, yD, v, hb))


@harness.register_estimator("aid-cg")
class AIDCG(AIDBase):
    """AID-CG: inner_steps of GD, then solver_steps of conjugate gradient, then one cross product (Ji et al. 2021, Alg. 1)."""

    def solve(self, oracles, x, y, b, hess_batch):
        return cg(lambda v: oracles.hvp(x, y, v, hess_batch), b, self.p["solver_steps"])
