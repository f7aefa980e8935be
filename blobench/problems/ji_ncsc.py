"""Ji 2025's nonconvex-strongly-convex hard instance (``ji-ncsc``), Theorem 1.

Source: K. Ji, "Lower Complexity Bounds for Nonconvex-Strongly-Convex Bilevel Optimization with First-Order Oracles",
arXiv 2511.19656 v2 (read from a text extraction of the full PDF; summary in ``/work/shared/papers/lower_bounds.md``
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
        self.M_nn, self.M_1n = float(Mm[-1, -1]), float(Mm[0, -1])
        ct, lam = float(p["c_tilde"]), float(p["lam"])
        self.C_l, self.C_r = ct * n / self.M_nn, ct * n / self.M_1n
        self.L_scale = 152.0 * max(self.C_l, self.C_r) ** 2
        self.x0c = lam / (self.C_l * self.M_nn)
        self.Men = torch.tensor(Mm[:, -1])
        self.cg = p["L_g"] * n * n / (2 * (4 * n * n + 1))
        evs = np.linalg.eigvalsh(2 * self.cg * (A + np.eye(n) / (n * n)))
        self._constants = {"mu": float(evs.min()), "L": float(evs.max()), "kappa": float(evs.max() / evs.min()),
                           "kappa_y": float(evs.max() / evs.min()), "mu_target": float(p["mu"]), "L_g": float(p["L_g"]),
                           "L_f": float(p["L_f"]), "n": float(n), "T": float(T), "C_l": self.C_l, "C_r": self.C_r,
                           "L_scale": self.L_scale, "x0": self.x0c, "M_nn": self.M_nn, "M_1n": self.M_1n}

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
