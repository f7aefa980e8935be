"""Bilevel problem whose outer objective is nonconvex, bounded below and flat at infinity, so that gradient
descent stays in the sublinear O(1/K) regime of Ji, Yang & Liang 2021's nonconvex convergence theorems.

    g(x, y) = 1/2 y^T A y - y^T x,                     A = diag(lambda), lambda evenly spaced on [mu, kappa*mu]
    f(x, y) = sum_i h(y_i),  h(t) = (1 + t^2)^(-a/2)    (a = ``tail``)

so y*(x) = A^{-1} x and Phi(x) = sum_i h(x_i / lambda_i). Phi is smooth (|h''| <= a, hence
L_Phi = a / mu^2), nonconvex (x = 0 is its maximum), bounded below by its infimum Phi_inf = 0, which is
approached at infinity and never attained. Gradient descent from x0 = A 1 (y*(x0) = 1) runs off to
infinity with x_k ~ k^(1/(a+2)), so ||grad Phi(x_k)||^2 ~ k^(-(2a+2)/(a+2)): an exponent just below -1
(-1.2 at a = 0.5), the order of the O(1/K) bound on min_{k<K} ||grad Phi(x_k)||^2 of Ji et al. 2021
(Theorems 1-2), where a strongly convex outer problem would converge linearly.

Ground truth in float64 and closed form: grad Phi(x) = A^{-1} h'(A^{-1} x), grad_x f = 0 (so the first-order
estimator that drops the implicit term returns exactly zero), grad2_xy g = -I.
"""
from __future__ import annotations

import torch

from blobench import harness
from blobench.core.params import Param


@harness.register_problem("flat-tail")
class FlatTail(harness.Problem):
    """Nonconvex outer objective flat at infinity (h = (1 + t^2)^(-a/2) of y*), quadratic inner: GD stays in the O(1/K) regime."""

    params = {
        "dim": Param("int", default=2, low=1, doc="dim_x = dim_y"),
        "kappa": Param("float", default=2.0, low=1.0, doc="condition number L/mu of grad2_yy g = A"),
        "mu": Param("float", default=1.0, low=0.0, low_open=True, doc="strong convexity of g in y"),
        "tail": Param("float", default=0.5, low=0.0, low_open=True, doc="a: h(t) = (1 + t^2)^(-a/2)"),
    }

    def setup(self) -> None:
        d, mu, k = self.p["dim"], self.p["mu"], self.p["kappa"]
        self.dim_x = self.dim_y = d
        lam = torch.linspace(mu, mu * k, d, dtype=torch.float64) if d > 1 else torch.tensor([mu], dtype=torch.float64)
        self.lam = lam
        a = self.p["tail"]
        self._constants = {"mu": float(lam.min()), "L": float(lam.max()), "kappa": float(lam.max() / lam.min()),
                           "L_f": a, "L_phi": a / float(lam.min()) ** 2, "phi_inf": 0.0,
                           "gd_grad_sq_exponent": -(2 * a + 2) / (a + 2)}

    @property
    def constants(self) -> dict[str, float]:
        """mu, L, kappa of A; L_phi = a/mu^2 (|h''| <= a); phi_inf = 0 (the infimum, at infinity);
        gd_grad_sq_exponent = -(2a+2)/(a+2), the asymptotic exponent of ||grad Phi(x_k)||^2 under GD."""
        return dict(self._constants)

    def _h(self, t: torch.Tensor) -> torch.Tensor:
        return (1.0 + t * t) ** (-0.5 * self.p["tail"])

    def _dh(self, t: torch.Tensor) -> torch.Tensor:
        a = self.p["tail"]
        return -a * t * (1.0 + t * t) ** (-0.5 * a - 1.0)

    def inner(self, x, y, batch=None):
        return 0.5 * torch.sum(self.lam * y * y) - y @ x

    def outer(self, x, y, batch=None):
        return torch.sum(self._h(y))

    def inner_solution(self, x):
        return torch.as_tensor(x, dtype=torch.float64) / self.lam

    def value(self, x) -> float:
        return float(torch.sum(self._h(self.inner_solution(x))))

    def hypergradient(self, x):
        return self._dh(self.inner_solution(x)) / self.lam

    def stationary_points(self):
        return []  # the only stationary point, x = 0, is the maximum; the infimum 0 is approached at infinity

    def x0(self):
        return self.lam.clone()
