"""Multi-step MAML on nonconvex tasks that are bounded below: the setting of Ji, Yang & Liang's Theorem 1.

Algorithm-based bilevel problem of K. Ji, J. Yang, Y. Liang, "Theoretical Convergence of Multi-Step
Model-Agnostic Meta-Learning" (JMLR 2022, arXiv 2002.07836), eq. (2)-(3), with task losses

    l_i(w) = sum_j phi(w_j - c_ij),   phi(t) = a/2 t^2 + b cos t    (b > a > 0)

phi'' = a - b cos t lies in [-(b - a), a + b]: each task is L-smooth (L = a + b), has negative curvature
down to -lambda_-, lambda_- = b - a, around t = 0 (a local maximum of phi), and is bounded below
(phi >= -b). The meta-parameter x is adapted N steps per task from w_0 = x,
w_{k+1} = w_k - alpha grad l_i(w_k), and Phi_N(x) = 1/T sum_i l_i(w_N^i) (bounded below by -b dim).

At x_j = c_ij the task stays at its maximum (phi'(0) = 0), so dw_N/dx_j = (1 + alpha lambda_-)^N there
and the meta-objective's curvature reaches |phi''(0)| (1 + alpha lambda_-)^{2N} / T: with a fixed alpha the
meta-gradient's Lipschitz constant grows geometrically in N, while alpha = c/(N L) keeps every Jacobian
below (1 + c/N)^N <= e^c (the paper's step-size condition alpha = O(1/(N L))).

Ground truth (float64): Phi_N, its gradient and (coordinatewise, the loss being separable) its second
derivative by autograd through the exact N-step recursion; ``meta_grad_many`` / ``curvature_many``
evaluate them at many one-dimensional points at once (``dim = 1``), which the step-size claim uses to
map the Lipschitz constant over a grid and to run meta-gradient descent from many starts and step sizes.
Tasks are stacked in y as in ``meta-quadratic``; ``meta_batch > 0`` samples tasks per draw.
"""
from __future__ import annotations

import numpy as np
import torch

from blobench import harness
from blobench.core.params import Param


