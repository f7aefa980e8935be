"""Chain hard instance for convex-strongly-convex bilevel optimization.

Source: K. Ji and Y. Liang, "Lower Bounds and Accelerated Algorithms for Bilevel Optimization",
JMLR 24 (2023), arXiv 2102.03926: the convex-strongly-convex lower bound Omega(1/sqrt(eps) min{1/mu_y,
1/eps^{3/2}}) (as stated in the abstract). As for ``lb-scsc`` (blobench/problems/lb_scsc.py,
whose docstring states the construction and the span argument in full), the paper's exact instance
could not be read here; this is the same chain instance with mu_x = 0:

    g(x, y) = 1/2 y^T A y - y^T B x,   f(x, y) = -b x_1 + 1/2 ||y||^2,   A = mu_y I + (L - mu_y)/4 B B^T,

so Phi(x) = -b x_1 + 1/2 ||A^{-1} B x||^2 is convex (Hessian B^T A^{-2} B; positive definite only
because n is finite: its smallest eigenvalue is O(mu_y^2 / n^2)), y* is mu_y-strongly convex's unique
solution, and x* = B^{-1} A^2 B^{-T} b e_1 has entries decaying *linearly* along the chain (x*_i ~
mu_y^2 b (n - i + 1) away from the ends), as in Nesterov's convex chain (Nesterov 2004, Thm. 2.1.7).
The exact span lower bound gap(k) = min over span(e_1..e_k) of Phi - Phi* and the smallest k with
gap(k) <= eps are inherited (:meth:`~blobench.problems.lb_scsc.ChainBilevel.calls_lower_bound`); they bind
for eps well above gap(n/2) (the theorem chooses n growing as eps shrinks).
"""
from __future__ import annotations

from blobench import harness
from blobench.core.params import Param
from blobench.problems.lb_scsc import ChainBilevel


@harness.register_problem("lb-csc")
class LowerBoundCSC(ChainBilevel):
    """Chain hard instance, convex-strongly-convex (Ji & Liang 2023, CSC lower-bound class): lb-scsc with mu_x = 0;
    exact span lower bound on oracle calls to reach Phi - Phi* <= eps."""

    params = {
        "dim": Param("int", default=100, low=2, doc="n = dim_x = dim_y: chain length"),
        "mu_y": Param("float", default=0.25, low=0.0, low_open=True, doc="strong convexity of g in y"),
        "L": Param("float", default=1.0, low=0.0, low_open=True, doc="smoothness of g in y (>= mu_y)"),
        "b": Param("float", default=1.0, low=0.0, low_open=True, doc="linear coefficient b of f's -b x_1 term"),
    }

    def setup(self) -> None:
        p = self.p
        self._build(p["dim"], 0.0, p["mu_y"], p["L"], p["b"])
