"""Exact hypergradient: the problem's own float64 ground truth (closed form or high-precision solve).

Problem-based BLO: grad Phi = grad_x f - grad2_xy g [grad2_yy g]^-1 grad_y f at (x, y*(x))
(the implicit function theorem; e.g. Ji, Yang, Liang 2021, eq. (2)). Algorithm-based BLO:
the fully unrolled derivative of Phi_r. Costs one ``exact`` call and nothing else; it is
the reference every other estimator is compared with.
"""
from __future__ import annotations

from blobench import harness
from blobench.core.theory import Unbiased, CostFormula
@harness.register_estimator("exact")
class Exact(harness.Estimator):
    """Exact hypergradient from the problem's ground truth (zero bias, zero variance)."""

    theory = (
        Unbiased("the problem's own ground truth: grad Phi by the implicit function theorem (Ji, Yang & Liang 2021, "
                 "eq. (2)) or the fully unrolled derivative"),
        CostFormula(lambda p: {"exact": 1}, "one call of the problem's ground truth"),
    )

    params = {}

    def estimate(self, oracles, x, noise, state=None):
        return harness.Estimate(oracles.exact(x))
