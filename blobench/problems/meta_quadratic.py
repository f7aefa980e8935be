"""Multi-step MAML on quadratic tasks with indefinite (nonconvex) or positive semidefinite (convex) Hessians.

Algorithm-based bilevel problem ("unrolled" target) of Ji, Yang, Liang, "Theoretical Convergence
of Multi-Step Model-Agnostic Meta-Learning" (JMLR 2022, arXiv 2002.07836), eq. (2)-(3):
task i has loss l_i(w) = 1/2 (w - c_i)^T H_i (w - c_i), adapted N steps from w_0 = x,

    w_{j+1} = w_j - alpha grad l_i(w_j)  =>  w_N - c_i = P_i (x - c_i),  P_i = (I - alpha H_i)^N,

and the meta-objective is Phi_N(x) = 1/T sum_i l_i(w_N^i) over a pool of T tasks, so
    grad Phi_N(x) = M x - m,  M = 1/T sum_i P_i H_i P_i,  m = 1/T sum_i P_i H_i P_i c_i   (exact, float64).
H_i = Q_i diag(h_i) Q_i^T with random rotations Q_i and eigenvalues h_i uniform on
[-neg_ratio L, L] (``curvature="indefinite"``: the nonconvex setting of the paper, where
||dw_N/dx|| = prod ||I - alpha H|| reaches (1 + alpha neg_ratio L)^N) or on [0, L]
(``curvature="convex"``: meta linear regression, where ||I - alpha H|| <= 1 for alpha <= 1/L
and no step-size condition in N is needed; ``mu_ratio > 0`` makes them strongly convex, on [mu_ratio L, L]). The first task contains both spectrum ends exactly.

Tasks are stacked in y (one block of dim per task): inner = sum_i l_i(y_i) (so each block takes
its own step alpha grad l_i), outer = mean_i l_i(y_i), init_inner(x) = (x, ..., x).
``meta_batch=0`` uses the whole pool (deterministic meta-GD); ``meta_batch=B`` makes each draw
B tasks sampled uniformly with replacement from the pool (meta-SGD); its expectation is Phi_N.

Stationary point: the solution of M x = m (a minimum when M > 0, a saddle otherwise).
"""
from __future__ import annotations

import numpy as np
import torch

from blobench import harness
from blobench.core.params import Param


@harness.register_problem("meta-quadratic")
class MetaQuadratic(harness.UnrolledProblem):
    """Multi-step MAML on quadratic tasks, indefinite (nonconvex) or convex Hessians (Ji, Yang, Liang, JMLR 2022)."""

    params = {
        "dim": Param("int", default=4, low=1, doc="dimension of the meta-parameter x"),
        "tasks": Param("int", default=8, low=1, doc="T: size of the task pool"),
        "curvature": Param("str", default="indefinite", choices=("indefinite", "convex"), doc="task Hessian spectra"),
        "L": Param("float", default=1.0, low=0, low_open=True, doc="largest task-Hessian eigenvalue"),
        "neg_ratio": Param("float", default=0.5, low=0, high=1, doc="indefinite: eigenvalues reach -neg_ratio*L"),
        "mu_ratio": Param("float", default=0.0, low=0, high=1, doc="convex: eigenvalues on [mu_ratio*L, L] (> 0: strongly convex tasks)"),
        "unroll_steps": Param("int", default=10, low=0, doc="N: inner adaptation steps"),
        "unroll_lr": Param("float", default=0.05, low=0, low_open=True, doc="alpha: inner step size"),
        "meta_batch": Param("int", default=0, low=0, doc="tasks per draw (0: the whole pool, deterministic)"),
        "seed": Param("int", default=0, low=0, doc="task-pool seed"),
    }

    def setup(self) -> None:
        p = self.p
        d, T, L = p["dim"], p["tasks"], p["L"]
        rng = np.random.default_rng(p["seed"])
        lo = -p["neg_ratio"] * L if p["curvature"] == "indefinite" else p["mu_ratio"] * L
        h = rng.uniform(lo, L, size=(T, d))
        h[0, 0], h[0, -1] = lo, L
        if d == 1:
            h[0, 0] = L if T == 1 else h[0, 0]
            if T > 1:
                h[1, 0] = lo
        Q = np.stack([np.linalg.qr(rng.standard_normal((d, d)))[0] for _ in range(T)])
        self.h = torch.tensor(h, dtype=torch.float64)
        self.Qs = torch.tensor(Q, dtype=torch.float64)
        self.Hs = torch.einsum("tij,tj,tkj->tik", self.Qs, self.h, self.Qs)
        self.Hs = 0.5 * (self.Hs + self.Hs.transpose(1, 2))
        self.cs = torch.tensor(rng.standard_normal((T, d)), dtype=torch.float64)
        self.dim_x = d
        self.B = T if p["meta_batch"] == 0 else p["meta_batch"]
        self.dim_y = self.B * d
        N, a = p["unroll_steps"], p["unroll_lr"]
        Pdiag = (1.0 - a * self.h) ** N
        self.Ms = torch.einsum("tij,tj,tkj->tik", self.Qs, Pdiag * Pdiag * self.h, self.Qs)  # P_i H_i P_i
        self.M = self.Ms.mean(0)
        self.M = 0.5 * (self.M + self.M.T)
        self.m = torch.einsum("tij,tj->ti", self.Ms, self.cs).mean(0)

    @property
    def stochastic(self) -> bool:
        return self.p["meta_batch"] > 0

    @property
    def constants(self) -> dict[str, float]:
        """L (max task eigenvalue), neg_curv (max negative curvature), L_phi = ||M||, mu_phi = lambda_min(M)."""
        ev = torch.linalg.eigvalsh(self.M)
        hmin = float(self.h.min())
        return {"L": self.p["L"], "neg_curv": max(0.0, -hmin), "spec_abs": float(self.h.abs().max()),
                "L_phi": float(ev.abs().max()), "mu_phi": float(ev.min()),
                "jacobian_growth": float((1.0 + self.p["unroll_lr"] * max(0.0, -hmin)) ** self.p["unroll_steps"])}

    def init_inner(self, x):
        return x.repeat(self.B)

    def _tasks(self, batch):
        if batch is None:
            return self.Hs, self.cs
        return batch["H"], batch["c"]

    def _losses(self, y, batch):
        H, c = self._tasks(batch)
        r = y.reshape(self.B, self.dim_x) - c
        return 0.5 * torch.einsum("ti,tij,tj->t", r, H, r)

    def inner(self, x, y, batch=None):
        return self._losses(y, batch).sum()

    def outer(self, x, y, batch=None):
        return self._losses(y, batch).mean()

    def sample(self, generator: torch.Generator, n: int, batch_size: int = 1):
        """n draws of meta_batch tasks each (uniform with replacement); batch_size is unused (a draw is a task batch)."""
        if self.p["meta_batch"] == 0:
            return None
        idx = torch.randint(0, self.p["tasks"], (n, self.B), generator=generator)
        return {"H": self.Hs[idx], "c": self.cs[idx]}

    # -- ground truth --------------------------------------------------------------------------
    def value(self, x) -> float:
        x = torch.as_tensor(x, dtype=torch.float64)
        r = x[None, :] - self.cs
        return float(0.5 * torch.einsum("ti,tij,tj->t", r, self.Ms, r).mean())

    def hypergradient(self, x):
        x = torch.as_tensor(x, dtype=torch.float64)
        return self.M @ x - self.m

    def stationary_points(self):
        return [torch.linalg.solve(self.M, self.m)]

    def x0(self):
        return torch.zeros(self.dim_x, dtype=torch.float64)
