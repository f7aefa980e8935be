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
(y, z, k) are carried in ``Estimate.state`` (warm starts).

Schedules at outer iteration k = 0, 1, ... (defaults: today's constant steps and linear penalty):

    z step      gamma_k  = inner_lr (k + 1)^-inner_decay                    (default inner_lr: 1/L)
    y step      alpha_k  = penalized_lr (k + 1)^-penalized_decay,  y <- y - alpha_k (grad_y f + lambda_k grad_y g)
                           (without penalized_lr: alpha_k = gamma_k / lambda_k, the update written above)
    penalty     lambda_k = penalty (k + 1)^penalty_power + penalty_growth sum_{i<k} (i + 1)^-penalty_growth_decay

The paper's Algorithm 1 takes z-steps gamma_k, y-steps alpha_k on f + lambda_k g, x-steps xi alpha_k and
lambda_{k+1} = lambda_k + delta_k; its stochastic-case theorem uses alpha_k ~ k^-5/7, gamma_k ~ k^-4/7 and
lambda_k ~ k^1/7 (as recalled: ``penalized_decay=5/7``, ``inner_decay=4/7``, ``penalty_power=1/7``, with the
outer loop's ``schedule="power"``, ``power=5/7`` for x). benchmark_bilevel's f2sa solver (solvers/f2sa.py)
runs alpha_k = gamma_k = step_size over (k+1)^5/7 and (k+1)^4/7, outer step (step_size / outer_ratio)
(k+1)^-4/7 and lambda_{k+1} = lambda_k + delta_lmbda (k+1)^-1/7 from lmbda0: ``penalized_lr = inner_lr =
step_size``, ``penalized_decay=5/7``, ``inner_decay=4/7``, ``penalty=lmbda0``, ``penalty_growth=delta_lmbda``,
``penalty_growth_decay=1/7``, outer ``schedule="power"``, ``power=4/7``.
Stochastic problems: z-steps and y-steps draw their own per-step minibatches; the x-direction
uses one (f, g) minibatch, the same g batch at y and at z (the peer draws two g batches there).

Oracle accounting (tested): per call T grad_y g (z) + T grad_y f + T grad_y g (y), 1 grad_x f, 2 grad_x g.
"""
from __future__ import annotations

from typing import ClassVar

import torch

from blobench import harness
from blobench.core.theory import BiasFloor
from blobench.core.estimator_base import BATCH_SIZE, INNER_LR, INNER_STEPS, batch_of, draw_batches
from blobench.core.numerics import per_step, shared
from blobench.core.errors import ParameterError
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
              "penalty_growth": Param("float", default=0.0, low=0.0,
                                      doc="delta: lambda_k = lambda_0 (k+1)^penalty_power + delta sum_{i<k} "
                                          "(i+1)^-penalty_growth_decay (linear lambda_0 + delta k by default)"),
              "penalty_growth_decay": Param("float", default=0.0, low=0.0,
                                            doc="e: the k-th penalty increment is penalty_growth (k+1)^-e "
                                                "(benchmark_bilevel: 1/7)"),
              "penalty_power": Param("float", default=0.0, low=0.0,
                                     doc="b: lambda_0 (k+1)^b, the paper's growing penalty lambda_k ~ k^b (1/7)"),
              "inner_decay": Param("float", default=0.0, low=0.0,
                                   doc="c: z step gamma_k = inner_lr (k+1)^-c (Kwon et al. 2023: 4/7)"),
              "penalized_lr": Param("float", optional=True, low=0, low_open=True,
                                    doc="alpha_0: y step on f + lambda_k g (default: gamma_k / lambda_k)"),
              "penalized_decay": Param("float", default=0.0, low=0.0,
                                       doc="a: y step alpha_k = penalized_lr (k+1)^-a (Kwon et al. 2023: 5/7); "
                                           "needs penalized_lr")}
    #: keep grad_y f in the y-steps (False only in the negative control: then y = z and the penalty vanishes)
    use_outer_in_y: ClassVar[bool] = True

    def __init__(self, **params):
        super().__init__(**params)
        if self.p["penalized_decay"] and self.p.get("penalized_lr") is None:
            raise ParameterError("estimator 'f2sa': penalized_decay needs penalized_lr (without it the y step is "
                                 "gamma_k / lambda_k, which decays with inner_decay and the penalty)")

    def schedule(self, oracles, k: torch.Tensor, growth_sum: torch.Tensor | None) -> tuple:
        """(gamma_k, alpha_k or None for gamma_k / lambda_k, lambda_k) at outer iteration k (module docstring)."""
        gamma = self.inner_lr(oracles)
        if self.p["inner_decay"]:
            gamma = gamma * (k + 1.0) ** (-float(self.p["inner_decay"]))
        lam0, growth = self.p["penalty"], self.p["penalty_growth"]
        if self.p["penalty_power"]:
            lam0 = lam0 * (k + 1.0) ** float(self.p["penalty_power"])
        lam = lam0 + growth * (k if growth_sum is None else growth_sum)
        alpha = self.p.get("penalized_lr")
        if alpha is not None and self.p["penalized_decay"]:
            alpha = alpha * (k + 1.0) ** (-float(self.p["penalized_decay"]))
        return gamma, alpha, lam

    def draw(self, problem, generator, n):
        T = self.inner_steps(problem)
        return draw_batches(problem, generator, n, {"inner": T, "pen": T, "outer": 0}, self.p["batch_size"])

    def estimate(self, oracles, x, noise, state=None):
        T = self.inner_steps(oracles)
        decayed = bool(self.p["penalty_growth_decay"])  # lambda's increments decay: their sum is carried
        if state is None:
            y = z = oracles.init_inner(x)
            k = torch.zeros((), dtype=x.dtype)
            gsum = torch.zeros((), dtype=x.dtype) if decayed else None
        else:
            y, z, k = state["y"].detach(), state["z"].detach(), state["k"]
            gsum = state["growth_sum"] if decayed else None
        alpha, alpha_y, lam = self.schedule(oracles, k, gsum)
        bz, by = _steps_fn(oracles, noise, "inner"), _steps_fn(oracles, noise, "pen")
        for s in range(T):
            z = z - alpha * oracles.grad_y_g(x, z, bz(s))
            gyf = oracles.grad_y_f(x, y, by(s))
            if not self.use_outer_in_y:
                gyf = torch.zeros_like(gyf)
            y = y - (alpha / lam if alpha_y is None else alpha_y) * (gyf + lam * oracles.grad_y_g(x, y, by(s)))
        b = batch_of(noise, "outer")
        d = oracles.grad_x_f(x, y, b) + lam * (oracles.grad_x_g(x, y, b) - oracles.grad_x_g(x, z, b))
        st = {"y": y.detach(), "z": z.detach(), "k": k + 1}
        if decayed:
            st["growth_sum"] = gsum + (k + 1.0) ** (-float(self.p["penalty_growth_decay"]))
        return harness.Estimate(d, state=st)
