"""Ji 2025's nonconvex-strongly-convex hard instance (``ji-ncsc``), Theorem 1.

Source: K. Ji, "Lower Complexity Bounds for Nonconvex-Strongly-Convex Bilevel Optimization with First-Order Oracles",
arXiv 2511.19656 v2 (read from a text extraction of the full PDF; summary in ``../shared/papers/lower_bounds.md`` (beside the repository; docs/lower_bounds.md in the project)
Sec. 2). Eq. (6)-(7):

    f(x; y) = sum_{i=1}^T (lam^2 L_f / L) [ Psi(-(C_l/lam) y^(i-1)_n) Phi(-(C_r/lam) y^(i)_1) - Psi((C_l/lam) y^(i-1)_n) Phi((C_r/lam) y^(i)_1) ]
    g(x; y) = sum_{i=0}^T [ (L_g n^2 / (2(4n^2+1))) y^(i)'(I_n/n^2 + A) y^(i) - L_g x_i y^(i)_n ]

- x = (x_1, ..., x_T) is the upper-level variable; x_0 := lam/(C_l M_nn) is a constant, not a variable.
- y = (y^(0), ..., y^(T)), each block in R^n, flattened in block order.
- A is the n x n path Laplacian (diagonal (1, 2, ..., 2, 1), off-diagonals -1).
- Carmon et al. 2020's Psi(t) = exp(1 - 1/(2t-1)^2) for t > 1/2 (else 0) and Phi(t) = sqrt(e) int_{-inf}^t e^{-s^2/2} ds.
- n = floor(sqrt((L_g - mu)/(4 mu))), so that g's Hessian in y, (L_g n^2/(4n^2+1))(I/n^2 + A) per block, has
  spectrum in [L_g/(4n^2+1), L_g): strong convexity L_g/(4n^2+1) >= mu (tested).

Constants the paper leaves numerical (our choices, documented in docs/lower_bounds.md and tested):
- C~ = ``c_tilde`` (default 1);
- C_l = C~ n / M_nn and C_r = C~ n / M_1n (eq. 10), with M = ((4n^2+1)/n^2)(A + I/n^2)^{-1};
- L = 152 max(C_l, C_r)^2. Carmon et al. 2020 (Lemma 3) bound the chain's Hessian by 152, so f is L_f-smooth;
  tests/test_ji_ncsc.py measures ||grad^2 f|| <= L_f at random points.

Exact truth: y^(i)*(x) = x_i M e_n, and H(x) = f(x, y*(x)) is the rescaled Carmon chain
(lam^2 L_f/L) sum_i [Psi(-C~ n x_{i-1}/lam) Phi(-C~ n x_i/lam) - Psi(C~ n x_{i-1}/lam) Phi(C~ n x_i/lam)],
with C~ n x_0/lam = 1. grad H is autograd of that closed form in float64; its agreement with the chain rule is tested.

The zero chain (eq. 8): y^(0)_n wakes first (x_0 != 0). f links y^(i-1)_n to y^(i)_1, the Laplacian walks
y^(i)_1 -> ... -> y^(i)_n one coordinate per call, and x_i wakes only after y^(i)_n. So x_T stays 0 for fewer than
T n oracle calls (:meth:`zero_chain_calls`); claim ``ji-ncsc-zero-chain`` measures it.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from blobench import harness
from blobench.core.errors import ParameterError
from blobench.core.params import Param

SQRT_2PI_E = math.sqrt(2 * math.pi * math.e)


def carmon_psi(t: torch.Tensor) -> torch.Tensor:
    """Psi(t) = exp(1 - 1/(2t - 1)^2) for t > 1/2, else 0 (Carmon et al. 2020); autograd-safe (no NaN below 1/2)."""
    on = t > 0.5
    ts = torch.where(on, t, torch.ones_like(t))
    return torch.where(on, torch.exp(1 - 1 / (2 * ts - 1) ** 2), torch.zeros_like(t))


def carmon_phi(t: torch.Tensor) -> torch.Tensor:
    """Phi(t) = sqrt(e) int_{-inf}^t exp(-s^2/2) ds = sqrt(2 pi e) * normal_cdf(t)."""
    return SQRT_2PI_E * 0.5 * (1 + torch.erf(t / math.sqrt(2.0)))


def path_laplacian(n: int) -> np.ndarray:
    """The n x n path Laplacian: tridiagonal, diagonal (1, 2, ..., 2, 1), off-diagonals -1 (0 for n = 1)."""
    A = 2 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)
    A[0, 0] -= 1
    A[-1, -1] -= 1
    return A


def laplacian_apply(V: torch.Tensor) -> torch.Tensor:
    """A v along the last axis, without forming A."""
    left = F.pad(V[..., :-1], (1, 0))
    right = F.pad(V[..., 1:], (0, 1))
    out = 2 * V - left - right
    ends = torch.zeros(V.shape[-1], dtype=V.dtype)
    ends[0] += 1
    ends[-1] += 1
    return out - ends * V


def chain_constants(n: int, c_tilde: float = 1.0) -> dict[str, float]:
    """M_nn, M_1n, C_l = C~ n/M_nn, C_r = C~ n/M_1n (eq. 10) and L = 152 max(C_l, C_r)^2 for blocks of size n
    (M = ((4n^2+1)/n^2)(A + I/n^2)^{-1}); the problem's setup uses the same numbers."""
    A = path_laplacian(n)
    Mm = (4 * n * n + 1) / (n * n) * np.linalg.inv(A + np.eye(n) / (n * n))
    M_nn, M_1n = float(Mm[-1, -1]), float(Mm[0, -1])
    C_l, C_r = c_tilde * n / M_nn, c_tilde * n / M_1n
    return {"M_nn": M_nn, "M_1n": M_1n, "C_l": C_l, "C_r": C_r, "L_scale": 152.0 * max(C_l, C_r) ** 2}


