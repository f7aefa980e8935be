"""Stochastic bilevel estimators: stocBiO (paper and authors' code) and BSA.

All three run D steps of minibatch SGD on g from y_0 (warm-started across outer steps by
default: y_0 of step k is y_D of step k-1, carried in ``Estimate.state``), then form

    v_0 = grad_y F(x, y_D; D_F),    estimate = grad_x F(x, y_D; D_F) - grad2_xy G(x, y_D; D_G) v,

and differ only in v ~ [grad2_yy g]^{-1} v_0 (H_j = grad2_yy G(x, y_D; B_j), eta = solver_lr,
Q = solver_steps, batches of ``batch_size`` samples, all independent):

- ``stocbio`` (Ji, Yang, Liang 2021, Algorithm 2 and its Hessian-inverse-vector step,
  Algorithm 3): v_Q = eta sum_{q=-1}^{Q-1} prod_{j=Q-q}^{Q} (I - eta H_j) v_0,
  Q independent Hessian batches. Computed with one HV per term (the product for q extends
  the one for q-1 by one factor), so its expectation is exactly the truncated Neumann series
  eta sum_{i=0}^{Q} (I - eta E[H])^i v_0 at y_D (batches are independent).
- ``stocbio-code``: what the authors' public code (github JunjieYang97/stocBiO, function
  ``stocbio``) computes: p_0 = v_0, p_i = (I - eta H) p_{i-1} with ONE Hessian batch reused
  for all i, and v = eta p_Q + sum_{i=1}^{Q} p_i: only the last term is scaled by eta and
  the i = 0 term is dropped. It is not a truncated Neumann series of [grad2_yy g]^{-1}: as Q
  grows it tends to (eta H)^{-1} (I - eta H) v_0 = H^{-1} v_0 / eta - v_0.
  (The code's outer update omits grad_x F because its problems have none; we keep it.)
- ``bsa`` (Ghadimi & Wang 2018, "Approximation methods for bilevel programming", Algorithm 1 / Sec. 2 Hessian-inverse estimate):
  p ~ U{0, ..., Q-1} drawn once per estimate, v = Q eta prod_{j=1}^{p} (I - eta H_j) v_0, an
  unbiased estimate of eta sum_{i=0}^{Q-1} (I - eta E[H])^i v_0 (Q terms).

Oracle accounting (tested): D grad_y g, 1 grad_x f + 1 grad_y f (one D_F batch), 1 JV, and
HV: Q for ``stocbio`` and ``stocbio-code``, p (random, reported per draw) for ``bsa``.
"""
from __future__ import annotations

import torch

from blobench import harness
from blobench.estimators.aid import aid_cost
from blobench.core.theory import Rate, BiasFloor, CostFormula, gd_rate, neumann_rate, GD_SOURCE
from blobench.core.errors import ParameterError
from blobench.core.estimator_base import (BATCH_SIZE, INNER_LR, INNER_STEPS, SOLVER_LR, SOLVER_STEPS, batch_of, draw_batches,
                                    step_batches)
from blobench.core.numerics import inner_gd, neumann, per_step, shared
from blobench.core.params import Param


def _hess_batches(oracles, noise, per: bool):
    """Per-term Hessian batches B_j (``per``), or one batch shared by every term."""
    b = batch_of(noise, "hess")
    if b is None or oracles.target.kind == "unrolled" or not per:
        return shared(b)
    return per_step(b)


class StocBase(harness.Estimator):
    """Shared SGD inner loop and assembly of stocBiO-type estimators; subclasses implement :meth:`solve`."""

    params = {"inner_steps": INNER_STEPS, "inner_lr": INNER_LR, "solver_steps": SOLVER_STEPS, "solver_lr": SOLVER_LR,
              "batch_size": BATCH_SIZE,
              "warm_start": Param("bool", default=True, doc="carry y_D across outer iterations (Ji et al. 2021, Alg. 2)")}
    #: number of Hessian batches drawn per estimate (0: a single batch)
    def hess_batches(self) -> int:
        return int(self.p["solver_steps"])

    def solver_lr(self, oracles) -> float:
        eta = self.p.get("solver_lr")
        return 1.0 / float(oracles.constants["L"]) if eta is None else float(eta)

    def draw(self, problem, generator, n):
        return draw_batches(problem, generator, n,
                            {"inner": self.inner_steps(problem), "outer": 0, "jac": 0, "hess": self.hess_batches()},
                            self.p["batch_size"])

    def solve(self, oracles, x, y, v0, noise):
        raise NotImplementedError

    def estimate(self, oracles, x, noise, state=None):
        D, lr = self.inner_steps(oracles), self.inner_lr(oracles)
        warm = bool(self.p["warm_start"]) and state is not None and "y" in state
        y0 = state["y"].detach() if warm else oracles.init_inner(x)
        yD, _ = inner_gd(oracles, x, y0, D, lr, step_batches(oracles, noise))
        gx, v0 = oracles.grad_f(x, yD, batch_of(noise, "outer"))
        v, calls = self.solve(oracles, x, yD, v0, noise)
        g = gx - oracles.jvp(x, yD, v, batch_of(noise, "jac"))
        return harness.Estimate(g, calls=calls, state={"y": yD.detach()} if self.p["warm_start"] else None)


