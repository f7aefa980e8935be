"""AID: approximate implicit differentiation, composed as inner solver + linear solver + assembly.

    y_D  = D steps of gradient descent on g(x, .) from y_0
    v_N ~ [grad2_yy g(x, y_D)]^{-1} grad_y f(x, y_D)     (linear solver, N iterations)
    estimate = grad_x f(x, y_D) - grad2_xy g(x, y_D) v_N
(Ji, Yang, Liang 2021, Algorithm 1 "AID-BiO", eq. (3); Pedregosa 2016; Grazzi et al. 2020.)

Linear solvers (shared code in :mod:`blobench.core.numerics`):
- ``aid-cg``: N iterations of conjugate gradient (Ji et al. 2021, eq. (3), "AID-CG");
- ``aid-neumann``: truncated Neumann series v_Q = eta sum_{i=0}^{Q} (I - eta H)^i grad_y f
  (Ji et al. 2021, "AID-NS"; Lorraine et al. 2020), Q = solver_steps, eta = solver_lr;
- ``aid-fp``: fixed-point iteration v <- v - eta (H v - grad_y f) (Grazzi et al. 2020, "FP").

``warm_start=true`` is AID-BiO's Algorithm 1: y_0 of outer step k is y_D of step k-1 and
the solver starts from v_N of step k-1 (CG and FP; the Neumann series has no start point),
both carried in ``Estimate.state``.

``inner_solver="agd"`` replaces the D steps of GD by D steps of Nesterov's accelerated gradient
(:func:`blobench.core.numerics.inner_agd`; Ji & Liang 2023, AccBiO's inner loop), same D grad_y g calls.

Oracle accounting (tested): D grad_y g, N HV (N + 1 for warm-started CG: one initial residual),
1 JV, 1 grad_x f, 1 grad_y f.
"""
from __future__ import annotations

from blobench import harness
from blobench.core.theory import Rate, CostFormula, MemoryO1, Converges, gd_rate, neumann_rate, cg_rate, GD_SOURCE, CG_SOURCE, NEUMANN_SOURCE
from blobench.core.estimator_base import (BATCH_SIZE, INNER_LR, INNER_SOLVER, INNER_STEPS, SOLVER_LR, SOLVER_STEPS, batch_of,
                                    draw_batches, step_batches)
from blobench.core.numerics import cg, fixed_point, inner_solve, neumann, strongly_convex_momentum
from blobench.core.params import Param

WARM_START = Param("bool", default=False, doc="carry y and v across outer iterations (Ji et al. 2021, Alg. 1)")


def inner_momentum(oracles, lr: float) -> float | None:
    """AGD momentum (sqrt(kappa)-1)/(sqrt(kappa)+1) with kappa = 1/(lr mu) from the problem's mu; None (the convex
    schedule k/(k+3)) when the problem declares no mu. Unused by inner_solver="gd"."""
    mu = oracles.constants.get("mu")
    return None if mu is None else strongly_convex_momentum(lr, float(mu))


def aid_cost(p) -> dict[str, int]:
    """Oracle calls of one AID estimate from state=None: D grad_y g, N HV, 1 JV, 1 grad_x f, 1 grad_y f
    (Ji, Yang & Liang 2021, Alg. 1; the module docstring's accounting)."""
    return {"grad_y_g": int(p["inner_steps"]), "hvp": int(p["solver_steps"]), "jvp": 1, "grad_x_f": 1, "grad_y_f": 1}


class AIDBase(harness.Estimator):
    """Shared assembly of the AID family; subclasses implement :meth:`solve`."""

    params = {"inner_steps": INNER_STEPS, "inner_lr": INNER_LR, "solver_steps": SOLVER_STEPS, "batch_size": BATCH_SIZE,
              "warm_start": WARM_START, "inner_solver": INNER_SOLVER}

    def draw(self, problem, generator, n):
        return draw_batches(problem, generator, n,
                            {"inner": self.inner_steps(problem), "outer": 0, "hess": 0}, self.p["batch_size"])

    def solver_lr(self, oracles) -> float:
        eta = self.p.get("solver_lr")
        return 1.0 / float(oracles.constants["L"]) if eta is None else float(eta)

    def solve(self, oracles, x, y, b, hess_batch, v0=None, matvec=None):
        """v ~ [grad2_yy g(x, y)]^-1 b; ``matvec`` (default: a fresh :meth:`Oracles.hvp_operator`) is the
        counted HV operator at (x, y), linearised once for all the solver's products."""
        raise NotImplementedError

    def estimate(self, oracles, x, noise, state=None):
        D, lr = self.inner_steps(oracles), self.inner_lr(oracles)
        warm = bool(self.p.get("warm_start")) and state is not None
        y0 = state["y"].detach() if warm and "y" in state else oracles.init_inner(x)
        v0 = state["v"].detach() if warm and "v" in state else None
        yD, _ = inner_solve(oracles, x, y0, D, lr, self.p.get("inner_solver", "gd"), inner_momentum(oracles, lr),
                            step_batches(oracles, noise))
        gx, gy = oracles.grad_f(x, yD, batch_of(noise, "outer"))
        hb = batch_of(noise, "hess")
        lin = oracles.linearize(x, yD, hb)  # one graph at (x, y_D) for the N HV and the JV
        v = self.solve(oracles, x, yD, gy, hb, v0, matvec=lin.hv)
        st = {"y": yD.detach(), "v": v.detach()} if self.p.get("warm_start") else None
        return harness.Estimate(gx - lin.jv(v), state=st)


