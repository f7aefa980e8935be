"""ANIL few-shot problem: shared features (outer) and a linear head adapted N steps per task (inner).

Algorithm-based bilevel problem of Ji, Lee, Liang, Poor, "Convergence of Meta-Learning with
Task-Specific Adaptation over Partial Parameters" (NeurIPS 2020, arXiv 2006.09486), eq. (1)-(3):
the meta-parameters are x = (phi, w_0): phi (a p x k feature matrix, features tanh(z^T phi)) and
the head initialisation w_0 in R^k; on task i the head is adapted N steps with phi frozen,

    w_{j+1} = w_j - alpha grad_w L^tr_i(w_j, phi),   w_0 = w_0(x),

and Phi_N(x) = 1/T sum_i L^te_i(w_N^i, phi) (target "unrolled", N = unroll_steps, alpha = unroll_lr).
Head losses (binary labels t in {0, 1}, scores s = tanh(z^T phi) w):
- ``head_loss="strongly-convex"``: logistic loss + head_reg/2 ||w||^2 (strongly convex in w,
  the paper's Sec. 3 setting; smoothness L_w <= k/4 + head_reg since |features| <= 1);
- ``head_loss="nonconvex"``: squared loss of the sigmoid, (sigmoid(s) - t)^2 (+ the same ridge),
  nonconvex in w (the paper's Sec. 4 setting).
Tasks: T tasks in a pool, each a random linear teacher u_i on N(0, I_p) inputs, ``shots`` support
and ``queries`` query samples. Tasks are stacked in y (one head per task) exactly as in
``meta-quadratic``; ``meta_batch > 0`` samples that many tasks per draw instead of the pool.

Ground truth (float64): Phi_N and its gradient by autograd through the exact N-step recursion
(no stationary point is known: the problem is nonconvex in phi; convergence runs use ||grad Phi||^2).
"""
from __future__ import annotations

import numpy as np
import torch

from blobench import harness
from blobench.core.params import Param


