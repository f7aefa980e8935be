"""ITD: iterative differentiation (reverse mode through the inner solver).

y_0 = init(x), y_{k+1} = y_k - alpha grad_y g(x, y_k; B_k) for k < D, and the estimate is
the exact derivative of f(x, y_D(x)):
    grad_x f(x, y_D) + sum_k -alpha grad2_xy g(x, y_k) v_{k+1} + (dy_0/dx)^T v_0,
    v_D = grad_y f(x, y_D), v_k = (I - alpha grad2_yy g(x, y_k)) v_{k+1}.
This is ITD-BiO's hypergradient (Ji, Yang, Liang 2021, Algorithm 1, eq. (4); Franceschi
et al. 2017 reverse-mode), and MAML's exact meta-gradient when the problem is unrolled.

Oracle accounting (tested): D grad_y g (forward), D HV + D JV (backward, one each per
step), 1 grad_x f, 1 grad_y f.
"""
from __future__ import annotations

import harness
from harness.estimator_base import BATCH_SIZE, INNER_LR, INNER_STEPS, batch_of, draw_batches, step_batches
from harness.numerics import inner_gd, unroll_backward


@harness.register_estimator("itd")
class ITD(harness.Estimator):
    """ITD: reverse-mode differentiation through inner_steps of gradient descent (Ji et al. 2021, Alg. 1)."""

    params = {"inner_steps": INNER_STEPS, "inner_lr": INNER_LR, "batch_size": BATCH_SIZE}

    def draw(self, problem, generator, n):
        return draw_batches(problem, generator, n, {"inner": self.inner_steps(problem), "outer": 0}, self.p["batch_size"])

    def estimate(self, oracles, x, noise, state=None):
        D, lr = self.inner_steps(oracles), self.inner_lr(oracles)
        bf = step_batches(oracles, noise)
        y0 = oracles.init_inner(x)
        yD, traj = inner_gd(oracles, x, y0, D, lr, bf, keep=True)
        gx, gy = oracles.grad_f(x, yD, batch_of(noise, "outer"))
        cx, v0 = unroll_backward(oracles, x, traj, y0, gy, lr, D, bf)
        return harness.Estimate(gx + cx + oracles.init_vjp(x, v0))