@harness.register_estimator("aid-cg")
class AIDCG(AIDBase):
    """AID-CG: inner_steps of GD, then solver_steps of conjugate gradient, then one cross product (Ji et al. 2021, Alg. 1)."""

    theory = (
        Rate("inner_steps", gd_rate, GD_SOURCE, short="1-alpha*mu, Ji+ 2021 Prop. 2"),
        Rate("solver_steps", cg_rate, CG_SOURCE, short="CG bound, Nocedal-Wright eq. 5.36"),
        CostFormula(aid_cost, "Ji, Yang & Liang 2021, Alg. 1 (AID-BiO): D grad_y g, N HV, 1 JV, grad f"),
        MemoryO1("solver_steps", "CG keeps three vectors (Nocedal & Wright 2006, Alg. 5.2)"),
        Converges(200, "Ji, Yang & Liang 2021, Th. 1 (AID-BiO)", params={"inner_steps": 60, "solver_steps": 20}),
    )

    def solve(self, oracles, x, y, b, hess_batch, v0=None, matvec=None):
        return cg(matvec or oracles.hvp_operator(x, y, hess_batch), b, self.p["solver_steps"], v0)


@harness.register_estimator("aid-neumann")
class AIDNeumann(AIDBase):
    """AID-NS: truncated Neumann series eta sum_{i<=Q} (I - eta H)^i grad_y f, Q = solver_steps (Ji et al. 2021, eq. (3))."""

    theory = (
        Rate("inner_steps", gd_rate, GD_SOURCE, short="1-alpha*mu, Ji+ 2021 Prop. 2"),
        Rate("solver_steps", neumann_rate, NEUMANN_SOURCE, short="1-eta*mu, Neumann"),
        CostFormula(aid_cost, "Ji, Yang & Liang 2021, eq. (3) (AID-NS): N HV for the series eta sum_{i<=N}"),
        MemoryO1("solver_steps", "the Neumann recursion keeps two vectors"),
        Converges(200, "Ji, Yang & Liang 2021, Th. 1 (AID-BiO)", params={"inner_steps": 60, "solver_steps": 100}),
    )

    params = {**AIDBase.params, "solver_lr": SOLVER_LR}

    def solve(self, oracles, x, y, b, hess_batch, v0=None, matvec=None):
        # the series has no start point: v0 (warm start) is ignored, only y is warm-started
        return neumann(matvec or oracles.hvp_operator(x, y, hess_batch), b, self.p["solver_steps"],
                       self.solver_lr(oracles))


@harness.register_estimator("aid-fp")
class AIDFP(AIDBase):
    """AID-FP: fixed-point iteration v <- v - eta (H v - grad_y f), solver_steps times (Grazzi et al. 2020)."""

    theory = (
        Rate("inner_steps", gd_rate, GD_SOURCE, short="1-alpha*mu, Ji+ 2021 Prop. 2"),
        Rate("solver_steps", neumann_rate, NEUMANN_SOURCE, short="1-eta*mu, Neumann"),
        CostFormula(aid_cost, "Grazzi et al. 2020, FP: one HV per iteration"),
        MemoryO1("solver_steps", "the fixed-point iteration keeps one vector"),
        Converges(200, "Grazzi et al. 2020, Th. 2; Ji, Yang & Liang 2021, Th. 1", params={"inner_steps": 60, "solver_steps": 100}),
    )

    params = {**AIDBase.params, "solver_lr": SOLVER_LR}

    def solve(self, oracles, x, y, b, hess_batch, v0=None, matvec=None):
        return fixed_point(matvec or oracles.hvp_operator(x, y, hess_batch), b, self.p["solver_steps"],
                           self.solver_lr(oracles), v0)
