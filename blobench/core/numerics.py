"""Shared numerics, written once and composed by every estimator.

- inner solvers: :func:`inner_gd` (GD/SGD on g, optionally keeping the trajectory);
- reverse-mode unrolling: :func:`unroll_backward` (ITD, MAML, truncated backprop),
  and its O(1)-memory variant that recomputes the trajectory;
- linear solvers for grad2_yy g v = b: :func:`cg`, :func:`neumann`, :func:`fixed_point`.

Every loop has a fixed length (no data-dependent early exit) so that it runs under
torch.func.vmap; divisions are guarded so that a converged CG stays finite.
Oracle calls go through a counted :class:`~blobench.core.oracles.Oracles`.
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch

from blobench.core.oracles import Oracles
from blobench.core.problem_base import Batch

BatchFn = Callable[[int], Batch]


def no_batches(k: int) -> Batch:
    return None


def per_step(batches: Mapping[str, torch.Tensor] | None) -> BatchFn:
    """Step k uses its own minibatch: ``batches[name][k]``."""
    if batches is None:
        return no_batches
    return lambda k: {name: t[k] for name, t in batches.items()}


def shared(batch: Batch) -> BatchFn:
    """Every step uses the same batch (one task of an algorithm-based problem)."""
    return lambda k: batch


def inner_gd(
    o: Oracles, x: torch.Tensor, y0: torch.Tensor, steps: int, lr: float,
    batch: BatchFn = no_batches, keep: bool = False, linearize_from: int | None = None,
) -> tuple[torch.Tensor, list]:
    """y_{k+1} = y_k - lr * grad_y g(x, y_k; batch(k)), k < steps. Costs ``steps`` grad_y g.

    Returns (y_steps, trajectory) where trajectory = [y_0, ..., y_{steps-1}] if keep else [].
    With ``linearize_from`` = s, steps k >= s take grad_y g from a kept linearisation
    (:meth:`~blobench.core.oracles.Oracles.linearize`, the graph a hand-written create_graph=True loop
    keeps) and the trajectory is those steps' linearisations, for :func:`unroll_backward`'s ``lins``.
    """
    y = y0
    traj: list = []
    for k in range(steps):
        if linearize_from is not None and k >= linearize_from:
            lin = o.linearize(x, y, batch(k), value=True, joint=True)
            traj.append(lin)
            y = y - lr * lin.value
            continue
        if keep:
            traj.append(y)
        y = y - lr * o.grad_y_g(x, y, batch(k))
    return y, traj


def unroll_backward(
    o: Oracles, x: torch.Tensor, traj: list[torch.Tensor] | None, y0: torch.Tensor, v: torch.Tensor, lr: float,
    steps: int, batch: BatchFn = no_batches, truncate: int | None = None, lins: list | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reverse-mode differentiation through ``steps`` steps of :func:`inner_gd`.

    Given the adjoint v = dF/dy_steps, returns (gx, v_0): gx = sum over the backpropagated
    steps of -lr * grad2_xy g(x, y_k) v_{k+1}, and v_0 the adjoint of the first kept state.
    Step k (from steps-1 down) costs one HV and one JV at y_k. ``truncate`` keeps only the
    last ``truncate`` steps (truncated backpropagation; Shaban et al. 2019).

    With ``traj`` the stored trajectory is used (O(steps) memory); with ``traj=None``
    each y_k is recomputed from y0 (O(1) memory in steps, k extra grad_y g calls per step:
    O(steps^2) in all), giving identical numbers. With ``lins`` (the linearisations of the last
    ``len(lins)`` steps from ``inner_gd(..., linearize_from=...)``) each step is one backward pass
    through the graph kept by the forward pass instead of rebuilding it at y_k (same numbers).
    """
    kept = steps if truncate is None else min(truncate, steps)
    gx = torch.zeros_like(x)
    for k in range(steps - 1, steps - 1 - kept, -1):
        if lins is not None:
            hv, jv = lins[k - (steps - len(lins))].hv_jv(v)
        else:
            yk = traj[k] if traj is not None else inner_gd(o, x, y0, k, lr, batch)[0]
            hv, jv = o.hvp_jvp(x, yk, v, batch(k))
        gx = gx - lr * jv
        v = v - lr * hv
    return gx, v


