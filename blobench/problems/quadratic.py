"""Quadratic bilevel problem with exact float64 ground truth.

    g(x, y) = 1/2 y^T A y - y^T B x - b^T y        (inner, mu-strongly convex in y)
    f(x, y) = 1/2 ||y - c||^2 + rho/2 ||x||^2      (outer)

A = Q diag(lambda) Q^T with eigenvalues evenly spaced on exactly [mu, L], L = kappa * mu. The eigenbasis Q
is ``basis = "haar"`` (default): the Q of a QR factorisation of a Gaussian matrix, Haar-distributed, O(dim^3)
to build (LAPACK); or ``basis = "householder"``: a product of ``reflections`` Householder reflections with
Gaussian directions, for which Q, A and A^-1 are built in O(reflections dim^2) without a QR or a GEMM (dim
5000 in seconds). The spectrum, hence kappa, mu, L and every rate the theory states, is exactly the same;
the Householder basis is another instance (not Haar: Q - I has rank <= reflections).
Then y*(x) = A^{-1}(B x + b), Phi(x) = f(x, y*(x)),
grad Phi(x) = rho x + B^T A^{-1} (y*(x) - c)  (the implicit-function formula, since
grad2_xy g = -B^T), and the unique stationary point solves (B^T A^{-2} B + rho I) x = B^T A^{-2}(c - ... )
as written out in :meth:`Quadratic.stationary_points`.

Stochastic form (noise > 0): one sample xi gives
    g(x, y; xi) = 1/2 y^T Q diag(lambda * w) Q^T y - y^T B diag(1 + t) x - (b + e_b)^T y
    f(x, y; xi) = 1/2 ||y - c - e_c||^2 + rho/2 ||x||^2
with w ~ Gamma(1/noise^2, noise^2) (mean 1, variance noise^2, always positive so every
sample stays strongly convex), and t, e_b, e_c ~ N(0, noise^2 I), all independent. Since
f and g are linear in (w, t, e_b, e_c), a minibatch of size b is the sample whose
coefficients are batch means: w ~ Gamma(b/noise^2, noise^2/b), t, e_b, e_c ~ N(0, noise^2/b I).
Its expectation is the population problem; Var[grad_y f] = noise^2/b I exactly.
(This is the "stochastic quadratic" used throughout Ji et al. 2021 style checks.)
"""
from __future__ import annotations

import numpy as np
import torch

from blobench import harness
from blobench.core.errors import ParameterError
from blobench.core.params import Param


#: largest min(dim_x, dim_y) whose ||B||_2 is taken from a full SVD (exact; O(dim^3) but cheap below this)
EXACT_NORM_MAX = 512


def _spectral_norm(B: torch.Tensor) -> float:
    """||B||_2: full SVD for small B, else Lanczos (ARPACK, O(dim^2) per iteration, to machine precision)."""
    if min(B.shape) <= EXACT_NORM_MAX:
        return float(torch.linalg.matrix_norm(B, 2))
    from scipy.sparse.linalg import svds

    return float(svds(B.numpy(), k=1, tol=0, return_singular_vectors=False, random_state=0)[0])


def householder_product(V: np.ndarray) -> np.ndarray:
    """Q = H_1 H_2 ... H_k with H_i = I - 2 v_i v_i^T (rows v_i of V, unit norm): O(k dim^2)."""
    d = V.shape[1]
    Q = np.eye(d)
    for v in V:  # Q <- Q H_i
        Q -= 2.0 * np.outer(Q @ v, v)
    return Q


