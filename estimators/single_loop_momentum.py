"""Single-loop bilevel methods with STORM momentum on the directions: FSLA and SUSTAIN.

Both keep the previous point in ``Estimate.state`` and evaluate the same fresh sample at the
current and previous points (STORM, Cutkosky & Orabona 2019):

    d_t = w(z_t; xi_t) + (1 - eta_t) (d_{t-1} - w(z_{t-1}; xi_t)),    eta_t = momentum (t + 1)^-momentum_decay,

with d_0 = w(z_0; xi_0) (no state). The shared outer loop takes x_{t+1} = x_t - alpha_t d_t.

FSLA (Li, Gu, Huang, "A Fully Single Loop Algorithm for Bilevel Optimization without Hessian
Inverse", AAAI 2022, arXiv 2112.04660, Algorithm 1): per iteration, with a sample b for the
(y, v) steps and a fresh sample b' for the hypergradient,

    y_{t+1} = y_t - rho_t grad_y g(x_t, y_t; b)
    v_{t+1} = v_t - rho'_t (grad2_yy g(x_t, y_{t+1}; b) v_t + grad_y f(x_t, y_{t+1}; b))   (v ~ -H^-1 grad_y f)
    w(x, y, v; b') = grad_x f(x, y; b') + grad2_xy g(x, y; b') v, at (x_t, y_{t+1}, v_{t+1}) and (x_{t-1}, y_t, v_t).

Oracle accounting (tested): per call 1 grad_y g, 1 grad_y f, 1 HV, and 2 grad_x f + 2 JV
(1 + 1 on the first call, without state).

SUSTAIN (Khanduri, Zeng, Hong, Wai, Wang, Yang, "A Near-Optimal Algorithm for Stochastic
Bilevel Optimization via Double-Momentum", NeurIPS 2021, arXiv 2102.07367, Algorithm 1):
momentum on both levels, y and x updated from the same point (x_t, y_t),

    h_g^t = grad_y g(x_t, y_t; zeta_t) + (1 - eta_t) (h_g^{t-1} - grad_y g(x_{t-1}, y_{t-1}; zeta_t))
    h_f^t = bar-grad f(x_t, y_t; xi_t) + (1 - eta_t) (h_f^{t-1} - bar-grad f(x_{t-1}, y_{t-1}; xi_t))
    y_{t+1} = y_t - beta_t h_g^t,   x_{t+1} = x_t - alpha_t h_f^t,

where bar-grad f is Ghadimi & Wang's random-truncation Neumann estimate (eq. (6) of the paper;
``bsa`` here, the same draw xi_t = (p, Hessian batches, f and JV batches) at both points).
Theorem 1's steps: beta_t ~ t^-1/3 (``decay=1/3``), alpha_t ~ t^-1/3 (outer ``power`` schedule,
``power=1/3``), eta_t ~ t^-2/3 (``momentum_decay=2/3``). Oracle accounting (tested): per call
2 grad_y g, 2 grad_x f, 2 grad_y f, 2 JV, 2p HV (p reported per draw); the first call half of each.
"""
from __future__ import annotations

import torch

import harness
from estimators.single_loop import DECAY, SingleLoopBase, single_loop_state
from estimators.stocbio import BSA
from harness.estimator_base import BATCH_SIZE, INNER_LR, SOLVER_LR, batch_of, draw_batches
from harness.params import Param

MOMENTUM = Param("float", default=0.5, low=0.0, high=1.0, doc="eta_0: STORM momentum weight of the fresh sample (1: no momentum)")
MOMENTUM_DECAY = Param("float", default=0.0, low=0.0, doc="eta_t = eta_0 (t + 1)^-momentum_decay")


def momentum_weight(p: dict, t: torch.Tensor) -> torch.Tensor:
    """eta_t = momentum (t + 1)^-momentum_decay."""
    return float(p["momentum"]) * (t + 1.0) ** (-float(p["momentum_decay"]))


