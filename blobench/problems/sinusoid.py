"""Few-shot sinusoid regression with a small MLP (Finn et al. 2017, Sec. 5.1; UFO-BLO, Likhosherstov
et al. ICML 2021, Sec. 5 uses the same algorithm-based objective M^(r), eq. (2)).

A task is y = amp * sin(t - phase), amp ~ U(0.1, 5), phase ~ U(0, pi), t ~ U(-5, 5), with K support
and K_q query points. The model is an MLP 1 -> hidden -> hidden -> 1 (tanh) whose flattened
parameters are theta = phi_0; the inner loss is the support MSE, the outer loss the query MSE.

Ground truth: the task distribution *is* the uniform law on a fixed pool of ``tasks`` tasks drawn
once (seeded, float64) at setup; ``sample`` draws from that pool, so
    hypergradient(theta) = (1/n_pool) sum_pool d/dtheta L_q(phi_r(theta))
is exact (computed by autograd through the unrolled inner loop, vmapped over the pool). There is no
closed form and no known stationary point.
"""
from __future__ import annotations

import math

import torch
from torch.func import grad, vmap

from blobench import harness
from blobench.core.params import Param


def mlp_shapes(sizes: list[int]) -> list[tuple[int, int]]:
    return [(sizes[i + 1], sizes[i]) for i in range(len(sizes) - 1)]


def mlp_forward(theta: torch.Tensor, inp: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Apply the MLP with flattened parameters theta to inputs inp [m, sizes[0]]; tanh hidden layers."""
    h, off = inp, 0
    shapes = mlp_shapes(sizes)
    for i, (o, n_in) in enumerate(shapes):
        W = theta[off:off + o * n_in].reshape(o, n_in)
        off += o * n_in
        b = theta[off:off + o]
        off += o
        h = h @ W.T + b
        if i < len(shapes) - 1:
            h = torch.tanh(h)
    return h


def mlp_init(sizes: list[int], gen: torch.Generator) -> torch.Tensor:
    parts = []
    for o, n_in in mlp_shapes(sizes):
        parts.append(torch.randn(o * n_in, generator=gen, dtype=torch.float64) / math.sqrt(n_in))
        parts.append(torch.zeros(o, dtype=torch.float64))
    return torch.cat(parts)


def pool_hypergradient(problem: harness.Problem, x: torch.Tensor, pool: dict[str, torch.Tensor],
                       chunk: int = 256) -> tuple[float, torch.Tensor]:
    """Exact (value, gradient) of M^(r) averaged over a task pool, by autograd through the unroll."""
    r, lr = problem.target.steps, problem.target.lr

    def meta_loss(th, task):
        phi = problem.init_inner(th)
        for _ in range(r):
            phi = phi - lr * grad(problem.inner, argnums=1)(th, phi, task)
        return problem.outer(th, phi, task)

    def vg(th, task):
        return meta_loss(th, task), grad(meta_loss)(th, task)

    n = next(iter(pool.values())).shape[0]
    vals, grads = [], []
    for a in range(0, n, chunk):
        v, g = vmap(vg, in_dims=(None, 0))(x, {k: t[a:a + chunk] for k, t in pool.items()})
        vals.append(v)
        grads.append(g)
    return float(torch.cat(vals).mean()), torch.cat(grads).mean(0)


class TaskPoolProblem(harness.UnrolledProblem):
    """Shared base of the pool-defined algorithm-based problems (sinusoid, digits-fewshot).

    The task distribution is the uniform law on ``self.pool`` (a dict of tensors with leading dim
    = number of tasks, built in ``setup``); theta = phi_0 (``init_inner(x) = x``), r = unroll_steps,
    alpha = unroll_lr, and value / hypergradient are exact averages over the pool.
    """

    pool: dict[str, torch.Tensor]
    _x0: torch.Tensor

    def sample(self, generator: torch.Generator, n: int, batch_size: int = 1):
        """n tasks drawn uniformly (with replacement) from the fixed pool."""
        i = torch.randint(0, self.p["tasks"], (n,), generator=generator)
        return {k: v[i] for k, v in self.pool.items()}

    def x0(self):
        return self._x0.clone()

    def value(self, x) -> float:
        return pool_hypergradient(self, torch.as_tensor(x, dtype=torch.float64), self.pool)[0]

    def hypergradient(self, x):
        return pool_hypergradient(self, torch.as_tensor(x, dtype=torch.float64), self.pool)[1]


@harness.register_problem("sinusoid")
class Sinusoid(TaskPoolProblem):
    """Few-shot sinusoid regression with a small tanh MLP; truth = exact unrolled gradient over a fixed float64 task pool."""

    params = {
        "hidden": Param("int", default=16, low=1, doc="hidden width of the 2-hidden-layer MLP"),
        "shots": Param("int", default=10, low=1, doc="K: support points per task"),
        "query": Param("int", default=10, low=1, doc="K_q: query points per task"),
        "unroll_steps": Param("int", default=5, low=0, doc="r: inner GD steps"),
        "unroll_lr": Param("float", default=0.01, low=0, low_open=True, doc="alpha: inner step size"),
        "tasks": Param("int", default=512, low=1, doc="size of the fixed task pool (the task distribution)"),
        "seed": Param("int", default=0, low=0, doc="seed of the task pool and of x0"),
    }

    def setup(self) -> None:
        p = self.p
        h = p["hidden"]
        self.sizes = [1, h, h, 1]
        gen = torch.Generator().manual_seed(p["seed"])
        u = lambda *s: torch.rand(s, generator=gen, dtype=torch.float64)  # noqa: E731
        n = p["tasks"]
        amp = 0.1 + 4.9 * u(n, 1)
        ph = math.pi * u(n, 1)
        ts, tq = -5 + 10 * u(n, p["shots"]), -5 + 10 * u(n, p["query"])
        self.pool = {"ts": ts, "ys": amp * torch.sin(ts - ph), "tq": tq, "yq": amp * torch.sin(tq - ph)}
        self._x0 = mlp_init(self.sizes, gen)
        self.dim_x = self.dim_y = self._x0.numel()

    def _mse(self, y, t, target):
        pred = mlp_forward(y, t.unsqueeze(-1), self.sizes).squeeze(-1)
        return torch.mean((pred - target) ** 2)

    def inner(self, x, y, batch=None):
        return self._mse(y, batch["ts"], batch["ys"])

    def outer(self, x, y, batch=None):
        return self._mse(y, batch["tq"], batch["yq"])