@harness.register_estimator("stocbio")
class StocBiO(StocBase):
    """stocBiO: SGD inner loop, Neumann series with Q independent Hessian batches (Ji et al. 2021, Alg. 2-3)."""

    theory = (
        Rate("inner_steps", gd_rate, GD_SOURCE, short="1-alpha*mu, Ji+ 2021 Prop. 2"),
        Rate("solver_steps", neumann_rate, "Ji, Yang & Liang 2021, Alg. 3 / Lemma 6: truncated Neumann series, 1 - eta*mu",
             short="1-eta*mu, Neumann"),
        CostFormula(aid_cost, "Ji, Yang & Liang 2021, Alg. 2-3 (stocBiO): D grad_y g, Q HV, 1 JV, grad f"),
    )

    def solve(self, oracles, x, y, v0, noise):
        hb = _hess_batches(oracles, noise, per=True)
        v = neumann(None, v0, self.p["solver_steps"], self.solver_lr(oracles),
                    matvec_at=lambda i, p: oracles.hvp(x, y, p, hb(i)))
        return v, None


@harness.register_estimator("stocbio-code")
class StocBiOCode(StocBase):
    """stocBiO as in the authors' public code: one Hessian batch reused, v = eta p_Q + sum_{i=1}^Q p_i (not a Neumann series)."""

    theory = (
        BiasFloor("solver_steps", "github JunjieYang97/stocBiO, function stocbio (module docstring)",
                  reason="the code's series tends to H^-1 v0 / eta - v0, not H^-1 v0"),
        CostFormula(aid_cost, "authors' code: Q HV with one Hessian batch"),
    )

    def hess_batches(self) -> int:
        return 0

    def solve(self, oracles, x, y, v0, noise):
        hv = oracles.hvp_operator(x, y, batch_of(noise, "hess"))  # one Hessian batch: linearised once
        eta = self.solver_lr(oracles)
        p = v0
        acc = torch.zeros_like(v0)
        for _ in range(self.p["solver_steps"]):
            p = p - eta * hv(p)
            acc = acc + p
        return eta * p + acc, None


@harness.register_estimator("bsa")
class BSA(StocBase):
    """BSA: random truncation p ~ U{0..Q-1}, v = Q eta prod_{j<=p} (I - eta H_j) v_0 (Ghadimi & Wang 2018)."""

    theory = ()  # a random truncation p per draw: no per-draw rate to fit; its claims (ji2021) cover it in expectation

    params = {**StocBase.params, "solver_steps": Param("int", default=10, low=1, doc="Q: the truncation p is uniform on {0..Q-1}")}

    def __init__(self, **params):
        super().__init__(**params)
        if self.p["solver_steps"] < 1:  # pragma: no cover - Param low=1 already enforces it
            raise ParameterError("estimator 'bsa': solver_steps must be >= 1")

    def hess_batches(self) -> int:
        return max(int(self.p["solver_steps"]) - 1, 0)

    def draw(self, problem, generator, n):
        out = super().draw(problem, generator, n)
        out["trunc/p"] = torch.randint(0, int(self.p["solver_steps"]), (n,), generator=generator)
        return out

    def solve(self, oracles, x, y, v0, noise):
        Q, eta = int(self.p["solver_steps"]), self.solver_lr(oracles)
        p_draw = noise["trunc/p"]
        hb = _hess_batches(oracles, noise, per=True)
        p = v0
        for j in range(Q - 1):  # fixed length (vmappable); steps j >= p leave p unchanged
            p = torch.where(p_draw > j, p - eta * oracles.hvp(x, y, p, hb(j)), p)
        return Q * eta * p, {"hvp": p_draw}
