"""Fully first-order (penalty / value-function) bilevel methods: no Hessian or cross products.

F2SA (Kwon, Kwon, Wright, Nowak, "A Fully First-Order Method for Stochastic Bilevel
Optimization", ICML 2023, arXiv 2301.10945, Algorithm 1). With the penalty
L_lambda(x, y, z) = f(x, y) + lambda (g(x, y) - g(x, z)), each outer iteration runs
T = inner_steps steps of

    z <- z - alpha grad_y g(x, z)                                   (tracks y*(x))
    y <- y - (alpha / lambda) (grad_y f(x, y) + lambda grad_y g(x, y))   (tracks y*_lambda = argmin f + lambda g)

and returns the x-direction of L_lambda (Algorithm 1, line "x update")

    D_x = grad_x f(x, y) + lambda (grad_x g(x, y) - grad_x g(x, z)).

At exact y = y*_lambda(x), z = y*(x), D_x is grad L*_lambda(x), which differs from grad Phi(x) by
O(1/lambda) (Kwon et al. 2023, Lemma 3.1; the claim ``f2sa-penalty-bias`` fits the exponent).
alpha = inner_lr (default 1/L); lambda_k = penalty + penalty_growth * k at outer iteration k
(the paper's increasing multiplier); (y, z, k) are carried in ``Estimate.state`` (warm starts).
Stochastic problems: z-steps and y-steps draw their own per-step minibatches; the x-direction
uses one (f, g) minibatch, the same g batch at y and at z.

Oracle accounting (tested): per call T grad_y g (z) + T grad_y f + T grad_y g (y), 1 grad_x f, 2 grad_x g.
"""
from __future__ import annotations

from typing import ClassVar

import torch

from blobench import harness
from blobench.core.theory import BiasFloor
from blobench.core.estimator_base import BATCH_SIZE, INNER_LR, INNER_STEPS, batch_of, draw_batches
from blobench.core.numerics import per_step, shared
from blobench.core.params import Param


def _steps_fn(oracles, noise, role):
    b = batch_of(noise, role)
    if b is None or oracles.target.kind == "unrolled":
        return shared(b)
    return per_step(b)


@harness.register_estimator("f2sa")
class F2SA(harness.Estimator):
    """F2SA: penalty L_lambda = f + lambda (g(x, y) - g(x, z)), first-order steps on y and z, D_x = grad_x L_lambda (Kwon et al. 2023, Alg. 1)."""

    theory = (
        BiasFloor("inner_steps", "Kwon et al. 2023 (F2SA), Lemma 3.1: grad L*_lambda is O(1/lambda) from grad Phi",
                  reason="a fixed penalty lambda leaves an O(1/lambda) bias"),
    )

    params = {"inner_steps": INNER_STEPS, "inner_lr": INNER_LR, "batch_size": BATCH_SIZE,
              "penalty": Param("float", default=10.0, low=0.0, low_open=True, doc="lambda_0: penalty multiplier"),
              "penalty_growth": Param("float", default=0.0, low=0.0, doc="lambda_k = lambda_0 + growth * k")}
    #: keep grad_y f in the y-steps (False only in the negative control: then y = z and the penalty vanishes)
    use_outer_in_y: ClassVar[bool] = True

    def draw(self, problem, generator, n):
        T = self.inner_steps(problem)
        return draw_batches(problem, generator, n, {"inner": T, "pen": T, "outer": 0}, self.p["batch_size"])

    def estimate(self, oracles, x, noise, state=None):
        T, alpha = self.inner_steps(oracles), self.inner_lr(oracles)
        if state is None:
            y = z = oracles.init_inner(x)
            k = torch.zeros((), dtype=x.dtype)
        else:
            y, z, k = state["y"].detach(), state["z"].detach(), state["k"]
        lam = self.p["penalty"] + self.p["penalty_growth"] * k
        bz, by = _steps_fn(oracles, noise, "inner"), _steps_fn(oracles, noise, "pen")
        for s in range(T):
            z = z - alpha * oracles.grad_y_g(x, z, bz(s))
            gyf = oracles.grad_y_f(x, y, by(s))
            if not self.use_outer_in_y:
                gyf = torch.zeros_like(gyf)
            y = y - (alpha / lam) * (gyf + lam * oracles.grad_y_g(x, y, by(s)))
        b = batch_of(noise, "outer")
        d = oracles.grad_x_f(x, y, b) + lam * (oracles.grad_x_g(x, y, b) - oracles.grad_x_g(x, z, b))
        return harness.Estimate(d, state={"y": y.detach(), "z": z.detach(), "k": k + 1})