@harness.register_problem("meta-cosine")
class MetaCosine(harness.UnrolledProblem):
    """Multi-step MAML on bounded-below nonconvex tasks phi(w - c) = a/2 (w-c)^2 + b cos(w-c) (Ji, Yang, Liang, JMLR 2022)."""

    params = {
        "dim": Param("int", default=1, low=1, doc="dimension of the meta-parameter x"),
        "tasks": Param("int", default=4, low=1, doc="T: size of the task pool"),
        "a": Param("float", default=0.25, low=0, low_open=True, doc="quadratic weight of phi"),
        "b": Param("float", default=1.0, low=0, low_open=True, doc="cosine weight of phi (b > a: negative curvature b - a)"),
        "spread": Param("float", default=3.0, low=0, doc="task centres uniform on [-spread, spread]"),
        "unroll_steps": Param("int", default=5, low=0, doc="N: inner adaptation steps"),
        "unroll_lr": Param("float", default=0.1, low=0, low_open=True, doc="alpha: inner step size"),
        "meta_batch": Param("int", default=0, low=0, doc="tasks per draw (0: the whole pool, deterministic)"),
        "seed": Param("int", default=0, low=0, doc="task-pool seed"),
    }

    def setup(self) -> None:
        p = self.p
        rng = np.random.default_rng(p["seed"])
        s = p["spread"]
        self.cs = torch.tensor(rng.uniform(-s, s, size=(p["tasks"], p["dim"])), dtype=torch.float64)
        self.dim_x = p["dim"]
        self.B = p["tasks"] if p["meta_batch"] == 0 else p["meta_batch"]
        self.dim_y = self.B * p["dim"]

    @property
    def stochastic(self) -> bool:
        return self.p["meta_batch"] > 0

    @property
    def constants(self) -> dict[str, float]:
        """L = a + b (task smoothness), neg_curv = max(b - a, 0), jacobian_growth = (1 + alpha neg_curv)^N."""
        a, b = self.p["a"], self.p["b"]
        lam = max(b - a, 0.0)
        return {"L": a + b, "neg_curv": lam, "phi_lower_bound": -b * self.p["dim"],
                "jacobian_growth": (1.0 + self.p["unroll_lr"] * lam) ** self.p["unroll_steps"]}

    def _phi(self, t: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.p["a"] * t * t + self.p["b"] * torch.cos(t)

    def _dphi(self, t: torch.Tensor) -> torch.Tensor:
        return self.p["a"] * t - self.p["b"] * torch.sin(t)

    def _losses(self, y, batch):
        c = self.cs if batch is None else batch["c"]
        return self._phi(y.reshape(self.B, self.dim_x) - c).sum(1)

    def inner(self, x, y, batch=None):
        return self._losses(y, batch).sum()

    def outer(self, x, y, batch=None):
        return self._losses(y, batch).mean()

    def init_inner(self, x):
        return x.repeat(self.B)

    def sample(self, generator: torch.Generator, n: int, batch_size: int = 1):
        """n draws of meta_batch tasks each (uniform with replacement); batch_size is unused."""
        if self.p["meta_batch"] == 0:
            return None
        idx = torch.randint(0, self.p["tasks"], (n, self.B), generator=generator)
        return {"c": self.cs[idx]}

    # -- ground truth: the exact N-step recursion, elementwise -------------------------------
    def _meta_values(self, X: torch.Tensor) -> torch.Tensor:
        """Phi_N at many points: X [..., dim] -> [...] (differentiable; the recursion is elementwise)."""
        t = X.unsqueeze(-2) - self.cs  # [..., T, dim]
        for _ in range(self.p["unroll_steps"]):
            t = t - self.p["unroll_lr"] * self._dphi(t)
        return self._phi(t).sum(-1).mean(-1)

    def value(self, x) -> float:
        return float(self._meta_values(torch.as_tensor(x, dtype=torch.float64)))

    def hypergradient(self, x):
        return self.meta_grad_many(torch.as_tensor(x, dtype=torch.float64).unsqueeze(0))[0]

    def meta_grad_many(self, X: torch.Tensor) -> torch.Tensor:
        """grad Phi_N at each row of X [n, dim] (autograd through the recursion, float64)."""
        with torch.enable_grad():
            Xr = X.detach().clone().to(torch.float64).requires_grad_()
            (g,) = torch.autograd.grad(self._meta_values(Xr).sum(), Xr)
        return g.detach()

    def value_many(self, X: torch.Tensor) -> torch.Tensor:
        return self._meta_values(X.to(torch.float64)).detach()

    def curvature_many(self, xs: torch.Tensor) -> torch.Tensor:
        """Phi_N''(x) at many scalar points (dim = 1): the meta-gradient's local Lipschitz constant is its absolute value."""
        if self.dim_x != 1:
            raise ValueError("curvature_many needs dim = 1")
        with torch.enable_grad():
            x = xs.detach().clone().to(torch.float64).reshape(-1, 1).requires_grad_()
            (g,) = torch.autograd.grad(self._meta_values(x).sum(), x, create_graph=True)
            (h,) = torch.autograd.grad(g.sum(), x)
        return h.detach().reshape(-1)

    def lipschitz(self, points: int = 2001) -> float:
        """The meta-gradient's Lipschitz constant L_N = sup |Phi_N''| (dim = 1), as the max over a grid of the task
        region (+-3 around the centres), a fine grid over each centre's sharp zone (half-width
        3 (1 + alpha lambda_-)^-N) and the centres themselves, where |Phi_N''| >= |phi''(0)| (1 + alpha lambda_-)^{2N} / T."""
        cs = self.cs.reshape(-1)
        lam, a, N = self.constants["neg_curv"], self.p["unroll_lr"], self.p["unroll_steps"]
        w = 3.0 * (1.0 + a * lam) ** (-N)
        zone = (cs[:, None] + torch.linspace(-w, w, 201, dtype=torch.float64)).reshape(-1)
        grid = torch.linspace(float(cs.min()) - 3, float(cs.max()) + 3, points, dtype=torch.float64)
        return float(self.curvature_many(torch.cat([grid, zone, cs])).abs().max())

    def x0(self):
        return torch.zeros(self.dim_x, dtype=torch.float64)
