"""Single-loop bilevel methods: one (y, v) step per outer iteration, carried in ``Estimate.state``.

SOBA (Dagreou, Ablin, Vaiter, Moreau, "A framework for bilevel optimization that enables
stochastic and global variance reduction algorithms", NeurIPS 2022, arXiv 2201.13409,
Algorithm 1 with the directions of eqs. (4)-(6)). At (x_t, y_t, v_t), with one sample
(minibatch) of g and f per step,

    D_y = grad_y g(x, y)                                   (eq. 4)
    D_v = grad2_yy g(x, y) v + grad_y f(x, y)              (eq. 5; v tracks -[grad2_yy g]^-1 grad_y f)
    D_x = grad_x f(x, y) + grad2_xy g(x, y) v              (eq. 6)
    y <- y - rho_t D_y,   v <- v - rho'_t D_v,   x <- x - gamma_t D_x.

The estimator returns D_x (the shared outer loop takes the x step with its own gamma_t) and the
updated (y, v) as its state; rho_t = inner_lr (t + 1)^(-decay), rho'_t = solver_lr (t + 1)^(-decay)
(Theorem 1 of the paper uses rho_t ~ t^(-2/5), gamma_t ~ t^(-3/5)). With ``state=None`` (a first
step, or ``harness.estimate``) y = y_0 and v = 0.

Oracle accounting (tested): per call 1 grad_x f, 1 grad_y f, 1 grad_y g, 1 HV, 1 JV.
"""
from __future__ import annotations

from typing import ClassVar

import torch

from blobench import harness
from blobench.core.theory import Rate, BiasFloor, CostFormula, gd_rate, neumann_rate, GD_SOURCE, NEUMANN_SOURCE
from blobench.core.estimator_base import BATCH_SIZE, INNER_LR, SOLVER_LR, batch_of, draw_batches
from blobench.core.params import Param

DECAY = Param("float", default=0.0, low=0.0, doc="rho_t = rho_0 (t + 1)^-decay for the y and v steps (0: constant)")


