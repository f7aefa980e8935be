"""Ji & Liang's strongly-convex-strongly-convex hard instance, as the paper builds it (``jl-scsc``).

Source: K. Ji and Y. Liang, "Lower Bounds and Accelerated Algorithms for Bilevel Optimization", JMLR 24(22):1-56
(2023) (arXiv 2102.03926), read from the JMLR PDF (JmlrOrg/v24, 21-0949); summary with page references in
``../shared/papers/lower_bounds.md`` (beside the repository; docs/lower_bounds.md in the project) Sec. 1.3. Equation numbers below are the JMLR ones.

Instance, eq. (15), x, y in R^d:

    f(x, y) = 1/2 x'(alpha Z^2 + mu_x I)x - (alpha beta / Lt_xy) x'Z^3 y + (Lb_xy/2) x'Z y + (L_y/2)||y||^2 + (Lb_xy/Lt_xy) b'y
    g(x, y) = 1/2 y'(beta Z^2 + mu_y I)y - (Lt_xy/2) x'Z y + b'y,     alpha = (L_x - mu_x)/4,  beta = (Lt_y - mu_y)/4,

with Z of eq. (16): symmetric anti-bidiagonal, Z_{i,d+1-i} = 1 (all i), Z_{i,d+2-i} = -1 (i >= 2) (1-based), so that Z^2
is tridiagonal with diagonal (1, 2, ..., 2) and off-diagonals -1 and Z^-1 is the upper-left triangle of ones (eq. 29).
Z is applied structurally (flip and shift, :func:`z_apply`), never as a dense matrix: an oracle's output then has
exact zeros beyond the chain's reach, which the zero-chain test (Lemma 5) checks coordinate by coordinate.

Closed forms (App. B; re-derived in tests/test_jl_instances.py): y*(x) = A^{-1}((Lt_xy/2) Z x - b) with A = beta Z^2 +
mu_y I; grad Phi(x) = grad_x f + (Lt_xy/2) Z A^{-1} grad_y f at (x, y*(x)); the Hessian of Phi is
A^{-2}[D Z^4 + D lambda Z^2 + mu_x mu_y^2 I] with D, lambda, tau of eq. (33) (the Z^3 term of f cancels the Z^6 term:
that is what it is for). x* solves H x* = -grad Phi(0) (a dense Cholesky factorisation, computed once).

FINDING (re-derived here, tests/test_jl_instances.py::test_eq33_right_hand_side): eq. (33) as transcribed,
Z^4 x* + lambda Z^2 x* + tau x* = b~ with b~ = L_y Lt_xy Z b / (2D), omits the contribution of the Z^3 coupling to
grad Phi(0). The exact right-hand side is b~ - (alpha beta/(Lt_xy D)) (beta Z^4 + mu_y Z^2)(Z b): supported on the
first four coordinates instead of two. Lemma 15's x^ = (r, r^2, ..., r^d) is then not x* to within (7+lambda) r^d/tau;
x* still decays geometrically along the chain with the same r (the correction has short support), and the exact
per-instance bound below does not use x^ at all. The measured distance ||x* - x^|| / ||x^|| is :meth:`lemma15_error`.

b (Lemma 15): r in (0, 1) is the root near 1 of the palindromic quartic 1 - (4+lambda) r + (6+2 lambda+tau) r^2 -
(4+lambda) r^3 + r^4 (with s = r + 1/r it is s^2 - (4+lambda) s + 4 + 2 lambda + tau = 0; the smaller s gives the root
nearest 1), b~_1 = (2+lambda+tau) r - (3+lambda) r^2 + r^3, b~_2 = r - 1, b~_t = 0 (t >= 3), and b solves
Z b = 2D b~/(L_y Lt_xy) (so Z b is supported on {1, 2}).

Per-instance lower bounds (Steps 3-4 of the proof of Theorem 4):
- every x that a method of Definition 2 holds after K iterations with Q x-updates and T Hessian-vector products per
  hypergradient has support in {1, ..., M}, M = K + QT + Q + 2 (H_x subset of span{Z^{2j}(Zb)}). With our oracle
  counting (every grad_y g, HV, JV, grad_x f, grad_y f is one call) a run's x has support at most (calls so far) + 2,
  which tests/test_jl_instances.py measures for AID, ITD and AccBiO; so no such run reaches Phi - Phi* <= eps in
  fewer than :meth:`calls_lower_bound` = min{k : gap(k) <= eps} - 2 calls, gap(k) = min over span(e_1..e_k) of
  Phi - Phi* computed exactly (:meth:`span_gap`);
- Theorem 4's own bound with the proof's constants: ||x^K - x*|| >= ||x*|| r^M / (3 sqrt 2) (Step 3) and strong
  convexity / smoothness (Step 4) give Phi(x^K) - Phi* >= (Phi(0) - Phi*) r^{2M} / (18 kappa_x)
  (:meth:`theorem4_gap`), valid once d satisfies eq. (40) (:meth:`dim_required`); it is below gap(M) (tested).

``z3=False`` drops the Z^3 term of f (the remark on p. 13, "without it the bound only reaches
Omega(L_y Lt_xy/(mu_x mu_y))"): same b, D, lambda, tau, r; the truth stays exact (Phi's Hessian is then a cubic in Z^2
over A^2) and the claims measure what the ablation changes.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.linalg import cho_factor, cho_solve, eigvalsh_tridiagonal, solve_triangular, solveh_banded

from blobench import harness
from blobench.core.errors import ParameterError
from blobench.core.params import Param


# ----------------------------------------------------------------------------- the coupling matrix, structurally

def z_apply(v: torch.Tensor, kind: str = "scsc") -> torch.Tensor:
    """Z v along the last axis, without forming Z. kind "scsc" (eq. 16): (Zv)_i = v_{d+1-i} - v_{d+2-i} (1-based, the
    second term for i >= 2); kind "csc" (App. C, eq. 21's Z): (Zv)_i = v_{d-i} - v_{d+1-i} (the first term for
    i <= d-1)."""
    w = torch.flip(v, dims=[-1])
    if kind == "scsc":
        return w - F.pad(w[..., :-1], (1, 0))
    return F.pad(w[..., 1:], (0, 1)) - w


def z_apply_np(v: np.ndarray, kind: str = "scsc") -> np.ndarray:
    """:func:`z_apply` on numpy arrays along axis 0 (columns are vectors)."""
    w = v[::-1].copy()
    if kind == "scsc":
        w[1:] -= v[::-1][:-1]
        return w
    out = -w
    out[:-1] += v[::-1][1:]
    return out


def z_matrix(d: int, kind: str = "scsc") -> np.ndarray:
    """Z as a dense matrix (tests and small checks only)."""
    return z_apply_np(np.eye(d), kind)


def z2_bands(d: int, kind: str = "scsc") -> tuple[np.ndarray, np.ndarray]:
    """(diagonal, off-diagonal) of the tridiagonal Z^2: diagonal (1, 2, ..., 2) for "scsc", (2, ..., 2, 1) for "csc";
    off-diagonals -1."""
    diag = np.full(d, 2.0)
    diag[0 if kind == "scsc" else -1] = 1.0
    return diag, -np.ones(d - 1)


def lemma15_root(lam: float, tau: float) -> float:
    """The root r in (0, 1) nearest 1 of 1 - (4+lam) r + (6+2 lam+tau) r^2 - (4+lam) r^3 + r^4 (Lemma 15): with
    s = r + 1/r, s = 2 + delta, delta = (lam - sqrt(lam^2 - 4 tau))/2 = 2 tau/(lam + sqrt(lam^2 - 4 tau)), and
    r = (s - sqrt(s^2 - 4))/2 = 1 + delta/2 - sqrt(delta + delta^2/4)."""
    disc = lam * lam - 4.0 * tau
    if disc < 0:
        raise ParameterError(f"Lemma 15's quartic has no real root in (0, 1) (lambda^2 < 4 tau: {lam:g}, {tau:g})")
    delta = 2.0 * tau / (lam + math.sqrt(disc))
    return 1.0 + delta / 2.0 - math.sqrt(delta + delta * delta / 4.0)


# ----------------------------------------------------------------------------- shared exact machinery

class ZChainBilevel(harness.Problem):
    """Quadratic bilevel problem of Ji & Liang's form, g = 1/2 y'(beta Z^2 + mu_y I)y - (Lt_xy/2) x'Zy + b'y and
    f = 1/2 x'F_xx x + x'F_xy y + L_y/2 ||y||^2 + c'y with F_xx, F_xy polynomials in Z (subclasses define them through
    :meth:`_fxx`, :meth:`_fxy` and set ``kind``, ``bvec``, ``cvec``); exact truth by banded solves (y*) and one dense
    Cholesky factorisation of Phi's Hessian (x*, the span gaps)."""

    kind = "scsc"
    #: the criterion :meth:`calls_lower_bound` is about (the complexity metric writes it beside that criterion only)
    lower_bound_criterion = "value_gap"
    #: a zero-respecting run's x has support <= (oracle calls so far) + support_offset (Z b's support length)
    support_offset = 2

    # -- subclass hooks (numpy, columns are vectors; torch twins in outer()) ---------------------------------------
    def _fxx_np(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _fxy_np(self, Y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _z(self, v: torch.Tensor) -> torch.Tensor:
        return z_apply(v, self.kind)

    def _zn(self, v: np.ndarray) -> np.ndarray:
        return z_apply_np(v, self.kind)

    def _finish(self) -> None:
        """Build A's band, the Hessian of Phi (dense, by columns), x*, Phi* and the constants."""
        d = self.dim_x
        dg, off = z2_bands(d, self.kind)
        self._ab = np.zeros((2, d))
        self._ab[0, 1:] = self.beta * off
        self._ab[1] = self.beta * dg + self.mu_y
        self._ab_t = torch.tensor(self._ab)
        g0 = self._grad_np(np.zeros(d))
        H = self._grad_np(np.eye(d)) - g0[:, None]
        self._H = 0.5 * (H + H.T)
        self._chol = cho_factor(self._H, lower=True)
        self._xstar = -cho_solve(self._chol, g0)
        self._g0 = g0
        self._phi0 = self._value_np(np.zeros(d))
        self._phistar = self._value_np(self._xstar)
        self._gaps: np.ndarray | None = None
        evA = eigvalsh_tridiagonal(self._ab[1], self._ab[0, 1:])
        ev = self._h_scalar((evA - self.mu_y) / self.beta)  # H = h(Z^2): its spectrum from Z^2's, in O(d^2)
        self._ev = (float(ev.min()), float(ev.max()), float(evA.min()), float(evA.max()))

    def _h_scalar(self, s: np.ndarray) -> np.ndarray:
        """Phi's Hessian as a function of Z^2 (every block is a polynomial in Z): H = h(Z^2) (tested against the dense
        Hessian's eigenvalues)."""
        raise NotImplementedError

    # -- exact numpy evaluations -----------------------------------------------------------------------------------
    def _solve_A(self, R: np.ndarray) -> np.ndarray:
        return solveh_banded(self._ab, R)

    def _ystar_np(self, X: np.ndarray) -> np.ndarray:
        bb = self.bvec_np if X.ndim == 1 else self.bvec_np[:, None]
        return self._solve_A(0.5 * self.Lt_xy * self._zn(X) - bb)

    def _grad_np(self, X: np.ndarray) -> np.ndarray:
        """grad Phi(X) (columns): grad_x f + (Lt_xy/2) Z A^{-1} grad_y f at (X, y*(X))."""
        Y = self._ystar_np(X)
        cc = self.cvec_np if X.ndim == 1 else self.cvec_np[:, None]
        gx = self._fxx_np(X) + self._fxy_np(Y)
        gy = self._fxy_np(X) + self.L_y * Y + cc
        return gx + 0.5 * self.Lt_xy * self._zn(self._solve_A(gy))

    def _value_np(self, x: np.ndarray) -> float:
        y = self._ystar_np(x)
        return float(0.5 * x @ self._fxx_np(x) + x @ self._fxy_np(y) + 0.5 * self.L_y * y @ y + self.cvec_np @ y)

    # -- Problem interface -----------------------------------------------------------------------------------------
    def inner(self, x, y, batch=None):
        Zy = self._z(y)
        Ay = self.beta * self._z(Zy) + self.mu_y * y
        return 0.5 * y @ Ay - 0.5 * self.Lt_xy * (x @ Zy) + self.bvec @ y

    def inner_solution(self, x):
        x = torch.as_tensor(x, dtype=torch.float64)
        return torch.from_numpy(self._ystar_np(x.detach().numpy()))

    def value(self, x) -> float:
        x = torch.as_tensor(x, dtype=torch.float64)
        return self._value_np(x.detach().numpy())

    def hypergradient(self, x):
        x = torch.as_tensor(x, dtype=torch.float64)
        return torch.from_numpy(self._grad_np(x.detach().numpy()))

    def hessian_phi(self) -> torch.Tensor:
        return torch.from_numpy(self._H.copy())

    def stationary_points(self):
        return [torch.from_numpy(self._xstar.copy())]

    def optimum(self) -> float:
        return self._phistar

    # -- the chain -------------------------------------------------------------------------------------------------
    @staticmethod
    def chain_depth(v: torch.Tensor, tol: float = 0.0) -> int:
        """Largest nonzero index (1-based) of v: how far along the chain an x-vector has reached."""
        nz = torch.nonzero(v.detach().abs() > tol)
        return int(nz[-1, 0]) + 1 if nz.numel() else 0

    def span_gap(self, k: int) -> float:
        """gap(k) = min over x in span(e_1..e_k) of Phi(x) - Phi*, exact: with H = L L' and w = L^{-1} grad Phi(0),
        the restricted minimum of Phi - Phi(0) is -1/2 sum_{j <= k} w_j^2, so gap(k) = 1/2 sum_{j > k} w_j^2 (a tail
        sum: no cancellation)."""
        if self._gaps is None:
            w = solve_triangular(self._chol[0], self._g0, lower=True)
            tail = np.concatenate([np.cumsum((w * w)[::-1])[::-1], [0.0]])
            self._gaps = 0.5 * tail
        k = int(min(max(k, 0), self.dim_x))
        return float(self._gaps[k])

    def support_needed(self, eps: float) -> int:
        """min{k : gap(k) <= eps}: the support an x needs to be eps-optimal (dim_x + 1 if none)."""
        self.span_gap(0)
        ok = np.nonzero(self._gaps <= eps)[0]
        return int(ok[0]) if ok.size else self.dim_x + 1

    def calls_lower_bound(self, eps: float) -> int:
        """Oracle calls below which no zero-respecting run reaches the target: support_needed(eps) - 2 (a run's x has
        support <= calls + 2; M = K + QT + Q + 2 in Theorem 4's proof)."""
        return max(self.support_needed(eps) - self.support_offset, 0)


# ----------------------------------------------------------------------------- the SC-SC instance

@harness.register_problem("jl-scsc")
class JiLiangSCSC(ZChainBilevel):
    """Ji & Liang 2023's SC-SC hard instance, eq. (15)-(16) with b from Lemma 15 (Theorem 4); exact truth, the
    exact per-instance span bound and Theorem 4's bound with the proof's constants."""

    params = {
        "dim": Param("int", default=400, low=4, doc="d = dim_x = dim_y (eq. 40 asks d > max{2M, M+1+log_r(tau/(4(7+lambda)))})"),
        "mu_x": Param("float", default=0.05, low=0.0, low_open=True, doc="mu_x: strong convexity of Phi (at the chain's low end)"),
        "mu_y": Param("float", default=0.1, low=0.0, low_open=True, doc="mu_y: strong convexity of g in y"),
        "L_x": Param("float", default=1.0, low=0.0, low_open=True, doc="L_x (alpha = (L_x - mu_x)/4)"),
        "L_y": Param("float", default=1.0, low=0.0, low_open=True, doc="L_y: f's curvature in y"),
        "Lt_y": Param("float", default=1.0, low=0.0, low_open=True, doc="L~_y: smoothness of g in y (beta = (L~_y - mu_y)/4)"),
        "Lt_xy": Param("float", default=1.0, low=0.0, low_open=True, doc="L~_xy: g's cross coupling"),
        "Lb_xy": Param("float", default=0.0, low=0.0, doc="L-bar_xy >= 0: f's free cross coupling"),
        "z3": Param("bool", default=True, doc="keep f's Z^3 term (False: the ablation of the remark on p. 13)"),
    }

    def setup(self) -> None:
        p = self.p
        if p["mu_x"] > p["L_x"] or p["mu_y"] >= p["Lt_y"]:
            raise ParameterError(f"problem {self.name!r}: need mu_x <= L_x and mu_y < Lt_y "
                                 f"(got mu_x={p['mu_x']}, L_x={p['L_x']}, mu_y={p['mu_y']}, Lt_y={p['Lt_y']})")
        d = p["dim"]
        self.dim_x = self.dim_y = d
        self.mu_x, self.mu_y, self.L_y, self.Lt_xy, self.Lb = (float(p[k]) for k in ("mu_x", "mu_y", "L_y", "Lt_xy", "Lb_xy"))
        self.alpha = (p["L_x"] - p["mu_x"]) / 4.0
        self.beta = (p["Lt_y"] - p["mu_y"]) / 4.0
        a, be, mx, my, Lb, Lt, Ly = self.alpha, self.beta, self.mu_x, self.mu_y, self.Lb, self.Lt_xy, self.L_y
        self.D = be * be * mx + a * be * my + be * Lb * Lt / 2.0
        self.lam = (2 * be * mx * my + a * my * my + my * Lb * Lt / 2.0 + Ly * Lt * Lt / 4.0) / self.D
        self.tau = mx * my * my / self.D
        self.r = lemma15_root(self.lam, self.tau)
        r, lam, tau = self.r, self.lam, self.tau
        self.btilde = np.zeros(d)
        self.btilde[0] = (2 + lam + tau) * r - (3 + lam) * r * r + r**3
        self.btilde[1] = r - 1.0
        u = 2.0 * self.D * self.btilde / (Ly * Lt)  # Z b = u; Z^-1 = upper-left triangle of ones (eq. 29)
        b = np.full(d, u[0] + u[1])
        b[-1] = u[0]
        self.bvec_np = b
        self.cvec_np = (Lb / Lt) * b
        self.bvec = torch.tensor(b)
        self.cvec = torch.tensor(self.cvec_np)
        self._finish()
        mu_phi, L_phi, mu_A, L_A = self._ev
        self._constants = {
            "mu": my, "L": float(p["Lt_y"]), "kappa": p["Lt_y"] / my, "kappa_y": p["Lt_y"] / my, "mu_y": my,
            "mu_x": mu_phi, "mu_x_param": mx, "L_phi": L_phi, "mu_phi": mu_phi, "kappa_x": L_phi / mu_phi,
            "L_inner_exact": L_A, "mu_inner_exact": mu_A, "alpha": a, "beta": be, "D": self.D, "lambda": lam,
            "tau": tau, "r": r, "L_y": Ly, "Lt_xy": Lt, "Lb_xy": Lb, "L_x": float(p["L_x"]),
            "L_xy_required": (p["L_x"] - mx) * (p["Lt_y"] - my) / (2 * Lt) if p["z3"] else 0.0,
        }

    @property
    def constants(self) -> dict[str, float]:
        return dict(self._constants)

    # f's pieces: F_xx = alpha Z^2 + mu_x I, F_xy = -(alpha beta/Lt) Z^3 + (Lb/2) Z (symmetric)
    def _fxx_np(self, X):
        return self.alpha * self._zn(self._zn(X)) + self.mu_x * X

    def _fxy_np(self, Y):
        ZY = self._zn(Y)
        out = 0.5 * self.Lb * ZY
        if self.p["z3"]:
            out = out - (self.alpha * self.beta / self.Lt_xy) * self._zn(self._zn(ZY))
        return out

    def _h_scalar(self, s):
        A = self.beta * s + self.mu_y
        h = self.alpha * s + self.mu_x + 0.5 * self.Lb * self.Lt_xy * s / A + 0.25 * self.L_y * self.Lt_xy**2 * s / A**2
        return h - (self.alpha * self.beta * s * s / A if self.p["z3"] else 0.0)

    def outer(self, x, y, batch=None):
        Zy = self._z(y)
        val = 0.5 * x @ (self.alpha * self._z(self._z(x)) + self.mu_x * x) + 0.5 * self.Lb * (x @ Zy)
        if self.p["z3"]:
            val = val - (self.alpha * self.beta / self.Lt_xy) * (x @ self._z(self._z(Zy)))
        return val + 0.5 * self.L_y * (y @ y) + self.cvec @ y

    # -- Lemma 15 and Theorem 4 --------------------------------------------------------------------------------------
    def lemma15_error(self) -> float:
        """||x* - x^|| / ||x^|| with x^ = (r, r^2, ..., r^d) (Lemma 15 predicts <= (7+lambda) r^d/(tau ||x^||))."""
        xh = self.r ** np.arange(1, self.dim_x + 1)
        return float(np.linalg.norm(self._xstar - xh) / np.linalg.norm(xh))

    def dim_required(self, M: int) -> int:
        """The smallest d of eq. (40): d > max{2M, M + 1 + log_r(tau/(4(7+lambda)))}."""
        lg = math.log(self.tau / (4 * (7 + self.lam))) / math.log(self.r)
        return int(math.floor(max(2 * M, M + 1 + lg))) + 1

    def theorem4_gap(self, M: int) -> float:
        """Theorem 4's lower bound on Phi(x^K) - Phi* for support M, with the proof's constants:
        (Phi(0) - Phi*) r^{2M} / (18 kappa_x), kappa_x = L_Phi/mu_Phi of this instance."""
        c = self._constants
        return (self._phi0 - self._phistar) * self.r ** (2 * M) / (18.0 * c["kappa_x"])

    def theorem4_calls(self, eps: float) -> int:
        """Smallest M with theorem4_gap(M) <= eps, less 2: Theorem 4's per-instance bound on calls (valid when dim
        satisfies eq. (40) for that M)."""
        c = self._constants
        top = (self._phi0 - self._phistar) / (18.0 * c["kappa_x"] * eps)
        if top <= 1:
            return 0
        return max(int(math.ceil(math.log(top) / (2 * math.log(1 / self.r)))) - 2, 0)

    def theorem4_order(self) -> float:
        """sqrt(L_y Lt_xy^2/(mu_x mu_y^2)): Theorem 4's C_fun rate per log(1/eps) (without its constant)."""
        return math.sqrt(self.L_y * self.Lt_xy**2 / (self.mu_x * self.mu_y**2))