def storm(new: torch.Tensor, prev_dir: torch.Tensor, old: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
    """STORM direction new + (1 - eta) (prev_dir - old)."""
    return new + (1.0 - eta) * (prev_dir - old)


@harness.register_estimator("fsla")
class FSLA(SingleLoopBase):
    """FSLA: SOBA-type (y, v) steps and a STORM-momentum hypergradient direction (Li, Gu, Huang 2022, Alg. 1)."""

    params = {**SingleLoopBase.params, "momentum": MOMENTUM, "momentum_decay": MOMENTUM_DECAY}

    def draw(self, problem, generator, n):
        return draw_batches(problem, generator, n, {"sample": 0, "outer": 0}, self.p["batch_size"])

    def estimate(self, oracles, x, noise, state=None):
        y, v, t = single_loop_state(oracles, x, state)
        b, b2 = batch_of(noise, "sample"), batch_of(noise, "outer")
        rho, rho_v = self.steps(oracles, t)
        y1 = y - rho * oracles.grad_y_g(x, y, b)
        v1 = v - rho_v * (oracles.hvp(x, y1, v, b) + oracles.grad_y_f(x, y1, b))
        w = oracles.grad_x_f(x, y1, b2) + oracles.jvp(x, y1, v1, b2)
        if state is not None and "d" in state:
            xp = state["x_prev"].detach()
            w_old = oracles.grad_x_f(xp, y, b2) + oracles.jvp(xp, y, v, b2)
            w = storm(w, state["d"].detach(), w_old, momentum_weight(self.p, t))
        st = {"y": y1.detach(), "v": v1.detach(), "t": t + 1, "x_prev": x.detach(), "d": w.detach()}
        return harness.Estimate(w, state=st)


@harness.register_estimator("sustain")
class SUSTAIN(BSA):
    """SUSTAIN: STORM momentum on grad_y g (y) and on the BSA hypergradient (x) (Khanduri et al. 2021, Alg. 1)."""

    params = {"inner_lr": INNER_LR, "solver_steps": BSA.params["solver_steps"], "solver_lr": SOLVER_LR,
              "batch_size": BATCH_SIZE, "decay": DECAY, "momentum": MOMENTUM, "momentum_decay": MOMENTUM_DECAY}
    steps = SingleLoopBase.steps

    def draw(self, problem, generator, n):
        out = draw_batches(problem, generator, n, {"sample": 0, "outer": 0, "jac": 0, "hess": self.hess_batches()},
                           self.p["batch_size"])
        out["trunc/p"] = torch.randint(0, int(self.p["solver_steps"]), (n,), generator=generator)
        return out

    def hypergradient(self, oracles, x, y, noise):
        """Ghadimi & Wang's bar-grad f(x, y; xi) with the draw's truncation and batches; (estimate, hvp count)."""
        gx, v0 = oracles.grad_f(x, y, batch_of(noise, "outer"))
        v, calls = self.solve(oracles, x, y, v0, noise)
        return gx - oracles.jvp(x, y, v, batch_of(noise, "jac")), calls["hvp"]

    def estimate(self, oracles, x, noise, state=None):
        y, _, t = single_loop_state(oracles, x, {**state, "v": state["y"]} if state is not None else None)
        b = batch_of(noise, "sample")
        hg = oracles.grad_y_g(x, y, b)
        hf, n_hv = self.hypergradient(oracles, x, y, noise)
        if state is not None and "h_f" in state:
            xp, yp = state["x_prev"].detach(), state["y_prev"].detach()
            eta = momentum_weight(self.p, t)
            hg = storm(hg, state["h_g"].detach(), oracles.grad_y_g(xp, yp, b), eta)
            hf_old, n_old = self.hypergradient(oracles, xp, yp, noise)
            hf = storm(hf, state["h_f"].detach(), hf_old, eta)
            n_hv = n_hv + n_old
        rho, _ = self.steps(oracles, t)
        st = {"y": (y - rho * hg).detach(), "t": t + 1, "x_prev": x.detach(), "y_prev": y.detach(),
              "h_f": hf.detach(), "h_g": hg.detach()}
        return harness.Estimate(hf, calls={"hvp": n_hv}, state=st)
