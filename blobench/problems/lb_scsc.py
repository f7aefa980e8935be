"""Chain (zero-respecting) hard instance for strongly-convex-strongly-convex bilevel optimization.

Source: K. Ji and Y. Liang, "Lower Bounds and Accelerated Algorithms for Bilevel Optimization",
JMLR 24 (2023), arXiv 2102.03926: the strongly-convex-strongly-convex lower bound Omega(1/(sqrt(mu_x) mu_y))
oracle calls (as stated in the abstract; only the abstract was readable here, so theorem numbers are not cited). The paper's exact hard instance
could not be read from this environment (only its abstract was reachable); the instance below is
this project's own construction, built on the same mechanism the theorem's proof relies on
(Nesterov's zero-chain argument, Nesterov 2004, Sec. 2.1.4, lifted to the bilevel oracles), and it
is a member of the theorem's class:

    B   = upper-bidiagonal n x n, B_ii = 1, B_{i,i+1} = -1          (||B|| <= 2: L_xy = 2)
    A   = mu_y I + (L - mu_y)/4 * B B^T                               (tridiagonal, spectrum in [mu_y, L])
    g(x, y) = 1/2 y^T A y - y^T B x                                   (mu_y-strongly convex, L-smooth in y)
    f(x, y) = mu_x/2 ||x||^2 - b x_1 + 1/2 ||y||^2                    (b = ``b``; f is 1-smooth in y)

so y*(x) = A^{-1} B x and Phi(x) = mu_x/2 ||x||^2 - b x_1 + 1/2 ||A^{-1} B x||^2 is mu_x-strongly
convex, grad Phi(x) = mu_x x - b e_1 + B^T A^{-1} y*(x), Hessian H = mu_x I + B^T A^{-2} B, and the
unique minimiser x* = H^{-1} b e_1.

Zero-respecting span (the chain structure the claim checks): with x, y, v supported on the first
s coordinates, grad_x f = mu_x x - b e_1 and grad_y f = y keep support within s (or 1); grad_y g =
A y - B x, the HV A v and the JV -B^T v reach at most coordinate s + 1. So every oracle call
extends the largest nonzero index of any vector a zero-respecting method holds by at most one,
and after k calls from x_0 = y_0 = 0 every iterate lies in span(e_1..e_k). Hence

    Phi(x_k) - Phi* >= gap(k) := min_{x in span(e_1..e_k)} Phi(x) - Phi*,

computed here exactly (a restricted linear solve) by :meth:`span_gap`; :meth:`calls_lower_bound`
is the smallest k with gap(k) <= eps, a per-instance lower bound on the oracle calls of every
zero-respecting method. Why it scales as the theorem: H^{-1} = (mu_y + cT)^2 (mu_x (mu_y + cT)^2 +
T)^{-1} with T = B^T B tridiagonal (c = (L - mu_y)/4); the pole of t -> 1/(mu_x (mu_y + ct)^2 + t)
sits at t ~ -mu_x mu_y^2, so the entries of x* decay like exp(-sqrt(mu_x) mu_y i) along the chain
and gap(k) <= eps needs k ~ log(1/eps) / (2 sqrt(mu_x) mu_y): the theorem's 1/(sqrt(mu_x) mu_y).
The low-frequency modes that carry x* are where A ~ mu_y, so the inner problem really has
condition number kappa_y = L/mu_y where it matters (GD needs ~kappa_y inner steps, AGD ~sqrt).
"""
from __future__ import annotations

import numpy as np
import torch

from blobench import harness
from blobench.core.errors import ParameterError
from blobench.core.params import Param


def chain_matrices(n: int, mu_y: float, L: float) -> tuple[np.ndarray, np.ndarray]:
    """(A, B) of the chain instance: B upper bidiagonal (1, -1), A = mu_y I + (L - mu_y)/4 B B^T."""
    B = np.eye(n) - np.eye(n, k=1)
    A = mu_y * np.eye(n) + (L - mu_y) / 4.0 * (B @ B.T)
    return 0.5 * (A + A.T), B


def last_nonzero(v: torch.Tensor, tol: float = 0.0) -> int:
    """1-based index of the last coordinate with |v_i| > tol (0 for the zero vector): the chain depth of v."""
    nz = torch.nonzero(v.detach().abs() > tol)
    return int(nz[-1, 0]) + 1 if nz.numel() else 0


