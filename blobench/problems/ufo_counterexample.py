"""UFO-BLO's scalar two-task counterexample, on which FO-based SGD does not reach a stationary point.

Likhosherstov, Song, Choromanski, Davis, Weller, "Debiasing a First-order Heuristic for
Approximate Bi-level Optimization" (ICML 2021; arXiv 2006.03631 "UFO-BLO"), Section 3 /
Theorem 1 counterexample. Task i = (a_i, b_i), drawn uniformly from two tasks, with a C^2
Huber-like loss in u = phi - b/a, z = |u| and a shared width A:

    l(phi) = a z^2/2                                                   z <= A
           = -a(z-A)^3/6 + a(z-A)^2/2 + aAz - aA^2/2                     A < z <= A+1
           = (a/2 + aA) z - a/6 - aA^2/2 - aA/2                          z > A+1

used both for the r inner steps phi_j = phi_{j-1} - alpha l'(phi_{j-1}) (phi_0 = theta) and as the
outer loss; M^(r)(theta) = (l_1(phi_r^1) + l_2(phi_r^2)) / 2.

Defaults: r = 10, alpha = 0.1, a1 = 0.5, a2 = 1.5, b1 = 0, D = 0.06; with p_i = (1 - alpha a_i)^r,
    b2 = 2 sqrt(2D) / |(a1 p1^2 + a2 p2^2) p2 / (a1 p1 + a2 p2) - p2^2|,  A = |b1/a1 - b2/a2| + 1.
Where both tasks are quadratic, phi_r^i - c_i = p_i (theta - c_i) (c_i = b_i/a_i), so
    M'(theta)   = 1/2 sum_i a_i p_i^2 (theta - c_i)     (stationary point theta*),
    E g_FO      = 1/2 sum_i a_i p_i   (theta - c_i)     (FO fixed point theta_FO),
and |M'(theta_FO)| = sqrt(2D) exactly (for b1 = 0): the FO heuristic stalls at a non-stationary point.

Ground truth: value and gradient anywhere by the exact scalar recursion in float64 (chain rule
with the analytic l' and l''); stationary point and FO fixed point in closed form.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from blobench import harness
from blobench.core.errors import ParameterError
from blobench.core.params import Param


def _loss(u: torch.Tensor, a: torch.Tensor, A: float) -> torch.Tensor:
    """l as a torch function of u = phi - b/a (vmappable; C^2; exact second derivative everywhere)."""
    z = torch.abs(u)
    zc = torch.clamp(z - A, min=0.0, max=1.0)  # inside the cubic piece
    quad = 0.5 * a * u * u  # written in u so that autograd's l'' = a at u = 0
    cubic = -a * zc ** 3 / 6 + a * zc ** 2 / 2 + a * A * z - a * A * A / 2
    lin = (a / 2 + a * A) * z - a / 6 - a * A * A / 2 - a * A / 2
    return torch.where(z <= A, quad, torch.where(z <= A + 1, cubic, lin))


def loss_np(u, a, A):
    """l(u) in numpy float64 (vectorised)."""
    z = np.abs(u)
    zc = np.clip(z - A, 0.0, 1.0)
    return np.where(z <= A, 0.5 * a * u * u,
                    np.where(z <= A + 1, -a * zc ** 3 / 6 + a * zc ** 2 / 2 + a * A * z - a * A * A / 2,
                             (a / 2 + a * A) * z - a / 6 - a * A * A / 2 - a * A / 2))


def dloss_np(u, a, A):
    """l'(u)."""
    z = np.abs(u)
    zc = np.clip(z - A, 0.0, 1.0)
    dz = np.where(z <= A, a * z, np.where(z <= A + 1, -a * zc ** 2 / 2 + a * zc + a * A, a / 2 + a * A))
    return np.sign(u) * dz


def d2loss_np(u, a, A):
    """l''(u)."""
    z = np.abs(u)
    zc = np.clip(z - A, 0.0, 1.0)
    return np.where(z <= A, a, np.where(z <= A + 1, a * (1.0 - zc), 0.0))