def single_loop_state(oracles, x: torch.Tensor, state: dict | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(y, v, t) from a single-loop method's state; y_0, v = 0, t = 0 without one."""
    if state is None:
        y = oracles.init_inner(x)
        return y, torch.zeros_like(y), torch.zeros((), dtype=x.dtype)
    return state["y"].detach(), state["v"].detach(), state["t"]


class SingleLoopBase(harness.Estimator):
    """Shared parameters, draws and steps of single-loop methods (one sample per outer iteration)."""

    params = {"inner_lr": INNER_LR, "solver_lr": SOLVER_LR, "batch_size": BATCH_SIZE, "decay": DECAY}

    def draw(self, problem, generator, n):
        return draw_batches(problem, generator, n, {"sample": 0}, self.p["batch_size"])

    def steps(self, oracles, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(rho_t, rho'_t): inner_lr and solver_lr (default 1/L) times (t + 1)^-decay."""
        rho, rho_v = self.p.get("inner_lr"), self.p.get("solver_lr")
        if not (rho and rho_v):  # the problem's constants are read (a dict copy) only for a default step
            L = float(oracles.constants["L"])
            rho, rho_v = rho or 1.0 / L, rho_v or 1.0 / L
        f = (t + 1.0) ** (-float(self.p["decay"]))
        return rho * f, rho_v * f


@harness.register_estimator("soba")
class SOBA(SingleLoopBase):
    """SOBA: one joint step on y (inner SGD), v (linear system SGD) and x per iteration (Dagreou et al. 2022, Alg. 1, eqs. 4-6)."""

    theory = (
        CostFormula(lambda p: {"grad_x_f": 1, "grad_y_f": 1, "grad_y_g": 1, "hvp": 1, "jvp": 1},
                    "Dagreou et al. 2022, Alg. 1, eqs. (4)-(6): one of each per step"),
    )

    def estimate(self, oracles, x, noise, state=None):
        y, v, t = single_loop_state(oracles, x, state)
        b = batch_of(noise, "sample")
        gx, gy = oracles.grad_f(x, y, b)
        # grad_y g, HV and JV at one point: one linearisation (its value is grad_y g) and one joint backward pass,
        # the same numbers and counts as grad_y_g + hvp_jvp (tested), one backward pass fewer
        lin = oracles.linearize(x, y, b, value=True, joint=True)
        dy = lin.value
        hv, jv = lin.hv_jv(v)
        rho, rho_v = self.steps(oracles, t)
        st = {"y": (y - rho * dy).detach(), "v": (v - rho_v * (hv + gy)).detach(), "t": t + 1}
        return harness.Estimate(gx + jv, state=st)


# -- two-timescale ------------------------------------------------------------------------------------------------
from blobench.estimators.stocbio import BSA  # noqa: E402
from blobench.core.estimator_base import step_batches  # noqa: E402
from blobench.core.numerics import inner_gd  # noqa: E402


@harness.register_estimator("ttsa")
class TTSA(BSA):
    """TTSA: inner_steps (default 1) warm-started SGD steps on y with beta_t = inner_lr (t + 1)^-decay, then BSA's
    random-truncation Neumann hypergradient at the new y (Hong, Wai, Wang, Yang 2020, arXiv 2007.05170, Algorithm 1).

    The paper's two timescales are beta_t ~ t^-2/5 on y (``decay=0.4``) and alpha_t ~ t^-3/5 on x (the outer loop's
    ``schedule="power"``, ``power=0.6``). The hypergradient is Ghadimi & Wang's estimator (eq. (9) of the paper;
    ``bsa`` here): p ~ U{0..Q-1}, v = Q eta prod_{j<=p} (I - eta H_j) grad_y f. (y, t) live in ``Estimate.state``.
    Oracle accounting (tested): inner_steps grad_y g, 1 grad_x f, 1 grad_y f, 1 JV, p HV (reported per draw).
    """

    theory = (
        BiasFloor("inner_steps", "Hong, Wai, Wang & Yang 2023 (TTSA), Th. 1: constant steps leave an O(step) floor",
                  reason="one warm-started SGD step per call: from state=None the inner error does not vanish"),
    )

    params = {**BSA.params, "inner_steps": Param("int", default=1, low=1, doc="SGD steps on y per outer iteration"),
              "decay": DECAY}
    #: y warm-started from the previous iteration's (False only in the negative control of ``ttsa-stationarity-rate``:
    #: y restarts from init_inner(x), so the fast timescale no longer tracks y*(x_t))
    track_y: ClassVar[bool] = True

    def estimate(self, oracles, x, noise, state=None):
        t = state["t"] if state is not None and "t" in state else torch.zeros((), dtype=x.dtype)
        warm = self.track_y and state is not None and "y" in state
        y0 = state["y"].detach() if warm else oracles.init_inner(x)
        lr = self.inner_lr(oracles) * (t + 1.0) ** (-float(self.p["decay"]))
        y, _ = inner_gd(oracles, x, y0, self.inner_steps(oracles), lr, step_batches(oracles, noise))
        gx, v0 = oracles.grad_f(x, y, batch_of(noise, "outer"))
        v, calls = self.solve(oracles, x, y, v0, noise)
        g = gx - oracles.jvp(x, y, v, batch_of(noise, "jac"))
        return harness.Estimate(g, calls=calls, state={"y": y.detach(), "t": t + 1})


# -- amortized implicit differentiation -------------------------------------------------------------------------
from blobench.estimators.aid import AIDFP, aid_cost  # noqa: E402
from blobench.core.numerics import fixed_point  # noqa: E402


@harness.register_estimator("amigo")
class AmIGO(AIDFP):
    """AmIGO: warm-started SGD on y (inner_steps) and on the linear system v <- v - eta (H_j v - grad_y f) (solver_steps,
    one fresh Hessian minibatch H_j per step), then grad_x f - grad2_xy g v (Arbel & Mairal 2022, arXiv 2111.14580,
    Algorithm 1 with Algorithm 2 as the linear-system solver).

    Both y and v start from the previous outer iteration's (``warm_start``, default true: the amortisation), carried in
    ``Estimate.state``. On a deterministic problem it is ``aid-fp`` with warm starts. Oracle accounting (tested):
    inner_steps grad_y g, solver_steps HV, 1 JV, 1 grad_x f, 1 grad_y f.
    """

    theory = (
        Rate("inner_steps", gd_rate, GD_SOURCE, short="1-alpha*mu, Ji+ 2021 Prop. 2"),
        Rate("solver_steps", neumann_rate, NEUMANN_SOURCE, short="1-eta*mu, Neumann"),
        CostFormula(aid_cost, "Arbel & Mairal 2022, Alg. 1 (AmIGO): warm-started SGD on y and on the linear system"),
    )

    params = {**AIDFP.params, "warm_start": Param("bool", default=True, doc="carry y and v across outer iterations (amortisation)")}

    def draw(self, problem, generator, n):
        return draw_batches(problem, generator, n, {"inner": self.inner_steps(problem), "outer": 0, "hess": self.p["solver_steps"],
                                                    "jac": 0}, self.p["batch_size"])

    def estimate(self, oracles, x, noise, state=None):
        from blobench.core.numerics import per_step, shared

        warm = bool(self.p["warm_start"]) and state is not None
        y0 = state["y"].detach() if warm else oracles.init_inner(x)
        v0 = state["v"].detach() if warm else None
        y, _ = inner_gd(oracles, x, y0, self.inner_steps(oracles), self.inner_lr(oracles), step_batches(oracles, noise))
        gx, gy = oracles.grad_f(x, y, batch_of(noise, "outer"))
        hb = batch_of(noise, "hess")
        hb = shared(hb) if hb is None or oracles.target.kind == "unrolled" else per_step(hb)
        k = iter(range(self.p["solver_steps"]))  # fixed_point calls the matvec once per step, in order
        v = fixed_point(lambda u: oracles.hvp(x, y, u, hb(next(k))), gy, self.p["solver_steps"], self.solver_lr(oracles), v0)
        st = {"y": y.detach(), "v": v.detach()} if self.p["warm_start"] else None
        return harness.Estimate(gx - oracles.jvp(x, y, v, batch_of(noise, "jac")), state=st)