def _safe_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    tiny = torch.finfo(b.dtype).tiny
    ok = b.abs() > tiny
    return torch.where(ok, a / torch.where(ok, b, torch.ones_like(b)), torch.zeros_like(a))


def cg(matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, steps: int,
       v0: torch.Tensor | None = None) -> torch.Tensor:
    """``steps`` iterations of conjugate gradient on H v = b (H symmetric positive definite).

    Costs ``steps`` matvecs when v0 is None (the first residual is b), ``steps + 1`` otherwise.
    Hestenes-Stiefel form; a converged system (zero residual) stays put instead of dividing by 0.
    """
    if v0 is None:
        v = torch.zeros_like(b)
        r = b
    else:
        v = v0
        r = b - matvec(v0)
    p = r
    rs = torch.dot(r, r)
    for _ in range(steps):
        hp = matvec(p)
        alpha = _safe_div(rs, torch.dot(p, hp))
        v = v + alpha * p
        r = r - alpha * hp
        rs_new = torch.dot(r, r)
        p = r + _safe_div(rs_new, rs) * p
        rs = rs_new
    return v


def cg_tol(matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, tol: float, max_steps: int = 10_000,
           v0: torch.Tensor | None = None) -> tuple[torch.Tensor, float, int]:
    """Conjugate gradient on H v = b (H symmetric positive definite) until the residual ||b - H v|| <= tol:
    (v, final residual norm, matvecs). Not vmappable (it branches on the residual): for ground truth, e.g. the
    Newton-CG truth of blobench/problems/datacleaning.py. The residual is recomputed from scratch every 50 steps
    so that rounding in the recursive residual cannot hide a stalled solve."""
    v = torch.zeros_like(b) if v0 is None else v0.clone()
    r = b - matvec(v) if v0 is not None else b.clone()
    p = r.clone()
    rs = float(torch.dot(r, r))
    n = int(v0 is not None)
    for k in range(max_steps):
        if rs ** 0.5 <= tol:
            break
        hp = matvec(p)
        n += 1
        alpha = rs / float(torch.dot(p, hp))
        v = v + alpha * p
        if (k + 1) % 50 == 0:
            r = b - matvec(v)
            n += 1
        else:
            r = r - alpha * hp
        rs_new = float(torch.dot(r, r))
        p = r + (rs_new / rs) * p
        rs = rs_new
    return v, rs ** 0.5, n