@harness.register_problem("ufo-counterexample")
class UFOCounterexample(harness.Problem):
    """UFO-BLO's scalar two-task counterexample (Likhosherstov et al. 2021, Sec. 3): FO-SGD stalls at |M'| = sqrt(2D)."""

    params = {
        "unroll_steps": Param("int", default=10, low=1, doc="r: inner GD steps"),
        "unroll_lr": Param("float", default=0.1, low=0, low_open=True, doc="alpha: inner step size"),
        "a1": Param("float", default=0.5, low=0, low_open=True, doc="curvature of task 1"),
        "a2": Param("float", default=1.5, low=0, low_open=True, doc="curvature of task 2"),
        "b1": Param("float", default=0.0, doc="linear coefficient of task 1 (minimiser b1/a1)"),
        "D": Param("float", default=0.06, low=0, low_open=True, doc="FO's stall level: |M'(theta_FO)| = sqrt(2D) when b1 = 0"),
    }
    dim_x = 1
    dim_y = 1

    def setup(self) -> None:
        p = self.p
        r, al = p["unroll_steps"], p["unroll_lr"]
        a1, a2 = p["a1"], p["a2"]
        for a in (a1, a2):
            if al * a >= 1:
                raise ParameterError(f"problem 'ufo-counterexample': unroll_lr * a_i must be < 1 (got {al * a:g}); inner GD would not contract")
        p1, p2 = (1 - al * a1) ** r, (1 - al * a2) ** r
        den = abs((a1 * p1 ** 2 + a2 * p2 ** 2) * p2 / (a1 * p1 + a2 * p2) - p2 ** 2)
        if den == 0:
            raise ParameterError("problem 'ufo-counterexample': a1 and a2 give p1 = p2, so FO is unbiased and b2 is undefined; choose a1 != a2")
        b2 = 2 * math.sqrt(2 * p["D"]) / den
        self.a = np.array([a1, a2])
        self.b = np.array([p["b1"], b2])
        self.c = self.b / self.a
        self.pw = np.array([p1, p2])
        self.A = abs(self.c[0] - self.c[1]) + 1.0
        self.r, self.alpha = r, al

    @property
    def target(self) -> harness.Target:
        return harness.Target("unrolled", steps=self.r, lr=self.alpha)

    @property
    def stochastic(self) -> bool:
        return True

    @property
    def constants(self) -> dict[str, float]:
        return {"L": float(self.a.max()), "mu": float(self.a.min()), "D": self.p["D"],
                "stall_level": math.sqrt(2 * self.p["D"]), "A": self.A, "b2": float(self.b[1])}

    def init_inner(self, x):
        return x

    def x0(self):
        return torch.tensor([20.0], dtype=torch.float64)

    def _l(self, y, batch):
        return _loss(y[0] - batch["b"] / batch["a"], batch["a"], self.A)

    def inner(self, x, y, batch=None):
        return self._l(y, batch)

    def outer(self, x, y, batch=None):
        return self._l(y, batch)

    def sample(self, generator: torch.Generator, n: int, batch_size: int = 1):
        """n tasks, each task 1 or 2 with probability 1/2 (batch_size is ignored: a draw is one task)."""
        i = torch.randint(0, 2, (n,), generator=generator)
        a = torch.tensor(self.a, dtype=torch.float64)[i]
        b = torch.tensor(self.b, dtype=torch.float64)[i]
        return {"a": a, "b": b}

    # -- ground truth ----------------------------------------------------------------------
    def task_gradients(self, theta) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-task (loss, exact gradient g_i, first-order g_FO,i) at theta (any shape), float64.

        Returns arrays of shape theta.shape + (2,). Exact: g = prod_j (1 - alpha l''(phi_j)) l'(phi_r).
        """
        th = np.asarray(theta, dtype=np.float64)[..., None]
        u = th - self.c  # phi - c_i
        jac = np.ones_like(u)
        for _ in range(self.r):
            jac = jac * (1 - self.alpha * d2loss_np(u, self.a, self.A))
            u = u - self.alpha * dloss_np(u, self.a, self.A)
        gfo = dloss_np(u, self.a, self.A)
        return loss_np(u, self.a, self.A), jac * gfo, gfo

    def value(self, x) -> float:
        x = torch.as_tensor(x, dtype=torch.float64).reshape(-1)
        return float(self.task_gradients(float(x[0]))[0].mean())

    def hypergradient(self, x):
        x = torch.as_tensor(x, dtype=torch.float64).reshape(-1)
        return torch.tensor([self.task_gradients(float(x[0]))[1].mean()], dtype=torch.float64)

    def fo_mean(self, x) -> torch.Tensor:
        """E_task g_FO(x), the FO heuristic's expected update direction."""
        x = torch.as_tensor(x, dtype=torch.float64).reshape(-1)
        return torch.tensor([self.task_gradients(float(x[0]))[2].mean()], dtype=torch.float64)

    def stationary_points(self):
        """theta* = sum a_i p_i^2 c_i / sum a_i p_i^2 (in the region where both tasks are quadratic)."""
        w = self.a * self.pw ** 2
        return [torch.tensor([float((w * self.c).sum() / w.sum())], dtype=torch.float64)]

    def fo_fixed_point(self) -> torch.Tensor:
        """theta_FO = sum a_i p_i c_i / sum a_i p_i: where E g_FO = 0 but M' != 0."""
        w = self.a * self.pw
        return torch.tensor([float((w * self.c).sum() / w.sum())], dtype=torch.float64)
