"""Hessian-free / zeroth-order hypergradients: Gaussian smoothing of Phi, and PZOBO.

Both solve the inner problem at perturbed points x + mu u (u ~ N(0, I_dx), mu = ``radius``,
Q = ``directions``) with inner_steps K of gradient descent from the same start, the perturbed
solves running as one batched oracle call per step (``Oracles.grad_y_g_points``, counted once
per point).

- ``es`` (evolution-strategies / Gaussian-smoothing hypergradient; Nesterov & Spokoiny 2017,
  "Random gradient-free minimization of convex functions", eq. (27) central scheme; Salimans et
  al. 2017's mirrored sampling): Phi_hat(x') = f(x', y_K(x')), and

      g = 1/Q sum_q (Phi_hat(x + mu u_q) - Phi_hat(x - mu u_q)) / (2 mu) u_q.

  Its mean is the gradient of the smoothed Phi_mu = E Phi(x + mu u), whose distance to grad Phi
  is O(mu^2) (the odd terms cancel); when the two values of a pair carry independent minibatch
  noise of variance sigma^2 its variance grows like d sigma^2 / (2 Q mu^2) (claim
  ``zo-smoothing-bias`` and ``zo-smoothing-variance``). ``common_batches`` gives both points of a pair the same
  outer minibatch (common random numbers), which removes that term. Only function values of f
  (2Q) and grad_y g (2QK) are used: no derivative of f at all.
- ``pzobo`` (Sow, Ji, Liang, "On the Convergence Theory for Hessian-Free Bilevel Algorithms",
  NeurIPS 2022, arXiv 2110.07004, Algorithm 1 "PZOBO"): the Jacobian of y_K(x) is estimated by
  differences of inner trajectories, delta_q = (y_K(x + mu u_q) - y_K(x)) / mu, and

      g = grad_x f(x, y_K) + 1/Q sum_q <delta_q, grad_y f(x, y_K)> u_q.

  y_0 is warm-started across outer iterations (the previous y_K, in ``Estimate.state``) as in
  the paper's Algorithm 1.

Oracle accounting (tested): ``es`` 2QK grad_y g and 2Q f values; ``pzobo`` (Q + 1)K grad_y g,
1 grad_x f, 1 grad_y f.
"""
from __future__ import annotations

import torch
from torch.func import vmap

from blobench import harness
from blobench.core.theory import BiasFloor
from blobench.core.estimator_base import BATCH_SIZE, INNER_LR, INNER_STEPS, batch_of, draw_batches, step_batches
from blobench.core.numerics import inner_gd
from blobench.core.params import Param

DIRECTIONS = Param("int", default=10, low=1, doc="Q: random Gaussian directions per estimate")
RADIUS = Param("float", default=1e-2, low=0.0, low_open=True, doc="mu: smoothing radius (finite-difference step)")


class _Points:
    """The counted oracles seen by :func:`blobench.core.numerics.inner_gd` when x and y are stacks of K points:
    one batched grad_y g per step, counted K times."""

    def __init__(self, oracles):
        self.o = oracles

    def grad_y_g(self, xs, ys, batch=None):
        return self.o.grad_y_g_points(xs, ys, batch)


def solve_at_points(oracles, xs: torch.Tensor, y0: torch.Tensor, steps: int, lr: float, batch) -> torch.Tensor:
    """y_K at each of the K points xs (K x dim_x), every solve from y0 with the same per-step batches."""
    ys0 = y0.unsqueeze(0).expand(xs.shape[0], -1) if y0.dim() == 1 else y0
    return inner_gd(_Points(oracles), xs, ys0, steps, lr, batch)[0]


class ZerothOrderBase(harness.Estimator):
    params = {"inner_steps": INNER_STEPS, "inner_lr": INNER_LR, "batch_size": BATCH_SIZE,
              "directions": DIRECTIONS, "radius": RADIUS}

    def directions(self, problem, generator, n) -> torch.Tensor:
        return torch.randn((n, self.p["directions"], problem.dim_x), generator=generator, dtype=problem.dtype)


