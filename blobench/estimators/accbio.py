"""AccBiO: accelerated bilevel optimizer (Ji & Liang, "Lower Bounds and Accelerated Algorithms for Bilevel
Optimization", JMLR 24 (2023), arXiv 2102.03926, the algorithm "AccBiO";
only the abstract was readable here, so the box below is its stated structure, not a transcription).

The algorithm box, as composed here from shared pieces:
- outer loop: Nesterov's accelerated gradient on x with the hypergradient estimate in place of grad Phi
  (``blobench.measure.outer.outer_loop(..., momentum="nesterov")``; the estimator declares ``outer_momentum =
  "nesterov"`` so the ``complexity`` metric, and ``momentum="auto"``, pick it up);
- inner loop: D steps of Nesterov's AGD on g(x, .) warm-started at the previous outer step's y
  (:func:`blobench.core.numerics.inner_agd`, momentum (sqrt(kappa_y) - 1)/(sqrt(kappa_y) + 1));
- hypergradient by AID: v_N ~ [grad2_yy g]^{-1} grad_y f by N steps of AGD on the quadratic
  1/2 v^T grad2_yy g v - v^T grad_y f (one HV per step; warm-started at the previous v), then
  grad_x f - grad2_xy g v_N.
This is the paper's structure (accelerated outer, accelerated inner, AID with warm starts). Its step
sizes and loop lengths here are the textbook ones (1/L and the strongly convex AGD momentum from the
problem's mu); the paper's theorem-specific constants (its choices of D and N as functions of
kappa_y and eps) are set through inner_steps and solver_steps.

Oracle accounting (tested): D grad_y g, N HV, 1 JV, 1 grad_x f, 1 grad_y f per estimate.
"""
from __future__ import annotations

from blobench import harness
from blobench.core.theory import Rate, CostFormula, agd_rate, agd_solver_rate, AGD_SOURCE
from blobench.estimators.aid import AIDBase, aid_cost, inner_momentum
from blobench.core.estimator_base import SOLVER_LR, SOLVER_STEPS
from blobench.core.numerics import agd
from blobench.core.params import Param


@harness.register_estimator("accbio")
class AccBiO(AIDBase):
    """AccBiO (Ji & Liang 2023): AGD inner solver and AGD linear solver, both warm-started; use with the
    outer loop's momentum="nesterov" (the complexity metric does so by default)."""

    theory = (
        Rate("inner_steps", agd_rate, AGD_SOURCE, short="sqrt(1-sqrt(alpha*mu)), AGD"),
        Rate("solver_steps", agd_solver_rate, AGD_SOURCE, short="sqrt(1-sqrt(eta*mu)), AGD"),
        CostFormula(aid_cost, "Ji & Liang 2023 (AccBiO): D grad_y g, N HV, 1 JV, grad f (module docstring)"),
    )

    outer_momentum = "nesterov"
    params = {**AIDBase.params,
              "warm_start": Param("bool", default=True, doc="carry y and v across outer iterations (AccBiO: on)"),
              "inner_solver": Param("str", default="agd", choices=("gd", "agd"), doc="inner solver (AccBiO: agd)"),
              "solver_steps": SOLVER_STEPS, "solver_lr": SOLVER_LR}

    def solver_lr(self, oracles) -> float:
        eta = self.p.get("solver_lr")
        return 1.0 / float(oracles.constants["L"]) if eta is None else float(eta)

    def solve(self, oracles, x, y, b, hess_batch, v0=None, matvec=None):
        eta = self.solver_lr(oracles)
        start = b * 0.0 if v0 is None else v0
        hv = matvec or oracles.hvp_operator(x, y, hess_batch)  # linearised once, each product counted
        v, _ = agd(lambda k, v_: hv(v_) - b, start, self.p["solver_steps"], eta,
                   inner_momentum(oracles, eta))
        return v