def neumann(matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, steps: int, eta: float,
            matvec_at: Callable[[int, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Truncated Neumann series v_Q = eta * sum_{i=0}^{Q} (I - eta H)^i b ~ H^{-1} b.

    Costs Q matvecs. ``matvec_at(i, p)`` lets term i use its own (stochastic) Hessian,
    in which case term i is prod_{j<=i} (I - eta H_j) b (stocBiO's form).
    """
    p = b
    acc = b
    for i in range(steps):
        hp = matvec_at(i, p) if matvec_at is not None else matvec(p)
        p = p - eta * hp
        acc = acc + p
    return eta * acc


def fixed_point(matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, steps: int, eta: float,
                v0: torch.Tensor | None = None) -> torch.Tensor:
    """Fixed-point iteration v <- v - eta (H v - b) (AID-FP; Grazzi et al. 2020). Costs ``steps`` matvecs.

    From v0 = 0 it equals the Neumann series with steps-1 terms; with v0 it warm-starts.
    """
    v = torch.zeros_like(b) if v0 is None else v0
    for _ in range(steps):
        v = v - eta * (matvec(v) - b)
    return v


# -- Nesterov's accelerated gradient (inner_solver = "agd"; AccBiO, Ji & Liang 2023) -----------------

def agd_momentum(momentum: float | None, k: int) -> float:
    """Momentum of AGD step k: the constant (1 - sqrt(lr mu)) / (1 + sqrt(lr mu)) of the strongly convex
    scheme when given, else the convex schedule k / (k + 3) (Nesterov 2004, Sec. 2.2; Beck & Teboulle 2009)."""
    return float(momentum) if momentum is not None else k / (k + 3.0)


def strongly_convex_momentum(lr: float, mu: float) -> float:
    """(1 - sqrt(lr mu)) / (1 + sqrt(lr mu)) = (sqrt(kappa) - 1) / (sqrt(kappa) + 1) for lr = 1/L."""
    q = (max(lr * mu, 0.0)) ** 0.5
    return (1.0 - q) / (1.0 + q)


def agd(grad_fn: Callable[[int, torch.Tensor], torch.Tensor], y0: torch.Tensor, steps: int, lr: float,
        momentum: float | None = None, keep: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Nesterov's accelerated gradient from y0 (Nesterov 2004, Scheme 2.2.19, constant-step form):

        y_{k+1} = z_k - lr * grad_fn(k, z_k),   z_{k+1} = y_{k+1} + m_k (y_{k+1} - y_k),   z_0 = y_0,

    m_k from :func:`agd_momentum`. Costs ``steps`` gradient calls. Returns (y_steps, [z_0, ..., z_{steps-1}])
    (the points where the gradient was taken) if keep else (y_steps, [])."""
    y, z = y0, y0
    traj: list[torch.Tensor] = []
    for k in range(steps):
        if keep:
            traj.append(z)
        y_new = z - lr * grad_fn(k, z)
        z = y_new + agd_momentum(momentum, k) * (y_new - y)
        y = y_new
    return y, traj


def inner_agd(
    o: Oracles, x: torch.Tensor, y0: torch.Tensor, steps: int, lr: float, momentum: float | None = None,
    batch: BatchFn = no_batches, keep: bool = False,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """:func:`agd` on g(x, .): ``steps`` counted grad_y g calls; the accelerated inner solver of AccBiO
    (Ji & Liang 2023, AccBiO's inner loop) and of any AID/ITD estimator with ``inner_solver="agd"``."""
    return agd(lambda k, z: o.grad_y_g(x, z, batch(k)), y0, steps, lr, momentum, keep)


def inner_solve(
    o: Oracles, x: torch.Tensor, y0: torch.Tensor, steps: int, lr: float, solver: str = "gd",
    momentum: float | None = None, batch: BatchFn = no_batches, keep: bool = False,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The inner solver by name: "gd" (:func:`inner_gd`) or "agd" (:func:`inner_agd`)."""
    if solver == "agd":
        return inner_agd(o, x, y0, steps, lr, momentum, batch, keep)
    return inner_gd(o, x, y0, steps, lr, batch, keep)


def unroll_backward_agd(
    o: Oracles, x: torch.Tensor, traj: list[torch.Tensor], v: torch.Tensor, lr: float, steps: int,
    momentum: float | None = None, batch: BatchFn = no_batches, truncate: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reverse-mode differentiation through ``steps`` steps of :func:`inner_agd` (ITD with inner_solver="agd").

    With adjoints (a_y, a_z) of (y_{k+1}, z_{k+1}) and u = a_y + (1 + m_k) a_z (the adjoint of y_{k+1} in
    full), step k gives a_{y_k} = -m_k a_z, a_{z_k} = (I - lr grad2_yy g(x, z_k)) u and adds
    -lr grad2_xy g(x, z_k) u to the x-gradient: one HV and one JV at the stored z_k per kept step. Starts
    from a_y = v (= dF/dy_steps), a_z = 0; returns (gx, a_{y_0} + a_{z_0}) (y_0 = z_0), the adjoint of the
    first kept state when truncated."""
    kept = steps if truncate is None else min(truncate, steps)
    gx = torch.zeros_like(x)
    ay, az = v, torch.zeros_like(v)
    for k in range(steps - 1, steps - 1 - kept, -1):
        m = agd_momentum(momentum, k)
        u = ay + (1.0 + m) * az
        hv, jv = o.hvp_jvp(x, traj[k], u, batch(k))
        gx = gx - lr * jv
        ay, az = -m * az, u - lr * hv
    return gx, ay + az