class ChainBilevel(harness.Problem):
    """Base of the chain hard instances (lb-scsc, lb-csc); subclasses fix mu_x's parameter."""

    #: Phi's curvature in y*: "bilevel" H = mu_x I + M^T M (f = ... + 1/2 ||y||^2), "minimax" H = mu_x I + B^T M
    #: (the twin's f = ... + y'Bx - 1/2 y'Ay, or 1/2 y'Ay), with M = A^-1 B = dy*/dx
    phi_curvature: str = "bilevel"

    def _build(self, n: int, mu_x: float, mu_y: float, L: float, b: float) -> None:
        if L < mu_y:
            raise ParameterError(f"problem {self.name!r}: L must be >= mu_y (got L={L}, mu_y={mu_y})")
        A, B = chain_matrices(n, mu_y, L)
        self.dim_x = self.dim_y = n
        self.mu_x, self.mu_y, self.L, self.bval = float(mu_x), float(mu_y), float(L), float(b)
        t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
        self.A, self.B = t(A), t(B)
        self.Ainv = t(np.linalg.inv(A))
        M = np.linalg.solve(A, B)  # dy*/dx = A^-1 B
        H = mu_x * np.eye(n) + (M.T @ M if self.phi_curvature == "bilevel" else B.T @ M)
        self.H = t(0.5 * (H + H.T))
        self.bvec = torch.zeros(n, dtype=torch.float64)
        self.bvec[0] = b
        self.xstar = torch.linalg.solve(self.H, self.bvec)
        ev = np.linalg.eigvalsh(0.5 * (H + H.T))
        evA = np.linalg.eigvalsh(A)
        self._phi_star = float(-0.5 * self.bvec @ self.xstar)
        self._gaps: np.ndarray | None = None
        self._constants = {
            "mu": mu_y, "L": L, "kappa": L / mu_y, "mu_x": mu_x, "mu_y": mu_y, "kappa_y": L / mu_y,
            "L_inner_exact": float(evA.max()), "mu_inner_exact": float(evA.min()),
            "L_phi": float(ev.max()), "mu_phi": float(ev.min()),
            "kappa_x": float(ev.max() / ev.min()), "cross_norm": float(np.linalg.norm(B, 2)), "L_f": 1.0,
        }

    # -- structure ------------------------------------------------------------------------
    @property
    def constants(self) -> dict[str, float]:
        return dict(self._constants)

    def inner(self, x, y, batch=None):
        return 0.5 * y @ (self.A @ y) - y @ (self.B @ x)

    def outer(self, x, y, batch=None):
        return 0.5 * self.mu_x * (x @ x) - self.bvec @ x + 0.5 * (y @ y)

    # -- ground truth (float64, closed form) ---------------------------------------------
    def inner_solution(self, x):
        x = torch.as_tensor(x, dtype=torch.float64)
        return self.Ainv @ (self.B @ x)

    def value(self, x) -> float:
        x = torch.as_tensor(x, dtype=torch.float64)
        return float(self.outer(x, self.inner_solution(x)))

    def hypergradient(self, x):
        x = torch.as_tensor(x, dtype=torch.float64)
        return self.mu_x * x - self.bvec + self.B.T @ (self.Ainv @ self.inner_solution(x))

    def hessian_phi(self) -> torch.Tensor:
        return self.H.clone()

    def stationary_points(self):
        return [self.xstar.clone()]

    def optimum(self) -> float:
        """Phi* = Phi(x*) = -1/2 b^T H^{-1} b."""
        return self._phi_star

    # -- zero-respecting span structure ----------------------------------------------------
    @staticmethod
    def chain_depth(v: torch.Tensor, tol: float = 0.0) -> int:
        """Largest nonzero index (1-based) of v: how far along the chain v has reached."""
        return last_nonzero(v, tol)

    def span_gap(self, k: int) -> float:
        """gap(k) = min over x in span(e_1..e_k) of Phi(x) - Phi* (exact; gap(0) = Phi(0) - Phi* = -Phi*)."""
        if self._gaps is None:
            from scipy.linalg import solve_triangular

            # restricted minimum over span(e_1..e_k): -1/2 b^2 (H_kk^{-1})_{11} (b e_1 is the only linear term). With
            # H = L L^T (Cholesky), H_kk = L_kk L_kk^T and L_kk^{-1} is the leading block of L^{-1}, so
            # (H_kk^{-1})_{11} = sum_{j <= k} w_j^2 with w = L^{-1} e_1: every k at the cost of one factorisation.
            Lc = np.linalg.cholesky(self.H.numpy())
            e1 = np.zeros(self.dim_x)
            e1[0] = 1.0
            w = solve_triangular(Lc, e1, lower=True)
            gaps = np.empty(self.dim_x + 1)
            gaps[0] = -self._phi_star
            gaps[1:] = -0.5 * self.bval**2 * np.cumsum(w * w) - self._phi_star
            self._gaps = np.maximum(gaps, 0.0)
        k = int(min(max(k, 0), self.dim_x))
        return float(self._gaps[k])

    def calls_lower_bound(self, eps: float) -> int:
        """Smallest k with gap(k) <= eps: no zero-respecting method reaches Phi - Phi* <= eps in fewer
        oracle calls (every call extends the chain by at most one coordinate); dim_x + 1 if even the full
        space is not enough (eps below the float64 floor)."""
        self.span_gap(0)
        ok = np.nonzero(self._gaps <= eps)[0]
        return int(ok[0]) if ok.size else self.dim_x + 1