@harness.register_problem("anil-fewshot")
class AnilFewshot(harness.UnrolledProblem):
    """ANIL: shared tanh features + linear head adapted N steps; strongly convex or nonconvex head loss (Ji et al. NeurIPS 2020)."""

    params = {
        "head_loss": Param("str", default="strongly-convex", choices=("strongly-convex", "nonconvex"), doc="inner (head) loss"),
        "inputs": Param("int", default=5, low=1, doc="p: input dimension"),
        "features": Param("int", default=4, low=1, doc="k: feature / head dimension"),
        "tasks": Param("int", default=8, low=1, doc="T: task pool size"),
        "shots": Param("int", default=10, low=1, doc="support samples per task (inner loss)"),
        "queries": Param("int", default=20, low=1, doc="query samples per task (outer loss)"),
        "head_reg": Param("float", optional=True, low=0, doc="ridge on the head (default 0.5 strongly convex, 0 nonconvex)"),
        "unroll_steps": Param("int", default=5, low=0, doc="N: head adaptation steps"),
        "unroll_lr": Param("float", default=0.5, low=0, low_open=True, doc="alpha: head step size"),
        "meta_batch": Param("int", default=0, low=0, doc="tasks per draw (0: the whole pool, deterministic)"),
        "seed": Param("int", default=0, low=0, doc="task-pool and initialisation seed"),
    }

    def setup(self) -> None:
        p = self.p
        rng = np.random.default_rng(p["seed"])
        T, d, k = p["tasks"], p["inputs"], p["features"]
        t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
        U = rng.standard_normal((T, d))
        Zs, Zq = rng.standard_normal((T, p["shots"], d)), rng.standard_normal((T, p["queries"], d))
        self.Zs, self.Zq = t(Zs), t(Zq)
        self.Ts = t((np.einsum("tnd,td->tn", Zs, U) > 0).astype(float))
        self.Tq = t((np.einsum("tnd,td->tn", Zq, U) > 0).astype(float))
        self.k, self.d = k, d
        self.dim_x = d * k + k
        self.B = T if p["meta_batch"] == 0 else p["meta_batch"]
        self.dim_y = self.B * k
        reg = p["head_reg"]
        self.reg = (0.5 if p["head_loss"] == "strongly-convex" else 0.0) if reg is None else reg
        self._x0 = t(np.concatenate([rng.standard_normal(d * k) / np.sqrt(d), np.zeros(k)]))

    @property
    def stochastic(self) -> bool:
        return self.p["meta_batch"] > 0

    @property
    def constants(self) -> dict[str, float]:
        """L: bound on the head-loss smoothness in w (|features| <= 1 so ||F||^2 <= k): logistic l'' <= 1/4 gives
        k/4 + reg; sigmoid-MSE |l''| <= 2(1/16 + 1/4) = 0.625 gives 0.625 k + reg. mu: reg (strongly convex) or 0."""
        k = self.k
        L = k / 4 + self.reg if self.p["head_loss"] == "strongly-convex" else 0.625 * k + self.reg
        return {"L": L, "mu": self.reg if self.p["head_loss"] == "strongly-convex" else 0.0}

    def init_inner(self, x):
        return x[self.d * self.k:].repeat(self.B)

    def _data(self, batch, role):
        if batch is None:
            return (self.Zs, self.Ts) if role == "s" else (self.Zq, self.Tq)
        return (batch["Zs"], batch["Ts"]) if role == "s" else (batch["Zq"], batch["Tq"])

    def _loss(self, x, y, Z, T):
        phi = x[: self.d * self.k].reshape(self.d, self.k)
        W = y.reshape(self.B, self.k)
        s = torch.einsum("tnk,tk->tn", torch.tanh(Z @ phi), W)
        if self.p["head_loss"] == "strongly-convex":
            per = torch.nn.functional.softplus(s) - T * s  # logistic loss
        else:
            per = (torch.sigmoid(s) - T) ** 2
        return per.mean(1) + 0.5 * self.reg * (W * W).sum(1)

    def inner(self, x, y, batch=None):
        Z, T = self._data(batch, "s")
        return self._loss(x, y, Z, T).sum()

    def outer(self, x, y, batch=None):
        Z, T = self._data(batch, "q")
        return self._loss(x, y, Z, T).mean()

    def sample(self, generator: torch.Generator, n: int, batch_size: int = 1):
        """n draws of meta_batch tasks (uniform, with replacement); batch_size is unused."""
        if self.p["meta_batch"] == 0:
            return None
        idx = torch.randint(0, self.p["tasks"], (n, self.B), generator=generator)
        return {"Zs": self.Zs[idx], "Ts": self.Ts[idx], "Zq": self.Zq[idx], "Tq": self.Tq[idx]}

    # -- ground truth: exact unrolled recursion over the whole pool ----------------------------
    def _phi(self, x: torch.Tensor) -> torch.Tensor:
        """Phi_N(x) as a differentiable graph (plain autograd with create_graph: exact, and fast on CPU)."""
        y = x[self.d * self.k:].repeat(self.p["tasks"])
        for _ in range(self.p["unroll_steps"]):
            (gy,) = torch.autograd.grad(self._pool_inner(x, y), y if y.requires_grad else y.requires_grad_(), create_graph=True)
            y = y - self.p["unroll_lr"] * gy
        return self._pool_outer(x, y)

    def _pool_inner(self, x, y):
        return self._pool_loss(x, y, self.Zs, self.Ts).sum()

    def _pool_outer(self, x, y):
        return self._pool_loss(x, y, self.Zq, self.Tq).mean()

    def _pool_loss(self, x, y, Z, T):
        B = self.B
        self.B = self.p["tasks"]
        try:
            return self._loss(x, y, Z, T)
        finally:
            self.B = B

    def value(self, x) -> float:
        with torch.enable_grad():
            return float(self._phi(torch.as_tensor(x, dtype=torch.float64).detach().requires_grad_()).detach())

    def hypergradient(self, x):
        with torch.enable_grad():
            xx = torch.as_tensor(x, dtype=torch.float64).detach().clone().requires_grad_()
            (g,) = torch.autograd.grad(self._phi(xx), xx)
        return g.detach()

    def x0(self):
        return self._x0.clone()