def mu_for_n(n: int, L_g: float = 1.0) -> float:
    """The largest mu with floor(sqrt((L_g - mu)/(4 mu))) = n: L_g/(4n^2 + 1) (less 1e-12 relative, so that rounding
    cannot give n - 1); kappa = L_g/mu = 4n^2 + 1, the smallest kappa of Theorem 1's class that has blocks of size n."""
    return L_g / (4 * n * n + 1) * (1 - 1e-12)


def theorem1_instance(eps: float, n: int, Delta: float = 1.0, L_g: float = 1.0, L_f: float = 1.0,
                      c_tilde: float = 1.0) -> dict[str, float]:
    """Theorem 1's choice of the chain for target ||grad H|| < eps (Ji 2025, proof of Theorem 1, eq. 11-12):
    lam = eps L/(L_f C~ n), so that Lemma 3's floor lam L_f C~ n/L equals eps, and T = floor(Delta L/(12 lam^2 L_f))
    (Lemma 4: H(0) - inf H <= 12 lam^2 L_f T/L <= Delta). Returns the ``ji-ncsc`` parameters (T, mu, lam, L_g, L_f,
    c_tilde) and ``bound`` = T n, the instance's exact zero-chain count: x_T = 0 for fewer than T n calls, and while
    x_T = 0, ||grad H|| >= eps (Lemma 3), so no zero-respecting method reaches ||grad H|| < eps in fewer calls.
    T n = Delta L_f C~^2 n^3/(12 L eps^2) is Theorem 1's C_0 Delta L_f kappa^{3/2}/eps^2 (n ~ sqrt(kappa)/2)."""
    if n < 1 or eps <= 0 or Delta <= 0:
        raise ParameterError(f"theorem1_instance: need n >= 1, eps > 0, Delta > 0 (got n={n}, eps={eps}, Delta={Delta})")
    L = chain_constants(n, c_tilde)["L_scale"]
    lam = eps * L / (L_f * c_tilde * n)
    T = int(math.floor(Delta * L / (12 * lam * lam * L_f)))
    if T < 1:
        raise ParameterError(f"theorem1_instance: T = floor(Delta L/(12 lam^2 L_f)) = 0 at eps={eps}, n={n}, Delta={Delta}")
    return {"T": T, "mu": mu_for_n(n, L_g), "lam": lam, "L_g": L_g, "L_f": L_f, "c_tilde": c_tilde, "bound": T * n,
            "n": n, "eps": eps, "Delta": Delta}