@harness.register_problem("lb-scsc")
class LowerBoundSCSC(ChainBilevel):
    """Chain hard instance, strongly-convex-strongly-convex (Ji & Liang 2023, SCSC lower-bound class): g = 1/2 y'Ay - y'Bx,
    f = mu_x/2||x||^2 - b x_1 + 1/2||y||^2, A, B tridiagonal/bidiagonal; exact span lower bound on oracle calls."""

    params = {
        "dim": Param("int", default=100, low=2, doc="n = dim_x = dim_y: chain length"),
        "mu_x": Param("float", default=0.1, low=0.0, low_open=True, doc="strong convexity of f in x (Phi is mu_x-strongly convex)"),
        "mu_y": Param("float", default=0.25, low=0.0, low_open=True, doc="strong convexity of g in y"),
        "L": Param("float", default=1.0, low=0.0, low_open=True, doc="smoothness of g in y (>= mu_y)"),
        "b": Param("float", default=1.0, low=0.0, low_open=True, doc="linear coefficient b of f's -b x_1 term"),
    }

    def setup(self) -> None:
        p = self.p
        self._build(p["dim"], p["mu_x"], p["mu_y"], p["L"], p["b"])


@harness.register_problem("lb-scsc-minimax")
class LowerBoundSCSCMinimaxTwin(ChainBilevel):
    """The minimax twin of lb-scsc, for "bilevel is harder than minimax" (Ji & Liang 2023, abstract): the same A, B,
    mu_x, b and inner problem g = 1/2 y'Ay - y'Bx, with

        form="saddle":  f(x, y) = mu_x/2 ||x||^2 - b x_1 + y'Bx - 1/2 y'Ay   (= -g + x-terms: min_x max_y f, y* = argmax f)
        form="bilevel": f(x, y) = mu_x/2 ||x||^2 - b x_1 + 1/2 y'Ay          (a bilevel problem with f_yy = A)

    Both have Phi(x) = mu_x/2 ||x||^2 - b x_1 + 1/2 x'B'A^{-1}Bx, Hessian mu_x I + B'A^{-1}B and grad Phi(x) = mu_x x - b e_1
    + B'A^{-1}Bx; for "saddle" grad_y f(x, y*) = 0, so the hypergradient is grad_x f(x, y*) (Danskin) and the minimax
    optimal complexity 1/sqrt(mu_x mu_y) applies, against lb-scsc's bilevel 1/(sqrt(mu_x) mu_y): A^{-1} in Phi's
    Hessian instead of lb-scsc's A^{-2}. The oracles keep the chain structure (grad_y f = Bx - Ay or Ay reaches one
    coordinate further), so :meth:`calls_lower_bound` is again the exact zero-respecting span bound, of this Phi."""

    params = {**LowerBoundSCSC.params,
              "form": Param("str", default="saddle", choices=("saddle", "bilevel"),
                            doc="f's y-part: y'Bx - 1/2 y'Ay (the saddle twin) or 1/2 y'Ay (bilevel, same Phi)")}
    phi_curvature = "minimax"

    def setup(self) -> None:
        p = self.p
        self._build(p["dim"], p["mu_x"], p["mu_y"], p["L"], p["b"])
        self._constants["L_f"] = float(self._constants["L_inner_exact"])

    def outer(self, x, y, batch=None):
        xpart = 0.5 * self.mu_x * (x @ x) - self.bvec @ x
        if self.p["form"] == "saddle":
            return xpart + y @ (self.B @ x) - 0.5 * y @ (self.A @ y)
        return xpart + 0.5 * y @ (self.A @ y)

    def hypergradient(self, x):
        x = torch.as_tensor(x, dtype=torch.float64)
        return self.mu_x * x - self.bvec + self.B.T @ self.inner_solution(x)
