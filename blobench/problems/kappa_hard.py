"""Quadratic bilevel problem whose OUTER conditioning worsens with the inner condition number kappa.

    g(x, y) = 1/2 y^T A y - y^T x,   A = diag(lambda), lambda evenly spaced on [mu, L]  (kappa = L/mu)
    f(x, y) = 1/2 ||y - c||^2 + rho/2 ||x||^2,   c = (1, ..., 1)

so y*(x) = A^{-1} x and Phi(x) = 1/2 ||A^{-1} x - c||^2 + rho/2 ||x||^2 has Hessian A^{-2} + rho I:
with L = 1, mu = 1/kappa its smoothness is L_Phi = kappa^2 + rho while its softest direction keeps
curvature 1/L^2 + rho. Outer gradient descent with the step beta = 1/L_Phi that Ji, Yang & Liang 2021
(Theorem 1) prescribe therefore needs Theta(kappa^2 log(1/eps)) iterations to reach ||grad Phi||^2 <= eps
from x0 = 0 (the soft direction's gradient, 1 at x0, contracts by 1 - (1 + rho)/(kappa^2 + rho) per step),
which is what the kappa-scaling claim measures. (The kappa^3 of the theorem's L_Phi comes from the
Hessian-Lipschitz terms of a non-quadratic g, absent here: on this family the bound is loose by kappa.)

Ground truth (float64, closed form): grad Phi(x) = A^{-1}(A^{-1} x - c) + rho x, the unique stationary
point x* = (A^{-2} + rho I)^{-1} A^{-1} c.
"""
from __future__ import annotations

import torch

from blobench import harness
from blobench.core.params import Param


@harness.register_problem("kappa-hard")
class KappaHard(harness.Problem):
    """Quadratic bilevel problem with L_Phi = kappa^2 + rho (outer conditioning ~ kappa^2): iterations to eps grow like kappa^2."""

    params = {
        "dim": Param("int", default=2, low=2, doc="dim_x = dim_y"),
        "kappa": Param("float", default=4.0, low=1.0, doc="condition number L/mu of grad2_yy g"),
        "L": Param("float", default=1.0, low=0.0, low_open=True, doc="largest eigenvalue of grad2_yy g (mu = L/kappa)"),
        "rho": Param("float", default=0.0, low=0.0, doc="outer ridge weight"),
    }

    def setup(self) -> None:
        d, L, k = self.p["dim"], self.p["L"], self.p["kappa"]
        self.dim_x = self.dim_y = d
        self.lam = torch.linspace(L / k, L, d, dtype=torch.float64)
        self.c = torch.ones(d, dtype=torch.float64)
        h = 1.0 / self.lam**2 + self.p["rho"]
        self._constants = {"mu": L / k, "L": L, "kappa": k, "rho": self.p["rho"], "L_f": 1.0,
                           "L_phi": float(h.max()), "mu_phi": float(h.min()), "cross_norm": 1.0}

    @property
    def constants(self) -> dict[str, float]:
        """mu, L, kappa of grad2_yy g; L_phi = 1/mu^2 + rho and mu_phi = 1/L^2 + rho (Phi's Hessian spectrum ends)."""
        return dict(self._constants)

    def inner(self, x, y, batch=None):
        return 0.5 * torch.sum(self.lam * y * y) - y @ x

    def outer(self, x, y, batch=None):
        return 0.5 * torch.sum((y - self.c) ** 2) + 0.5 * self.p["rho"] * torch.sum(x * x)

    def inner_solution(self, x):
        return torch.as_tensor(x, dtype=torch.float64) / self.lam

    def value(self, x) -> float:
        x = torch.as_tensor(x, dtype=torch.float64)
        return float(self.outer(x, self.inner_solution(x)))

    def hypergradient(self, x):
        x = torch.as_tensor(x, dtype=torch.float64)
        return (self.inner_solution(x) - self.c) / self.lam + self.p["rho"] * x

    def stationary_points(self):
        return [(self.c / self.lam) / (1.0 / self.lam**2 + self.p["rho"])]

    def x0(self):
        return torch.zeros(self.dim_x, dtype=torch.float64)