@harness.register_problem("ji-ncsc")
class JiNCSC(harness.Problem):
    """Ji 2025's NC-SC hard instance (Theorem 1, eq. 6-7): Carmon's chain in f across blocks of a path-Laplacian g."""

    params = {
        "T": Param("int", default=3, low=1, doc="chain length: x in R^T"),
        "L_g": Param("float", default=1.0, low=0.0, low_open=True, doc="smoothness of g"),
        "mu": Param("float", default=0.02, low=0.0, low_open=True, doc="target strong convexity: n = floor(sqrt((L_g - mu)/(4 mu)))"),
        "L_f": Param("float", default=1.0, low=0.0, low_open=True, doc="smoothness of f"),
        "lam": Param("float", default=1.0, low=0.0, low_open=True, doc="lambda: the chain's scale (the proof sets eps L/(L_f C~ n))"),
        "c_tilde": Param("float", default=1.0, low=0.0, low_open=True, doc="C~ of eq. (10) (our choice)"),
    }

    def setup(self) -> None:
        p = self.p
        if p["mu"] >= p["L_g"] / 5:
            raise ParameterError(f"problem {self.name!r}: need mu < L_g/5 so that n >= 1 (got mu={p['mu']}, L_g={p['L_g']})")
        n = int(math.floor(math.sqrt((p["L_g"] - p["mu"]) / (4 * p["mu"]))))
        T = p["T"]
        self.n, self.T = n, T
        self.dim_x, self.dim_y = T, n * (T + 1)
        A = path_laplacian(n)
        Mm = (4 * n * n + 1) / (n * n) * np.linalg.inv(A + np.eye(n) / (n * n))
        ct, lam = float(p["c_tilde"]), float(p["lam"])
        cc = chain_constants(n, ct)
        self.M_nn, self.M_1n, self.C_l, self.C_r = cc["M_nn"], cc["M_1n"], cc["C_l"], cc["C_r"]
        self.L_scale = cc["L_scale"]
        self.x0c = lam / (self.C_l * self.M_nn)
        self.Men = torch.tensor(Mm[:, -1])
        self.cg = p["L_g"] * n * n / (2 * (4 * n * n + 1))
        evs = np.linalg.eigvalsh(2 * self.cg * (A + np.eye(n) / (n * n)))
        self._constants = {"mu": float(evs.min()), "L": float(evs.max()), "kappa": float(evs.max() / evs.min()),
                           "kappa_y": float(evs.max() / evs.min()), "mu_target": float(p["mu"]), "L_g": float(p["L_g"]),
                           "L_f": float(p["L_f"]), "n": float(n), "T": float(T), "C_l": self.C_l, "C_r": self.C_r,
                           "L_scale": self.L_scale, "H_scale": p["L_f"] * (ct * n) ** 2 / self.L_scale, "x0": self.x0c, "M_nn": self.M_nn, "M_1n": self.M_1n}

    @property
    def constants(self) -> dict[str, float]:
        return dict(self._constants)

    def _xs(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.full((1,), self.x0c, dtype=x.dtype), x])

    def inner(self, x, y, batch=None):
        Y = y.reshape(self.T + 1, self.n)
        quad = torch.sum(Y * (Y / (self.n * self.n) + laplacian_apply(Y)))
        return self.cg * quad - self.p["L_g"] * torch.sum(self._xs(x) * Y[:, -1])

    def _chain(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        lam = self.p["lam"]
        s = lam * lam * self.p["L_f"] / self.L_scale
        return s * torch.sum(carmon_psi(-a / lam) * carmon_phi(-b / lam) - carmon_psi(a / lam) * carmon_phi(b / lam))

    def outer(self, x, y, batch=None):
        Y = y.reshape(self.T + 1, self.n)
        return self._chain(self.C_l * Y[:-1, -1], self.C_r * Y[1:, 0])

    # -- exact truth ---------------------------------------------------------------------------------------------
    def inner_solution(self, x):
        x = torch.as_tensor(x, dtype=torch.float64)
        return (self._xs(x)[:, None] * self.Men[None, :]).reshape(-1)

    def _H(self, x: torch.Tensor) -> torch.Tensor:
        """H(x) in closed form: the rescaled Carmon chain (C_l M_nn = C_r M_1n = C~ n)."""
        xs = self._xs(x)
        cn = self.p["c_tilde"] * self.n
        return self._chain(cn * xs[:-1], cn * xs[1:])

    def value(self, x) -> float:
        return float(self._H(torch.as_tensor(x, dtype=torch.float64)))

    def hypergradient(self, x):
        x = torch.as_tensor(x, dtype=torch.float64).detach()
        return torch.func.grad(self._H)(x)

    def stationary_points(self):
        return []

    # -- the zero chain ------------------------------------------------------------------------------------------
    def zero_chain_calls(self) -> int:
        """T n: below this many oracle calls a zero-respecting method's x_T is still 0 (eq. 8)."""
        return self.T * self.n

    #: the criterion :meth:`calls_lower_bound` is about (the complexity metric writes the bound beside it only)
    lower_bound_criterion = "grad_norm_sq"

    def gradient_floor(self) -> float:
        """Lemma 3's floor lam L_f C~ n / L: while some |x_i| < lam/(C~ n), in particular while x_T = 0, ||grad H|| is
        above it (Carmon et al.'s chain has ||grad|| > 1 there). Theorem 1's lam makes it the target eps."""
        p = self.p
        return float(p["lam"] * p["L_f"] * p["c_tilde"] * self.n / self.L_scale)

    def calls_lower_bound(self, eps: float) -> int:
        """The exact zero-chain bound on calls to ||grad H||^2 <= eps (``eps`` on the squared norm, as the complexity
        metric's grad_norm_sq): T n when eps <= gradient_floor()^2 (x_T must wake first), else 0 (no bound)."""
        return self.T * self.n if eps <= self.gradient_floor() ** 2 else 0
