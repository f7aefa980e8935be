"""Ji & Liang's convex-strongly-convex hard instance, as the paper builds it (``jl-csc``).

Source: K. Ji and Y. Liang, "Lower Bounds and Accelerated Algorithms for Bilevel Optimization", JMLR 24(22) (2023),
Theorem 6, Corollary 7, eq. (19)-(22) and App. C eq. (49)-(52), read from the JMLR PDF (JmlrOrg/v24, 21-0949);
summary in ``../shared/papers/lower_bounds.md`` (beside the repository; docs/lower_bounds.md in the project) Sec. 1.4.

Instance, eq. (20)-(21), x, y in R^d:

    f(x, y) = (L_x/8) x'Z^2 x + (L_y/2)||y||^2
    g(x, y) = 1/2 y'(beta Z^2 + mu_y I)y - (Lt_xy/2) x'Z y + b'y,     beta = (Lt_y - mu_y)/4,

with the *other* Z: Z_{i,d-i} = 1 (i <= d-1), Z_{i,d+1-i} = -1 (all i) (1-based), so that Z^2 is tridiagonal with
diagonal (2, ..., 2, 1) and off-diagonals -1, and Z^-1 = minus the lower-right triangle of ones (p. 30). Applied
structurally (:func:`blobench.problems.jl_scsc.z_apply` with kind "csc").

Phi(x) = (L_x/8) x'Z^2 x + (L_y/2)|A^-1((Lt_xy/2) Z x - b)|^2 is convex (A = beta Z^2 + mu_y I); setting grad Phi = 0
and multiplying by A^2 gives (re-derived in tests/test_jl_instances.py::test_csc_eq50_typo)

    (L_x beta^2/4) Z^6 x + (L_x beta mu_y/2) Z^4 x + (L_x mu_y^2/4 + L_y Lt_xy^2/4) Z^2 x = b~ := (L_y Lt_xy/2) Z b,

so the Z^4 coefficient is L_x beta mu_y/2 (eq. (50) prints L_x beta^2 beta mu_y/2: a typo). b is chosen by eq. (51):
b~ = (B/sqrt d)(5/4 L_x beta^2 + L_x beta mu_y + Lt_xy^2 L_y/4 + L_x mu_y^2/4, -L_x beta^2 - L_x beta mu_y/2, L_x beta^2/4,
0, ...), which makes x* = (B/sqrt d) 1 (||x*|| = B): Z^2 1 = e_1, Z^4 1 = (2, -1, 0, ...), Z^6 1 = (5, -4, 1, 0, ...).
b = Z^-1 (2 b~/(L_y Lt_xy)) is supported on the last three coordinates.

Lower bounds (gradient-norm criterion; Theorem 6 covers only it):
- gradient floor, eq. (22)/(58): if x_{d-2} = x_{d-1} = x_d = 0 then ||grad Phi(x)||^2 >= B^2 (Lt_xy^2 L_y/4 +
  L_x mu_y^2/4)^2 / (8 mu_y^4 d^4 + 16 d beta^4 + 32 d beta^3 mu_y + 32 d beta^2 mu_y^2) (:meth:`gradient_floor`);
- r* of eq. (19): r^4 + r (2 beta^4/mu_y^4 + 4 beta^3/mu_y^3 + 4 beta^2/mu_y^2) = B^2 (Lt_xy^2 L_y + L_x mu_y^2)^2 /
  (128 mu_y^4 eps^2) (:func:`r_star`), with d = floor(r*) the theorem's instance and C_grad = Omega(r*); Corollary 7's
  order B^{1/2}(Lt_xy^2 L_y + L_x mu_y^2)^{1/2}/(mu_y eps^{1/2}) (:func:`corollary7_order`);
- the exact per-instance bound: gmin(k) = min over span(e_1..e_k) of ||grad Phi||^2 (a least-squares problem, exact
  through one QR factorisation of Phi's Hessian), and :meth:`calls_lower_bound` = min{k : gmin(k) <= eps} - 3 (x's
  support is at most calls + 3 here, because Z b reaches three coordinates; M = K + QT - Q + 3 in the proof).
  ``eps`` is on ||grad Phi||^2 (``lower_bound_criterion = "grad_norm_sq"``).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import brentq

from blobench import harness
from blobench.core.errors import ParameterError
from blobench.core.params import Param
from blobench.problems.jl_scsc import ZChainBilevel


def r_star(eps: float, B: float, mu_y: float, beta: float, L_x: float, L_y: float, Lt_xy: float) -> float:
    """The positive root r* of eq. (19) (the left side is increasing in r > 0). ``eps`` bounds ||grad Phi|| (not
    its square)."""
    c = 2 * beta**4 / mu_y**4 + 4 * beta**3 / mu_y**3 + 4 * beta**2 / mu_y**2
    rhs = B * B * (Lt_xy**2 * L_y + L_x * mu_y**2) ** 2 / (128 * mu_y**4 * eps * eps)
    hi = max(rhs ** 0.25, rhs / max(c, 1e-300)) + 1.0
    return float(brentq(lambda r: r**4 + c * r - rhs, 0.0, hi, xtol=1e-12, rtol=1e-14))


def corollary7_order(eps: float, B: float, mu_y: float, L_x: float, L_y: float, Lt_xy: float) -> float:
    """Corollary 7: B^{1/2}(Lt_xy^2 L_y + L_x mu_y^2)^{1/2} / (mu_y eps^{1/2}) (eps bounds ||grad Phi||)."""
    return math.sqrt(B * (Lt_xy**2 * L_y + L_x * mu_y**2)) / (mu_y * math.sqrt(eps))


@harness.register_problem("jl-csc")
class JiLiangCSC(ZChainBilevel):
    """Ji & Liang 2023's C-SC hard instance, eq. (20)-(21) with b from eq. (51) (Theorem 6): x* = (B/sqrt d) 1;
    exact truth, the gradient floor of eq. (22), r* of eq. (19) and the exact per-instance span bound."""

    kind = "csc"
    lower_bound_criterion = "grad_norm_sq"
    support_offset = 3
    params = {
        "dim": Param("int", default=60, low=4, doc="d = dim_x = dim_y (the theorem takes d = floor(r*))"),
        "mu_y": Param("float", default=0.1, low=0.0, low_open=True, doc="mu_y: strong convexity of g in y"),
        "L_x": Param("float", default=1.0, low=0.0, low_open=True, doc="L_x"),
        "L_y": Param("float", default=1.0, low=0.0, low_open=True, doc="L_y: f's curvature in y"),
        "Lt_y": Param("float", default=1.0, low=0.0, low_open=True, doc="L~_y: smoothness of g in y"),
        "Lt_xy": Param("float", default=1.0, low=0.0, low_open=True, doc="L~_xy: g's cross coupling"),
        "B": Param("float", default=1.0, low=0.0, low_open=True, doc="||x*|| = B"),
    }

    def setup(self) -> None:
        p = self.p
        if p["mu_y"] >= p["Lt_y"]:
            raise ParameterError(f"problem {self.name!r}: need mu_y < Lt_y (got mu_y={p['mu_y']}, Lt_y={p['Lt_y']})")
        d = p["dim"]
        self.dim_x = self.dim_y = d
        self.mu_y, self.L_y, self.Lt_xy, self.L_x, self.B = (float(p[k]) for k in ("mu_y", "L_y", "Lt_xy", "L_x", "B"))
        self.beta = (p["Lt_y"] - p["mu_y"]) / 4.0
        be, my, Lx, Ly, Lt = self.beta, self.mu_y, self.L_x, self.L_y, self.Lt_xy
        s = self.B / math.sqrt(d)
        bt = np.zeros(d)
        bt[0] = s * (1.25 * Lx * be * be + Lx * be * my + Lt * Lt * Ly / 4 + Lx * my * my / 4)
        bt[1] = s * (-Lx * be * be - Lx * be * my / 2)
        bt[2] = s * Lx * be * be / 4
        self.btilde = bt
        u = 2.0 * bt / (Ly * Lt)  # Z b = u; Z^-1 = minus the lower-right triangle of ones
        self.bvec_np = -np.cumsum(u[::-1])
        self.cvec_np = np.zeros(d)
        self.bvec = torch.tensor(self.bvec_np)
        self.cvec = torch.zeros(d, dtype=torch.float64)
        self._finish()
        mu_phi, L_phi, mu_A, L_A = self._ev
        self._gmin: np.ndarray | None = None
        self._constants = {
            "mu": my, "L": float(p["Lt_y"]), "kappa": p["Lt_y"] / my, "kappa_y": p["Lt_y"] / my, "mu_y": my,
            "L_phi": L_phi, "mu_phi": mu_phi, "L_inner_exact": L_A, "mu_inner_exact": mu_A, "beta": be, "B": self.B,
            "L_x": Lx, "L_y": Ly, "Lt_xy": Lt,
        }

    @property
    def constants(self) -> dict[str, float]:
        return dict(self._constants)

    def _fxx_np(self, X):
        return 0.25 * self.L_x * self._zn(self._zn(X))

    def _fxy_np(self, Y):
        return np.zeros_like(Y)

    def _h_scalar(self, s):
        return 0.25 * self.L_x * s + 0.25 * self.L_y * self.Lt_xy**2 * s / (self.beta * s + self.mu_y) ** 2

    def outer(self, x, y, batch=None):
        return 0.125 * self.L_x * (x @ self._z(self._z(x))) + 0.5 * self.L_y * (y @ y)

    # -- Theorem 6 -------------------------------------------------------------------------------------------------
    def gradient_floor(self) -> float:
        """Eq. (22)/(58): the lower bound on ||grad Phi(x)||^2 when x's last three coordinates are zero."""
        be, my, d = self.beta, self.mu_y, self.dim_x
        num = self.B**2 * (self.Lt_xy**2 * self.L_y / 4 + self.L_x * my * my / 4) ** 2
        return num / (8 * my**4 * d**4 + 16 * d * be**4 + 32 * d * be**3 * my + 32 * d * be * be * my * my)

    def r_star(self, eps: float) -> float:
        """r* of eq. (19) for ||grad Phi|| <= eps."""
        return r_star(eps, self.B, self.mu_y, self.beta, self.L_x, self.L_y, self.Lt_xy)

    def grad_gap(self, k: int) -> float:
        """gmin(k) = min over x in span(e_1..e_k) of ||grad Phi(x)||^2 = ||H x + g0||^2, exact: with H = Q R,
        gmin(k) = sum_{j > k} (Q' g0)_j^2 (the part of g0 outside the span of H's first k columns)."""
        if self._gmin is None:
            Q, _ = np.linalg.qr(self._H)
            q = Q.T @ self._g0
            self._gmin = np.concatenate([np.cumsum((q * q)[::-1])[::-1], [0.0]])
        k = int(min(max(k, 0), self.dim_x))
        return float(self._gmin[k])

    def support_needed(self, eps: float) -> int:
        """min{k : gmin(k) <= eps} (eps on ||grad Phi||^2); dim_x + 1 if none."""
        self.grad_gap(0)
        ok = np.nonzero(self._gmin <= eps)[0]
        return int(ok[0]) if ok.size else self.dim_x + 1

    def calls_lower_bound(self, eps: float) -> int:
        """support_needed(eps) - 3: no zero-respecting run reaches ||grad Phi||^2 <= eps in fewer counted calls."""
        return max(self.support_needed(eps) - self.support_offset, 0)