@harness.register_estimator("es")
class ES(ZerothOrderBase):
    """Gaussian-smoothing (ES) hypergradient from 2Q values Phi_hat(x +- mu u) = f(x', y_K(x')) (Nesterov & Spokoiny 2017, central scheme)."""

    theory = (
        BiasFloor("inner_steps", "Nesterov & Spokoiny 2017, Th. 1: Gaussian smoothing bias O(radius)",
                  reason="smoothing bias O(radius) and Monte-Carlo noise in the directions"),
    )

    params = {**ZerothOrderBase.params,
              "common_batches": Param("bool", default=False, doc="both points of a pair share one outer minibatch")}
    #: divide by 2 mu (False only in the negative control: the wrong scale 1/mu)
    central_scale: bool = True

    def draw(self, problem, generator, n):
        Q = self.p["directions"]
        out = draw_batches(problem, generator, n, {"inner": self.inner_steps(problem), "outer": Q if self.p["common_batches"] else 2 * Q},
                           self.p["batch_size"])
        out["dir/u"] = self.directions(problem, generator, n)
        return out

    def estimate(self, oracles, x, noise, state=None):
        K, lr, mu = self.inner_steps(oracles), self.inner_lr(oracles), float(self.p["radius"])
        u = noise["dir/u"]
        Q = u.shape[0]
        xs = torch.cat([x + mu * u, x - mu * u])
        y0 = vmap(oracles.init_inner)(xs)
        ys = solve_at_points(oracles, xs, y0, K, lr, step_batches(oracles, noise))
        bf = batch_of(noise, "outer")
        if bf is not None and oracles.target.kind != "unrolled":
            if self.p["common_batches"]:
                bf = {k: torch.cat([t, t]) for k, t in bf.items()}
            vals = oracles.f_values(xs, ys, bf, batched=True)
        else:
            vals = oracles.f_values(xs, ys, bf)
        scale = 2 * mu if self.central_scale else mu
        coef = (vals[:Q] - vals[Q:]) / scale
        return harness.Estimate((coef.unsqueeze(1) * u).mean(0))


@harness.register_estimator("pzobo")
class PZOBO(ZerothOrderBase):
    """PZOBO: Jacobian of y_K by differences of inner trajectories at x + mu u_q, g = grad_x f + mean <delta_q, grad_y f> u_q (Sow, Ji, Liang 2022, Alg. 1)."""

    theory = (
        BiasFloor("inner_steps", "Sow, Ji & Liang 2022 (PZOBO), Prop. 1: O(radius) smoothing bias",
                  reason="the Jacobian of y_K is estimated by differences with radius > 0"),
    )

    params = {**ZerothOrderBase.params,
              "warm_start": Param("bool", default=True, doc="y_0 of step k is y_K of step k-1 (Sow et al. 2022, Alg. 1)")}

    def draw(self, problem, generator, n):
        out = draw_batches(problem, generator, n, {"inner": self.inner_steps(problem), "outer": 0}, self.p["batch_size"])
        out["dir/u"] = self.directions(problem, generator, n)
        return out

    def estimate(self, oracles, x, noise, state=None):
        K, lr, mu = self.inner_steps(oracles), self.inner_lr(oracles), float(self.p["radius"])
        u = noise["dir/u"]
        warm = bool(self.p["warm_start"]) and state is not None and "y" in state
        xs = torch.cat([x.unsqueeze(0), x + mu * u])
        y0 = state["y"].detach() if warm else vmap(oracles.init_inner)(xs)
        ys = solve_at_points(oracles, xs, y0, K, lr, step_batches(oracles, noise))
        y = ys[0]
        gx, gy = oracles.grad_f(x, y, batch_of(noise, "outer"))
        delta = (ys[1:] - y) / mu
        g = gx + ((delta @ gy).unsqueeze(1) * u).mean(0)
        return harness.Estimate(g, state={"y": y.detach()} if self.p["warm_start"] else None)