def householder_congruence(V: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Q diag(lam) Q^T for Q = H_1 ... H_k (:func:`householder_product`), without forming Q: starting from
    M = diag(lam), M <- H_i M H_i = M - 2 v (M v)^T - 2 (M v) v^T + 4 (v^T M v) v v^T for i = k, ..., 1.
    O(k dim^2): no GEMM."""
    M = np.diag(np.asarray(lam, dtype=np.float64))
    for v in V[::-1]:
        Mv = M @ v
        M += 4.0 * float(v @ Mv) * np.outer(v, v) - 2.0 * (np.outer(v, Mv) + np.outer(Mv, v))
    return M


@harness.register_problem("quadratic")
class Quadratic(harness.Problem):
    """Quadratic bilevel problem: g = 1/2 y'Ay - y'Bx - b'y, f = 1/2||y-c||^2 + rho/2||x||^2; spectrum of A spans exactly [mu, kappa*mu]."""

    params = {
        "dim": Param("int", default=10, low=1, doc="dim_x = dim_y unless given separately"),
        "dim_x": Param("int", optional=True, low=1, doc="outer dimension (default: dim)"),
        "dim_y": Param("int", optional=True, low=1, doc="inner dimension (default: dim)"),
        "kappa": Param("float", default=10.0, low=1.0, doc="condition number L/mu of grad2_yy g"),
        "mu": Param("float", default=1.0, low=0.0, low_open=True, doc="strong convexity of g in y"),
        "rho": Param("float", default=0.1, low=0.0, doc="outer ridge weight"),
        "noise": Param("float", default=0.0, low=0.0, doc="per-sample noise level (0: deterministic)"),
        "seed": Param("int", default=0, low=0, doc="seed of the problem's data (A, B, b, c)"),
        "n_samples": Param("int", default=0, low=0, doc="finite sum of n samples (0: fresh samples, infinite population)"),
        "basis": Param("str", default="haar", choices=("haar", "householder"),
                       doc="eigenbasis of A: 'haar' (QR of a Gaussian matrix, O(dim^3)) or 'householder' (O(dim^2))"),
        "reflections": Param("int", default=8, low=1, doc="Householder reflections in the basis (basis = 'householder')"),
    }

    def setup(self) -> None:
        p = self.p
        self.dim_x = p["dim_x"] or p["dim"]
        self.dim_y = p["dim_y"] or p["dim"]
        if self.dim_y == 1 and p["kappa"] != 1.0:
            raise ParameterError("problem 'quadratic': kappa must be 1 when dim_y = 1 (one eigenvalue)")
        rng = np.random.default_rng(p["seed"])
        mu, L = p["mu"], p["mu"] * p["kappa"]
        lam = np.linspace(mu, L, self.dim_y) if self.dim_y > 1 else np.array([mu])
        t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
        self.lam = t(lam)
        self._V: np.ndarray | None = None
        if p["basis"] == "haar":
            # O(dim^3) only in LAPACK's QR (which defines the instance) and one GEMM for A; A^-1 is built on
            # first use, ||B||_2 by Lanczos above EXACT_NORM_MAX (was: two GEMMs each for A and A^-1 and a full SVD)
            q, _ = np.linalg.qr(rng.standard_normal((self.dim_y, self.dim_y)))
            self.Q = t(q)
            # (q * lam) @ q.T is q @ diag(lam) @ q.T bit for bit: each entry of q @ diag(lam) is one product plus zeros
            self.A = t((q * lam) @ q.T)
        else:
            V = rng.standard_normal((min(p["reflections"], self.dim_y), self.dim_y))
            self._V = V / np.linalg.norm(V, axis=1, keepdims=True)
            self.Q = t(householder_product(self._V))
            self.A = t(householder_congruence(self._V, lam))
        self.A = 0.5 * (self.A + self.A.T)
        self.B = t(rng.standard_normal((self.dim_y, self.dim_x)) / np.sqrt(self.dim_x))
        self.b = t(rng.standard_normal(self.dim_y))
        self.c = t(rng.standard_normal(self.dim_y))
        self._Ainv: torch.Tensor | None = None
        self._mu, self._L = mu, L
        # computed once: estimators read constants (e.g. the default step 1/L) on every estimate
        self._constants = {
            "mu": mu, "L": L, "kappa": L / mu, "rho": p["rho"],
            "cross_norm": _spectral_norm(self.B), "noise": p["noise"], "L_f": 1.0,
        }

    @property
    def Ainv(self) -> torch.Tensor:
        """A^-1 = Q diag(1/lambda) Q^T (dense, built on first use: one GEMM)."""
        if self._Ainv is None:
            if self._V is not None:
                self._Ainv = torch.tensor(householder_congruence(self._V, 1.0 / self.lam.numpy()), dtype=torch.float64)
            else:
                # Q * (1/lambda) is Q @ diag(1/lambda) bit for bit (as for A above)
                self._Ainv = (self.Q * (1.0 / self.lam)) @ self.Q.T
        return self._Ainv

    # -- structure --------------------------------------------------------------------
    @property
    def constants(self) -> dict[str, float]:
        return dict(self._constants)

    @property
    def stochastic(self) -> bool:
        return self.p["noise"] > 0

    def inner(self, x, y, batch=None):
        if batch is None:
            return 0.5 * y @ (self.A @ y) - y @ (self.B @ x) - self.b @ y
        z = self.Q.T @ y
        return (0.5 * torch.sum(self.lam * batch["w"] * z * z)
                - y @ (self.B @ (x * (1.0 + batch["t"]))) - (self.b + batch["eb"]) @ y)

    def outer(self, x, y, batch=None):
        c = self.c if batch is None else self.c + batch["ec"]
        return 0.5 * torch.sum((y - c) ** 2) + 0.5 * self.p["rho"] * torch.sum(x * x)

    def sample(self, generator: torch.Generator, n: int, batch_size: int = 1):
        """n minibatches of ``batch_size`` samples, each given by its mean coefficients (exact in law)."""
        s = self.p["noise"]
        if s == 0:
            return None
        if self.p["n_samples"]:
            return self.sample_finite(generator, n, batch_size)
        sd = s / np.sqrt(batch_size)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        rng = np.random.default_rng(seed)
        shape_k = batch_size / s**2
        w = rng.gamma(shape_k, 1.0 / shape_k, size=(n, self.dim_y))
        # scaled in place and w shared with numpy (no copies): the same numbers as before, less memory traffic
        g = lambda d: torch.randn((n, d), generator=generator, dtype=torch.float64).mul_(float(sd))  # noqa: E731
        return {"w": torch.from_numpy(w), "t": g(self.dim_x), "eb": g(self.dim_y), "ec": g(self.dim_y)}

    # -- ground truth (float64, closed form) ---------------------------------------------
    def inner_solution(self, x):
        x = torch.as_tensor(x, dtype=torch.float64)
        return self.Ainv @ (self.B @ x + self.b)

    def value(self, x) -> float:
        x = torch.as_tensor(x, dtype=torch.float64)
        return float(self.outer(x, self.inner_solution(x)))

    def hypergradient(self, x):
        x = torch.as_tensor(x, dtype=torch.float64)
        return self.p["rho"] * x + self.B.T @ (self.Ainv @ (self.inner_solution(x) - self.c))

    def implicit_term(self, x):
        """The term first-order methods drop: -grad2_xy g [grad2_yy g]^-1 grad_y f = B^T A^-1 (y* - c)."""
        x = torch.as_tensor(x, dtype=torch.float64)
        return self.B.T @ (self.Ainv @ (self.inner_solution(x) - self.c))

    def hessian_phi(self) -> torch.Tensor:
        M = self.Ainv @ self.B
        return M.T @ M + self.p["rho"] * torch.eye(self.dim_x, dtype=torch.float64)

    def stationary_points(self):
        # grad Phi = (B^T A^-2 B + rho I) x + B^T A^-1 (A^-1 b - c) = 0
        rhs = -(self.B.T @ (self.Ainv @ (self.Ainv @ self.b - self.c)))
        # gelsd (SVD): deterministic; the default gelsy gave run-to-run different last bits here
        x = torch.linalg.lstsq(self.hessian_phi(), rhs.unsqueeze(1), driver="gelsd").solution.squeeze(1)
        return [x]

    def x0(self):
        return torch.zeros(self.dim_x, dtype=torch.float64)

    # -- finite-sum form (n_samples > 0; issue 15) ------------------------------------------
    # n per-sample coefficient sets drawn once (seeded by (seed, 1), so A, B, b, c are unchanged), then
    # normalised so that their averages are exactly the population's (mean w = 1, mean t = e_b = e_c = 0):
    # g = 1/n sum_i g_i and f = 1/n sum_j f_j are the population problem, whose ground truth stands.
    # An inner index i picks (w_i, t_i, e_b,i), an outer index j picks e_c,j.
    @property
    def finite_sum(self):
        n = self.p["n_samples"]
        return (n, n) if n and self.stochastic else None

    def _table(self) -> dict[str, torch.Tensor]:
        if getattr(self, "_fs_table", None) is None:
            s, n = self.p["noise"], self.p["n_samples"]
            rng = np.random.default_rng([self.p["seed"], 1])
            w = rng.gamma(1 / s**2, s**2, size=(n, self.dim_y))
            z = lambda d: (lambda a: a - a.mean(0))(rng.standard_normal((n, d)) * s)  # noqa: E731
            t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
            self._fs_table = {"w": t(w / w.mean(0)), "t": t(z(self.dim_x)), "eb": t(z(self.dim_y)), "ec": t(z(self.dim_y))}
        return self._fs_table

    def batch_at(self, inner_idx, outer_idx):
        """The minibatch of samples inner_idx (for g) and outer_idx (for f): their mean coefficients."""
        T = self._table()
        return {"w": T["w"][inner_idx].mean(0), "t": T["t"][inner_idx].mean(0), "eb": T["eb"][inner_idx].mean(0),
                "ec": T["ec"][outer_idx].mean(0), "i": inner_idx, "j": outer_idx}
