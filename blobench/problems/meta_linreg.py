"""Few-shot linear regression (algorithm-based BLO with a closed-form meta-objective).

The algorithm-based setting of UFO-BLO (Likhosherstov et al., ICML 2021, eq. (1)-(2)) on
quadratic task losses. A task has weights w ~ N(w_bar, s_w^2 I) and labels
    y_s = X_s w + e_s (support, K rows),  y_q = X_q w + e_q (query, K_q rows),  e ~ N(0, s^2 I),
with designs X_s, X_q fixed at setup (seeded), so the task law is Gaussian and linear. With
    L_s(phi) = ||X_s phi - y_s||^2 / (2K),  L_q(phi) = ||X_q phi - y_q||^2 / (2K_q),
phi_0 = theta and r steps of GD on L_s with step alpha: phi_r = P theta + S X_s^T y_s / K with
H = X_s^T X_s / K, P = (I - alpha H)^r, S H = I - P. Hence the query residual has mean
X_q P (theta - w_bar) and
    M^(r)(theta) = [ ||X_q P (theta - w_bar)||^2 + s_w^2 ||X_q P||_F^2
                     + s^2 ||X_q S X_s^T / K||_F^2 + s^2 K_q ] / (2 K_q),
    grad M^(r)(theta) = P^T X_q^T X_q P (theta - w_bar) / K_q,
a quadratic with stationary point theta* = w_bar. The first-order heuristic has
E g_FO = X_q^T X_q P (theta - w_bar) / K_q, which differs from grad M^(r) away from theta*.
"""
from __future__ import annotations

import numpy as np
import torch

from blobench import harness
from blobench.core.errors import ParameterError
from blobench.core.params import Param


@harness.register_problem("meta-linreg")
class MetaLinReg(harness.UnrolledProblem):
    """Few-shot linear regression: quadratic task losses, closed-form M^(r), gradient and stationary point (theta* = w_bar)."""

    params = {
        "dim": Param("int", default=5, low=1, doc="dimension of theta and of the task weights"),
        "shots": Param("int", default=10, low=1, doc="K: support points per task"),
        "query": Param("int", default=10, low=1, doc="K_q: query points per task"),
        "unroll_steps": Param("int", default=5, low=0, doc="r: inner GD steps"),
        "unroll_lr": Param("float", default=0.1, low=0, low_open=True, doc="alpha: inner step size"),
        "task_std": Param("float", default=1.0, low=0, doc="s_w: spread of the task weights around w_bar"),
        "noise": Param("float", default=0.1, low=0, doc="s: label noise"),
        "seed": Param("int", default=0, low=0, doc="seed of X_s, X_q and w_bar"),
    }

    def setup(self) -> None:
        p = self.p
        d, K, Kq = p["dim"], p["shots"], p["query"]
        rng = np.random.default_rng(p["seed"])
        t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
        self.Xs = t(rng.standard_normal((K, d)))
        self.Xq = t(rng.standard_normal((Kq, d)))
        self.wbar = t(rng.standard_normal(d))
        self.dim_x = self.dim_y = d
        H = self.Xs.T @ self.Xs / K
        Lmax = float(torch.linalg.eigvalsh(H).max())
        if p["unroll_lr"] * Lmax >= 2:
            raise ParameterError(f"problem 'meta-linreg': unroll_lr={p['unroll_lr']:g} >= 2/L = {2 / Lmax:.3g}; inner GD diverges")
        I = torch.eye(d, dtype=torch.float64)
        step = I - p["unroll_lr"] * H
        self.P = torch.linalg.matrix_power(step, p["unroll_steps"])
        S = torch.zeros_like(I)
        for _ in range(p["unroll_steps"]):
            S = step @ S + p["unroll_lr"] * I
        self.S = S
        self.H, self._L = H, Lmax

    @property
    def constants(self) -> dict[str, float]:
        return {"L": self._L, "mu": float(torch.linalg.eigvalsh(self.H).min())}

    def inner(self, x, y, batch=None):
        ys = self.Xs @ batch["w"] + batch["es"]
        return 0.5 * torch.sum((self.Xs @ y - ys) ** 2) / self.p["shots"]

    def outer(self, x, y, batch=None):
        yq = self.Xq @ batch["w"] + batch["eq"]
        return 0.5 * torch.sum((self.Xq @ y - yq) ** 2) / self.p["query"]

    def sample(self, generator: torch.Generator, n: int, batch_size: int = 1):
        """n tasks (batch_size ignored: a draw is one task)."""
        p = self.p
        r = lambda *s: torch.randn(s, generator=generator, dtype=torch.float64)  # noqa: E731
        return {"w": self.wbar + p["task_std"] * r(n, self.dim_x),
                "es": p["noise"] * r(n, p["shots"]), "eq": p["noise"] * r(n, p["query"])}

    def x0(self):
        return torch.zeros(self.dim_x, dtype=torch.float64)

    def value(self, x) -> float:
        p = self.p
        x = torch.as_tensor(x, dtype=torch.float64)
        A = self.Xq @ self.P
        m = A @ (x - self.wbar)
        tot = (m @ m + p["task_std"] ** 2 * (A * A).sum()
               + p["noise"] ** 2 * ((self.Xq @ self.S @ self.Xs.T / p["shots"]) ** 2).sum() + p["noise"] ** 2 * p["query"])
        return float(tot / (2 * p["query"]))

    def hypergradient(self, x):
        x = torch.as_tensor(x, dtype=torch.float64)
        A = self.Xq @ self.P
        return A.T @ (A @ (x - self.wbar)) / self.p["query"]

    def fo_mean(self, x):
        """E_task g_FO(x) = X_q^T X_q P (x - w_bar) / K_q."""
        x = torch.as_tensor(x, dtype=torch.float64)
        return self.Xq.T @ (self.Xq @ (self.P @ (x - self.wbar))) / self.p["query"]

    def stationary_points(self):
        return [self.wbar.clone()]
